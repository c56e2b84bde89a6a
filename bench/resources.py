"""Group "resources": the daemon's memory and idle CPU on a big tree, and its time to ready."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    MB,
    BenchError,
    Config,
    Goal,
    LoggedProcess,
    LogLine,
    Row,
    RssSampler,
    Table,
    Workspace,
    cpu_seconds,
    guardian_watch,
    is_ready,
    progress,
    vm_hwm,
    watchdog_probe,
    write_file,
)

READY_TIMEOUT = 900.0


@dataclass(frozen=True)
class Usage:
    ready_s: float  # spawn -> "ready" line read
    ready: LogLine
    hwm: float  # VmHWM at the end, bytes
    rss_before_ready: float  # peak of the samples, bytes
    rss_idle: float  # peak of the samples during the idle window, bytes
    cpu_idle: float  # fraction of one CPU over the idle window


def _make_tree(root: Path, files: int, dirs: int) -> int:
    """``files`` small files in ``dirs`` leaf directories under 10 top directories."""
    per_dir = max(1, files // dirs)
    n = 0
    for d in range(dirs):
        leaf = root / f"top{d % 10}" / f"dir{d:04d}"
        leaf.mkdir(parents=True)
        for k in range(per_dir):
            write_file(leaf / f"file{k:03d}.txt", f"file {n} in {leaf.name}\n".encode() * 4)
            n += 1
    return n


def _wait_ready(p: LoggedProcess, what: str) -> LogLine:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            return p.wait_for(is_ready, min(10.0, deadline - time.monotonic()), "ready")
        except BenchError:
            if p.eof or time.monotonic() >= deadline:
                raise
            progress(f"resources: {what}: still not ready after "
                     f"{time.perf_counter() - p.t_spawn:.0f} s")


def _measure(p: LoggedProcess, what: str, idle_s: float) -> Usage:
    with p, RssSampler(p.pid) as rss:
        rss.phase = "before-ready"
        ready = _wait_ready(p, what)
        rss.phase = "idle"
        progress(f"resources: {what}: ready after {ready.t - p.t_spawn:.1f} s; "
                 f"{idle_s:g} s idle")
        c0, w0 = cpu_seconds(p.pid), time.perf_counter()
        time.sleep(idle_s)
        cpu = (cpu_seconds(p.pid) - c0) / (time.perf_counter() - w0)
        hwm = vm_hwm(p.pid)
    return Usage(ready.t - p.t_spawn, ready, hwm, rss.peak.get("before-ready", 0.0),
                 rss.peak.get("idle", 0.0), cpu)


def resources(ws: Workspace, cfg: Config) -> Table:
    table = Table(
        "resources.daemon",
        f"`guardian watch` on {cfg.resources_files:,} small files in {cfg.resources_dirs:,} "
        f"dirs: time to ready, memory, idle CPU over {cfg.idle_seconds:g} s after ready",
        "a bare watchdog Observer process on the same tree (bench/watchdog_probe.py --quiet: "
        "python + watchdog, recursive inotify watches, no handler work), run just before")
    root = ws.dir("resources", "tree")
    store = ws.root / "resources" / "store"
    progress(f"resources: writing {cfg.resources_files:,} files")
    n = _make_tree(root, cfg.resources_files, cfg.resources_dirs)
    os.sync()
    env = ws.env()

    progress("resources: bare watchdog probe")
    probe_p = watchdog_probe(root, env, quiet=True)
    probe = _measure(probe_p, "watchdog probe", cfg.idle_seconds)
    progress("resources: guardian watch (baseline of every file)")
    g_p = guardian_watch(root, store, env)
    g = _measure(g_p, "guardian", cfg.idle_seconds)
    table.notes += probe_p.anomalies() + g_p.anomalies()

    files = g.ready.obj.get("files")
    table.rows += [
        Row("time to ready (spawn -> ready line)", g.ready_s, "s", probe.ready_s),
        Row("files in the ready event", float(files) if isinstance(files, int) else None, "", n,
            Goal(">=", n)),
        Row("peak RSS (VmHWM)", g.hwm / MB, "MB", probe.hwm / MB, Goal("<=", 150)),
        Row("RSS after ready (peak sample)", g.rss_idle / MB, "MB", probe.rss_idle / MB,
            Goal("<=", 150)),
        Row(f"idle CPU ({cfg.idle_seconds:g} s after ready)", g.cpu_idle * 100, "%",
            probe.cpu_idle * 100, Goal("<=", 1)),
    ]
    table.notes += [
        f"RSS sampled every 0.1 s with psutil; peak sample before ready: guardian "
        f"{g.rss_before_ready / MB:.1f} MB, probe {probe.rss_before_ready / MB:.1f} MB; "
        f"VmHWM read from /proc/PID/status just before SIGTERM; MB = 10^6 bytes",
        "idle CPU = (user+system CPU time delta) / wall time, % of one core; the daemon's "
        f"ready event says elapsed_ms={g.ready.obj.get('elapsed_ms')}",
    ]
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {"resources.daemon": resources}
