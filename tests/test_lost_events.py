"""Lost events must not mean lost versions: overflow and watch-limit exhaustion reconcile."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .conftest import Cli, reader_processes, sha256, wait_until


def _max_queued_events() -> int:
    try:
        return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    except OSError:
        return 16384


def test_queue_overflow_while_daemon_is_stopped_records_every_final_state(
        root: Path, cli: Cli, watch) -> None:
    for i in range(100):
        (root / f"pre{i}.txt").write_text(f"before {i}")
    w = watch(root, extra=["--reconcile-interval", "3600"])
    # Stop consuming: the kernel queue fills while we write (create+modify+close per file).
    n = _max_queued_events() // 2 + 1000
    (root / "flood").mkdir()
    (root / "flood" / "first.txt").write_text("watched")
    w.version(root / "flood" / "first.txt")  # the directory's watch is in place
    # The daemon and the process that reads inotify for it (which would otherwise keep
    # reading, and hold the events for the daemon: nothing would overflow).
    stopped = [w.proc.pid, *reader_processes(w.proc.pid)]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(n):
            (root / "flood" / f"f{i}.txt").write_text(f"flood {i}")
        for i in range(0, 100, 2):
            (root / f"pre{i}.txt").write_text(f"after {i}")
        for i in range(1, 100, 2):
            (root / f"pre{i}.txt").unlink()
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    w.wait(lambda e: e["event"] == "warning" and "overflow" in e["message"], timeout=60,
           what="an overflow warning")
    w.wait(lambda e: e["event"] == "reconcile" and e["reason"] == "overflow", timeout=120)
    wait_until(lambda: cli.json("status")["files"] == n + 51, timeout=120,
               what="every flooded file recorded")
    for i in (0, n // 2, n - 1):
        assert cli.log(root / "flood" / f"f{i}.txt")[0]["sha256"] == sha256(f"flood {i}".encode())
    for i in range(0, 100, 2):
        assert cli.log(root / f"pre{i}.txt")[0]["sha256"] == sha256(f"after {i}".encode())
    for i in range(1, 100, 2):
        assert cli.log(root / f"pre{i}.txt")[0]["kind"] == "deleted"
    assert w.stop() == 0


def test_watch_limit_falls_back_to_rescans(root: Path, cli: Cli, watch, env) -> None:
    for d in range(6):
        (root / f"d{d}").mkdir()
        (root / f"d{d}" / "f.txt").write_text("x")
    limited = dict(env, GUARDIAN_TEST_MAX_WATCHES="3")
    w = watch(root, env=limited, extra=["--poll-interval", "1"])
    w.wait(lambda e: e["event"] == "warning" and "watch limit" in e["message"])
    # Directories without a watch: their changes still arrive, through rescans.
    m = w.mark()
    for d in range(6):
        (root / f"d{d}" / "new.txt").write_text("seen")
    origins = {w.version(root / f"d{d}" / "new.txt", "created", start=m, timeout=30)["origin"]
               for d in range(6)}
    assert "scan" in origins
    assert cli.json("status")["degraded"] is True
