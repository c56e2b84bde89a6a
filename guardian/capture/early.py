"""Reading a closed file at once, so a version overwritten before the next commit is kept.

A writer that closed a file (``IN_CLOSE_WRITE``) is done with it: its bytes can be read right
away, before the settle window has passed and whatever the store thread is busy with. At 1,000
writes/s over 64 files each version stays on disk for 64 ms; waiting for the group commit lost
a third of them. The settle window still decides when a path is *recorded* (and still folds the
writes of a writer that does not close); this only makes sure what was seen is not lost.

Reads of one path run in order on one thread (paths are spread over a few threads by hash),
and the read at record time is queued behind the early ones: what a commit records for a path is
in the order it was on disk. Early reads are held in memory until they are recorded, within a
byte budget: past it, closes are recorded as before (at the end of the settle window).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardian.capture.recorder import PathKey, Seen

#: Bytes of early reads held at most, waiting to be recorded.
BUDGET_BYTES = 32 * 1024 * 1024
#: Early reads held at most (each costs more than its bytes: a Seen, a stat, a digest).
BUDGET_READS = 5_000

Observe = Callable[["PathKey", "Seen | None"], "Seen"]
_Item = tuple["PathKey", "Future[Seen]", "Future[Seen] | None", bool]


class EarlyReads:
    """Per-path ordered reads on a few threads; see the module docstring.

    ``observe(key, last)`` reads one path; ``last`` is the previous read of the same path (it
    may be returned as is when the file has not changed since).
    """

    def __init__(self, observe: Observe, threads: int = 2) -> None:
        self._observe = observe
        self._queues: list[queue.SimpleQueue[_Item | None]] = [
            queue.SimpleQueue() for _ in range(max(1, threads))]
        self._pending: dict[PathKey, list[Future[Seen]]] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self._reads = 0
        self.skipped = 0  # closes not read early (over budget)
        self._threads = [threading.Thread(target=self._run, args=(q,), daemon=True,
                                          name=f"guardian-early-{i}")
                         for i, q in enumerate(self._queues)]
        for t in self._threads:
            t.start()

    def _queue(self, key: PathKey) -> queue.SimpleQueue[_Item | None]:
        return self._queues[hash(key) % len(self._queues)]

    def read_soon(self, key: PathKey) -> None:
        """A writer closed ``key``: read it now (unless the budget is spent)."""
        with self._lock:
            if self._bytes >= BUDGET_BYTES or self._reads >= BUDGET_READS:
                self.skipped += 1
                return
            self._reads += 1
            fut: Future[Seen] = Future()
            held = self._pending.setdefault(key, [])
            last = held[-1] if held else None
            held.append(fut)
            # Queued under the lock: a path's reads enter its queue in the order they are held.
            self._queue(key).put((key, fut, last, True))

    def pending(self) -> int:
        """Paths with early reads not yet taken."""
        with self._lock:
            return len(self._pending)

    def done(self) -> bool:
        """Whether every early read queued so far has been read (not necessarily taken)."""
        with self._lock:
            return all(f.done() for held in self._pending.values() for f in held)

    def take(self, keys: Sequence[PathKey]) -> list[list[Seen]]:
        """For each key: its early reads not taken yet, then its state now (a read queued
        behind them), oldest first. A read that found the file unchanged since the one before
        is that same object (the caller drops the repeat)."""
        waits: list[tuple[list[Future[Seen]], Future[Seen]]] = []
        with self._lock:
            for key in keys:
                early = self._pending.pop(key, [])
                now: Future[Seen] = Future()
                self._queue(key).put((key, now, early[-1] if early else None, False))
                waits.append((early, now))
        out: list[list[Seen]] = []
        freed = reads = 0
        try:
            for early, now in waits:
                seen = [f.result() for f in early]
                reads += len(early)
                prev = None
                for s in seen:  # a repeat is the same object, counted once when read
                    if s is not prev and s.data is not None:
                        freed += len(s.data)
                    prev = s
                seen.append(now.result())
                out.append(seen)
        finally:
            with self._lock:
                # Every held read of these keys is released, also those not waited for (an
                # error): their bytes are counted when they were read.
                rest = sum(len(e) for e, _ in waits) - reads
                self._reads -= reads + rest
                self._bytes -= freed
                self._bytes = max(0, self._bytes)
        return out

    def _run(self, q: queue.SimpleQueue[_Item | None]) -> None:
        while (item := q.get()) is not None:
            key, fut, last, early = item
            try:
                # ``last`` went into this same queue before: it is done.
                s = self._observe(key, last.result() if last is not None else None)
            except BaseException as e:  # reported to whoever takes it
                fut.set_exception(e)
                continue
            if early and s.data is not None and (last is None or s is not last.result()):
                with self._lock:
                    self._bytes += len(s.data)
            fut.set_result(s)

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join(10)
