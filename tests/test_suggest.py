"""``guardian suggest``: patterns found in real recorded operations, and issues filed once
through ``gh`` (a stand-in script on PATH records its arguments: GitHub is a boundary we do
not own)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from guardian.rules.rulefiles import RULE_FILE

from .conftest import Cli

FAKE_GH = """#!{python}
import json, os, sys
log = os.environ["GH_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["auth", "status"]:
    if os.environ.get("GH_AUTH") == "no":
        print("You are not logged into any GitHub hosts. To log in, run: gh auth login",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
if sys.argv[1:3] == ["issue", "create"]:
    n = sum(1 for line in open(log) if '"issue", "create"' in line)
    print(f"https://github.com/example/project/issues/{{n}}")
    sys.exit(0)
sys.exit(2)
"""


@pytest.fixture
def gh(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, str], Path]:
    import sys

    bin_dir = tmp_path / "ghbin"
    bin_dir.mkdir()
    script = bin_dir / "gh"
    script.write_text(FAKE_GH.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "gh.log"
    return dict(env, PATH=f"{bin_dir}:{env['PATH']}", GH_LOG=str(log)), log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_slow_validator_is_suggested_and_filed_once(root: Path, cli: Cli, watch,
                                                    gh: tuple[dict[str, str], Path]) -> None:
    rule = root / RULE_FILE
    rule.write_text('[[rule]]\npaths = ["**/*.txt"]\nvalidators = [{ command = ["sh", "-c", '
                    '"sleep 0.6"], timeout = 10 }]\n')
    cli.json("trust", str(rule))
    w = watch(root)
    for i in range(4):
        m = w.mark()
        (root / f"f{i}.txt").write_text(f"{i}\n")
        w.wait(lambda e, n=i: e["event"] == "validation" and e["path"].endswith(f"f{n}.txt"),
               start=m)
    assert w.stop() == 0
    out = cli.json("suggest")
    [s] = [x for x in out["suggestions"] if x["type"] == "slow-validator"]
    assert s["frequency"] == 4 and s["estimated_benefit_s"] > 1.0 and s["would_file"]
    assert "sleep 0.6" in s["subject"] and "budget" in s["benefit_basis"]
    env, log = gh
    p = cli.run("suggest", "--file-issues", env=env, check=True)
    calls = _calls(log)
    assert calls[0] == ["auth", "status"]
    [create] = [c for c in calls if c[:2] == ["issue", "create"]]
    assert create[create.index("--title") + 1].startswith("Write Optimization: validator ")
    assert create[create.index("--label") + 1] == "write-optimization,performance,ai-suggested"
    body = create[create.index("--body") + 1]
    assert "Frequency**: 4" in body and "Estimated benefit" in body
    assert b"https://github.com/example/project/issues/1" in p.stdout
    # Never twice: the second run files nothing and says why.
    p = cli.run("suggest", "--file-issues", "--json", env=env, check=True)
    again = json.loads(p.stdout)
    assert again["filed"] == []
    assert any("filed before" in x["why"] for x in again["skipped"])
    assert len([c for c in _calls(log) if c[:2] == ["issue", "create"]]) == 1
    [s2] = [x for x in again["suggestions"] if x["type"] == "slow-validator"]
    assert s2["filed"] is True and s2["issue_url"].endswith("/issues/1")


def test_gh_missing_or_not_logged_in_is_said_clearly(root: Path, cli: Cli, watch,
                                                     gh: tuple[dict[str, str], Path],
                                                     env: dict[str, str]) -> None:
    rule = root / RULE_FILE
    rule.write_text('[[rule]]\npaths = ["**/*.txt"]\nvalidators = [{ command = ["sh", "-c", '
                    '"sleep 0.6"], timeout = 10 }]\n')
    cli.json("trust", str(rule))
    w = watch(root)
    for i in range(4):
        m = w.mark()
        (root / f"f{i}.txt").write_text(f"{i}\n")
        w.wait(lambda e, n=i: e["event"] == "validation" and e["path"].endswith(f"f{n}.txt"),
               start=m)
    assert w.stop() == 0
    bare = dict(env, PATH="/nonexistent")
    p = cli.run("suggest", "--file-issues", env=bare)
    assert p.returncode == 2 and b"needs the GitHub CLI `gh`" in p.stderr
    assert p.stderr.count(b"\n") == 1
    genv, log = gh
    p = cli.run("suggest", "--file-issues", env=dict(genv, GH_AUTH="no"))
    assert p.returncode == 2 and b"gh is not authenticated" in p.stderr
    assert b"gh auth login" in p.stderr
    assert [c for c in _calls(log) if c[:2] == ["issue", "create"]] == []
    assert cli.json("suggest")["suggestions"][0]["filed"] is False


def test_reverts_protected_writes_and_rules_that_never_match(root: Path, cli: Cli,
                                                             watch) -> None:
    (root / RULE_FILE).write_text(
        '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\non_invalid = "revert"\n\n'
        '[[rule]]\npaths = ["locked/**"]\nprotect = true\n\n'
        '[[rule]]\npaths = ["**/*.jsn"]\nvalidators = ["json"]\n')
    (root / "conf.json").write_text('{"ok": true}\n')
    (root / "locked").mkdir()
    (root / "locked" / "keep.txt").write_text("keep\n")
    (root / "notes.md").write_text("# notes\n")
    w = watch(root)
    for i in range(4):
        m = w.mark()
        (root / "conf.json").write_text(f'{{"ok": {i},}}\n')
        w.wait(lambda e: e["event"] == "alert" and e["kind"] == "reverted"
               and e["path"].endswith("conf.json"), start=m)
        m = w.mark()
        (root / "locked" / "keep.txt").write_text(f"changed {i}\n")
        w.wait(lambda e: e["event"] == "alert" and e["kind"] == "reverted"
               and e["path"].endswith("keep.txt"), start=m)
    assert w.stop() == 0
    by_type = {s["type"]: s for s in cli.json("suggest")["suggestions"]}
    rev = by_type["reverted-often"]
    assert rev["subject"] == str(root / "conf.json") and rev["frequency"] == 4
    prot = by_type["protected-written-often"]
    assert prot["subject"] == str(root / "locked" / "keep.txt") and prot["frequency"] == 4
    never = by_type["rule-never-matches"]
    assert "**/*.jsn" in never["subject"] and f"{root / RULE_FILE}:" in never["subject"]
    assert never["estimated_benefit_s"] == 0 and not never["would_file"]
    text = cli.run("suggest", check=True).stdout.decode()
    assert "reverted-often" in text and "->" in text


def test_small_sequential_batches_and_store_growth(cli: Cli, root: Path,
                                                   tmp_path: Path) -> None:
    for i in range(5):
        m = tmp_path / f"m{i}.json"
        m.write_text(json.dumps({"operations": [{"op": "write", "path": f"out/f{i}.txt",
                                                 "content": f"{i}"}]}))
        cli.run("apply", str(m), "--root", str(root), check=True)
    big = root / "log.bin"
    for _ in range(5):
        big.write_bytes(os.urandom(512 * 1024))
        cli.run("snapshot", str(big), check=True, cwd=root)
    by_type = {s["type"]: s for s in cli.json("suggest")["suggestions"]}
    small = by_type["small-sequential-writes"]
    assert small["frequency"] == 5 and small["subject"] == str(root / "out")
    assert small["evidence"]["runs"][0]["batches"] == 5
    growth = by_type["store-growth"]
    assert growth["subject"] == str(big) and growth["frequency"] == 5
    assert growth["evidence"]["bytes"] == 5 * 512 * 1024
