"""Validators in worker processes: costly checks never run in the caller, cheap ones on every core.

Parsing holds the GIL: ``compile`` of a 13 MB generated module holds it for seconds (and
takes over 1 GB), so in the daemon a check in a thread starved the store thread and the event
loop, and edits to other files were lost. Worker processes serve two purposes:

- **Isolation.** A built-in check whose expected cost (:data:`COST_PER_BYTE` x size) is over
  :data:`INLINE_BUDGET_S` never runs in the calling process: a worker runs it within its
  budget (:func:`guardian.validators.budget`): a memory bound (``RLIMIT_AS``, set by the worker
  around each check, sized from the input) and a wall-clock one (past it the worker is
  killed). Those verdicts, "not validated: timed out after Ns" and "not validated: over the
  memory limit (N MiB)", are unknown, never invalid: they never refuse a batch or cause a
  revert.
- **Parallelism.** A batch's cheap checks are balanced, by expected cost, between the caller
  and the workers (the costly ones between the workers).

A worker is ``python -m guardian.validatepool`` on a pair of pipes (not ``multiprocessing``,
whose workers re-import the parent's main script: an embedding program's top-level code
would run again in each). It reads length-prefixed pickled jobs and answers one pickled
result per job as each is done (both ends are this code, over private pipes), ignores the
terminal's Ctrl-C (its own session) and exits when its pipe closes, so it never outlives
Guardian. Workers start on first use and are reused (one that grew past
:data:`RECYCLE_BYTES` is replaced); none is started for cheap work smaller than its start
would cost. A cheap check a worker could not do (it died, it hung) is done here instead; a
costly one is "not validated", saying why: an answer never depends on the workers, and a
costly check never runs in the caller. ``GUARDIAN_NO_VALIDATE_POOL=1`` runs every check here
(no memory bound; a timed-out check's thread is abandoned, as :func:`validators.run` does).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from guardian.validation import validators
from guardian.validation.validators import NOT_VALIDATED, Result

if TYPE_CHECKING:
    import subprocess

#: Expected seconds per byte of each built-in validator, measured on generated files on one
#: core (README, Rules: python ~3 MB/s on generated modules, 5.9 on the standard library;
#: yaml 1.6, toml 1.9, ini 1.2, schema 1.2, markdown 14, json 50). The text validator is free.
COST_PER_BYTE = {"python": 1 / 3.0e6, "yaml": 1 / 1.6e6, "toml": 1 / 1.9e6, "ini": 1 / 1.2e6,
                 "schema": 1 / 1.2e6, "markdown": 1 / 14e6, "json": 1 / 50e6}
#: A check expected to take longer than this never runs in the calling process: it would
#: hold the GIL (and the daemon's store thread and event loop) that long.
INLINE_BUDGET_S = 0.025
#: The cheap checks worth spreading over the workers in a batch (json, markdown: shipping
#: their input costs about as much as checking it here).
SPREAD = frozenset({"python", "yaml", "toml", "ini"})
#: Expected seconds of work below which no cheap check is sent to running workers...
MIN_WORK_S = 0.010
#: ...and below which workers are not started for cheap work (each costs ~0.1 s to start).
START_WORK_S = 0.400
#: How long a new worker may take to say it is ready (a Python start and an import).
STARTUP_S = 5.0
#: A check's deadline is its time budget plus this (its input crossing the pipe).
SLACK_S = 0.5
#: A worker bigger than this after its checks (a big input leaves a big heap) is replaced.
RECYCLE_BYTES = 160 * 1024 * 1024
MAX_WORKERS = 4
#: Workers run at this niceness: validation is background work, and on a busy machine the
#: capture path (the daemon's threads) must get the CPU first.
WORKER_NICE = 10

#: The worker program.
WORKER_ARGV = [sys.executable, "-m", "guardian.validation.pool"]

Job = tuple[str, bytes, str, Mapping[str, Any]]  # (validator, data, path, options)
_FRAME = struct.Struct("!Q")

_lock = threading.Lock()  # guards the lists and flags below; never held during a check
_workers: list[_Worker] = []  # every live worker, idle or checked out by a caller
_idle: list[_Worker] = []
_eager = False  # see keep_warm
_mute = False  # started workers never said they were ready: none is started again
_disabled = bool(os.environ.get("GUARDIAN_NO_VALIDATE_POOL"))


def run_many(jobs: Sequence[Job], *, timeout: float | None = validators.DEFAULT_TIMEOUT,
             offloaded: set[int] | None = None) -> list[Result]:
    """``validators.run`` of every job, in order, each within its budget: the costly ones in
    worker processes, the cheap ones here or spread over the workers (the indices of those
    a worker did are added to ``offloaded``)."""
    out: list[Result | None] = [None] * len(jobs)
    budgets: dict[int, validators.Budget] = {}
    for i, (name, data, _path, options) in enumerate(jobs):
        b = validators.budget(name, len(data), options, timeout=timeout)
        if isinstance(b, Result):
            out[i] = b  # too large, or a bad budget option: settled without running
        else:
            budgets[i] = b
    costs = {i: _cost(jobs[i]) for i in budgets} if not _disabled else {}
    costly = [i for i, c in costs.items() if c > INLINE_BUDGET_S]
    spread = [i for i, c in costs.items()
              if 0 < c <= INLINE_BUDGET_S and jobs[i][0] in SPREAD]
    work = sum(costs[i] for i in (*costly, *spread))
    if len(costly) + len(spread) < 2 or work < MIN_WORK_S:
        spread = []
    sent = {*costly, *spread}
    here = [i for i in budgets if i not in sent]
    run = _Run(jobs, budgets, costs, out, offloaded)
    todo = [*costly, *spread]
    n = _capacity() if spread else min(_capacity(), len(costly))
    while todo:
        workers = _checkout(n, need=any(costs[i] > INLINE_BUDGET_S for i in todo), work=work)
        bins = _assign(todo, costs, len(workers))
        for i in bins[0]:  # cheap ones here; costly ones with no worker are not validated
            if costs[i] <= INLINE_BUDGET_S:
                here.append(i)
            else:
                run.settle(i, _NO_WORKER)
        for worker, share in zip(workers, bins[1:], strict=True):
            run.send(worker, share)
        for i in here:
            out[i] = validators.run(*jobs[i], timeout=timeout)
        here = []
        # What a worker that failed left: cheap ones are checked here, costly ones again
        # elsewhere (each round settles at least the check each failed worker was on).
        todo = run.collect()
        here = [i for i in todo if costs[i] <= INLINE_BUDGET_S]
        todo = [i for i in todo if costs[i] > INLINE_BUDGET_S]
        n, work = min(_capacity(), len(todo)), 0.0
    for i in here:
        out[i] = validators.run(*jobs[i], timeout=timeout)
    return [r if r is not None else validators.run(*jobs[i], timeout=timeout)
            for i, r in enumerate(out)]


_NO_WORKER = f"{NOT_VALIDATED}too costly to check here, and no validator process could be started"


@dataclass
class _Share:
    """A worker's jobs in flight: they are answered in order, one frame each."""

    worker: _Worker
    queue: deque[int]
    since: float  # when the job at the head can have started (its predecessor answered)


@dataclass
class _Run:
    """One ``run_many``: its jobs, their verdicts, and the shares out with workers."""

    jobs: Sequence[Job]
    budgets: dict[int, validators.Budget]
    costs: dict[int, float]
    out: list[Result | None]
    offloaded: set[int] | None
    shares: list[_Share] = field(default_factory=list)

    def settle(self, i: int, why: str) -> None:
        self.out[i] = Result(self.jobs[i][0], skipped=why)

    def send(self, worker: _Worker, share: list[int]) -> None:
        if not share:
            _checkin(worker)
            return
        payload = [(*_plain(self.jobs[i]), self.budgets[i].memory) for i in share]
        self.shares.append(_Share(worker, deque(share), time.monotonic()))
        if not worker.send(payload):
            worker.failed = True  # collect() finds it dead and hands its share back

    def deadline(self, s: _Share) -> float:
        limit = self.budgets[s.queue[0]].timeout
        return float("inf") if limit is None else s.since + limit + SLACK_S

    def collect(self) -> list[int]:
        """Wait for every share's answers, each job within its time budget; the indices of
        the jobs left unanswered by a worker that failed or was killed."""
        left: list[int] = []
        while self.shares:
            for s in [s for s in self.shares if s.worker.failed]:
                self._lost(s, left)
            if not self.shares:
                break
            wait = min(self.deadline(s) for s in self.shares) - time.monotonic()
            by_fd = {s.worker.fileno(): s for s in self.shares}
            try:
                ready = select.select(list(by_fd), [], [],
                                      None if wait == float("inf") else max(0.0, wait))[0]
            except (OSError, ValueError):
                ready = list(by_fd)  # each read below then finds its worker gone
            for fd in ready:
                s = by_fd[fd]
                result = s.worker.receive()
                head = s.queue[0]
                if not isinstance(result, Result) or result.validator != self.jobs[head][0]:
                    self._lost(s, left)
                    continue
                s.queue.popleft()
                self.out[head] = result
                if self.offloaded is not None:
                    self.offloaded.add(head)
                s.since = time.monotonic()
                if not s.queue:
                    self.shares.remove(s)
                    _checkin(s.worker)
            # A share with no answer waiting past its head's deadline: that check timed out.
            now = time.monotonic()
            for s in [s for s in self.shares
                      if s.worker.fileno() not in ready and self.deadline(s) <= now]:
                head = s.queue.popleft()
                self.settle(head, f"{NOT_VALIDATED}timed out after "
                                  f"{self.budgets[head].timeout:g}s")
                self._drop(s, left)
        return left

    def _lost(self, s: _Share, left: list[int]) -> None:
        """The worker died or answered nonsense during its head job: a cheap one is checked
        again here, a costly one is not validated (it may be what killed the worker)."""
        head = s.queue.popleft()
        if self.costs.get(head, 0.0) > INLINE_BUDGET_S:
            self.settle(head, f"{NOT_VALIDATED}its validator process {s.worker.how_it_ended()}")
        else:
            left.append(head)
        self._drop(s, left)

    def _drop(self, s: _Share, left: list[int]) -> None:
        left.extend(s.queue)
        s.queue.clear()
        self.shares.remove(s)
        _forget(s.worker)


def keep_warm() -> None:
    """This process validates batch after batch (the daemon, a benchmark): start workers for
    any work worth sending to them, not only for work worth their start."""
    global _eager
    _eager = True


def warm(timeout: float = 30.0) -> bool:
    """Start the workers now and wait until each answers; False if this machine gets none
    (disabled, or the worker program does not start)."""
    keep_warm()
    if _disabled:
        return False
    got = _checkout(_capacity(), need=False, work=START_WORK_S, startup=timeout)
    for w in got:
        _checkin(w)
    return bool(got)


def _capacity() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, cpus))


def _checkout(n: int, *, need: bool, work: float,
              startup: float | None = None) -> list[_Worker]:
    """Up to ``n`` workers that have said they are ready, for this caller alone: idle ones,
    then new ones if the work is worth their start (``need``: a costly check has nowhere
    else to run, so one is started even past the capacity, and waited for). A worker that
    has not said it is ready within STARTUP_S goes, and when none of those started does, no
    worker is started again in this process (it would not say so either)."""
    global _mute
    gone: list[_Worker] = []
    with _lock:
        now = time.monotonic()
        for w in list(_idle):
            if not w.alive() or (not w.greeted(0.0) and now - w.started > STARTUP_S):
                _mute = _mute or w.alive()
                _idle.remove(w)
                _workers.remove(w)
                gone.append(w)
        got = [w for w in _idle if w.greeted(0.0)][:n]
        for w in got:
            _idle.remove(w)
        fresh: list[_Worker] = []
        if not _mute and (need or work >= START_WORK_S or _eager):
            while len(got) + len(fresh) < n and (
                    len(_workers) < _capacity() or (need and not got and not fresh)):
                worker = _Worker.start()
                if worker is None:
                    break
                _workers.append(worker)
                fresh.append(worker)
    for w in gone:
        w.close()
    if not fresh:
        return got
    if (need and not got) or work >= START_WORK_S:
        deadline = time.monotonic() + (STARTUP_S if startup is None else startup)
        ready = [w for w in fresh if w.greeted(max(0.0, deadline - time.monotonic()))]
        if not ready and not got:
            with _lock:
                _mute = True
            for w in fresh:
                _forget(w)
            return []
        got += ready
        fresh = [w for w in fresh if w not in ready]
    with _lock:
        _idle.extend(fresh)  # work smaller than a start is done elsewhere; they start meanwhile
    return got


def _checkin(worker: _Worker) -> None:
    """A worker back from a caller: idle again, or replaced if it died or grew big."""
    with _lock:
        keep = (worker in _workers and worker.alive() and worker.rss() < RECYCLE_BYTES
                and len(_idle) < _capacity())
        if keep:
            _idle.append(worker)
        elif worker in _workers:
            _workers.remove(worker)
    if not keep:
        worker.close()


def _forget(worker: _Worker) -> None:
    with _lock:
        if worker in _workers:
            _workers.remove(worker)
        if worker in _idle:
            _idle.remove(worker)
    worker.close()


def _cost(job: Job) -> float:
    """Expected seconds of a job if a worker can do it (0: it stays here)."""
    name, data, _path, _options = job
    per_byte = COST_PER_BYTE.get(name)
    if per_byte is None or not validators.is_builtin(name):
        return 0.0  # a registered validator lives in this process only; a command is a process
    return per_byte * len(data)


def _assign(items: list[int], costs: dict[int, float], n: int) -> list[list[int]]:
    """Split ``items`` into a bin for here and one per worker, of about equal cost (largest
    first, to the lightest bin); a costly item only goes to a worker."""
    bins: list[list[int]] = [[] for _ in range(n + 1)]
    loads = [0.0] * (n + 1)
    for i in sorted(items, key=lambda i: -costs[i]):
        choices = range(1, n + 1) if costs[i] > INLINE_BUDGET_S and n else range(n + 1)
        k = min(choices, key=loads.__getitem__)
        bins[k].append(i)
        loads[k] += costs[i]
    return bins


def _plain(job: Job) -> Job:
    name, data, path, options = job
    return name, data, path, dict(options)


class _Worker:
    """One worker process and its two pipes (unbuffered: answers are read as they come)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self.failed = False
        self._greeted = False
        self._killed = False

    @classmethod
    def start(cls) -> _Worker | None:
        import subprocess

        try:
            proc = subprocess.Popen(
                WORKER_ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, bufsize=0)
        except OSError:
            return None
        return cls(proc)

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def greeted(self, timeout: float) -> bool:
        """Whether the worker has said it is ready (within ``timeout`` s): a program that is
        not a worker (an odd ``sys.executable``) never does, and is never sent work."""
        if not self._greeted:
            try:
                ready, _, _ = select.select([self.fileno()], [], [], timeout)
            except (OSError, ValueError):
                return False
            if ready and self.receive() == []:
                self._greeted = True
        return self._greeted

    def send(self, jobs: list[tuple[Any, ...]]) -> bool:
        import pickle

        assert self.proc.stdin is not None
        try:
            data = pickle.dumps(jobs, pickle.HIGHEST_PROTOCOL)
            _write_all(self.proc.stdin.fileno(), _FRAME.pack(len(data)) + data)
        except (OSError, pickle.PicklingError, ValueError):
            return False
        return True

    def receive(self) -> object | None:
        """One answer (the caller knows one is there); None if the worker is gone."""
        import pickle

        try:
            head = _read_exact(self.fileno(), _FRAME.size)
            if head is None:
                return None
            data = _read_exact(self.fileno(), _FRAME.unpack(head)[0])
            return pickle.loads(data) if data is not None else None  # noqa: S301
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, struct.error):
            return None

    def rss(self) -> int:
        """Resident memory now, bytes (huge if unknown: such a worker is replaced)."""
        try:
            with open(f"/proc/{self.proc.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 1 << 62

    def how_it_ended(self) -> str:
        import signal
        import subprocess

        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1.0)
        code = self.proc.returncode
        if code is None:
            return "stopped answering"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"died ({signal.Signals(-code).name})"
            return f"died (signal {-code})"
        return f"exited (status {code})"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                if f is not None:
                    f.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes | None:
    parts: list[bytes] = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


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
    """A worker's loop: jobs in, one result out per job, until the parent closes the pipe.
    Each check runs inline (the parent keeps the clock) under its memory bound."""
    import pickle

    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    _write_frame(stdout, pickle.dumps([], pickle.HIGHEST_PROTOCOL))  # ready
    while (frame := _read_frame(stdin)) is not None:
        jobs: list[tuple[Any, ...]] = pickle.loads(frame)  # noqa: S301 (from our parent)
        for name, data, path, options, memory in jobs:
            result = _bounded(name, data, path, options, memory)
            _write_frame(stdout, pickle.dumps(result, pickle.HIGHEST_PROTOCOL))


def _bounded(name: str, data: bytes, path: str, options: Mapping[str, Any],
             memory: int) -> Result:
    """One check, allowed to grow this process's address space by ``memory`` bytes: past
    that, allocations fail, and the MemoryError becomes "not validated: over the memory
    limit (N MiB)"."""
    import resource

    from guardian.validation.validators import base

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = base.memory_status("VmSize")
    rss = base.memory_status("VmRSS") if base.reset_peak() else 0
    bounded = False
    if size is not None and rss is not None:
        limit = size + memory if hard == resource.RLIM_INFINITY else min(hard, size + memory)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            base.memory_bound = (rss, memory)
            bounded = True
    try:
        return validators.run(name, data, path, options, timeout=None)
    except MemoryError:
        return Result(name, skipped=base.out_of_memory())
    finally:
        base.memory_bound = None
        if bounded:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@atexit.register
def _close() -> None:
    with _lock:
        workers = list(_workers)
        _workers.clear()
        _idle.clear()
    for w in workers:
        w.close()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
