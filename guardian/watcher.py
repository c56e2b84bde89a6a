"""watchdog, and the one bridge that carries its events into the async daemon.

The observer's threads never block on us: the handler appends to a bounded deque and wakes the
consumer; when the deque is full, events are dropped and the bridge says so, and the daemon
reconciles instead (the store is the truth, the watcher is a hint).

watchdog 7 rebuilds its watches after an inotify queue overflow, and silently skips
directories it cannot watch (watch limit reached), but tells handlers neither. The inotify file
descriptor below is subclassed to report both, to skip watching ignored directories (``.git/``,
``.gitignore``d trees), and to let tests inject a watch limit. Open and close-nowrite events are
filtered at the kernel (``event_filter``): otherwise our own reads and watchdog's own walks would
flood the queue.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
    FileAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]

#: Tests set this to make the kernel watch limit reachable without changing the sysctl.
TEST_MAX_WATCHES_ENV = "GUARDIAN_TEST_MAX_WATCHES"


@dataclass(frozen=True)
class FsEvent:
    """A filesystem event as the daemon sees it: paths as bytes, moves with both ends."""

    kind: str  # created | modified | deleted | moved | closed | attrib
    src: bytes
    dest: bytes | None
    is_dir: bool


class Bridge:
    """Bounded, non-blocking for producers; the consumer blocks in a worker thread."""

    def __init__(self, maxsize: int = 200_000) -> None:
        self._items: deque[FsEvent] = deque()
        self._cond = threading.Condition()
        self._maxsize = maxsize
        self._lost: set[str] = set()
        self._closed = False

    def put(self, item: FsEvent) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._lost.add("bridge-full")
            else:
                self._items.append(item)
            self._cond.notify()

    def lost(self, reason: str) -> None:
        """Events were lost (overflow, unwatchable directory): the consumer must reconcile."""
        with self._cond:
            self._lost.add(reason)
            self._cond.notify()

    def get_batch(self) -> tuple[list[FsEvent], set[str]]:
        """Block until there is something; return all queued events and loss reasons."""
        with self._cond:
            while not self._items and not self._lost and not self._closed:
                self._cond.wait()
            items = list(self._items)
            self._items.clear()
            lost, self._lost = self._lost, set()
            return items, lost

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class _Handler(FileSystemEventHandler):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = os.fsencode(event.src_path)
        dest = os.fsencode(event.dest_path) if event.dest_path else None
        self.bridge.put(FsEvent(kind, src, dest, event.is_directory))


class Watcher:
    """Watches roots recursively; reports into a :class:`Bridge`."""

    def __init__(self, roots: list[bytes], bridge: Bridge,
                 skip_dir: Callable[[bytes], bool]) -> None:
        self.roots = roots
        self.bridge = bridge
        self.errors: list[str] = []
        self._observer: Any = None
        self._skip_dir = skip_dir

    def start(self, timeout: float = 120.0) -> None:
        """Start watching; returns once every root's watches are in place."""
        handler = _Handler(self.bridge)
        if sys.platform.startswith("linux"):
            self._observer = _make_inotify_observer(self.bridge, self._skip_dir, self.errors)
        else:  # pragma: no cover - other platforms: watchdog's default, periodic reconcile helps
            from watchdog.observers import Observer

            self._observer = Observer()
        for root in self.roots:
            self._observer.schedule(handler, os.fsdecode(root), recursive=True,
                                    event_filter=EVENT_FILTER)
        self._observer.start()
        for emitter in list(self._observer.emitters):
            started = getattr(emitter, "started", None)
            if started is not None:
                started.wait(timeout)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None


def _make_inotify_observer(bridge: Bridge, skip_dir: Callable[[bytes], bool],
                           errors: list[str]) -> Any:
    from watchdog.observers.api import BaseObserver
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
    from watchdog.observers.inotify_c import InotifyFD

    limit_env = os.environ.get(TEST_MAX_WATCHES_ENV)
    limit = int(limit_env) if limit_env else None

    class GuardedFD(InotifyFD):
        watches = 0
        roots: ClassVar[set[bytes]] = set()

        def handle_event(self, event: Any) -> None:
            if event.is_queue_overflow:
                bridge.lost("overflow")
            super().handle_event(event)

        def _get_or_create_watch(self, path: bytes, mask: Any) -> Any:
            if path not in self.roots and skip_dir(path):
                raise OSError(errno.EPERM, "ignored directory: not watched")
            if limit is not None and self.watches >= limit:
                bridge.lost("watch-limit")
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
            try:
                watch = super()._get_or_create_watch(path, mask)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EMFILE):
                    bridge.lost("watch-limit")
                raise
            self.watches += 1
            return watch

    class Emitter(InotifyEmitter):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.started = threading.Event()

        def on_thread_start(self) -> None:
            GuardedFD.roots.add(os.fsencode(self.watch.path))
            try:
                super().on_thread_start()
            except OSError as e:
                errors.append(f"{self.watch.path}: cannot watch: {e.strerror or e}")
                bridge.lost("watch-limit" if e.errno in (errno.ENOSPC, errno.EMFILE) else "error")
                self.stop()
            finally:
                self.started.set()

    class Observer(InotifyObserver):
        def __init__(self) -> None:
            fd = GuardedFD()
            fd.start()
            BaseObserver.__init__(self, Emitter, timeout=1.0, inotify_fd=fd)
            self._inotify_fd = fd

    return Observer()
