"""Reading a closed file at once, so a version overwritten before the next commit is kept.

A writer that closed a file (``IN_CLOSE_WRITE``) is done with it: its bytes can be read right
away, before the settle window has passed and whatever the store thread is busy with. At 1,000
writes/s over 64 files each version stays on disk for 64 ms; waiting for the group commit lost
a third of them. The settle window still decides when a path is *recorded* (and still folds the
writes of a writer that does not close); this only makes sure what was seen is not lost.

A small file is read right where its close is heard (the inotify reader thread, before it
reads the next event): handing it to another thread first cost a wake-up and a wait for the GIL
behind the store and event-loop threads. A file over ``INLINE_MAX`` bytes, one whose earlier
read is still queued, and every file while the reader has a backlog of events (at 2,000
writes/s on a busy machine: reading inline then made it fall further behind, and lost more
versions than the threads did) go to the reading threads instead.

A path last heard of as a close read early is recorded from that read: nothing was heard of
it since, so reading it again at record time would find the same. The event loop tells
(:meth:`EarlyReads.heard`) as it routes each event, in the order they happened; any later
event, routed before the commit or after it, means another read (now, or at the next commit).
That second read was a hop to a reading thread per path per commit, with the commit waiting
on it: a fifth of a capture's time at 1,000 writes/s, and most of it in the slowest ones.

Reads of one path run in order (paths are spread over a few threads by hash, an inline read
only runs once the path's queued ones are done), and the read at record time is queued behind
the early ones: what a commit records for a path is in the order it was on disk. Early reads
are held in memory until they are recorded, within a byte budget: past it, closes are recorded
as before (at the end of the settle window).

On Linux the daemon's inotify events come from a process of its own that has read each small
closed file already (:mod:`guardian.daemon.reader_process`): ``read_soon(read=...)`` takes that
read instead of reading (in the same order as any other early read of the path).

One lock orders a path's reads against the commit that takes them, and nothing else takes it:
four threads (the inotify reader, the event loop, the reading threads) once took it for every
event, and a thread that lost the GIL while holding it stalled the others behind it (a third
of the inotify reader's time at 2,000 writes/s, measured with py-spy). The budget's counters
are per thread, each written by its own thread only; the set of paths last heard of as a
close is changed with single set operations (a race there costs one read more, never one less).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from threading import get_ident
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardian.capture.recorder import PathKey, Seen

#: Bytes of early reads held at most, waiting to be recorded.
BUDGET_BYTES = 32 * 1024 * 1024
#: Early reads held at most (each costs more than its bytes: a Seen, a stat, a digest).
BUDGET_READS = 5_000
#: The largest file read inline, on the thread that heard it was closed.
INLINE_MAX = 64 * 1024

Observe = Callable[["PathKey", "Seen | None"], "Seen"]
#: ``(key, last)`` -> the read, or None for a file over ``INLINE_MAX`` (left to the threads).
ObserveInline = Callable[["PathKey", "Seen | None"], "Seen | None"]
#: What another process read of a file (guardian.daemon.reader_process.Read).
Read = tuple[bytes, tuple[object, ...], bytes, bytes]
#: ``(key, last, read)`` -> the Seen of a read made elsewhere.
FromRead = Callable[["PathKey", "Seen | None", Read], "Seen"]
_Item = tuple["PathKey", "Future[Seen]", "Future[Seen] | None", bool, "Read | None"]
#: ``recorder.FILE`` (the recorder imports this module).
_FILE = "file"


class EarlyReads:
    """Per-path ordered reads on a few threads; see the module docstring.

    ``observe(key, last)`` reads one path; ``last`` is the previous read of the same path (it
    may be returned as is when the file has not changed since).
    """

    def __init__(self, observe: Observe, threads: int = 2,
                 inline: ObserveInline | None = None,
                 from_read: FromRead | None = None) -> None:
        self._observe = observe
        self._inline = inline
        self._from_read = from_read
        self._queues: list[queue.SimpleQueue[_Item | None]] = [
            queue.SimpleQueue() for _ in range(max(1, threads))]
        self._pending: dict[PathKey, list[Future[Seen]]] = {}
        #: Reads at record time in flight (see take()): a close heard meanwhile is read after.
        self._now: dict[PathKey, Future[Seen]] = {}
        #: Paths last heard of as a close read early (see :meth:`heard`).
        self._clean: set[PathKey] = set()
        self._lock = threading.Lock()
        #: Bytes and reads held, as [bytes, reads] added (or, negative, released) by each
        #: thread: each slot is written only by its own thread, so no lock is needed.
        self._counts: dict[int, list[int]] = {}
        self.skipped = 0  # closes not read early (over budget)
        self._threads = [threading.Thread(target=self._run, args=(q,), daemon=True,
                                          name=f"guardian-early-{i}")
                         for i, q in enumerate(self._queues)]
        for t in self._threads:
            t.start()

    def _queue(self, key: PathKey) -> queue.SimpleQueue[_Item | None]:
        return self._queues[hash(key) % len(self._queues)]

    def read_soon(self, key: PathKey, *, inline: bool = True, read: Read | None = None) -> bool:
        """A writer closed ``key``: read it now (unless the budget is spent: False). ``inline``
        False: on a reading thread even if small (the caller has a backlog to get through).
        ``read``: it was read already, by the reader process; that read is taken instead."""
        if self._from_read is None:
            read = None
        held_bytes, held_reads = self._held()
        if held_bytes >= BUDGET_BYTES or held_reads >= BUDGET_READS:
            self.skipped += 1
            return False
        self._count(0, 1)
        with self._lock:
            fut: Future[Seen] = Future()
            held = self._pending.setdefault(key, [])
            last = held[-1] if held else self._now.get(key)
            held.append(fut)
            if (last is not None and not last.done()) or (
                    read is None and (not inline or self._inline is None)):
                # Queued under the lock: a path's reads enter its queue in the order they
                # are held; one behind a read not done yet waits for it first.
                self._queue(key).put((key, fut, last, True, read))
                return True
        if read is not None:
            self._take_read(key, fut, last, read)
        else:
            self._read_inline(key, fut, last)
        return True

    def heard(self, key: PathKey, *, last_read: bool) -> None:
        """The event loop routed an event of ``key`` (in the order they happened):
        ``last_read``, a close that :meth:`read_soon` read; else anything else (a write, a
        move, a close not read)."""
        if last_read:
            self._clean.add(key)
        else:
            self._clean.discard(key)

    def heard_nothing(self) -> None:
        """Events were lost (an overflow, a full bridge, a watcher restarted): no path's
        last event is known, so every path is read again at record time."""
        self._clean.clear()

    def _count(self, n_bytes: int, n_reads: int) -> None:
        """Add to this thread's counters of what is held (see ``_counts``)."""
        mine = self._counts.get(get_ident())
        if mine is None:
            mine = self._counts.setdefault(get_ident(), [0, 0])
        mine[0] += n_bytes
        mine[1] += n_reads

    def _held(self) -> tuple[int, int]:
        """Bytes and reads held (a snapshot: ``list`` of a dict's values is one step)."""
        counts = list(self._counts.values())
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def _take_read(self, key: PathKey, fut: Future[Seen], last: Future[Seen] | None,
                   read: Read) -> None:
        """Take the reader process's ``read`` as this close's early read (``last`` is done)."""
        assert self._from_read is not None
        prev = None
        try:
            prev = last.result() if last is not None else None
            s = self._from_read(key, prev, read)
        except BaseException as e:  # reported to whoever takes it
            fut.set_exception(e)
            return
        self._done(fut, s, prev)

    def _read_inline(self, key: PathKey, fut: Future[Seen], last: Future[Seen] | None) -> None:
        """Read ``key`` on this thread (``last``, if any, is done: see :meth:`read_soon`)."""
        assert self._inline is not None
        prev = None
        try:
            prev = last.result() if last is not None else None
            s = self._inline(key, prev)
            if s is None:  # too big to read here
                with self._lock:
                    if fut in self._pending.get(key, ()):
                        self._queue(key).put((key, fut, last, True, None))
                        return
                # Taken meanwhile: a read at record time waits for this one (queued behind
                # it, it must not be queued after that read), so it is read here after all.
                s = self._observe(key, prev)
        except BaseException as e:  # reported to whoever takes it
            fut.set_exception(e)
            return
        self._done(fut, s, prev)

    def _done(self, fut: Future[Seen], s: Seen, prev: Seen | None) -> None:
        """An early read is done: its bytes count against the budget until taken (a repeat of
        the read before it, the same object, counts once)."""
        if s.data is not None and s is not prev and not s.held:
            s.held = True
            self._count(len(s.data), 0)
        fut.set_result(s)

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
        is that same object (the caller drops the repeat).

        (Reading the state now here, on the store thread, instead of queueing it saved a hop
        at 1,000 writes/s but made the store thread the bottleneck at 2,000.)"""
        waits: list[tuple[PathKey, list[Future[Seen]], Future[Seen] | None]] = []
        with self._lock:
            for key in keys:
                early = self._pending.pop(key, [])
                if key in self._clean:
                    self._clean.discard(key)
                    if early:  # its last early read is its state now (if it read a file)
                        waits.append((key, early, None))
                        continue
                now: Future[Seen] = Future()
                self._queue(key).put((key, now, early[-1] if early else None, False, None))
                self._now[key] = now
                waits.append((key, early, now))
        out: list[list[Seen]] = []
        nows = [(key, now) for key, _early, now in waits if now is not None]
        freed = reads = 0
        try:
            for key, early, maybe in waits:
                seen = [f.result() for f in early]
                if maybe is not None:
                    now = maybe
                elif seen[-1].state == _FILE:
                    now = early[-1]  # taken as an early read and as the state now
                else:  # gone, unstable, unreadable...: read it again, as any other path
                    now = Future()
                    with self._lock:
                        self._queue(key).put((key, now, early[-1], False, None))
                        self._now[key] = now
                    nows.append((key, now))
                reads += len(early)
                for s in seen:
                    if s.held and s.data is not None:
                        s.held = False
                        freed += len(s.data)
                seen.append(now.result())
                out.append(seen)
        finally:
            with self._lock:
                for key, now in nows:
                    if self._now.get(key) is now:
                        del self._now[key]
            # Every held read of these keys is released, also those not waited for (an
            # error): their bytes are counted when they were read.
            rest = sum(len(w[1]) for w in waits) - reads
            self._count(-freed, -(reads + rest))
        return out

    def _run(self, q: queue.SimpleQueue[_Item | None]) -> None:
        while (item := q.get()) is not None:
            key, fut, last, early, read = item
            try:
                # ``last`` went into this same queue before, was read inline, or is the read
                # at record time: it is done or will be, in order.
                prev = last.result() if last is not None else None
                if read is not None and self._from_read is not None:
                    s = self._from_read(key, prev, read)
                else:
                    s = self._observe(key, prev)
            except BaseException as e:  # reported to whoever takes it
                fut.set_exception(e)
                continue
            if early:
                self._done(fut, s, prev)
            else:
                fut.set_result(s)

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join(10)
