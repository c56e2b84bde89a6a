"""The naive baseline that "time saved" is measured against, measured on this machine.

The seed compares every optimised write with its naive safe write (``guarantee_safe_write``:
back up the file with a metadata record, write, fsync, read back and verify). Guardian times
that naive write here, with the same function ``guardian bench`` uses (rewriting a 4 KiB file,
median of a few), and one fsync of a new 4 KiB file, in a scratch directory inside the store
(the store's filesystem), and keeps both in the store's meta with when they were measured.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Calibrations older than this are measured again.
MAX_AGE_S = 7 * 86400
SAMPLES = 9


@dataclass(frozen=True)
class Baseline:
    """Seconds a naive safe write of one file takes, and one fsync, and where they came from."""

    naive_write_s: float
    fsync_s: float
    source: str           # "measured" | "given"
    measured_ns: int | None = None

    def to_json(self) -> dict[str, Any]:
        from guardian.timespec import iso

        return {"naive_write_s": round(self.naive_write_s, 6), "fsync_s": round(self.fsync_s, 6),
                "source": self.source,
                "measured": iso(self.measured_ns) if self.measured_ns else None}


def stored(store: Any) -> Baseline | None:
    """The calibration kept in the store, if any."""
    try:
        naive = store.meta_get("observe.naive_write_s")
        fsync = store.meta_get("observe.fsync_s")
        when = store.meta_get("observe.calibrated_ns")
    except Exception:
        return None
    if naive is None or fsync is None:
        return None
    return Baseline(float(naive), float(fsync), "measured", int(when) if when else None)


def given(seconds: float) -> Baseline:
    """A naive write time the user gave (``--baseline-s``); one fsync taken as a third of it."""
    return Baseline(seconds, seconds / 3, "given")


def measure(directory: Path, samples: int = SAMPLES) -> Baseline:
    """Time the seed's naive safe write and a bare fsync in a scratch dir under ``directory``."""
    import shutil
    import statistics
    import tempfile

    from guardian.benchmark import fsync_latency, naive_write

    scratch = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=directory))
    try:
        files, backups = scratch / "files", scratch / "backups"
        files.mkdir()
        backups.mkdir()
        data = os.urandom(2048).hex().encode()
        times = []
        for i in range(samples):
            p = files / f"f{i}.txt"
            p.write_bytes(data)  # the naive write is timed on a rewrite, the common case
            t = time.perf_counter()
            naive_write(p, data[::-1], backups)
            times.append(time.perf_counter() - t)
        fsync = fsync_latency(scratch, samples)
        return Baseline(statistics.median(times), fsync, "measured", time.time_ns())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ensure(store: Any) -> Baseline:
    """The store's calibration, measured (and kept) now if missing or stale; call it in the
    store's writer."""
    have = stored(store)
    fresh = have is not None and have.measured_ns is not None and (
        time.time_ns() - have.measured_ns < MAX_AGE_S * 1e9)
    if have is not None and fresh:
        return have
    b = measure(store.path)
    with store.transaction(durable=False):
        store.meta_set("observe.naive_write_s", repr(b.naive_write_s))
        store.meta_set("observe.fsync_s", repr(b.fsync_s))
        store.meta_set("observe.calibrated_ns", str(b.measured_ns))
    return b
