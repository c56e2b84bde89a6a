"""Alert evaluation's reads in a helper process (guardian.observe.evaluator): the helper's
windows are what the daemon would compute itself, a helper that dies or hangs costs nothing
but a fallback, and none outlives its daemon. Real store, real helper processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from guardian.observe import record
from guardian.observe.alerts import evaluate
from guardian.observe.evaluator import RETRY_AFTER, Evaluator
from guardian.observe.metrics import compute
from guardian.rules.thresholds import Thresholds
from guardian.store.db import Store

from .conftest import wait_until


@pytest.fixture
def obs_store(tmp_path: Path):
    s = Store.open(tmp_path / "store", write=True, create=True)
    now = time.time_ns()
    lat = record.Latency()
    for ms in (3, 8, 40):
        lat.add(ms / 1000)
    rows = [record.row("capture", 2_000_000, "ok", items=3, latency=lat.to_json(),
                       time_ns=now - i * 1_000_000) for i in range(30)]
    rows += [record.row("write", 9_000_000_000, "error", category="permission",
                        time_ns=now - i * 1_000_000) for i in range(12)]
    record.write_rows(s, rows)
    yield s
    s.close()


def _spans() -> list[tuple[int, int]]:
    now = time.time_ns()
    return [(now - 3600 * 10**9, now), (now - 86400 * 10**9, now)]


def test_the_helper_computes_what_the_daemon_would(obs_store: Store) -> None:
    ev = Evaluator(obs_store.path)
    try:
        spans = _spans()
        got = ev.windows(spans)
        assert got is not None
        here = [json.loads(json.dumps(compute(obs_store, since_ns=a, until_ns=b,
                                              sections=frozenset()))) for a, b in spans]
        assert got == here
        th = Thresholds()
        conditions = evaluate(got[0], got[1], th)
        assert conditions == evaluate(here[0], here[1], th)
        # The rows above cross the thresholds: slow writes and permission errors.
        assert {c.kind for c in conditions} >= {"performance-degradation", "error-rate"}
    finally:
        ev.close()


def _helper_pid(ev: Evaluator) -> int:
    assert ev._proc is not None
    return ev._proc.pid


def test_a_helper_that_dies_is_a_fallback_then_started_again(obs_store: Store) -> None:
    ev = Evaluator(obs_store.path)
    try:
        assert ev.windows(_spans()) is not None
        os.kill(_helper_pid(ev), signal.SIGKILL)
        assert ev.windows(_spans()) is None  # the caller computes itself
        assert ev.failures == 1
        for _ in range(RETRY_AFTER):
            assert ev.windows(_spans()) is None  # not restarted at once
        assert ev.windows(_spans()) is not None  # a new helper
    finally:
        ev.close()


def test_a_helper_that_hangs_is_killed_past_the_timeout(obs_store: Store) -> None:
    ev = Evaluator(obs_store.path)
    try:
        assert ev.windows(_spans()) is not None
        pid = _helper_pid(ev)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        assert ev.windows(_spans(), timeout=0.5) is None
        assert time.monotonic() - t0 < 5
        wait_until(lambda: not _alive(pid), what="the hung helper killed")
    finally:
        ev.close()


def test_a_store_it_cannot_read_is_an_error_answer_not_a_dead_helper(tmp_path: Path) -> None:
    ev = Evaluator(tmp_path / "no-store-here")
    try:
        assert ev.windows(_spans()) is None
        assert ev.failures == 1
    finally:
        ev.close()


def test_closing_ends_the_helper(obs_store: Store) -> None:
    ev = Evaluator(obs_store.path)
    assert ev.windows(_spans()) is not None
    pid = _helper_pid(ev)
    ev.close()
    wait_until(lambda: not _alive(pid), what="the helper gone after close")
    assert ev.windows(_spans()) is None  # closed: no new helper


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _helpers_of(pid: int) -> list[int]:
    """Evaluator helpers whose parent is ``pid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == pid and b"guardian.observe.evaluator" in cmd:
            out.append(int(name))
    return out


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_daemons_helper_ends_with_it(root: Path, watch, how: int) -> None:
    (root / "a.txt").write_text("one\n")
    w = watch(root)
    helpers = wait_until(lambda: _helpers_of(w.proc.pid),
                         what="the daemon's first evaluation, by its helper")
    w.stop(how)
    wait_until(lambda: not any(_alive(p) for p in helpers),
               what="the helper gone with its daemon")
