"""Auto-revert, protect and alerts, end to end with a real daemon and real writers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from guardian.rules.rulefiles import RULE_FILE

from .conftest import Cli, Watch, sha256

JSON_REVERT = '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\non_invalid = "revert"\n'
GOOD = b'{"name": "guardian", "n": 1}\n'
BAD = b'{"name": "guardian", "n": 1,}\n'


def settle(cli: Cli) -> None:
    """A barrier: the daemon has seen and recorded everything written before this call."""
    cli.json("snapshot")


def kinds(cli: Cli, path: Path) -> list[str]:
    return [v["kind"] for v in reversed(cli.log(path))]


def wait_alert(w: Watch, kind: str, start: int = 0, path: Path | None = None) -> dict:
    return w.wait(lambda e: e["event"] == "alert" and e["kind"] == kind
                  and (path is None or e["path"] == str(path)), what=f"a {kind} alert",
                  start=start)


def _in_place(p: Path, data: bytes) -> None:
    with open(p, "r+b") as f:
        f.truncate(0)
        f.write(data)


def _truncate_write(p: Path, data: bytes) -> None:
    p.write_bytes(data)


def _temp_rename(p: Path, data: bytes) -> None:
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)


def _vim(p: Path, data: bytes) -> None:
    os.rename(p, p.with_name(p.name + "~"))
    p.write_bytes(data)
    os.unlink(p.with_name(p.name + "~"))


def _jetbrains(p: Path, data: bytes) -> None:
    tmp = p.with_name(p.name + "___jb_tmp___")
    tmp.write_bytes(data)
    os.unlink(p)
    os.rename(tmp, p)


def _sed(p: Path, data: bytes) -> None:
    assert data == BAD
    subprocess.run(["sed", "-i", 's/"n": 1}/"n": 1,}/', str(p)], check=True)


SAVES: dict[str, Callable[[Path, bytes], None]] = {
    "in-place": _in_place, "truncate+write": _truncate_write, "temp+rename": _temp_rename,
    "vim": _vim, "jetbrains": _jetbrains, "sed -i": _sed,
}


@pytest.mark.parametrize("save", list(SAVES))
def test_invalid_write_is_reverted_whatever_the_save_pattern(root: Path, cli: Cli, watch,
                                                             save: str) -> None:
    (root / RULE_FILE).write_text(JSON_REVERT)
    target = root / "conf.json"
    target.write_bytes(GOOD)
    w = watch(root)
    m = w.mark()
    SAVES[save](target, BAD)
    alert = wait_alert(w, "reverted", m, target)
    assert target.read_bytes() == GOOD
    assert ":1:" in alert["message"] and "put back" in alert["message"]
    stored = cli.json("alerts")["alerts"][0]
    assert stored["kind"] == "reverted" and stored["message"] == alert["message"]
    assert stored["path"] == str(target) and "T" in stored["time"]
    log = cli.log(target)
    by_kind = {v["kind"]: v for v in log}
    # The invalid bytes are kept, flagged, before the good ones came back.
    rejected = by_kind["rejected"]
    assert rejected["sha256"] == sha256(BAD) and rejected["valid"] is False
    assert cli.run("show", str(target), "--version", str(rejected["id"]), check=True).stdout == BAD
    reverted = by_kind["reverted"]
    assert reverted["sha256"] == sha256(GOOD) and reverted["origin"] == "guardian"
    assert rejected["id"] < reverted["id"] and set(alert["versions"]) >= {rejected["id"],
                                                                           reverted["id"]}
    # No loop: Guardian's own write is not judged again.
    settle(cli)
    assert kinds(cli, target)[-2:] == ["rejected", "reverted"]
    assert "deleted" not in kinds(cli, target)


def test_alert_and_record_leave_the_file_but_flag_it(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text(
        '[[rule]]\npaths = ["alert/*.json"]\nvalidators = ["json"]\non_invalid = "alert"\n\n'
        '[[rule]]\npaths = ["record/*.json"]\nvalidators = ["json"]\non_invalid = "record"\n')
    for d in ("alert", "record"):
        (root / d).mkdir()
        (root / d / "f.json").write_bytes(GOOD)
    w = watch(root)
    m = w.mark()
    (root / "alert" / "f.json").write_bytes(BAD)
    alert = wait_alert(w, "invalid", m, root / "alert" / "f.json")
    assert "f.json:1:" in alert["message"]
    (root / "record" / "f.json").write_bytes(BAD)
    w.wait(lambda e: e["event"] == "validation" and e["path"] == str(root / "record" / "f.json")
           and e["valid"] is False, start=m)
    settle(cli)
    for d in ("alert", "record"):
        assert (root / d / "f.json").read_bytes() == BAD
        assert cli.log(root / d / "f.json")[0]["valid"] is False
    assert not [e for e in w.events[m:] if e["event"] == "alert"
                and e["path"] == str(root / "record" / "f.json")]
    # A valid write is recorded as such.
    m = w.mark()
    (root / "record" / "f.json").write_bytes(GOOD)
    w.wait(lambda e: e["event"] == "validation" and e["valid"] is True, start=m)


def test_protected_paths_stay_whole(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text('[[rule]]\npaths = ["config/**"]\nprotect = true\n')
    cfg = root / "config"
    (cfg / "deep").mkdir(parents=True)
    (cfg / "app.ini").write_text("[a]\nx = 1\n")
    (cfg / "deep" / "db.yaml").write_text("url: db\n")
    w = watch(root)
    m = w.mark()
    (cfg / "app.ini").write_text("[a]\nx = 2\n")          # a change
    wait_alert(w, "reverted", m, cfg / "app.ini")
    assert (cfg / "app.ini").read_text() == "[a]\nx = 1\n"
    m = w.mark()
    (cfg / "deep" / "db.yaml").unlink()                   # a deletion
    wait_alert(w, "reverted", m, cfg / "deep" / "db.yaml")
    assert (cfg / "deep" / "db.yaml").read_text() == "url: db\n"
    m = w.mark()
    (cfg / "intruder.txt").write_text("sneaky")           # a creation
    wait_alert(w, "reverted", m, cfg / "intruder.txt")
    assert not (cfg / "intruder.txt").exists()
    assert any(v["sha256"] == sha256(b"sneaky") for v in cli.log(cfg / "intruder.txt"))
    m = w.mark()
    shutil.rmtree(cfg)                                    # the whole directory
    wait_alert(w, "reverted", m, cfg / "app.ini")
    wait_alert(w, "reverted", m, cfg / "deep" / "db.yaml")
    assert (cfg / "app.ini").read_text() == "[a]\nx = 1\n"
    assert (cfg / "deep" / "db.yaml").read_text() == "url: db\n"
    # Outside the protected tree nothing is reverted.
    m = w.mark()
    (root / "free.txt").write_text("free")
    w.version(root / "free.txt", start=m)
    settle(cli)
    assert (root / "free.txt").read_text() == "free"


def test_a_file_that_never_was_valid_is_kept(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text(JSON_REVERT)
    w = watch(root)
    m = w.mark()
    (root / "new.json").write_bytes(BAD)
    alert = wait_alert(w, "kept", m, root / "new.json")
    assert "never had a valid version" in alert["message"]
    assert (root / "new.json").read_bytes() == BAD


def test_a_writer_that_keeps_rewriting_does_not_make_guardian_flap(root: Path, cli: Cli,
                                                                   watch) -> None:
    (root / RULE_FILE).write_text(JSON_REVERT.replace('"revert"\n', '"revert"\n'
                                                      'max_reverts_per_minute = 3\n'))
    target = root / "hot.json"
    target.write_bytes(GOOD)
    w = watch(root)
    for _ in range(3):
        m = w.mark()
        target.write_bytes(BAD)
        wait_alert(w, "reverted", m, target)
    m = w.mark()
    target.write_bytes(BAD)
    alert = wait_alert(w, "gave-up", m, target)
    assert alert["severity"] == "critical" and "max_reverts_per_minute = 3" in alert["message"]
    settle(cli)
    assert target.read_bytes() == BAD


def test_rule_edits_take_effect_at_once_and_broken_ones_keep_the_last_good(
        root: Path, cli: Cli, watch) -> None:
    rules = root / RULE_FILE
    rules.write_text('[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\n'
                     'on_invalid = "alert"\n')
    target = root / "a.json"
    target.write_bytes(GOOD)
    w = watch(root)
    m = w.mark()
    rules.write_text(JSON_REVERT)
    w.wait(lambda e: e["event"] == "rules" and e["ok"], start=m)
    target.write_bytes(BAD)
    wait_alert(w, "reverted", m, target)
    m = w.mark()
    rules.write_text(JSON_REVERT.replace('"revert"', '"revrt"'))
    alert = wait_alert(w, "rules", m)
    assert alert["severity"] == "critical"
    assert f"{rules}:4: on_invalid" in alert["message"] and "did you mean 'revert'" in \
        alert["message"]
    target.write_bytes(BAD)                      # the last good rules are still in force
    wait_alert(w, "reverted", m, target)
    assert target.read_bytes() == GOOD
    assert w.proc.poll() is None


def test_broken_rule_file_at_start_is_a_one_line_error(root: Path, cli: Cli) -> None:
    (root / "sub").mkdir()
    (root / "sub" / RULE_FILE).write_text('[[rule]]\npaths = ["**"]\nvalidators = ["jsno"]\n')
    p = cli.run("watch", str(root))
    assert p.returncode == 2
    assert p.stderr.count(b"\n") == 1
    assert f"{root / 'sub' / RULE_FILE}:3: validators: unknown validator 'jsno'".encode() in \
        p.stderr


def test_command_validators_need_trust(root: Path, cli: Cli, watch) -> None:
    rules = root / RULE_FILE
    rules.write_text('[[rule]]\npaths = ["*.txt"]\non_invalid = "alert"\nvalidators = '
                     '[{ command = ["sh", "-c", "grep -q OK {path} || '
                     '{ echo {path}:1:1: no OK; exit 1; }"] }]\n')
    (root / "a.txt").write_text("OK\n")
    w = watch(root)
    m = w.mark()
    (root / "a.txt").write_text("bad\n")
    alert = wait_alert(w, "untrusted", m)
    assert "guardian trust" in alert["message"]
    cli.json("trust", str(rules))
    m = w.mark()
    (root / "a.txt").write_text("still bad\n")
    alert = wait_alert(w, "invalid", m, root / "a.txt")
    assert "a.txt:1:1: no OK" in alert["message"]


def test_restoring_a_rejected_version_on_purpose_sticks(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text(JSON_REVERT)
    target = root / "c.json"
    target.write_bytes(GOOD)
    w = watch(root)
    m = w.mark()
    target.write_bytes(BAD)
    wait_alert(w, "reverted", m, target)
    rejected = next(v for v in cli.log(target) if v["kind"] == "rejected")
    cli.json("restore", str(target), "--version", str(rejected["id"]))
    settle(cli)
    assert target.read_bytes() == BAD
    assert kinds(cli, target)[-1] == "restored"
    assert not [e for e in w.events[m:] if e["event"] == "alert" and e["kind"] == "reverted"
                and rejected["id"] not in e["versions"]]


def test_changes_made_while_stopped_obey_the_rules(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text('[[rule]]\npaths = ["locked.txt"]\nprotect = true\n')
    (root / "locked.txt").write_text("original")
    (root / "pre-existing.json").write_bytes(BAD)  # invalid before Guardian: left alone
    w = watch(root)
    assert w.stop() == 0
    (root / "locked.txt").write_text("changed while down")
    w2 = watch(root)
    wait_alert(w2, "reverted", 0, root / "locked.txt")
    assert (root / "locked.txt").read_text() == "original"
    assert (root / "pre-existing.json").read_bytes() == BAD


def test_rule_settings_ignore_size_cap_settle_and_retention(root: Path, cli: Cli,
                                                           watch) -> None:
    import time

    (root / RULE_FILE).write_text(
        'ignore = ["scratch/**", "*.tmp"]\n\n'
        '[[rule]]\npaths = ["media/**"]\nmax_file_size = "1KiB"\n\n'
        '[[rule]]\npaths = ["batch/*.txt"]\nsettle_ms = 3000\nsettle_cap_ms = 10000\n\n'
        '[[rule]]\npaths = ["logs/**"]\nkeep_versions = 2\nkeep_days = 0\n')
    for d in ("scratch", "media", "batch", "logs"):
        (root / d).mkdir()
    w = watch(root)
    m = w.mark()
    (root / "scratch" / "junk.txt").write_text("not recorded")
    (root / "x.tmp").write_text("not recorded")
    (root / "media" / "big.bin").write_bytes(b"\0" * 4096)
    v = w.version(root / "media" / "big.bin", start=m)
    assert v["sha256"] is None and "size cap (1024)" in v["note"]
    # A long settle window coalesces writes that a short one would record separately.
    (root / "batch" / "a.txt").write_text("first")
    time.sleep(0.3)  # pacing the writer inside the rule's 3 s window, not synchronisation
    (root / "batch" / "a.txt").write_text("second")
    w.version(root / "batch" / "a.txt", sha256=sha256(b"second"), start=m)
    assert [x["sha256"] for x in cli.log(root / "batch" / "a.txt")] == [sha256(b"second")]
    for i in range(5):
        (root / "logs" / "app.log").write_text(f"line {i}")
        (root / "notes.txt").write_text(f"note {i}")
        w.version(root / "logs" / "app.log", sha256=sha256(f"line {i}".encode()), start=m)
        w.version(root / "notes.txt", sha256=sha256(f"note {i}".encode()), start=m)
    settle(cli)
    assert not cli.log(root / "scratch" / "junk.txt") and not cli.log(root / "x.tmp")
    out = cli.json("gc")  # retention from the rules: logs/** keeps 2, the rest the defaults
    assert out["versions_dropped"] == 3
    assert len(cli.log(root / "logs" / "app.log")) == 2
    assert len(cli.log(root / "notes.txt")) == 5
