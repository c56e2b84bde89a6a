"""``guardian tui`` and the TUI side of ``guardian watch``, imported by the CLI only when run.

``tui``: attach to the daemon of a store, or open it read-only when none runs. ``watch`` on
a terminal: run the daemon as ``guardian watch --headless`` (its JSON log to a file in the
state directory), wait until it answers, and show the app attached to it; leaving the app
stops the daemon (SIGTERM: it finishes what it was writing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardian.errors import GuardianError
from guardian.exitcodes import ExitCode

if TYPE_CHECKING:
    import argparse


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def run_tui(store_path: Path) -> int:
    from tui.app import make_app

    if not (store_path / "guardian.db").exists():
        raise GuardianError(f"{store_path}: not a Guardian store (run `guardian watch` first)",
                            exit_code=ExitCode.USAGE)
    make_app(store_path).run()
    return int(ExitCode.OK)


def watch_with_tui(args: argparse.Namespace, roots: list[Path], store_path: Path) -> int:
    """``args``: the watch command's (run again with ``--headless`` in a subprocess)."""
    from guardian.client import daemon
    from guardian.locations import ensure_private_dir, state_dir
    from tui.app import make_app

    argv = [*map(str, roots), "--reconcile-interval", repr(args.reconcile_interval),
            "--poll-interval", repr(args.poll_interval)]
    if args.metrics_addr:
        argv += ["--metrics-addr", args.metrics_addr]
    # `guardian watch` recorded SIGINT/SIGTERM for the daemon's loop; this process is the
    # UI's: a SIGTERM ends it (and the finally below stops the daemon).
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logs = ensure_private_dir(state_dir() / "logs")
    log_path = logs / f"watch-{os.getpid()}.jsonl"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "guardian", "watch", *argv,
                                 "--headless", "--store", str(store_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        print(f"guardian: starting the daemon (log: {log_path})…", file=sys.stderr)
        while True:
            if proc.poll() is not None:
                raise GuardianError(f"the daemon exited with {proc.returncode}; see {log_path}",
                                    exit_code=ExitCode.FAILURE)
            conn = daemon(store_path, timeout=2)
            if conn is not None:
                conn.close()
                break
            time.sleep(0.1)  # polling the daemon's start-up, not synchronisation
        make_app(store_path, stops_daemon=True).run()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return int(ExitCode.OK if proc.returncode in (0, -signal.SIGTERM) else ExitCode.FAILURE)
