"""A bare watchdog observer: the baseline the benchmarks compare Guardian's daemon with.

    python bench/watchdog_probe.py ROOT [--quiet]

Watches ROOT recursively with watchdog's inotify observer, with the same kernel event filter as
Guardian (no open / close-nowrite events), and, like ``guardian watch``, logs one JSON object
per line on stderr: ``{"event": "ready"}`` once every watch is in place, then one line per
event (``{"event": "closed", "path": ...}``) unless ``--quiet``. SIGTERM stops it (exit 0).

It imports nothing but the stdlib and watchdog, and is run as a script (not ``-m bench...``) so
that its memory is that of a minimal watchdog process.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

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
from watchdog.observers import Observer

EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
    FileAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]


def log(obj: dict[str, object]) -> None:
    sys.stderr.write(json.dumps(obj) + "\n")
    sys.stderr.flush()


class Echo(FileSystemEventHandler):
    def on_any_event(self, event: FileSystemEvent) -> None:
        path = event.src_path
        log({"event": event.event_type,
             "path": path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path})


def main() -> int:
    root = sys.argv[1]
    quiet = "--quiet" in sys.argv[2:]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    observer = Observer()
    observer.schedule(FileSystemEventHandler() if quiet else Echo(), root, recursive=True,
                      event_filter=EVENT_FILTER)
    observer.start()  # adds every inotify watch before it returns
    log({"event": "ready"})
    while not stop.wait(1.0):
        pass
    observer.stop()
    observer.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
