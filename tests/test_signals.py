"""SIGINT/SIGTERM at any moment of ``guardian watch``'s start-up: a clean stop, exit 0.

Before, a SIGINT in the first few hundred milliseconds (loading modules, opening the store,
reading rule files) gave a traceback and exit 130, and a SIGTERM killed the process (exit
143) without ``stopped``. The handlers are now installed first of all. Only a signal before
the interpreter runs Guardian's first line (interpreter start-up, ~20 ms on an idle machine)
still gets the default action: no program can handle a signal before it starts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import Cli, Watch, wait_until

PHASES = ["watch.start", "watch.opened", "watch.rules", "watch.run", "daemon.start"]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "?"


def _caught(pid: int, sig: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    except OSError:
        pass
    return False


def _clean_stop(w: Watch, sig: int) -> None:
    code = w.proc.wait(60)
    w.close()
    assert not w.raw, w.raw[:5]  # one JSON object per line: no traceback
    assert code == 0, (code, w.events[-5:])
    names = [e["event"] for e in w.events]
    assert names[-2:] == ["stopping", "stopped"], names
    assert w.events[-2]["reason"] == signal.Signals(sig).name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_at_each_phase_of_start_up_stops_cleanly(
        root: Path, store: Path, env: dict[str, str], cli: Cli, phase: str, sig: int) -> None:
    """The process stops itself (SIGSTOP) at a named point of its start-up; the signal is
    sent then, and delivered when it continues: exactly that moment, every run."""
    (root / "a.txt").write_text("kept")
    w = Watch([root], store, dict(env, GUARDIAN_FAULT=f"{phase}:stop"))
    try:
        wait_until(lambda: _state(w.proc.pid) == "T", what=f"the daemon stopped at {phase}")
        w.proc.send_signal(sig)
        os.kill(w.proc.pid, signal.SIGCONT)
        _clean_stop(w, sig)
    finally:
        w.close()
    # The store is usable, and the next start carries on (baseline and all).
    w2 = Watch([root], store, env)
    try:
        assert w2.ready()["files"] == 1
        assert w2.stop() == 0
    finally:
        w2.close()
    assert cli.log(root / "a.txt")[0]["kind"] == "baseline"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_right_after_start_stops_cleanly(root: Path, store: Path,
                                                  env: dict[str, str], sig: int) -> None:
    """Like a user's Ctrl-C or a service manager's stop right after launch, at several
    moments of the first half second after the interpreter itself is up (the code before
    this fix lost every one of them: it caught none until its event loop ran)."""
    for delay in (0.2, 0.25, 0.3, 0.4, 0.5):
        w = Watch([root], store, env)
        try:
            wait_until(lambda w=w: _caught(w.proc.pid, signal.SIGINT),
                       what="the interpreter initialised")
            time.sleep(delay)  # the moment the signal lands: what this test varies
            w.proc.send_signal(sig)
            _clean_stop(w, sig)
        finally:
            w.close()
