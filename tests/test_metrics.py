"""Metrics: every operation type measured by a real daemon and real commands, the JSON shape
(an API: the TUI's dashboard draws it), rollups that keep the numbers, a cheap start."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from guardian.observe import metrics, record, rollup
from guardian.observe.calibrate import given
from guardian.rules.rulefiles import RULE_FILE
from guardian.store.db import Store

from .conftest import Cli

JSON_REVERT = '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\non_invalid = "revert"\n'


def _apply(cli: Cli, root: Path, tmp_path: Path, ops: list[dict], name: str) -> int:
    m = tmp_path / f"{name}.json"
    m.write_text(json.dumps({"operations": ops}))
    return cli.run("apply", str(m), "--root", str(root)).returncode


def test_every_operation_type_is_measured(root: Path, cli: Cli, watch, tmp_path: Path,
                                          store: Path) -> None:
    (root / RULE_FILE).write_text(JSON_REVERT)
    (root / "ok.json").write_text('{"n": 0}\n')
    w = watch(root)
    m = w.mark()
    (root / "ok.json").write_text('{"n": 1}\n')
    w.wait(lambda e: e["event"] == "validation" and e["path"].endswith("ok.json"), start=m)
    m = w.mark()
    (root / "ok.json").write_text('{"n": 2,}\n')  # invalid: rejected and reverted
    w.wait(lambda e: e["event"] == "alert" and e["kind"] == "reverted", start=m)
    cli.json("snapshot")
    first = cli.log(root / "ok.json")[-1]["id"]
    cli.json("restore", str(root / "ok.json"), "--version", str(first))
    assert _apply(cli, root, tmp_path, [
        {"op": "write", "path": "b.txt", "content": "b"},
        {"op": "render", "path": "c.txt", "template": "hi $x", "vars": {"x": 1}}], "m1") == 0
    assert _apply(cli, root, tmp_path, [{"op": "write", "path": "d.json",
                                         "content": "{bad"}], "m2") == 1
    m = w.mark()
    cli.json("snapshot")  # a barrier: everything so far is recorded
    out = cli.json("metrics")
    types = out["types"]
    assert {"capture", "validate", "revert", "restore", "snapshot", "batch"} <= set(types)
    assert types["revert"]["outcomes"] == {"ok": 1}
    assert types["validate"]["outcomes"]["rejected"] >= 1
    assert types["restore"]["outcomes"] == {"ok": 1}
    batch = types["batch"]
    assert batch["operations"]["write"]["outcomes"] == {"ok": 1, "rejected": 1}
    assert batch["operations"]["render"]["count"] == 1
    assert out["errors"]["categories"]["validation"]["count"] >= 2  # the batch and the write
    cap = out["capture"]
    assert cap["latency"]["count"] >= 2 and 0 < cap["latency"]["p50_ms"] < 10_000
    assert cap["versions"]["by_kind"]["rejected"]["count"] == 1
    assert cap["versions"]["by_kind"]["reverted"]["count"] == 1
    assert cap["reverts"] == 1 and cap["rejected_writes"] == 1
    assert cap["versions"]["by_origin"]["watcher"]["count"] >= 2
    # The shape the dashboard relies on.
    for t in types.values():
        assert set(t) >= {"count", "operations_per_minute", "duration_s", "success_rate",
                          "optimisation_usage_rate", "time_saved_s", "throughput", "outcomes"}
        assert set(t["duration_s"]) == {"average", "p50", "p95", "max", "total"}
        assert set(t["success_rate"]) == {"overall", "optimised", "standard"}
    assert "estimate" in out["time_saved"]["method"]
    status = cli.json("status")
    assert status["metrics"]["operations"] == out["totals"]["count"]
    assert set(status["metrics"]["types"]) == set(types)
    # The rows are the store's: the counts match the operations table.
    with sqlite3.connect(store / "guardian.db") as db:
        n = db.execute("SELECT COUNT(*) FROM operations").fetchone()[0]
    assert out["totals"]["count"] == n
    assert w.stop() == 0
    after = cli.json("status")["metrics"]  # no daemon: read from the store directly
    assert after["operations"] >= n


def test_rollups_keep_the_numbers(tmp_path: Path) -> None:
    """Rows of three days folded into hours: same counts, sums and outcomes; the window
    says where the rolled-up hours make it start."""
    with Store.open(tmp_path / "s", write=True, create=True) as s:
        now = time.time_ns()
        rows = []
        for i in range(3000):
            t = now - i * 86_000_000_000  # every 86 s over three days
            rows.append(record.row("write", 1_000_000 + i * 1000, "error" if i % 7 == 0 else "ok",
                                   category="permission" if i % 7 == 0 else None,
                                   optimisation=["group_sync"], time_ns=t, nbytes=100))
            if i % 3 == 0:
                lat = record.Latency()
                lat.add(0.001 * (i % 50))
                rows.append(record.row("capture", 2_000_000, "ok", items=2, latency=lat.to_json(),
                                       optimisation=["group_commit"], time_ns=t))
        record.write_rows(s, rows)
        base = given(0.01)
        before = metrics.compute(s, since_ns=now - 4 * 86400 * 10**9, until_ns=now + 1,
                                 baseline=base)
        assert before["window"]["percentiles"] == "exact"
        done = rollup.run(s, now_ns=now)
        assert done["operations"] > 2500
        after = metrics.compute(s, since_ns=now - 4 * 86400 * 10**9, until_ns=now + 1,
                                baseline=base)
        assert after["window"]["percentiles"] == "histogram"
        for key in ("count", "outcomes", "error_rate", "optimisation_usage_rate"):
            assert after["totals"][key] == before["totals"][key], key
        assert after["totals"]["duration_s"]["total"] == before["totals"]["duration_s"]["total"]
        assert after["totals"]["duration_s"]["max"] == before["totals"]["duration_s"]["max"]
        assert after["errors"]["categories"] == before["errors"]["categories"]
        assert after["capture"]["latency"]["count"] == before["capture"]["latency"]["count"]
        assert after["time_saved"]["seconds"] == before["time_saved"]["seconds"]
        p95 = before["types"]["batch"]["duration_s"]["p95"]
        assert abs(after["types"]["batch"]["duration_s"]["p95"] - p95) / p95 < 0.5
        # A window inside an hour that was rolled up starts at that hour.
        w = metrics.compute(s, since_ns=now - 2 * 86400 * 10**9 - 60 * 10**9, until_ns=now)
        assert w["window"]["effective_since_ns"] <= w["window"]["since_ns"]
        assert w["window"]["effective_since_ns"] % (3600 * 10**9) == 0


def test_metrics_command_and_its_start(cli: Cli, root: Path, store: Path) -> None:
    (root / "a.txt").write_text("x")
    cli.run("snapshot", check=True, cwd=root)
    text = cli.run("metrics", check=True).stdout.decode()
    assert "operations:" in text and "snapshot" in text
    out = cli.json("metrics", "--since", "1h")
    assert out["types"]["snapshot"]["count"] == 1
    assert cli.run("metrics", "--since", "yesterday-ish").returncode == 2
    assert cli.run("metrics", "--since", "1h", "--until", "2h").returncode == 2
    # `guardian metrics` never imports the Prometheus client, the event loop or the UI.
    code = ("import sys; from guardian.cli import main as cli; "
            f"rc = cli.main(['metrics', '--json', '--store', {str(store)!r}]); "
            "print([m for m in ('prometheus_client', 'anyio', 'textual', 'watchdog') "
            "if m in sys.modules], file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=cli.env, check=True)
    assert p.stderr.strip().splitlines()[-1] == "[]", p.stderr
    for command in ("metrics", "report", "suggest", "health"):
        helptext = cli.run(command, "--help", store=False, check=True).stdout.decode()
        assert "Time saved is an estimate: for each successful batch operation" in " ".join(
            helptext.split()), command
