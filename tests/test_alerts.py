"""Alerts: the seed's thresholds, every crossing raised once and resolved, acknowledgement
across restarts, the daemon's own alerts in the same model, [alerts] errors, sinks.

Failures are produced for real: invalid writes, a slow command validator in a trusted rule
file, EACCES for a daemon running as another user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardian.observe.alerts import evaluate
from guardian.rules.rulefiles import RULE_FILE
from guardian.rules.thresholds import Thresholds

from .conftest import Cli, Watch, wait_until
from .test_bad_input import NOBODY, needs_nobody
from .test_bad_input import shared as shared  # a fixture

FAST = '[alerts]\nevaluate_every = 0.5\nmin_operations = 1\n'
JSON_ALERT = '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\non_invalid = "alert"\n'


def alert_events(w: Watch, key: str, start: int = 0) -> list[dict]:
    with w.cond:
        return [e for e in w.events[start:] if e.get("event") == "alert" and e.get("key") == key]


def wait_state(w: Watch, key: str, state: str, start: int = 0, timeout: float = 30) -> dict:
    return w.wait(lambda e: e.get("event") == "alert" and e.get("key") == key
                  and e.get("state") == state, timeout, f"alert {key} {state}", start)


def rows(cli: Cli, key: str) -> list[dict]:
    return [a for a in cli.json("alerts", "-n", "500")["alerts"] if a["key"] == key]


# ----------------------------------------------------------------------------- the rules
def _metrics(count: int, ok: int, errors: int, avg: float, per_hour: dict[str, float]) -> dict:
    return {"types": {"validate": {"count": count, "duration_s": {"average": avg}}},
            "totals": {"count": count, "error_rate": errors / count if count else None,
                       "success_rate": {"overall": ok / count if count else None},
                       "outcomes": {"ok": ok, "error": errors}},
            "errors": {"categories": {c: {"count": 1 if r else 0, "rate_per_hour": r}
                                      for c, r in per_hour.items()}}}


def test_the_seeds_thresholds_are_the_defaults() -> None:
    th = Thresholds()
    quiet = _metrics(100, 95, 5, 5.0, {"permission": 0.1, "validation": 0.2,
                                       "optimisation": 0.05, "system": 0.1, "recovery": 0.01})
    assert evaluate(quiet, quiet, th) == []  # at each threshold: nothing yet
    loud = _metrics(100, 94, 6, 5.01, {"permission": 0.11, "validation": 0.21,
                                       "optimisation": 0.051, "system": 0.11, "recovery": 0.011})
    got = {c.key: c.severity for c in evaluate(loud, loud, th)}
    assert got == {"performance-degradation:validate": "warning", "high-error-rate": "critical",
                   "low-success-rate": "warning", "error-rate:permission": "critical",
                   "error-rate:validation": "critical", "error-rate:optimisation": "critical",
                   "error-rate:system": "critical", "error-rate:recovery": "critical"}


# ----------------------------------------------------------------------------- crossings
def test_low_success_rate_is_raised_once_and_resolves(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text(FAST + JSON_ALERT)
    w = watch(root)
    m = w.mark()
    (root / "bad.json").write_text('{"a": 1,}\n')  # rejected by validation: not a success
    opened = wait_state(w, "low-success-rate", "open", m)
    assert opened["severity"] == "warning" and "below threshold 95%" in opened["message"]
    # Evaluated again and again while it holds: still one alert, counted once.
    for _ in range(3):
        cli.json("alerts", "--open")
    assert [a["count"] for a in rows(cli, "low-success-rate")] == [1]
    # Enough good operations bring the success rate back to 95 %: resolved, once.
    i = 0
    while not alert_events(w, "low-success-rate") or alert_events(
            w, "low-success-rate")[-1]["state"] != "resolved":
        mm = w.mark()
        (root / f"good{i}.json").write_text(f'{{"n": {i}}}\n')
        w.wait(lambda e, n=i: e["event"] == "validation" and e["path"].endswith(f"good{n}.json"),
               start=mm)
        cli.json("alerts", "--open")  # an evaluation now
        i += 1
        assert i < 60, "the alert never resolved"
    states = [e["state"] for e in alert_events(w, "low-success-rate")]
    assert states == ["open", "resolved"], states
    [row] = rows(cli, "low-success-rate")
    assert row["state"] == "resolved" and row["resolved"] is not None
    assert cli.json("alerts", "--open")["alerts"] == [] or all(
        a["key"] != "low-success-rate" for a in cli.json("alerts", "--open")["alerts"])
    assert w.stop() == 0


def test_a_slow_validator_raises_performance_degradation(root: Path, cli: Cli, watch) -> None:
    rule = root / RULE_FILE
    rule.write_text(FAST + "average_operation_time = 1.0\n" + (
        '[[rule]]\npaths = ["**/*.txt"]\nvalidators = [{ command = ["sh", "-c", '
        '"case {path} in */slow.txt) sleep 1.5;; esac"], timeout = 10 }]\n'))
    cli.json("trust", str(rule))
    w = watch(root)
    m = w.mark()
    (root / "slow.txt").write_text("takes a while\n")
    opened = wait_state(w, "performance-degradation:validate", "open", m)
    assert "average validate operation time" in opened["message"]
    for i in range(3):  # fast validations bring the average under a second
        mm = w.mark()
        (root / f"fast{i}.txt").write_text("quick\n")
        w.wait(lambda e, n=i: e["event"] == "validation" and e["path"].endswith(f"fast{n}.txt"),
               start=mm)
    cli.json("alerts", "--open")
    wait_state(w, "performance-degradation:validate", "resolved", m)
    assert [e["state"] for e in alert_events(w, "performance-degradation:validate")] == [
        "open", "resolved"]
    assert w.stop() == 0


@needs_nobody
def test_permission_errors_raise_the_error_rates(shared: tuple[Path, dict[str, str]]) -> None:
    """EACCES for real: the daemon runs as nobody, a restore into a root-owned directory."""
    base, env = shared
    root = base / "root"
    (root / "locked").mkdir(parents=True)
    os.chown(root, 65534, 65534)
    target = root / "locked" / "f.txt"
    target.write_text("one\n")
    (root / RULE_FILE).write_text(FAST + 'error_window = "1h"\n')
    os.chown(root / RULE_FILE, 65534, 65534)
    store = base / "store"
    store.mkdir(mode=0o700)
    os.chown(store, 65534, 65534)
    w = Watch([root], store, env, argv_prefix=NOBODY)
    cli = Cli(env, store, base)
    try:
        w.ready()
        m = w.mark()
        target.write_text("two\n")
        w.version(target, start=m)
        first = cli.log(target)[-1]["id"]
        m = w.mark()
        p = cli.run("restore", str(target), "--version", str(first), env=env)
        assert p.returncode != 0 and b"ermission denied" in p.stderr, p.stderr
        crit = wait_state(w, "high-error-rate", "open", m)
        assert crit["severity"] == "critical"
        perm = wait_state(w, "error-rate:permission", "open", m)
        assert perm["severity"] == "critical" and "permission errors" in perm["message"]
        ops = cli.json("metrics")["types"]["restore"]
        assert ops["outcomes"] == {"error": 1}
        # The user raises the thresholds: the conditions clear, the alerts resolve themselves.
        m = w.mark()
        (root / RULE_FILE).write_text(FAST + 'error_window = "1h"\nerror_rate = 0.9\n'
                                      'error_rates = { permission = 100 }\n')
        wait_state(w, "error-rate:permission", "resolved", m)
        wait_state(w, "high-error-rate", "resolved", m)
        for key in ("error-rate:permission", "high-error-rate"):
            assert [e["state"] for e in alert_events(w, key)] == ["open", "resolved"], key
    finally:
        assert w.stop() == 0
        w.close()
    assert not w.raw


# ----------------------------------------------------------------------------- ack, restart
def test_ack_persists_across_a_restart(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text(FAST + JSON_ALERT)
    w = watch(root)
    m = w.mark()
    (root / "bad.json").write_text("{nope\n")
    invalid = w.wait(lambda e: e["event"] == "alert" and e["kind"] == "invalid", start=m)
    low = wait_state(w, "low-success-rate", "open", m)
    out = cli.json("alerts", "ack", str(invalid["id"]))
    assert out["acknowledged"] == [invalid["id"]]
    assert cli.run("alerts", "ack", "999999").returncode == 2
    assert cli.run("alerts", "ack", "x1").returncode == 2
    assert cli.run("alerts", "ack").returncode == 2
    assert w.stop() == 0
    w2 = watch(root)
    cli.json("alerts")  # the restarted daemon evaluates: the condition still holds
    by_id = {a["id"]: a for a in cli.json("alerts", "--open")["alerts"]}
    assert by_id[invalid["id"]]["state"] == "acknowledged"
    assert by_id[invalid["id"]]["acknowledged"] is not None
    assert by_id[low["id"]]["state"] == "open"
    assert len(rows(cli, "low-success-rate")) == 1  # not raised again after the restart
    done = cli.json("alerts", "ack", "--all")
    assert done["acknowledged"] == [low["id"]]  # --all: every open one
    assert {a["state"] for a in cli.json("alerts", "--open")["alerts"]} == {"acknowledged"}
    assert w2.stop() == 0


def test_event_alerts_are_deduplicated_and_resolve(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text(JSON_ALERT)
    w = watch(root)
    f = root / "conf.json"
    for n in range(3):
        m = w.mark()
        f.write_text(f'{{"n": {n},}}\n')
        w.wait(lambda e: e["event"] == "alert" and e["kind"] == "invalid", start=m)
    key = f"invalid:{f}"
    [row] = rows(cli, key)
    assert row["count"] == 3 and row["state"] == "open"
    assert row["first_seen"] < row["last_seen"]
    m = w.mark()
    f.write_text('{"n": 3}\n')
    wait_state(w, key, "resolved", m)
    assert rows(cli, key)[0]["state"] == "resolved"
    # A broken rule file is an alert too, resolved when the file is fixed.
    rule = root / RULE_FILE
    m = w.mark()
    rule.write_text(JSON_ALERT + "bogus = 1\n")
    wait_state(w, f"rules:{rule}", "open", m)
    rule.write_text(JSON_ALERT)
    wait_state(w, f"rules:{rule}", "resolved", m)
    assert w.stop() == 0


def test_alerts_lists_a_store_of_an_earlier_release(cli: Cli, root: Path, store: Path) -> None:
    """A store made before the alert model: it opens, its alerts list, a writer upgrades it."""
    import sqlite3

    (root / "a.txt").write_text("x")
    cli.run("snapshot", check=True, cwd=root)
    db = sqlite3.connect(store / "guardian.db")
    # The alerts table as releases before the alert model created it with every store.
    db.execute("DROP TABLE IF EXISTS alerts")
    db.execute("CREATE TABLE alerts(id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL,"
               " severity TEXT NOT NULL, kind TEXT NOT NULL, path BLOB, message TEXT NOT NULL,"
               " versions TEXT)")
    for col in ("items", "bytes", "label", "latency"):
        db.execute(f"ALTER TABLE operations DROP COLUMN {col}")
    for table in ("operation_hours", "version_hours", "store_sizes", "reports",
                  "filed_suggestions"):
        db.execute(f"DROP TABLE IF EXISTS {table}")
    db.execute("INSERT INTO alerts(time_ns, severity, kind, path, message, versions) VALUES"
               "(1, 'warning', 'invalid', NULL, 'from before', '[]')")
    db.commit()
    db.close()
    old = cli.json("alerts")["alerts"]
    assert [(a["message"], a["state"]) for a in old] == [("from before", "open")]
    assert cli.json("metrics")["totals"]["count"] >= 0
    cli.run("snapshot", check=True, cwd=root)  # a writer opens it: upgraded in place
    [a] = cli.json("alerts")["alerts"]
    assert a["state"] == "open" and a["count"] == 1 and a["message"] == "from before"
    assert cli.json("alerts", "ack", str(a["id"]))["acknowledged"] == [a["id"]]


# ----------------------------------------------------------------------------- [alerts]
@pytest.mark.parametrize(("text", "needle"), [
    ("[alerts]\nwindw = \"1h\"\n",
     b":2: alerts.windw: unknown key 'windw' (did you mean 'window'?)"),
    ("[alerts]\nerror_rate = 5\n", b":2: alerts.error_rate: expected a fraction"),
    ("[alerts]\nwindow = \"soon\"\n", b":2: alerts.window: expected an age"),
    ("[alerts]\nerror_rates = { permision = 0.1 }\n",
     b":2: alerts.error_rates.permision: unknown error category"),
    ("[[rule]]\npaths = [\"**\"]\n\n[alerts]\nsinks = [{ file = \"a\", desktop = true }]\n",
     b":5: alerts.sinks: each sink needs exactly one of"),
    ("alerts = 3\n", b":1: alerts: expected a table"),
])
def test_alerts_table_errors_name_file_line_and_key(cli: Cli, root: Path, text: str,
                                                    needle: bytes) -> None:
    (root / RULE_FILE).write_text(text)
    for args in (("rules", str(root)), ("watch", str(root))):
        p = cli.run(*args, cwd=root)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.count(b"\n") == 1 and b"Traceback" not in p.stderr
        assert str(root / RULE_FILE).encode() + needle in p.stderr, p.stderr


def test_alerts_only_in_a_roots_own_rule_file(cli: Cli, root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / RULE_FILE).write_text("[alerts]\nerror_rate = 0.1\n")
    p = cli.run("rules", str(root / "sub"), cwd=root)
    assert p.returncode == 2 and b"only a watched root's own .guardian.toml" in p.stderr


# ----------------------------------------------------------------------------- sinks
def test_sinks_file_command_and_desktop(root: Path, cli: Cli, watch, env: dict[str, str],
                                        tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    for name in ("notify-send", "record"):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {calls}\ncat >> {calls}\n"
                          f"echo >> {calls}\n")
        script.chmod(0o755)
    sink_log = tmp_path / "alerts.jsonl"
    rule = root / RULE_FILE
    rule.write_text(FAST + f'sinks = [{{ file = "{sink_log}" }}, '
                    '{ command = ["record", "{severity}", "{kind}", "{state}"] }, '
                    '{ desktop = true, min_severity = "critical" }]\n' + JSON_ALERT)
    path_env = dict(env, PATH=f"{bin_dir}:{env['PATH']}")
    w = watch(root, env=path_env)
    m = w.mark()
    (root / "bad.json").write_text("{nope\n")
    for sink in ("file", "command"):  # untrusted input, reaching outside the tree: not yet
        w.wait(lambda e, k=sink: e["event"] == "alert" and e["kind"] == "untrusted"
               and f"alert sink {k}" in e["message"], start=m, what=f"untrusted {sink} sink")
    assert not sink_log.exists() and not calls.exists()
    assert w.stop() == 0
    cli.json("trust", str(rule))
    w = watch(root, env=path_env)
    m = w.mark()
    (root / "worse.json").write_text("{nope again\n")
    lines = [json.loads(x) for x in wait_until(
        lambda: sink_log.exists() and sink_log.read_text().splitlines(), what="sink lines")]
    assert {x["kind"] for x in lines} >= {"invalid"}
    assert all(x["state"] == "open" for x in lines)
    # Its arguments, then the alert as JSON on its standard input.
    wait_until(lambda: calls.exists() and "record warning invalid open" in calls.read_text()
               and '"kind": "invalid"' in calls.read_text(), what="the command sink to run")
    assert "notify-send" not in calls.read_text()    # desktop only for critical ones
    assert w.stop() == 0


def test_alerts_help_and_json_shape(cli: Cli, root: Path) -> None:
    (root / "a").write_text("x")
    cli.run("snapshot", check=True, cwd=root)
    out = subprocess.run([sys.executable, "-m", "guardian", "alerts", "--help"],
                         capture_output=True, text=True, check=True, env=cli.env).stdout
    assert "ack" in out and "--open" in out and "resolve" in out
    assert cli.json("alerts") == {"alerts": []}


def test_lost_events_are_an_alert_and_counted(root: Path, cli: Cli, watch,
                                             env: dict[str, str]) -> None:
    """The inotify watch limit, reached for real (a test limit on the watches): events are
    lost, a reconcile replaces them; the alert stays open while the daemon is degraded."""
    for d in range(6):
        (root / f"d{d}").mkdir()
        (root / f"d{d}" / "f.txt").write_text("x")
    (root / RULE_FILE).write_text(FAST)
    w = watch(root, env=dict(env, GUARDIAN_TEST_MAX_WATCHES="3"),
              extra=["--poll-interval", "1"])
    opened = wait_state(w, "events-lost:watch-limit", "open")
    assert opened["kind"] == "events-lost" and "watch-limit" in opened["message"]
    cap = cli.json("metrics")["capture"]
    assert cap["events_lost"] >= 1 and cap["reconciles"]["by_reason"]["watch-limit"] >= 1
    cli.json("alerts")  # evaluated while degraded: it stays open
    assert rows(cli, "events-lost:watch-limit")[0]["state"] == "open"
    assert w.stop() == 0
