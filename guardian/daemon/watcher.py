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

watchdog's watch group holds *every* event behind an unpaired ``IN_MOVED_FROM`` for 0.5 s (its
``DelayedQueue``, waiting for the ``IN_MOVED_TO`` that would pair with it), so one file moved out
of a root delayed everything after it. Our watch group has its own move pairing instead
(:class:`PromptEvents`): each event goes to the bridge as it is read, from the inotify reader
thread (no emitter or dispatcher thread in between); a move's source is reported at once as gone
and, when its other half arrives, the pair as a move. The kernel delivers both halves of a
rename one after the other, so watchdog's bookkeeping of moved watched directories still finds
the source.

watchdog walks new directories with ``os.walk``, which recurses on depth in Python 3.11: a tree
~1,000 levels deep moved into a root killed its thread with RecursionError. Our watch group walks
with an explicit stack instead (no symlinks followed, ignored directories pruned), and does not
synthesise an event per file of a new directory: the daemon reconciles a directory it hears of,
which finds them. Any exception that still ends one of watchdog's threads, or a thread that stops
on its own, is reported at once (``on_failure``); the daemon restarts the observer and reconciles.
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

from guardian import faults
from guardian.daemon.reader_process import Read, ReaderProcess, parse

#: ``on_closed(path, read)``: a file was closed after a write; ``read`` is what the reader
#: process read of it (:mod:`guardian.daemon.reader_process`), if anything. True if the daemon
#: took it as an early read (the event says so: :attr:`FsEvent.early`).
OnClosed = Callable[[bytes, "Read | None"], bool]

EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
    FileAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]

#: Events in one read of the inotify fd from which its reader counts as behind: caught up,
#: a read brings the few events of the last write or two.
READER_BEHIND = 32
#: Tests set this to make the kernel watch limit reachable without changing the sysctl.
TEST_MAX_WATCHES_ENV = "GUARDIAN_TEST_MAX_WATCHES"


@dataclass(frozen=True)
class FsEvent:
    """A filesystem event as the daemon sees it: paths as bytes, moves with both ends."""

    kind: str  # created | modified | deleted | moved | closed | attrib
    src: bytes
    dest: bytes | None
    is_dir: bool
    #: A close whose file the daemon started reading as the event was read (capture.early).
    early: bool = False


class Bridge:
    """Bounded, non-blocking for producers; the consumer blocks in a worker thread."""

    def __init__(self, maxsize: int = 200_000) -> None:
        self._items: deque[FsEvent] = deque()
        self._cond = threading.Condition()
        self._maxsize = maxsize
        self._lost: set[str] = set()
        self._closed = False
        self._waiter: Callable[[], None] | None = None  # see take()

    def put(self, item: FsEvent) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._lost.add("bridge-full")
            else:
                self._items.append(item)
            self._cond.notify()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()

    def lost(self, reason: str) -> None:
        """Events were lost (overflow, unwatchable directory): the consumer must reconcile."""
        with self._cond:
            self._lost.add(reason)
            self._cond.notify()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()

    def take(self, waiter: Callable[[], None]) -> tuple[list[FsEvent], set[str]]:
        """All queued events and loss reasons, without blocking; when there are none,
        ``waiter`` is called (once, from the producer's thread) when there are, or on close.

        The event loop waits this way instead of in a worker thread: a thread hop per
        batch of events cost the loop more than routing them, at 1,000 writes/s."""
        with self._cond:
            if not self._items and not self._lost and not self._closed:
                self._waiter = waiter
                return [], set()
            items = list(self._items)
            self._items.clear()
            lost, self._lost = self._lost, set()
            return items, lost

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
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter()

    @property
    def closed(self) -> bool:
        return self._closed


class PromptEvents:
    """In place of watchdog's move grouper: events straight into the bridge, no delay.

    Called by the watch group under its lock from the inotify reader thread. The emitter thread
    still blocks in :meth:`read_event`, which only hands it what needs the emitter itself (the
    deletion of the watched root, which stops it).
    """

    KEEP_MOVES = 4096  # sources of moves kept for pairing (halves arrive back to back)

    def __init__(self, bridge: Bridge, root: bytes,
                 on_closed: OnClosed | None = None) -> None:
        self.bridge = bridge
        self.root = root
        self.on_closed = on_closed
        self._froms: dict[int, Any] = {}  # cookie -> PathedInotifyEvent, oldest first
        self._own: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last: tuple[str, bytes] | None = None  # the last event put (repeats dropped)

    def put_event(self, event: Any) -> None:
        faults.point("watcher.emit")
        ev, path = event.ev, event.path
        is_dir = ev.is_directory
        if ev.is_moved_from:
            froms = self._froms
            froms[ev.cookie] = event
            if len(froms) > self.KEEP_MOVES:
                del froms[next(iter(froms))]
            kind = "deleted"  # until (unless) its other half says where it went
        elif ev.is_moved_to:
            src = self._froms.pop(ev.cookie, None)
            if src is not None:
                self.bridge.put(FsEvent("moved", src.path, path, is_dir))
                return
            kind = "created"
        elif ev.is_close_write:
            if is_dir:
                return
            # Read here, not after the bridge and the event loop; or read already, by the
            # reader process, if it found this event's file where the daemon does.
            read = getattr(ev, "read", None)
            if read is not None and read[0] != path:
                read = None
            early = self.on_closed is not None and self.on_closed(path, read)
            self._last = ("closed", path)
            self.bridge.put(FsEvent("closed", path, None, False, early))
            return
        elif ev.is_modify:
            kind = "modified"
        elif ev.is_attrib:
            kind = "attrib"
        elif ev.is_create:
            kind = "created"
        elif ev.is_delete:
            kind = "deleted"
        elif ev.is_delete_self and path == self.root:
            with self._cond:  # the emitter reports it and stops
                self._own.append(event)
                self._cond.notify()
            return
        else:
            return  # open, close-nowrite, access, a subdirectory's delete_self/move_self
        last, self._last = self._last, (kind, path)
        if kind == "modified" and last == self._last:
            return  # a write after a write (or the truncate before it): one event will do
        self.bridge.put(FsEvent(kind, path, None, is_dir))

    def get_queued_moved_from_event(self, cookie: int) -> Any:
        return self._froms.get(cookie)

    def read_event(self) -> Any:
        with self._cond:
            while not self._own and not self._closed:
                self._cond.wait()
            return self._own.popleft() if self._own else None

    def discard_pending_events(self) -> None:
        self._froms.clear()  # after an overflow: the daemon reconciles

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _Handler(FileSystemEventHandler):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = os.fsencode(event.src_path)
        dest = os.fsencode(event.dest_path) if event.dest_path else None
        self.bridge.put(FsEvent(kind, src, dest, event.is_directory))


class Watcher:
    """Watches roots recursively; reports into a :class:`Bridge`.

    ``on_failure`` (called from watchdog's threads) hears of any thread that died or stopped
    on its own; :meth:`restart` replaces the whole observer.
    """

    def __init__(self, roots: list[bytes], bridge: Bridge,
                 skip_dir: Callable[[bytes], bool],
                 on_closed: OnClosed | None = None) -> None:
        self.roots = roots
        self.bridge = bridge
        #: Called from the inotify reader thread with the path of each file closed after a
        #: write, as the event is read (the daemon reads the file at once: capture.early);
        #: True if it did (the event says so: :attr:`FsEvent.early`).
        self.on_closed = on_closed
        self.errors: list[str] = []
        #: The inotify reader's last read brought a backlog (see READER_BEHIND): closed files
        #: are then left to the reading threads instead of read inline (capture.early).
        self.reader_behind = False
        self._observer: Any = None
        self._skip_dir = skip_dir
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._stopping = threading.Event()  # this observer is being stopped on purpose
        self._cancel = threading.Event()  # the daemon is stopping: cut walks short
        self._serial = threading.RLock()  # start, stop and restart, one at a time

    def start(self, timeout: float = 120.0) -> bool:
        """Start watching; returns once every root's watches are in place (False if a root
        could not be watched: see :attr:`errors`)."""
        with self._serial:
            return self._start(timeout)

    def _start(self, timeout: float) -> bool:
        handler = _Handler(self.bridge)
        self.errors = []
        self._stopping = stopping = threading.Event()

        def failed(message: str) -> None:
            if not stopping.is_set():  # else a thread of an observer we are stopping
                self.failed(message)

        if sys.platform.startswith("linux"):
            self._observer = _make_inotify_observer(self.bridge, self._skip_dir, self.errors,
                                                    failed, self._cancel, self.on_closed, self)
        else:  # pragma: no cover - other platforms: watchdog's default, periodic reconcile helps
            from watchdog.observers import Observer

            self._observer = Observer()
        for root in self.roots:
            self._observer.schedule(handler, os.fsdecode(root), recursive=True,
                                    event_filter=EVENT_FILTER)
        self._observer.start()
        ok = True
        for emitter in list(self._observer.emitters):
            started = getattr(emitter, "started", None)
            if started is not None:
                started.wait(timeout)
            ok = ok and not getattr(emitter, "start_failed", False)
        return ok

    def stop(self) -> None:
        with self._serial:
            self._stopping.set()
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=10)
                self._observer = None

    def restart(self, timeout: float = 120.0) -> bool:
        """A new observer in place of the old one (whose threads may be dead); none once
        :meth:`cancel` was called (the daemon is stopping)."""
        with self._serial:
            self.stop()
            self.take_failures()  # what the old one reported is known already
            if self._cancel.is_set():
                return False
            return self._start(timeout)

    def cancel(self) -> None:
        """Stopping: a walk putting watches in place ends early."""
        self._cancel.set()

    def failed(self, message: str) -> None:
        """Report that watching failed (from any thread): the daemon restarts the observer."""
        with self._lock:
            self._failures.append(message)
        self.bridge.lost("watcher-failed")

    def take_failures(self) -> list[str]:
        with self._lock:
            out, self._failures = self._failures, []
        return out

    def failures_pending(self) -> bool:
        with self._lock:
            return bool(self._failures)

    def alive(self) -> bool:
        """Whether every thread of the observer runs (a cheap check: no system call)."""
        obs = self._observer
        if obs is None or not obs.is_alive():
            return False
        fd = getattr(obs, "_inotify_fd", None)
        if fd is not None and not fd.is_alive():
            return False
        return all(e.is_alive() for e in list(obs.emitters))


def _make_inotify_observer(bridge: Bridge, skip_dir: Callable[[bytes], bool],
                           errors: list[str], failed: Callable[[str], None],
                           cancel: threading.Event,
                           on_closed: OnClosed | None = None,
                           state: Watcher | None = None) -> Any:
    """watchdog's inotify observer, hooked where it must be.

    Private API of watchdog 7.1 relied on (hence the pin ``watchdog>=7.1,<8``):
    ``InotifyFD._get_or_create_watch``, ``InotifyFD._is_reading``, the thread bodies ``run()``
    of ``InotifyFD``, ``InotifyEmitter`` and ``BaseObserver``; ``InotifyEmitter``'s
    ``on_thread_start`` (rewritten below with its ``_inotify``/``_inotify_fd`` attributes);
    ``InotifyWatchGroup._add_all_callbacks``, ``_add_callback``, ``_recursive_simulate`` and
    ``_move_event_grouper`` (whose interface :class:`PromptEvents` implements), and
    ``InotifyFD.read_events``.
    """
    import select
    from dataclasses import field

    from watchdog.observers.api import BaseObserver
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyEvent, InotifyFD, Mask, WatchDescriptor

    from guardian.capture.early import INLINE_MAX
    from guardian.paths import TEMP_PREFIX

    limit_env = os.environ.get(TEST_MAX_WATCHES_ENV)
    limit = int(limit_env) if limit_env else None

    @dataclass(unsafe_hash=True, frozen=True)
    class ReadEvent(InotifyEvent):
        """A close-write event with what the reader process read of its file."""

        read: Read | None = field(default=None, compare=False, hash=False)

    class WatchedDirs(dict[Any, bytes]):
        """A watch group's paths by watch descriptor, each change told to the reader
        process (which reads files by these paths)."""

        def __init__(self, pump: ReaderProcess) -> None:
            super().__init__()
            self.pump = pump

        def __setitem__(self, wd: Any, path: bytes) -> None:
            super().__setitem__(wd, path)
            self.pump.send(("wd", int(wd), path))

        def pop(self, wd: Any, *default: Any) -> Any:
            path = super().pop(wd, *default)
            self.pump.send(("rm", int(wd)))
            return path

    class GuardedFD(InotifyFD):
        watches = 0
        roots: ClassVar[set[bytes]] = set()

        def __init__(self) -> None:
            super().__init__()
            #: Reads the inotify descriptor and closed files in a process of its own (None:
            #: this thread reads both, as watchdog does).
            self.pump = ReaderProcess.start(self._inotify_fd, TEMP_PREFIX, INLINE_MAX)
            if self.pump is not None:
                self._pump_poller = select.poll()
                self._pump_poller.register(self.pump.out, select.POLLIN)
                self._pump_poller.register(self._kill_r, select.POLLIN)

        def _read_from_pump(self) -> list[Any]:
            """watchdog's ``_read_event_buffer`` and its close protocol, from the reader
            process's pipe instead of the inotify descriptor."""
            pump = self.pump
            assert pump is not None
            while True:
                with self._lock:
                    if self._closed:
                        return []
                    self._is_reading = True
                chunk: bytes | None = None
                if any(fd == pump.out for fd, _ in self._pump_poller.poll()):
                    chunk = os.read(pump.out, 1 << 20)
                with self._lock:
                    self._is_reading = False
                    if self._closed_meanwhile():
                        self._close_resources()
                        return []
                if chunk is None:
                    continue
                if not chunk:
                    raise OSError(errno.EPIPE, pump.exited())
                events: list[Any] = []
                for buf, reads in pump.take(chunk):
                    for wd, mask, cookie, name, read in parse(buf, reads):
                        if read is None:
                            events.append(InotifyEvent(WatchDescriptor(wd), Mask(mask),
                                                       cookie, name))
                        else:
                            events.append(ReadEvent(WatchDescriptor(wd), Mask(mask),
                                                    cookie, name, read))
                if events:
                    return events

        def _closed_meanwhile(self) -> bool:
            """Whether :meth:`close` ran while this thread polled (under ``_lock``); a
            method, so the check above it in the loop does not narrow the attribute."""
            return self._closed

        def _close_resources(self) -> None:
            super()._close_resources()
            if self.pump is not None:
                self.pump.close()

        def run(self) -> None:
            try:
                super().run()
            except BaseException as e:  # the thread is dead: say so (and no traceback)
                with self._lock:
                    self._is_reading = False  # so that close() releases the descriptor
                failed(f"inotify reader died: {type(e).__name__}: {e}")

        def read_events(self, *args: Any, **kwargs: Any) -> list[Any]:
            events: list[Any] = (self._read_from_pump() if self.pump is not None
                                 else super().read_events(*args, **kwargs))
            if state is not None:
                state.reader_behind = len(events) >= READER_BEHIND
            return events

        def handle_event(self, event: Any) -> None:
            faults.point("watcher.event")
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

    class WatchGroup(InotifyWatchGroup):
        def __post_init__(self) -> None:
            self._move_event_grouper = PromptEvents(  # type: ignore[assignment]
                bridge, self.path, on_closed)
            pump = getattr(self._inotify_fd, "pump", None)
            if pump is not None:
                pump.send(("root", self.path))
                self._active_callbacks_by_watch = WatchedDirs(pump)
            super().__post_init__()

        def _add_all_callbacks(self, path: bytes) -> None:
            """Watch ``path`` and every directory under it: an explicit stack, not os.walk."""
            if path != self.path and skip_dir(path):
                return
            self._add_callback(path)
            if not self.is_recursive:
                return
            stack = [path]
            while stack and not cancel.is_set():
                d = stack.pop()
                try:
                    it = os.scandir(d)
                except OSError:
                    continue  # gone, not a directory, unreadable: as os.walk does
                with it:
                    for entry in it:
                        try:
                            if not entry.is_dir(follow_symlinks=False):
                                continue
                        except OSError:
                            continue
                        child = entry.path
                        if skip_dir(child):
                            continue
                        self._add_callback(child)
                        stack.append(child)

        def _recursive_simulate(self, src_path: bytes) -> list[Any]:
            return []  # the daemon reconciles a new directory: that finds what it holds

    class Emitter(InotifyEmitter):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.started = threading.Event()
            self.start_failed = False

        def on_thread_start(self) -> None:
            path = os.fsencode(self.watch.path)
            GuardedFD.roots.add(path)
            try:
                self._inotify = WatchGroup(  # as watchdog's on_thread_start, with our group
                    self._inotify_fd, path, is_recursive=self.watch.is_recursive,
                    event_mask=self.get_event_mask_from_filter(),
                    follow_symlink=self.watch.follow_symlink)
            except Exception as e:
                self.start_failed = True
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                errors.append(f"{self.watch.path}: cannot watch: {reason}")
                if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EMFILE):
                    bridge.lost("watch-limit")  # polling rescans stand in for it
                else:
                    failed(f"cannot watch {self.watch.path}: {reason}")
                self.stop()
            finally:
                self.started.set()

        def run(self) -> None:
            try:
                super().run()
            except BaseException as e:
                failed(f"emitter of {self.watch.path} died: {type(e).__name__}: {e}")
                return
            if not self.start_failed:  # e.g. the root itself was deleted
                failed(f"stopped watching {self.watch.path}")

    class Observer(InotifyObserver):
        def __init__(self) -> None:
            fd = GuardedFD()
            fd.start()
            BaseObserver.__init__(self, Emitter, timeout=1.0, inotify_fd=fd)
            self._inotify_fd = fd

        def run(self) -> None:
            try:
                super().run()
            except BaseException as e:
                failed(f"event dispatcher died: {type(e).__name__}: {e}")

    return Observer()
