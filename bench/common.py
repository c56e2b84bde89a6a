"""What every benchmark group shares: results and their table, the temp workspace, processes.

Every figure is compared with a baseline measured in the same run, right beside it (machines
are shared and noisy, so a figure from another run or another day would say little).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psutil

_T0 = time.perf_counter()
MB = 1_000_000  # goals are in MB = 10^6 bytes (stricter than MiB)


class BenchError(RuntimeError):
    """A benchmark could not produce its figures (a process died, a timeout, bad output)."""


def progress(message: str) -> None:
    """One progress line on stderr, with the time since the suite started."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Config:
    quick: bool
    latency_seconds: float
    latency_rate: float
    burst_small: int
    burst_large: int
    snapshot_limit: int | None  # None: the whole tree
    repeats: int
    resources_files: int
    resources_dirs: int
    idle_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Config:
        return cls(
            quick=quick,
            latency_seconds=5.0 if quick else 30.0,
            latency_rate=20.0,
            burst_small=2_000,
            burst_large=5_000 if quick else 20_000,
            snapshot_limit=1_500 if quick else None,
            repeats=5,
            resources_files=10_000 if quick else 100_000,
            resources_dirs=1_000,
            idle_seconds=5.0 if quick else 10.0,
        )


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Goal:
    """A goal on a row's figure (``on="value"``) or on its ratio to the baseline."""

    op: Literal["<=", ">="]
    limit: float
    on: Literal["value", "ratio"] = "value"

    def met(self, value: float | None, ratio: float | None) -> bool:
        x = value if self.on == "value" else ratio
        if x is None or math.isnan(x):
            return False
        return x <= self.limit if self.op == "<=" else x >= self.limit


@dataclass
class Row:
    metric: str
    value: float | None
    unit: str  # "ms", "s", "MB", "%", "" (a count)
    baseline: float | None = None
    goal: Goal | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def result(self) -> str:
        if self.goal is None:
            return "-"
        return "PASS" if self.goal.met(self.value, self.ratio) else "FAIL"

    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        if self.goal.on == "ratio":
            return f"ratio {self.goal.op} {self.goal.limit:g}"
        limit = fmt(self.goal.limit, "") if self.unit == "" else f"{self.goal.limit:g} {self.unit}"
        return f"{self.goal.op} {limit}"

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "value": self.value, "unit": self.unit,
            "baseline": self.baseline, "ratio": self.ratio,
            "goal": None if self.goal is None else {
                "on": self.goal.on, "op": self.goal.op, "limit": self.goal.limit},
            "result": self.result,
        }


@dataclass
class Table:
    """The result of one benchmark: what was measured, against what, and how it went."""

    name: str  # "group.bench"
    title: str
    baseline: str  # what the baseline column is
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(r.result == "FAIL" for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "baseline": self.baseline,
                "rows": [r.to_json() for r in self.rows], "notes": self.notes,
                "error": self.error, "failed": self.failed}

    def render(self) -> str:
        head = ("metric", "figure", "baseline", "ratio", "goal", "result")
        body = [(r.metric, fmt(r.value, r.unit), fmt(r.baseline, r.unit),
                 "-" if r.ratio is None else f"{r.ratio:.2f}x", r.goal_text(), r.result)
                for r in self.rows]
        widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]

        def line(cells: Sequence[str]) -> str:
            left = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([left, *rest]).rstrip()

        out = [f"== {self.name}: {self.title}", f"   baseline: {self.baseline}"]
        if self.rows:
            out += [line(head), line(["-" * w for w in widths]), *map(line, body)]
        if self.error is not None:
            out.append(f"ERROR (FAIL): {self.error}")
        out += [f"   * {n}" for n in self.notes]
        return "\n".join(out)


def fmt(x: float | None, unit: str) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if unit == "":
        return f"{x:,.0f}"
    if unit == "ms":
        return f"{x:.1f} ms" if x >= 1 else f"{x:.3f} ms"
    if unit == "µs":
        return f"{x:,.1f} µs"
    if unit == "s":
        return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"
    if unit == "MB":
        return f"{x:.1f} MB"
    if unit == "%":
        return f"{x:.2f} %"
    if unit in ("MB/s", "files/s"):
        return f"{x:,.1f} {unit}" if x < 100 else f"{x:,.0f} {unit}"
    return f"{x:g} {unit}"


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def percentile(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): a value that was actually observed."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


# --------------------------------------------------------------------------------------------
# Workspace and environment


class Workspace:
    """Private temp dirs for one run; everything under them is deleted at the end."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="guardian-bench-"))
        # A short path: the control socket lives under it (sun_path is 108 bytes).
        self.runtime = Path(tempfile.mkdtemp(prefix="gb", dir="/tmp"))
        self.state = self.root / "state"
        self.home = self.root / "home"
        for d in (self.state, self.home):
            d.mkdir()

    def dir(self, *parts: str) -> Path:
        """A new, empty directory under the workspace."""
        p = self.root.joinpath(*parts)
        if p.exists():
            rmtree(p)
        p.mkdir(parents=True)
        return p

    def env(self) -> dict[str, str]:
        """The environment of every Guardian (and git) process: nothing touches the user's dirs."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GUARDIAN_", "GIT_", "XDG_"))}
        env.update(XDG_RUNTIME_DIR=str(self.runtime), XDG_STATE_HOME=str(self.state),
                   XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_DATA_HOME=str(self.home / ".local" / "share"),
                   GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
        # A real install has compiled bytecode; measure that, not a recompile on every call.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    def clear(self) -> None:
        """Delete a benchmark's data (its trees can be big), keeping the shared dirs."""
        for p in self.root.iterdir():
            if p not in (self.state, self.home):
                rmtree(p)

    def cleanup(self) -> None:
        for p in (self.root, self.runtime):
            rmtree(p)


def rmtree(path: Path) -> None:
    """Remove a tree even where copied read-only directories are in the way."""

    def onerror(_fn: Callable[..., Any], failed: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            parent = os.path.dirname(failed)
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, os.stat(failed).st_mode | stat.S_IRWXU)
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)

    if path.exists():
        shutil.rmtree(path, onerror=onerror)


def guardian_argv() -> list[str]:
    """The real ``guardian`` CLI of this interpreter's environment."""
    beside = Path(sys.executable).parent / "guardian"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("guardian")
    return [found] if found else [sys.executable, "-m", "guardian"]


def run(argv: Sequence[str], *, env: dict[str, str], cwd: Path | None = None,
        capture: bool = False, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; raise BenchError naming it if it fails."""
    try:
        cp = subprocess.run(list(argv), env=env, cwd=cwd, text=True, timeout=timeout,
                            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(argv)}: no exit within {timeout:g} s") from e
    if cp.returncode != 0:
        raise BenchError(f"{' '.join(argv)} (cwd {cwd}) exited {cp.returncode}: "
                         f"{cp.stderr.strip()[-500:]}")
    return cp


def timed(argv: Sequence[str], *, env: dict[str, str], cwd: Path | None = None) -> float:
    """Wall time of a whole subprocess, in seconds."""
    t0 = time.perf_counter()
    run(argv, env=env, cwd=cwd)
    return time.perf_counter() - t0


def guardian_status(store: Path, env: dict[str, str]) -> dict[str, Any]:
    cp = run([*guardian_argv(), "status", "--json", "--store", str(store)], env=env,
             capture=True, timeout=120)
    try:
        status: dict[str, Any] = json.loads(cp.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"guardian status --json printed no JSON: {cp.stdout[:300]!r}") from e
    return status


# --------------------------------------------------------------------------------------------
# Processes that log one JSON object per line on stderr


@dataclass(frozen=True)
class LogLine:
    t: float  # time.perf_counter() when the reader thread got the line
    obj: dict[str, Any]  # the parsed JSON object; {"event": "_raw", "text": ...} otherwise

    @property
    def event(self) -> str:
        return str(self.obj.get("event"))


class LoggedProcess:
    """A subprocess whose stderr lines are read, parsed and timestamped by a thread.

    Use it as a context manager: the process is stopped (SIGTERM, then SIGKILL) on every exit,
    exceptions included.
    """

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str],
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.lines: list[LogLine] = []
        self.returncode: int | None = None
        self.stop_timed_out = False
        self.t_spawn = math.nan
        self._cond = threading.Condition()
        self._eof = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> LoggedProcess:
        self.t_spawn = time.perf_counter()
        self._proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-stderr",
                                        daemon=True)
        self._reader.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            t = time.perf_counter()
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ValueError(text)
            except ValueError:
                obj = {"event": "_raw", "text": text}
            with self._cond:
                self.lines.append(LogLine(t, obj))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def since(self, cursor: int, timeout: float) -> list[LogLine]:
        """Lines after ``cursor``; waits up to ``timeout`` s for one. Empty: none (or EOF)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.lines) <= cursor and not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self.lines[cursor:]

    @property
    def eof(self) -> bool:
        with self._cond:
            return self._eof

    def wait_for(self, pred: Callable[[LogLine], bool], timeout: float,
                 what: str, cursor: int = 0) -> LogLine:
        """The first line after ``cursor`` matching ``pred``; BenchError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            new = self.since(cursor, max(0.0, min(1.0, deadline - time.monotonic())))
            for line in new:
                if pred(line):
                    return line
            cursor += len(new)
            if not new and self.eof:
                rc = self._proc.wait() if self._proc else None
                raise BenchError(f"{self.name} exited ({rc}) while waiting for {what}; "
                                 f"last lines: {self.tail()}")
            if time.monotonic() >= deadline:
                raise BenchError(f"{self.name}: no {what} within {timeout:g} s; "
                                 f"last lines: {self.tail()}")

    def tail(self, n: int = 3) -> str:
        with self._cond:
            return " | ".join(json.dumps(x.obj)[:300] for x in self.lines[-n:])

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it does not exit; the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop_timed_out = True
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(10)
        self.returncode = proc.returncode
        return self.returncode

    def anomalies(self) -> list[str]:
        """What a clean run would not show: warnings, errors, non-JSON lines, a bad exit."""
        with self._cond:
            lines = list(self.lines)
        out: list[str] = []
        msgs = Counter(f"{x.event}: {x.obj.get('message')}" for x in lines
                       if x.event in ("warning", "error"))
        out += [f"{self.name} logged {n}x {m}" for m, n in msgs.most_common(5)]
        raw = [x.obj["text"] for x in lines if x.event == "_raw"]
        if raw:
            out.append(f"{self.name} printed {len(raw)} non-JSON stderr line(s), first: "
                       f"{raw[0][:200]!r}")
        if self.stop_timed_out:
            out.append(f"{self.name} did not exit within 60 s of SIGTERM (killed)")
        elif self.returncode not in (None, 0):
            out.append(f"{self.name} exited {self.returncode} after SIGTERM (expected 0)")
        return out


def guardian_watch(root: Path, store: Path, env: dict[str, str]) -> LoggedProcess:
    return LoggedProcess("guardian", [*guardian_argv(), "watch", str(root), "--store", str(store)],
                         env)


PROBE = Path(__file__).with_name("watchdog_probe.py")


def watchdog_probe(root: Path, env: dict[str, str], *, quiet: bool = False) -> LoggedProcess:
    """A bare watchdog observer on ``root`` in its own process (bench/watchdog_probe.py)."""
    argv = [sys.executable, str(PROBE), str(root), *(["--quiet"] if quiet else [])]
    return LoggedProcess("watchdog-probe", argv, env)


def is_ready(line: LogLine) -> bool:
    return line.event == "ready"


# --------------------------------------------------------------------------------------------
# Memory and CPU of a process


def vm_hwm(pid: int) -> float:
    """The kernel's peak RSS of ``pid`` (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


class RssSampler:
    """Samples a process's RSS every ``interval`` s in a thread, labelled by phase."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self.phase = "start"
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = float(self._proc.memory_info().rss)
            except psutil.Error:
                return
            self.peak[self.phase] = max(self.peak.get(self.phase, 0.0), rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --------------------------------------------------------------------------------------------
# Files


def write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def copy_tree(src: Path, dst: Path, *, exclude_top: frozenset[str] = frozenset(),
              limit: int | None = None) -> int:
    """Copy ``src`` to ``dst`` (symlinks as symlinks), without the top-level names in
    ``exclude_top``; with ``limit``, only the first ``limit`` files in sorted walk order.
    Returns the number of files (and symlinks) copied."""
    if limit is None:
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names
                                                 if Path(d) == src and n in exclude_top])
        return sum(len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(top, d)))
                   for top, dirs, files in os.walk(dst))
    copied = 0
    for top, dirs, files in _sorted_walk(src, exclude_top):
        rel = Path(top).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            if copied >= limit:
                return copied
            s = os.path.join(top, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), dst / rel / name)
            else:
                shutil.copy2(s, dst / rel / name)
            copied += 1
    return copied


def _sorted_walk(src: Path, exclude_top: frozenset[str]) -> Iterator[tuple[str, list[str],
                                                                           list[str]]]:
    for top, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not (Path(top) == src and d in exclude_top))
        yield top, dirs, sorted(files)
