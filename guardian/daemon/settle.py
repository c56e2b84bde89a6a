"""Settling: a path is processed once writes to it stop for a short window.

A file being written is not read half-done; a file written without pause is still processed
every ``cap`` seconds. ``defer`` schedules a later re-check (a vanished file, before it becomes a
tombstone: editors' safe saves leave the target absent for a moment).

Pure data structure, no I/O and no clock of its own: the daemon passes ``now``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")


@dataclass
class _Pending:
    first: float
    last: float
    not_before: float
    quick: bool = False
    window: float | None = None  # this key's own settle window (a rule's settle_ms)
    cap: float | None = None


class Settler(Generic[K]):
    def __init__(self, window: float, cap: float, quick: float = 0.005) -> None:
        self.window = window
        self.cap = cap
        self.quick = min(quick, window)
        self._pending: dict[K, _Pending] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._pending)

    def touch(self, key: K, now: float, *, done: bool = False, window: float | None = None,
              cap: float | None = None) -> None:
        """Something happened to ``key``: (re)start its quiet window.

        ``done``: the writer said it finished (closed the file after writing), so a much shorter
        window is enough; a file written and removed at once still gets a chance to be read.
        ``window``/``cap``: this key's own, instead of the defaults.
        """
        p = self._pending.get(key)
        if p is None:
            p = self._pending[key] = _Pending(now, now, 0.0, done, window, cap)
        else:
            p.last = now
            p.quick = done
            p.window, p.cap = window, cap
        self._push(key, self._due(p))

    def defer(self, key: K, until: float) -> None:
        """Process ``key`` no earlier than ``until`` (unless touched again after)."""
        p = self._pending.get(key)
        if p is None:
            # Nothing to wait out but the deferral itself.
            p = self._pending[key] = _Pending(until, until - self.window, until)
        else:
            p.not_before = max(p.not_before, until)
        self._push(key, self._due(p))

    def next_due(self) -> float | None:
        while self._heap:
            due, _, key = self._heap[0]
            p = self._pending.get(key)
            if p is None or self._due(p) != due:
                heapq.heappop(self._heap)  # stale entry
                continue
            return due
        return None

    def pop_due(self, now: float, firsts: dict[K, float] | None = None,
                limit: int | None = None) -> list[K]:
        """Keys whose window has passed (at most ``limit``, the earliest due first; the rest
        stay due); ``firsts`` gets when each was first touched (the daemon measures write ->
        committed from there)."""
        out: list[K] = []
        while self._heap and (limit is None or len(out) < limit):
            due, _, key = self._heap[0]
            p = self._pending.get(key)
            if p is None or self._due(p) != due:
                heapq.heappop(self._heap)
                continue
            if due > now:
                break
            heapq.heappop(self._heap)
            if firsts is not None:
                firsts[key] = self._pending[key].first
            del self._pending[key]
            out.append(key)
        return out

    def pop_all(self, firsts: dict[K, float] | None = None) -> list[K]:
        keys = list(self._pending)
        if firsts is not None:
            firsts.update((k, p.first) for k, p in self._pending.items())
        self._pending.clear()
        self._heap.clear()
        return keys

    def _due(self, p: _Pending) -> float:
        # A rule's own window is honoured even after a close; else a close shortens it.
        window = p.window if p.window is not None else (self.quick if p.quick else self.window)
        cap = self.cap if p.cap is None else p.cap
        return max(min(p.last + window, p.first + cap), p.not_before)

    def _push(self, key: K, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
