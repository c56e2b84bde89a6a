"""Backlogs the daemon keeps small: a capture commit takes at most CAPTURE_MAX paths (the rest
stay due), and versions waiting for the validators past VALIDATE_HELD wait by id and are read
back from the store, rules and content, when their turn comes. A real ``guardian watch``."""

from __future__ import annotations

from pathlib import Path

from guardian.daemon.loop import VALIDATE_HELD_ENV
from guardian.daemon.settle import Settler
from guardian.rules.rulefiles import RULE_FILE

from .conftest import Cli, sha256

JSON_REVERT = '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\non_invalid = "revert"\n'


def test_pop_due_takes_at_most_the_limit_earliest_first_and_keeps_the_rest_due() -> None:
    s: Settler[str] = Settler(window=0.1, cap=1.0)
    for i in range(10):
        s.touch(f"k{i}", now=float(i))
    assert s.pop_due(100.0, limit=4) == ["k0", "k1", "k2", "k3"]
    assert len(s) == 6
    assert s.pop_due(100.0, limit=4) == ["k4", "k5", "k6", "k7"]
    assert s.pop_due(100.0) == ["k8", "k9"]
    assert s.pop_due(100.0, limit=4) == []


def test_versions_waiting_by_id_are_validated_and_an_invalid_one_reverted(
        root: Path, cli: Cli, watch, env) -> None:
    """Every version read back from the store (none held in memory): a valid write gets its
    verdict, an invalid one is rejected and the file put back, as when held in memory."""
    (root / RULE_FILE).write_text(JSON_REVERT)
    (root / "conf.json").write_text('{"n": 0}\n')
    w = watch(root, env=dict(env, **{VALIDATE_HELD_ENV: "0"}))
    m = w.mark()
    (root / "conf.json").write_text('{"n": 1}\n')
    ok = w.wait(lambda e: e["event"] == "validation" and e["path"].endswith("conf.json"),
                start=m)
    assert ok["valid"] is True
    m = w.mark()
    (root / "conf.json").write_text('{"n": 2,}\n')
    bad = w.wait(lambda e: e["event"] == "validation" and e["path"].endswith("conf.json")
                 and e["valid"] is False, start=m)
    assert bad["problems"]
    w.wait(lambda e: e["event"] == "alert" and e["kind"] == "reverted", start=m)
    assert (root / "conf.json").read_text() == '{"n": 1}\n'
    kept = {v["sha256"] for v in cli.log(root / "conf.json")}
    assert sha256(b'{"n": 2,}\n') in kept  # the bad bytes are kept too
    assert w.proc.poll() is None
    assert w.stop() == 0
