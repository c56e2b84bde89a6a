"""Validators on every core: CPU-bound checks of many files run in worker processes too.

Parsing holds the GIL (``compile`` of Python source runs at ~5 MB/s), so threads cannot
spread it: a batch of forty 16 KiB Python files spent most of its time compiling them, one
after another. :func:`run_many` splits the jobs worth it (built-in validators, by their cost
per byte) between this thread and a few worker processes, balanced by expected cost, and
runs the rest here.

A worker is ``python -m guardian.validatepool`` on a pair of pipes (not ``multiprocessing``,
whose workers re-import the parent's main script: an embedding program's top-level code
would run again in each). It reads length-prefixed pickled jobs and answers pickled results
(both ends are this code, over private pipes), ignores the terminal's Ctrl-C (its own
session) and exits when its pipe closes, so it never outlives Guardian. Workers start on
first use and are reused; none is started for work smaller than its start would cost.
Anything a worker cannot do (it died, it hung, an answer did not come back) is done here
instead, so an answer never depends on the workers.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from guardian import validators
from guardian.validators import Result

#: Seconds per byte of each built-in validator (measured by ``bench validation``: python
#: 5.9 MB/s, yaml 2.2, toml 2.4, ini 1.8; json, markdown and text are fast enough that
#: shipping their input to another process costs about as much as checking it here).
COST_PER_BYTE = {"python": 1 / 5.9e6, "yaml": 1 / 2.2e6, "toml": 1 / 2.4e6, "ini": 1 / 1.8e6}
#: Expected seconds of work below which nothing is sent to running workers...
MIN_WORK_S = 0.010
#: ...and below which workers are not started for it (each costs ~0.1 s to start).
START_WORK_S = 0.400
#: How long a worker's share may take before the worker is given up (and its share is
#: checked here): far beyond what a built-in parser needs for a batch's files.
SHARE_TIMEOUT_S = 60.0
#: How long a new worker may take to say it is ready (a Python start and an import).
STARTUP_S = 5.0

#: The worker program.
WORKER_ARGV = [sys.executable, "-m", "guardian.validatepool"]

Job = tuple[str, bytes, str, Mapping[str, Any]]  # (validator, data, path, options)
_FRAME = struct.Struct("!Q")

_lock = threading.Lock()  # one batch at a time uses the workers
_workers: list[_Worker] = []
_eager = False  # see keep_warm
_mute = False  # started workers never said they were ready: none is started again
_disabled = bool(os.environ.get("GUARDIAN_NO_VALIDATE_POOL"))


def run_many(jobs: Sequence[Job], *, timeout: float = validators.DEFAULT_TIMEOUT,
             offloaded: set[int] | None = None) -> list[Result]:
    """``validators.run`` of every job, in order; the costly ones on several cores (the
    indices of those a worker did are added to ``offloaded``)."""
    costs = [_cost(job) for job in jobs]
    heavy = [i for i, c in enumerate(costs) if c > 0]
    out: list[Result | None] = [None] * len(jobs)
    work = sum(costs[i] for i in heavy)
    if len(heavy) < 2 or work < MIN_WORK_S or _disabled or not _lock.acquire(blocking=False):
        return [validators.run(*job, timeout=timeout) for job in jobs]
    try:
        workers = _ready_workers(work)
        mine, *shares = _balance(heavy, costs, len(workers) + 1)
        sent: list[tuple[_Worker, list[int]]] = []
        for worker, share in zip(workers, shares, strict=True):
            if not share:
                continue
            if worker.send([_plain(jobs[i]) for i in share]):
                sent.append((worker, share))
            else:
                mine += share
        for i in [*mine, *(i for i, c in enumerate(costs) if c == 0)]:
            out[i] = validators.run(*jobs[i], timeout=timeout)
        for worker, share in sent:
            results = worker.receive(len(share), SHARE_TIMEOUT_S)
            if results is None:  # its share is checked here, below
                _workers.remove(worker)
                worker.close()
                continue
            for i, result in zip(share, results, strict=True):
                out[i] = result
                if offloaded is not None:
                    offloaded.add(i)
    finally:
        _lock.release()
    return [r if r is not None else validators.run(*jobs[i], timeout=timeout)
            for i, r in enumerate(out)]


def keep_warm() -> None:
    """This process validates batch after batch (the daemon, a benchmark): start workers for
    any work worth sending to them, not only for work worth their start."""
    global _eager
    _eager = True


def warm(timeout: float = 30.0) -> bool:
    """Start the workers now and wait until each answers; False if this machine gets none
    (one core, or disabled)."""
    keep_warm()
    if _disabled:
        return False
    with _lock:
        _ready_workers(START_WORK_S)
        for w in list(_workers):
            if not w.greeted(timeout):
                _workers.remove(w)
                w.close()
        return bool(_workers)


def _ready_workers(work: float) -> list[_Worker]:
    """The live workers that have said they are ready, starting them if ``work`` is worth it
    (the caller holds _lock). One that died goes; one that has not said so within STARTUP_S
    goes too, and no worker is started again in this process (it would not say so either)."""
    global _mute
    now = time.monotonic()
    for w in [w for w in _workers if not w.alive()
              or (not w.greeted(0.0) and now - w.started > STARTUP_S)]:
        _mute = _mute or w.alive()
        _workers.remove(w)
        w.close()
    if _workers or _mute or not (work >= START_WORK_S or _eager):
        return [w for w in _workers if w.greeted(0.0)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    for _ in range(min(4, cpus - 1)):
        worker = _Worker.start()
        if worker is None:
            break
        _workers.append(worker)
    # Work smaller than a start is done here this time; the workers start meanwhile.
    if work < START_WORK_S:
        return []
    ready = [w for w in _workers if w.greeted(max(0.0, STARTUP_S - (time.monotonic() - now)))]
    if not ready:
        _mute = True
        _close()
    return ready


def _cost(job: Job) -> float:
    """Expected seconds of a job if a worker can do it (0: it stays here)."""
    name, data, _path, options = job
    per_byte = COST_PER_BYTE.get(name)
    if per_byte is None or not validators.is_builtin(name):
        return 0.0  # a registered validator lives in this process only
    if options.get("max_bytes") is not None or len(data) > validators.INLINE_MAX:
        return 0.0  # run() applies its size limit and timeout thread here
    return per_byte * len(data)


def _balance(items: list[int], costs: list[float], n: int) -> list[list[int]]:
    """Split ``items`` into ``n`` bins of about equal cost (largest first, to the lightest)."""
    bins: list[list[int]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for i in sorted(items, key=lambda i: -costs[i]):
        k = loads.index(min(loads))
        bins[k].append(i)
        loads[k] += costs[i]
    return bins


def _plain(job: Job) -> Job:
    name, data, path, options = job
    return name, data, path, dict(options)


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self._greeted = False

    @classmethod
    def start(cls) -> _Worker | None:
        try:
            proc = subprocess.Popen(
                WORKER_ARGV, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                close_fds=True)
        except OSError:
            return None
        return cls(proc)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def greeted(self, timeout: float) -> bool:
        """Whether the worker has said it is ready (within ``timeout`` s): a program that is
        not a worker (an odd ``sys.executable``) never does, and is never sent work."""
        if not self._greeted and self.receive(0, timeout) == []:
            self._greeted = True
        return self._greeted

    def send(self, jobs: list[Job]) -> bool:
        assert self.proc.stdin is not None
        try:
            _write_frame(self.proc.stdin, pickle.dumps(jobs, pickle.HIGHEST_PROTOCOL))
        except (OSError, pickle.PicklingError, ValueError):
            return False
        return True

    def receive(self, n: int, timeout: float) -> list[Result] | None:
        assert self.proc.stdout is not None
        try:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                return None  # hung: given up
            data = _read_frame(self.proc.stdout)
            results = pickle.loads(data) if data is not None else None  # noqa: S301
        except (OSError, pickle.UnpicklingError, EOFError, ValueError):
            return None
        if not isinstance(results, list) or len(results) != n or not all(
                isinstance(r, Result) for r in results):
            return None
        return results

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                if f is not None:
                    f.close()


def _write_frame(f: IO[bytes], data: bytes) -> None:
    f.write(_FRAME.pack(len(data)))
    f.write(data)
    f.flush()


def _read_frame(f: IO[bytes]) -> bytes | None:
    head = f.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    data = f.read(size)
    return data if len(data) == size else None


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """A worker's loop: jobs in, results out, until the parent closes the pipe. The
    built-in parsers are bounded work on inputs this size: they run inline."""
    _write_frame(stdout, pickle.dumps([], pickle.HIGHEST_PROTOCOL))  # ready
    while (frame := _read_frame(stdin)) is not None:
        jobs: list[Job] = pickle.loads(frame)  # noqa: S301 (from our parent, over a pipe)
        results = [validators.run(*job, timeout=None) for job in jobs]
        _write_frame(stdout, pickle.dumps(results, pickle.HIGHEST_PROTOCOL))


@atexit.register
def _close() -> None:
    for w in list(_workers):
        w.close()
    _workers.clear()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
