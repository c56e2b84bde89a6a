"""Group "capture": how fast a write becomes a committed version, alone and in bursts."""

from __future__ import annotations

import bisect
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.common import (
    BenchError,
    Config,
    Goal,
    LoggedProcess,
    Row,
    Table,
    Workspace,
    guardian_status,
    guardian_watch,
    is_ready,
    median,
    percentile,
    progress,
    vm_hwm,
    watchdog_probe,
    write_file,
)

READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Write:
    path: str
    sha256: str
    t: float  # perf_counter just before open()


# --------------------------------------------------------------------------------------------
# 1a. steady writes


def _content(i: int) -> bytes:
    head = f"write {i} at {time.time_ns()}\n".encode()
    return head + b"x" * (256 - len(head)) + b"\n"


def _do_write(path: Path, i: int) -> Write:
    data = _content(i)
    t = time.perf_counter()
    write_file(path, data)
    return Write(str(path), hashlib.sha256(data).hexdigest(), t)


def _fsync_cost(directory: Path, n: int = 20) -> list[float]:
    """Seconds of write + fsync of the same kind of file, outside any watched tree."""
    out = []
    for i in range(n):
        data = _content(i)
        t = time.perf_counter()
        fd = os.open(directory / f"fsync{i % 4}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        out.append(time.perf_counter() - t)
    return out


def _guardian_seen(g: LoggedProcess, start: int) -> dict[str, float]:
    """sha256 -> when the first version event with that content was read."""
    seen: dict[str, float] = {}
    for line in g.lines[start:]:
        sha = line.obj.get("sha256")
        if line.event == "version" and isinstance(sha, str):
            seen.setdefault(sha, line.t)
    return seen


def _wait_versions(g: LoggedProcess, shas: set[str], start: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    cursor = start
    missing = set(shas)
    while missing and time.monotonic() < deadline:
        new = g.since(cursor, 0.5)
        cursor += len(new)
        missing -= {x.obj.get("sha256") for x in new if x.event == "version"}
        if not new and g.eof:
            raise BenchError(f"guardian exited during the benchmark: {g.tail()}")


def latency(ws: Workspace, cfg: Config) -> Table:
    n = round(cfg.latency_rate * cfg.latency_seconds)
    table = Table(
        "capture.latency",
        f"write -> version committed, {cfg.latency_rate:g} writes/s for "
        f"{cfg.latency_seconds:g} s ({n} writes of 257 B: 3 of 4 rewrite one of 8 files "
        f"round-robin, 1 of 4 creates a file)",
        "a bare watchdog observer process (bench/watchdog_probe.py) on the same tree, at the "
        "same time: the same write -> its close-write event line read from the probe's stderr")
    root = ws.dir("latency", "tree")
    store = ws.root / "latency" / "store"
    scratch = ws.dir("latency", "scratch")
    existing = [root / f"file{k}.txt" for k in range(8)]
    for k, p in enumerate(existing):
        write_file(p, _content(-1 - k))
    (root / "new").mkdir()
    env = ws.env()

    progress("capture.latency: starting guardian watch and the watchdog probe")
    with guardian_watch(root, store, env) as g, watchdog_probe(root, env) as probe:
        g.wait_for(is_ready, READY_TIMEOUT, "ready")
        probe.wait_for(is_ready, READY_TIMEOUT, "ready")
        # Unmeasured warm-up: first writes pay one-off costs (thread pools, SQLite caches).
        start = len(g.lines)
        warm: list[Write] = []
        for k in range(5):
            warm.append(_do_write(existing[k], 10_000 + k))
            time.sleep(0.1)
        _wait_versions(g, {w.sha256 for w in warm}, start, 10)

        progress(f"capture.latency: {n} writes at {cfg.latency_rate:g}/s")
        g_start, p_start = len(g.lines), len(probe.lines)
        writes: list[Write] = []
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / cfg.latency_rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i % 4 == 3:
                path = root / "new" / f"new{i:05d}.txt"
            else:
                path = existing[(i - i // 4) % len(existing)]  # the i-th rewrite, round-robin
            writes.append(_do_write(path, i))
        _wait_versions(g, {w.sha256 for w in writes}, g_start, 10)
        time.sleep(0.2)  # let the probe's lines in too
        fsync = _fsync_cost(scratch)
    table.notes += g.anomalies() + probe.anomalies()

    g_seen = _guardian_seen(g, g_start)
    closes: dict[str, list[float]] = {}
    for line in probe.lines[p_start:]:
        if line.event == "closed":
            closes.setdefault(str(line.obj["path"]), []).append(line.t)
    g_lat: list[float] = []
    p_lat: list[float] = []
    for w in writes:
        if w.sha256 in g_seen:
            g_lat.append((g_seen[w.sha256] - w.t) * 1000)
        ts = closes.get(w.path, [])
        k = bisect.bisect_left(ts, w.t)
        if k < len(ts):
            p_lat.append((ts[k] - w.t) * 1000)

    table.rows += [
        Row("latency median", median(g_lat), "ms", median(p_lat)),
        Row("latency p99", percentile(g_lat, 99), "ms", percentile(p_lat, 99),
            Goal("<=", 200)),
        Row("latency max", max(g_lat, default=None), "ms", max(p_lat, default=None)),
        Row("writes seen (own version / own event)", len(g_lat), "", len(p_lat),
            Goal(">=", n)),
    ]
    table.notes += [
        "latency: perf_counter just before open() of the write -> perf_counter when this "
        "process's reader thread got the line (guardian: the 'version' event whose sha256 is "
        "that of the bytes written, so a coalesced or lost write counts as not seen)",
        "5 unmeasured warm-up writes before the timed ones",
        f"reference, same run: a durable write (write+fsync) of the same size outside the "
        f"tree takes median {median(fsync) * 1000:.1f} ms, p99 {percentile(fsync, 99) * 1000:.1f}"
        f" ms on this disk",
    ]
    return table


# --------------------------------------------------------------------------------------------
# 1b/1c. bursts of new files


@dataclass
class BurstResult:
    write_s: float
    all_s: float | None  # None: not all recorded before the timeout
    recorded: int
    origins: Counter[str]
    reconciles: Counter[str]
    in_store: int | None = None  # files in `guardian status --json`, when asked
    rss: float | None = None  # guardian's peak RSS, when asked


def _burst(ws: Workspace, name: str, n: int, subdirs: int, timeout: float, *,
           ask_status: bool = False, rss: bool = False) -> tuple[BurstResult, LoggedProcess]:
    root = ws.dir(name, "tree")
    store = ws.root / name / "store"
    dirs = [root / f"d{k:02d}" for k in range(subdirs)]
    for d in dirs:
        d.mkdir()
    per_dir = -(-n // subdirs)
    paths = [dirs[i // per_dir] / f"f{i:06d}.bin" for i in range(n)]
    expected = {str(p) for p in paths}
    env = ws.env()
    filler = b"." * 1000

    progress(f"capture.{name}: starting guardian watch")
    g = guardian_watch(root, store, env)
    with g:
        g.wait_for(is_ready, READY_TIMEOUT, "ready")
        cursor = len(g.lines)
        progress(f"capture.{name}: writing {n:,} files of 1 KiB in {subdirs} dirs")
        t0 = time.perf_counter()
        for i, p in enumerate(paths):
            write_file(p, b"%08d\n" % i + filler + b"%015d\n" % i)
        write_s = time.perf_counter() - t0
        progress(f"capture.{name}: written in {write_s:.2f} s; waiting for the versions")

        seen: set[str] = set()
        origins: Counter[str] = Counter()
        reconciles: Counter[str] = Counter()
        t_all: float | None = None
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + 5
        while t_all is None and time.monotonic() < deadline:
            new = g.since(cursor, 0.5)
            cursor += len(new)
            for line in new:
                if line.event == "reconcile":
                    reconciles[str(line.obj.get("reason"))] += 1
                path = line.obj.get("path")
                if line.event == "version" and path in expected and path not in seen \
                        and line.obj.get("kind") != "deleted":
                    seen.add(path)
                    origins[str(line.obj.get("origin"))] += 1
                    if len(seen) == n:
                        t_all = line.t
            if not new and g.eof:
                raise BenchError(f"guardian exited during the burst: {g.tail()}")
            if time.monotonic() >= next_report:
                progress(f"capture.{name}: {len(seen):,} of {n:,} recorded")
                next_report += 5
        result = BurstResult(write_s, None if t_all is None else t_all - t0, len(seen), origins,
                             reconciles)
        if rss:
            result.rss = vm_hwm(g.pid)
        if ask_status:  # while the daemon still runs, as a user would
            result.in_store = int(guardian_status(store, env)["files"])
    return result, g


def _burst_notes(r: BurstResult, g: LoggedProcess) -> list[str]:
    notes = ["version events by origin: "
             + (", ".join(f"{k} {v:,}" for k, v in r.origins.most_common()) or "none")]
    if r.reconciles:
        notes.append("reconciles: " + ", ".join(f"{k} x{v}" for k, v in r.reconciles.items()))
    return notes + g.anomalies()


def burst_small(ws: Workspace, cfg: Config) -> Table:
    n = cfg.burst_small
    table = Table("capture.burst", f"{n:,} new files of 1 KiB (4 existing dirs) written as fast "
                  "as possible -> every one recorded",
                  "the time to write the files (open/write/close, no fsync) in this process")
    r, g = _burst(ws, "burst", n, 4, 20 if cfg.quick else 60)
    table.rows += [
        Row(f"time from first write to all {n:,} recorded", r.all_s, "s", r.write_s,
            Goal("<=", 5)),
        Row("files recorded (version events)", r.recorded, "", n, Goal(">=", n)),
    ]
    table.notes += _burst_notes(r, g)
    return table


def burst_large(ws: Workspace, cfg: Config) -> Table:
    n = cfg.burst_large
    table = Table("capture.burst_large", f"{n:,} new files of 1 KiB (20 existing dirs) written "
                  "as fast as possible -> all recorded (inotify overflow may be recovered by a "
                  "reconcile)",
                  f"the {n:,} files written / the time to write them in this process")
    r, g = _burst(ws, "burst_large", n, 20, 60 if cfg.quick else 300, ask_status=True)
    table.rows += [
        Row("files recorded (version events)", r.recorded, "", n, Goal(">=", n)),
        Row("files in store (status --json)", r.in_store, "", n, Goal(">=", n)),
        Row("time from first write to all recorded", r.all_s, "s", r.write_s),
    ]
    table.notes += _burst_notes(r, g)
    return table


# --------------------------------------------------------------------------------------------
# 1d. sustained load: every file of a small set rewritten every few tens of ms (issue 10.4)

RATE_FILES = 64


def _rate(ws: Workspace, cfg: Config, name: str, rate: float, *, moves_out: int = 0,
          seen_goal: float | None = None) -> Table:
    """``rate`` writes/s round-robin over RATE_FILES files; with ``moves_out``, one operation
    in ``moves_out`` moves the file due out of the tree instead (the next write to it creates
    it again)."""
    seconds = 3.0 if cfg.quick else 10.0
    n = round(rate * seconds)
    period = RATE_FILES / rate * 1000
    extra = (f"; 1 op in {moves_out} moves the file out of the tree instead"
             if moves_out else "")
    table = Table(
        f"capture.{name}",
        f"{rate:,.0f} writes/s over {RATE_FILES} files for {seconds:g} s ({n:,} writes of "
        f"257 B, each file rewritten every {period:.0f} ms{extra}) -> every version committed",
        "a bare watchdog observer process (bench/watchdog_probe.py) on the same tree, at the "
        "same time: the same write -> its close-write event line")
    root = ws.dir(name, "tree")
    store = ws.root / name / "store"
    outside = ws.dir(name, "outside")
    files = [root / f"f{k:02d}.txt" for k in range(RATE_FILES)]
    for k, p in enumerate(files):
        write_file(p, _content(-1 - k))
    env = ws.env()
    progress(f"capture.{name}: starting guardian watch and the watchdog probe")
    with guardian_watch(root, store, env) as g, watchdog_probe(root, env) as probe:
        g.wait_for(is_ready, READY_TIMEOUT, "ready")
        probe.wait_for(is_ready, READY_TIMEOUT, "ready")
        start = len(g.lines)
        warm = [_do_write(files[k], 20_000 + k) for k in range(8)]
        _wait_versions(g, {w.sha256 for w in warm}, start, 10)
        progress(f"capture.{name}: {n:,} writes at {rate:,.0f}/s")
        g_start, p_start = len(g.lines), len(probe.lines)
        writes: list[Write] = []
        moved = 0
        cpu0 = (_tree_cpu(g.pid), _tree_cpu(probe.pid), time.process_time())
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            path = files[i % RATE_FILES]
            if moves_out and i % moves_out == moves_out - 1 and path.exists():
                os.rename(path, outside / f"{path.name}.{i}")
                moved += 1
                continue
            writes.append(_do_write(path, i))
        late = time.perf_counter() - (t0 + (n - 1) / rate)
        _wait_versions(g, {w.sha256 for w in writes}, g_start, 15)
        # Until the last line guardian printed (a wait that timed out on lost versions idles).
        span = max((line.t for line in g.lines[g_start:]), default=t0) - t0
        cpu = [b - a for a, b in zip(cpu0, (_tree_cpu(g.pid), _tree_cpu(probe.pid),
                                             time.process_time()), strict=True)]
        time.sleep(0.6)  # the probe's lines too (its move grouping holds events 0.5 s)
        g_rss, p_rss = vm_hwm(g.pid), vm_hwm(probe.pid)
    table.notes += g.anomalies() + probe.anomalies()
    g_seen = _guardian_seen(g, g_start)
    closes: dict[str, list[float]] = {}
    for line in probe.lines[p_start:]:
        if line.event == "closed":
            closes.setdefault(str(line.obj["path"]), []).append(line.t)
    g_lat: list[float] = []
    p_lat: list[float] = []
    for w in writes:
        if w.sha256 in g_seen:
            g_lat.append((g_seen[w.sha256] - w.t) * 1000)
        ts = closes.get(w.path, [])
        k = bisect.bisect_left(ts, w.t)
        if k < len(ts):
            p_lat.append((ts[k] - w.t) * 1000)
    total = len(writes)
    seen_pct = 100 * len(g_lat) / total if total else None
    table.rows += [
        Row("latency p50", median(g_lat), "ms", median(p_lat)),
        # Issue 10 asks for p99 <= 50 ms at 1,000 writes/s (with and without moves out);
        # at 2,000 only for the versions seen (>= 99 %): its p99 is reported, not judged.
        Row("latency p99", percentile(g_lat, 99), "ms", percentile(p_lat, 99),
            Goal("<=", 50) if seen_goal is None else None),
        Row("latency max", max(g_lat, default=None), "ms", max(p_lat, default=None)),
        Row(f"versions seen of {total:,} written (own version / own event)", len(g_lat), "",
            len(p_lat), Goal(">=", total) if seen_goal is None else None),
        Row("versions seen", seen_pct, "%", 100 * len(p_lat) / total if total else None,
            Goal(">=", seen_goal) if seen_goal is not None else None),
        Row("peak RSS (VmHWM)", g_rss / 1e6, "MB", p_rss / 1e6),
        Row("CPU per write (process and its workers)", 1000 * cpu[0] / total if total else None,
            "ms", 1000 * cpu[1] / total if total else None),
    ]
    table.notes += [
        f"CPU from the first write until guardian's last line ({span:.1f} s): guardian "
        f"{cpu[0] / span:.2f} cores, the probe {cpu[1] / span:.2f}, this benchmark's writer "
        f"{cpu[2] / span:.2f}, of {os.cpu_count()} CPUs",
        "latency: perf_counter just before open() of the write -> perf_counter when this "
        "process's reader thread got the 'version' event with that write's sha256 (a write "
        "folded into the next one, or lost, counts as not seen)",
        f"the writer fell {late * 1000:.1f} ms behind its schedule by the last write"
        + (f"; {moved} files moved out of the tree" if moves_out else ""),
    ]
    return table


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live children (the daemon's validation workers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def rate_1000(ws: Workspace, cfg: Config) -> Table:
    return _rate(ws, cfg, "rate1000", 1000)


def rate_2000(ws: Workspace, cfg: Config) -> Table:
    return _rate(ws, cfg, "rate2000", 2000, seen_goal=99.0)


def rate_moves_out(ws: Workspace, cfg: Config) -> Table:
    return _rate(ws, cfg, "rate1000_moves_out", 1000, moves_out=50)


def burst_huge(ws: Workspace, cfg: Config) -> Table:
    n, dirs = (20_000, 200) if cfg.quick else (100_000, 200)
    table = Table("capture.burst_200dirs", f"{n:,} new files of 1 KiB in {dirs} existing dirs "
                  "written as fast as possible -> all recorded",
                  f"the time to write the {n:,} files in this process / the files written / "
                  "a bare watchdog observer's peak RSS on the same tree")
    with watchdog_probe(ws.dir("burst_200dirs_probe"), ws.env(), quiet=True) as probe:
        probe.wait_for(is_ready, READY_TIMEOUT, "ready")
        p_rss = vm_hwm(probe.pid)
    r, g = _burst(ws, "burst_200dirs", n, dirs, 120 if cfg.quick else 600, ask_status=True,
                  rss=True)
    table.rows += [
        Row("time from first write to all recorded", r.all_s, "s", r.write_s,
            Goal("<=", 3, "ratio")),
        Row("files recorded (version events)", r.recorded, "", n, Goal(">=", n)),
        Row("files in store (status --json)", r.in_store, "", n, Goal(">=", n)),
        Row("peak RSS (VmHWM)", None if r.rss is None else r.rss / 1e6, "MB", p_rss / 1e6),
    ]
    table.notes += _burst_notes(r, g)
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "capture.latency": latency, "capture.burst": burst_small,
    "capture.burst_large": burst_large, "capture.rate1000": rate_1000,
    "capture.rate2000": rate_2000, "capture.rate1000_moves_out": rate_moves_out,
    "capture.burst_200dirs": burst_huge}
