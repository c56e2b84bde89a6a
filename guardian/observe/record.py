"""What an operation row says, and how the writers that had none record one.

The batch writer has always recorded its operations (:mod:`guardian.batch.protocol`);
capture, reconcile, validation, revert, restore and snapshot are recorded here: the daemon
measures them (:mod:`guardian.observe.monitor`) and :func:`recorded` times the
:class:`~guardian.service.Service` requests a CLI runs without a daemon. Rows are written
without an fsync of their own (``transaction(durable=False)``): the next durable commit makes
them durable, and a crash can lose only the last few measurements, never a version.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from guardian.store.db import LATENCY_BUCKETS_S

T = TypeVar("T")

#: The batch writer's operations; together they are the type "batch".
BATCH_OPS = frozenset({"write", "edit", "delete", "render", "mkdir"})
#: Every type of operation, in the order reports list them.
TYPES = ("capture", "reconcile", "validate", "revert", "restore", "snapshot", "batch")
#: The seed's five error categories, and which of Guardian's categories each holds.
CATEGORIES = ("permission", "validation", "optimisation", "system", "recovery")
CATEGORY_OF = {
    "permission": "permission", "lock": "permission", "conflict": "permission",
    "validation": "validation", "usage": "validation",
    "optimisation": "optimisation",
    "system": "system", "space": "system",
    "recovery": "recovery",
}
#: Reconcile reasons that mean events were lost.
LOSS_REASONS = frozenset({"overflow", "bridge-full", "watch-limit"})


def op_type(op: str) -> str:
    return "batch" if op in BATCH_OPS else op


def seed_category(category: str | None) -> str | None:
    """One of :data:`CATEGORIES` for a row's error category (None for none)."""
    if not category:
        return None
    return CATEGORY_OF.get(category, "system")


def category_of(e: BaseException) -> str:
    """The error category of an exception a recorded operation raised."""
    from guardian.errors import UsageError

    cause = e.__cause__ or e.__context__  # what a GuardianError was raised about
    if isinstance(cause, OSError) and not isinstance(e, OSError):
        return category_of(cause)
    if isinstance(e, PermissionError):
        return "permission"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "space"
    if isinstance(e, UsageError):
        return "usage"
    cat = getattr(e, "category", None)
    return cat if isinstance(cat, str) else "system"


class Latency:
    """A capture-latency histogram (write -> committed), as one operation row carries it."""

    def __init__(self) -> None:
        self.buckets = [0] * len(LATENCY_BUCKETS_S)
        self.n = 0
        self.sum_ns = 0
        self.max_ns = 0

    def add(self, seconds: float) -> None:
        ns = max(0, int(seconds * 1e9))
        self.n += 1
        self.sum_ns += ns
        self.max_ns = max(self.max_ns, ns)
        for i, edge in enumerate(LATENCY_BUCKETS_S):
            if seconds <= edge:
                self.buckets[i] += 1

    def to_json(self) -> str | None:
        if not self.n:
            return None
        return json.dumps({"n": self.n, "sum": self.sum_ns, "max": self.max_ns,
                           "b": self.buckets}, separators=(",", ":"))


def row(op: str, duration_ns: int, outcome: str, *, path: bytes | None = None,
        category: str | None = None, optimisation: Sequence[str] | str | None = None,
        items: int | None = None, nbytes: int | None = None, label: str | None = None,
        latency: str | None = None, detail: dict[str, Any] | None = None,
        time_ns: int | None = None) -> tuple[Any, ...]:
    """One row for :meth:`Store.record_observed`."""
    if optimisation is not None and not isinstance(optimisation, str):
        optimisation = ",".join(sorted(optimisation)) or None
    return (time.time_ns() if time_ns is None else time_ns, op, int(duration_ns), outcome,
            path, category, optimisation or None, items, nbytes, label, latency,
            json.dumps(detail) if detail else None)


def write_rows(store: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Record measured operations in one commit without an fsync of its own."""
    if rows:
        with store.transaction(durable=False):
            store.record_observed(rows)


def recorded(op: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a :class:`~guardian.service.Service` method: record one ``op`` row (its
    duration, outcome, error category) after each call, on the service's own store."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def inner(self: Any, *args: Any, **kwargs: Any) -> T:
            if kwargs.get("dry_run"):
                return fn(self, *args, **kwargs)
            t0 = time.perf_counter_ns()
            try:
                out = fn(self, *args, **kwargs)
            except Exception as e:
                _record(self, op, t0, args, "error", category_of(e), None,
                        {"message": str(e)[:300]})
                raise
            _record(self, op, t0, args, "ok", None, _items(out), None)
            return out

        return inner

    return wrap


def _record(service: Any, op: str, t0: int, args: tuple[Any, ...], outcome: str,
            category: str | None, items: int | None, detail: dict[str, Any] | None) -> None:
    path = args[0] if args and isinstance(args[0], str) else None
    with contextlib.suppress(Exception):  # measuring must never fail the request it measures
        write_rows(service.recorder.store, [row(
            op, time.perf_counter_ns() - t0, outcome, category=category, items=items,
            path=os.fsencode(path) if path else None, detail=detail)])


def _items(out: Any) -> int | None:
    if isinstance(out, dict):
        if isinstance(out.get("changes"), list):
            return len(out["changes"])
        if isinstance(out.get("recorded"), int):
            return int(out["recorded"])
    return None
