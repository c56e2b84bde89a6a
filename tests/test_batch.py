"""Atomic batch writes: all or nothing through failures and kills, validated, locked."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardian.rules.rulefiles import RULE_FILE

from .conftest import Cli, sha256, wait_until

ISSUE_MANIFEST = {"operations": [
    {"op": "write", "path": "a.txt", "content": "text"},
    {"op": "write", "path": "b.bin", "content_base64": "AAEC"},
    {"op": "edit", "path": "c.py", "old": "x = 1", "new": "x = 2"},
    {"op": "edit", "path": "d.py",
     "patch": "--- a/d.py\n+++ b/d.py\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n+b = 3\n"},
    {"op": "delete", "path": "e.txt"},
    {"op": "render", "path": "f.txt", "template": "Hello $name", "vars": {"name": "x"}},
    {"op": "mkdir", "path": "g/h"},
]}

OLD = {"c.py": b"x = 1\n", "d.py": b"a = 1\nb = 2\n", "e.txt": b"bye\n"}
NEW = {"a.txt": b"text", "b.bin": b"\0\1\2", "c.py": b"x = 2\n", "d.py": b"a = 1\nb = 3\n",
       "e.txt": None, "f.txt": b"Hello x"}


def setup_tree(root: Path) -> None:
    for rel, data in OLD.items():
        (root / rel).write_bytes(data)


def state(root: Path) -> dict[str, bytes | None]:
    return {rel: (root / rel).read_bytes() if (root / rel).exists() else None
            for rel in sorted(set(OLD) | set(NEW))}


def expected(which: dict[str, bytes | None]) -> dict[str, bytes | None]:
    base = dict.fromkeys(sorted(set(OLD) | set(NEW)))
    if which is NEW:
        base.update(OLD)
    base.update(which)
    return base


def temps(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".~guardian.*")]


def apply(cli: Cli, root: Path, manifest: dict, *args: str,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return cli.run("apply", "-", "--root", str(root), *args,
                   input=json.dumps(manifest).encode(), env=env, cwd=root)


def assert_all_or_nothing(cli: Cli, root: Path) -> str:
    now = state(root)
    assert not temps(root), temps(root)
    assert cli.json("verify")["ok"] is True
    if now == expected(OLD):
        assert not (root / "g").exists()
        return "old"
    assert now == expected(NEW), now
    assert (root / "g" / "h").is_dir()
    return "new"


def test_the_documented_manifest(cli: Cli, root: Path) -> None:
    setup_tree(root)
    p = apply(cli, root, ISSUE_MANIFEST, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] is True and isinstance(out["batch"], int) and not out["dry_run"]
    actions = {os.path.basename(f["path"]): f["action"] for f in out["files"]}
    assert actions == {"a.txt": "write", "b.bin": "write", "c.py": "write", "d.py": "write",
                       "e.txt": "delete", "f.txt": "write", "h": "mkdir"}
    for f in out["files"]:
        assert set(f) == {"path", "action", "bytes", "optimisations", "ms"}
    assert out["optimisations"]["group_sync"] >= 5 and out["optimisations"]["incremental"] == 2
    assert state(root) == expected(NEW) and (root / "g" / "h").is_dir()
    # The old contents are in the store, and the new versions say where they came from.
    log = cli.json("log", str(root / "c.py"))["versions"]
    assert log[0]["origin"] == "batch" and log[0]["sha256"] == sha256(b"x = 2\n")
    assert any(v["sha256"] == sha256(b"x = 1\n") for v in log[1:])
    assert cli.log(root / "e.txt")[0]["kind"] == "deleted"
    ops = _operations(cli)
    assert len(ops) == 7 and all(o[1] == "ok" for o in ops)


def _operations(cli: Cli) -> list[tuple[str, str, str | None, str | None]]:
    import sqlite3

    db = sqlite3.connect(f"file:{cli.store / 'guardian.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT op, outcome, error_category, optimisation FROM operations"
                          " ORDER BY id").fetchall()
    finally:
        db.close()


def test_dry_run_prints_every_diff_and_writes_nothing(cli: Cli, root: Path) -> None:
    setup_tree(root)
    p = apply(cli, root, ISSUE_MANIFEST, "--dry-run")
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert "-x = 1\n+x = 2" in text and "+b = 3" in text and "+++ /dev/null" in text
    assert "Binary files" in text
    assert state(root) == expected(OLD) and not (root / "g").exists()


def test_toml_manifests_and_usage_errors(cli: Cli, root: Path, tmp_path: Path) -> None:
    toml = tmp_path / "m.toml"
    toml.write_text('[[operations]]\nop = "write"\npath = "t.txt"\ncontent = "from toml"\n')
    assert cli.run("apply", str(toml), "--root", str(root), cwd=root).returncode == 0
    assert (root / "t.txt").read_text() == "from toml"
    for bad, needle in [({"operations": [{"op": "zap", "path": "x"}]}, b"op must be one of"),
                        ({"operations": [{"op": "write", "path": "x", "content_base64": "!!"}]},
                         b"not valid base64"),
                        ({"operations": [{"op": "write", "path": "x"}]}, b"exactly one of"),
                        ({"ops": []}, b"\"operations\" list"),
                        ({"operations": [{"op": "edit", "path": "x", "old": "a"}]},
                         b"old and new")]:
        p = apply(cli, root, bad)
        assert p.returncode == 2 and needle in p.stderr, (bad, p.stderr)
        assert p.stderr.count(b"\n") == 1
    p = cli.run("apply", "-", input=b"{not json", cwd=root)
    assert p.returncode == 2 and b"<stdin>:1:2" in p.stderr


@pytest.mark.parametrize(("op", "message"), [
    ({"op": "write", "path": "x", "content": 1}, "(write x): content must be a string"),
    ({"op": "write", "path": "x", "content": "a", "content_base64": "YQ=="},
     "(write x): give exactly one of content, content_base64"),
    ({"op": "edit", "path": "x", "patch": 3}, "(edit x): patch must be a string"),
    ({"op": "render", "path": "x", "template": 5}, "(render x): template must be a string"),
    ({"op": "render", "path": "x"}, "(render x): give exactly one of template, template_path"),
])
def test_manifest_field_errors_name_the_operation_and_field(op: dict[str, object],
                                                            message: str) -> None:
    from guardian.batch.manifest import from_dict
    from guardian.errors import UsageError

    with pytest.raises(UsageError) as e:
        from_dict({"operations": [op]})
    assert str(e.value) == f"manifest: operation 1 {message}"


@pytest.mark.parametrize(("ops", "needle", "category"), [
    ([{"op": "write", "path": "ok.json", "content": "{}"},
      {"op": "write", "path": "bad.json", "content": "{\n  \"a\": 1,\n}"}],
     "bad.json:3:1", "validation"),
    ([{"op": "edit", "path": "c.py", "old": "nothing like this", "new": "y"}],
     "the text to replace is not in the file", "usage"),
    ([{"op": "edit", "path": "twice.txt", "old": "x", "new": "y"}],
     "occurs 2 times", "usage"),
    ([{"op": "delete", "path": "missing.txt"}], "does not exist", "usage"),
    ([{"op": "write", "path": "../outside.txt", "content": "x"}], "outside the watched roots",
     "permission"),
    ([{"op": "write", "path": "sub/../../outside.txt", "content": "x"}],
     "outside the watched roots", "permission"),
    ([{"op": "write", "path": ".", "content": "x"}], "is a watched root itself", "usage"),
    ([{"op": "mkdir", "path": "sub/.."}], "is a watched root itself", "usage"),
    ([{"op": "render", "path": "r.txt", "template": "Hi $who"}], "no value for $who", "usage"),
    ([{"op": "edit", "path": "d.py", "patch": "@@ -1,1 +1,1 @@\n-nope\n+x\n"}],
     "hunk 1 does not apply", "usage"),
])
def test_a_bad_operation_refuses_the_whole_batch(cli: Cli, root: Path, ops: list[dict],
                                                 needle: str, category: str) -> None:
    setup_tree(root)
    (root / "twice.txt").write_text("x x\n")
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    manifest = {"operations": [{"op": "write", "path": "first.txt", "content": "1"}, *ops]}
    p = apply(cli, root, manifest, "--json")
    # A path the manifest alone makes wrong (outside the roots, a root itself) is a usage
    # error (exit 2); the others depend on the files: the batch is refused (exit 1).
    code = 2 if needle in ("outside the watched roots", "is a watched root itself") else 1
    assert p.returncode == code, p.stderr
    err = json.loads(p.stdout)["error"]
    assert needle in err["message"] and err["category"] == category and not err["rolled_back"]
    assert err["operation"] == 1 + len(ops)  # the last one; counted from 1, as in messages
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before
    assert not temps(root)


def test_the_validators_verdict_is_recorded_with_the_version(cli: Cli, root: Path) -> None:
    write = {"operations": [{"op": "write", "path": "conf.json", "content": '{"a": 1}'}]}
    assert apply(cli, root, write).returncode == 0
    assert cli.log(root / "conf.json")[0]["valid"] is True
    unchecked = {**write, "validate": False}
    unchecked["operations"] = [{**write["operations"][0], "content": '{"a": 2}'}]
    assert apply(cli, root, unchecked).returncode == 0
    assert cli.log(root / "conf.json")[0]["valid"] is None  # nothing ran: not known


def test_path_spellings_name_the_same_files(cli: Cli, root: Path) -> None:
    (root / "sub").mkdir()
    manifest = {"operations": [
        {"op": "write", "path": "a/../b.txt", "content": "1"},
        {"op": "write", "path": "./b.txt", "content": "2"},       # the same target: folded
        {"op": "write", "path": "sub//c.txt", "content": "3"},
        {"op": "write", "path": str(root / "sub" / "./d.txt"), "content": "4"},
        {"op": "mkdir", "path": "e/f/"},
    ]}
    p = apply(cli, root, manifest, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    files = {f["path"]: f["action"] for f in json.loads(p.stdout)["files"]}
    assert files == {str(root / "b.txt"): "write", str(root / "sub" / "c.txt"): "write",
                     str(root / "sub" / "d.txt"): "write", str(root / "e" / "f"): "mkdir"}
    assert (root / "b.txt").read_text() == "2" and (root / "sub" / "c.txt").read_text() == "3"
    assert (root / "sub" / "d.txt").read_text() == "4" and (root / "e" / "f").is_dir()
    assert not (root / "a").exists()


def test_protected_and_symlinked_targets_are_refused(cli: Cli, root: Path,
                                                     tmp_path: Path) -> None:
    (root / RULE_FILE).write_text('[[rule]]\npaths = ["locked/**"]\nprotect = true\n')
    (root / "locked").mkdir()
    p = apply(cli, root, {"operations": [{"op": "write", "path": "locked/x", "content": "1"}]})
    assert p.returncode == 1 and b"is protected by" in p.stderr
    assert f"{root / RULE_FILE}:3".encode() in p.stderr
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    p = apply(cli, root, {"operations": [{"op": "write", "path": "link/x", "content": "1"}]})
    assert p.returncode == 2 and b"outside the watched roots" in p.stderr
    (root / "flink").symlink_to(root / "locked")
    p = apply(cli, root, {"operations": [{"op": "write", "path": "flink", "content": "1"}]})
    assert p.returncode == 1 and b"is a symlink" in p.stderr
    assert list(outside.iterdir()) == []


def test_locked_targets_are_refused_before_anything_is_written(cli: Cli, root: Path) -> None:
    setup_tree(root)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys; f = open(sys.argv[1], 'r+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()"), str(root / "d.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        p = apply(cli, root, ISSUE_MANIFEST, "--json")
        assert p.returncode == 1
        err = json.loads(p.stdout)["error"]
        assert err["category"] == "lock" and "d.py" in err["path"]
        assert state(root) == expected(OLD)
    finally:
        holder.communicate(b"", timeout=10)
    assert apply(cli, root, ISSUE_MANIFEST).returncode == 0


def test_two_batches_on_one_file_serialise(cli: Cli, root: Path) -> None:
    (root / "x.txt").write_text("0")
    # Another process holds the target's lock, as a running batch does, until told to stop.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom guardian.batch.locks import hold\n"
         "with hold([sys.argv[1].encode()], 5):\n print('held', flush=True)\n"
         " sys.stdin.read()\n", str(root / "x.txt")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=cli.env)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        manifest = {"operations": [{"op": "write", "path": "x.txt", "content": "1"}],
                    "lock_timeout": 0.2}
        p = apply(cli, root, manifest, "--json")
        assert p.returncode == 1, p.stdout
        error = json.loads(p.stdout)["error"]
        assert error["category"] == "lock" and "x.txt" in error["message"]
        # A batch on another file of the same directory is not held up.
        other = {"operations": [{"op": "write", "path": "y.txt", "content": "y"}],
                 "lock_timeout": 0.2}
        assert apply(cli, root, other).returncode == 0
        # A batch that waits long enough gets the lock when the holder lets go.
        manifest["lock_timeout"] = 30
        waiting = subprocess.Popen(
            [sys.executable, "-m", "guardian", "apply", "-", "--root", str(root),
             *(["--store", str(cli.store)] if cli.store else [])], stdin=subprocess.PIPE,
            env=cli.env, cwd=root)
        assert waiting.stdin is not None
        waiting.stdin.write(json.dumps(manifest).encode())
        waiting.stdin.close()
        assert (root / "x.txt").read_text() == "0"
    finally:
        holder.communicate(b"", timeout=10)
    assert waiting.wait(timeout=30) == 0
    assert (root / "x.txt").read_text() == "1"


def _hold_in_other_process(cli: Cli, paths: list[Path]) -> subprocess.Popen[bytes]:
    """A process holding the target locks of ``paths`` (as a running batch does) until its
    stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom guardian.batch.locks import hold\n"
         "with hold([p.encode() for p in sys.argv[1:]], 5):\n print('held', flush=True)\n"
         " sys.stdin.read()\n", *map(str, paths)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=cli.env)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    return holder


def test_a_batch_of_many_files_in_a_directory_locks_the_directory(cli: Cli, root: Path) -> None:
    """Past DIRECTORY_LOCK_MIN targets in one directory a batch takes one lock for the
    directory; it still excludes, both ways, a batch on a single file there."""
    (root / "d").mkdir()
    many = [root / "d" / f"f{i:02d}.txt" for i in range(20)]

    def batch(paths: list[Path]) -> dict:
        return {"operations": [{"op": "write", "path": str(p.relative_to(root)),
                                "content": "new"} for p in paths], "lock_timeout": 0.2}

    holder = _hold_in_other_process(cli, [root / "d" / "one.txt"])
    try:
        p = apply(cli, root, batch(many), "--json")
        assert p.returncode == 1, p.stdout
        assert json.loads(p.stdout)["error"]["category"] == "lock"
        assert not any(f.exists() for f in many)
        # A few files beside the held one are locked one by one: not held up.
        assert apply(cli, root, batch(many[:3])).returncode == 0
    finally:
        holder.communicate(b"", timeout=10)
    holder = _hold_in_other_process(cli, many)
    try:
        p = apply(cli, root, batch([root / "d" / "one.txt"]), "--json")
        assert p.returncode == 1, p.stdout
        assert json.loads(p.stdout)["error"]["category"] == "lock"
        # Another directory is not held up.
        assert apply(cli, root, batch([root / "elsewhere.txt"])).returncode == 0
    finally:
        holder.communicate(b"", timeout=10)
    assert apply(cli, root, batch([root / "d" / "one.txt", *many])).returncode == 0
    assert all(f.read_text() == "new" for f in [root / "d" / "one.txt", *many])


def test_lock_files_of_earlier_versions_are_cleared(cli: Cli, root: Path) -> None:
    """Earlier versions left a lock file per path ever written; the shared lock file replaces
    them, and its first use removes them (and nothing else)."""
    locks = Path(cli.env["XDG_RUNTIME_DIR"]) / "guardian" / "locks"
    locks.mkdir(parents=True, mode=0o700)
    legacy = [locks / f"{i:032x}.lock" for i in range(50)]
    for p in legacy:
        p.write_bytes(b"")
    (locks / "notes.txt").write_text("not ours to remove")
    for _ in range(2):
        assert apply(cli, root, {"operations": [{"op": "write", "path": "x.txt",
                                                 "content": "x"}]}).returncode == 0
    assert sorted(p.name for p in locks.iterdir()) == ["notes.txt", "targets.lock"]
    assert (locks / "targets.lock").stat().st_mode & 0o777 == 0o600


BEFORE_COMMIT = ["batch.start", "batch.locked", "batch.permission", "batch.prepare",
                 "batch.temp_write", "batch.commit"]
# batch.synced: the one syncfs that makes the commit record and the temps durable together
AFTER_COMMIT = ["batch.synced", "batch.committed", "batch.rename", "batch.applied",
                "batch.verify", "batch.done"]


@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
@pytest.mark.parametrize("error", ["EIO", "ENOSPC", "EACCES"])
def test_injected_failures_roll_everything_back(cli: Cli, root: Path, point: str,
                                                error: str) -> None:
    setup_tree(root)
    nth = "@2" if point in ("batch.temp_write", "batch.rename") else ""
    env = dict(cli.env, GUARDIAN_FAULT=f"{point}:{error}{nth}")
    p = apply(cli, root, ISSUE_MANIFEST, "--json", env=env)
    assert p.returncode == 1, (p.returncode, p.stderr)
    err = json.loads(p.stdout)["error"]
    assert f"injected at {point}" in err["message"] or "rolled back" in err["message"]
    assert err["rolled_back"] == (point not in ("batch.start", "batch.locked",
                                                "batch.permission", "batch.prepare"))
    assert assert_all_or_nothing(cli, root) == "old"
    assert not [r for r in _operations(cli) if r[1] == "ok"]


@pytest.mark.parametrize("sync", ["syncfs", "fsync"])
@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
def test_a_kill_at_any_step_is_all_or_nothing_after_recovery(cli: Cli, root: Path,
                                                              point: str, sync: str) -> None:
    setup_tree(root)
    nth = "@2" if point in ("batch.temp_write", "batch.rename") else ""
    env = dict(cli.env, GUARDIAN_FAULT=f"{point}:kill{nth}")
    if sync == "fsync":  # the protocol where no syncfs exists: an fsync per temp
        env["GUARDIAN_NO_SYNCFS"] = "1"
    p = apply(cli, root, ISSUE_MANIFEST, env=env)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr)
    out = cli.json("recover")
    outcome = assert_all_or_nothing(cli, root)
    assert outcome == ("new" if point in AFTER_COMMIT else "old")
    if point in ("batch.start", "batch.locked", "batch.permission", "batch.prepare"):
        assert out["batches"] == []  # killed before anything was journaled
    else:
        [b] = out["batches"]
        assert b["outcome"] == ("completed" if outcome == "new" else "rolled_back")
    # A second apply of the same manifest works (or is refused cleanly if it already applied).
    p = apply(cli, root, ISSUE_MANIFEST)
    assert p.returncode == (0 if outcome == "old" else 1)


def test_recovery_keeps_what_another_program_wrote_meanwhile(cli: Cli, root: Path) -> None:
    setup_tree(root)
    env = dict(cli.env, GUARDIAN_FAULT="batch.committed:kill")
    assert apply(cli, root, ISSUE_MANIFEST, env=env).returncode == -signal.SIGKILL
    # The batch is committed but nothing is in place yet; two programs write targets.
    (root / "a.txt").write_bytes(b"someone else's new file")
    (root / "c.py").write_bytes(b"someone else's edit\n")
    [b] = cli.json("recover")["batches"]
    assert b["outcome"] == "completed"
    assert state(root) == expected(NEW)  # the committed batch wins ...
    for rel, theirs in (("a.txt", b"someone else's new file"),
                        ("c.py", b"someone else's edit\n")):  # ... and nothing is lost
        assert sha256(theirs) in {v["sha256"] for v in cli.log(root / rel)}, rel
    assert cli.json("verify")["ok"] is True


def _stopped(pid: int) -> bool:
    stat_line = Path(f"/proc/{pid}/stat").read_text()
    return stat_line.rpartition(")")[2].split()[0] == "T"


@pytest.mark.parametrize(("target", "point"), [("a.txt", "batch.committed"),
                                               ("c.py", "batch.committed"),
                                               ("d.py", "batch.rename@3"),
                                               ("e.txt", "batch.rename@4")])
def test_another_programs_write_mid_batch_is_never_overwritten(cli: Cli, root: Path,
                                                                target: str,
                                                                point: str) -> None:
    """Another program writes a target after the batch read it (the batch is stopped there;
    at batch.rename@N the N targets before it are in place): the batch refuses to replace
    or delete it, rolls back what it did, and leaves their bytes."""
    setup_tree(root)
    name, _, nth = point.partition("@")
    env = dict(cli.env, GUARDIAN_FAULT=f"{name}:stop" + (f"@{nth}" if nth else ""))
    proc = subprocess.Popen([sys.executable, "-m", "guardian", "apply", "-", "--root",
                             str(root), "--store", str(cli.store), "--json"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(ISSUE_MANIFEST).encode())
    proc.stdin.close()
    try:
        wait_until(lambda: _stopped(proc.pid), what="the batch to stop mid-way")
        theirs = f"another program's {target}\n".encode()
        (root / target).write_bytes(theirs)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert proc.stdout is not None
    with proc.stdout:
        out = json.loads(proc.stdout.read())
    assert proc.wait(timeout=30) == 1
    assert out["error"]["category"] == "conflict" and out["error"]["rolled_back"]
    assert target in out["error"]["message"]
    assert state(root) == {**expected(OLD), target: theirs}  # theirs stays; the rest is old
    assert sha256(theirs) in {v["sha256"] for v in cli.log(root / target)}
    assert not temps(root) and cli.json("verify")["ok"] is True


def test_apply_recovers_an_interrupted_batch_first(cli: Cli, root: Path) -> None:
    setup_tree(root)
    env = dict(cli.env, GUARDIAN_FAULT="batch.rename:kill@3")
    assert apply(cli, root, ISSUE_MANIFEST, env=env).returncode == -signal.SIGKILL
    assert temps(root)  # the crash left work in flight
    p = apply(cli, root, {"operations": [{"op": "write", "path": "later.txt",
                                          "content": "after"}]})
    assert p.returncode == 0, p.stderr
    assert state(root) == expected(NEW) and (root / "later.txt").exists()
    assert not temps(root)


def test_permission_errors_as_an_unprivileged_user(cli: Cli, root: Path, tmp_path: Path) -> None:
    from .test_bad_input import NOBODY, _can_run_as_nobody

    why = _can_run_as_nobody()
    if why:
        pytest.skip(why)
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="gbatch", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        r = base / "root"
        r.mkdir()
        (r / "mine.txt").write_text("nobody's")
        (r / "roots.txt").write_text("root's")       # owned by root, 0644: not writable
        (r / "ro-dir").mkdir()                        # owned by root: cannot create in it
        for p in (r, r / "mine.txt"):
            os.chown(p, 65534, 65534)
        for d in ("store", "state", "run"):
            (base / d).mkdir()
            os.chown(base / d, 65534, 65534)
        env = dict(cli.env, XDG_STATE_HOME=str(base / "state"),
                   XDG_RUNTIME_DIR=str(base / "run"))
        for ops, needle in [([{"op": "write", "path": "mine.txt", "content": "new"},
                              {"op": "write", "path": "roots.txt", "content": "new"}],
                             b"roots.txt: is not writable: permission denied"),
                            ([{"op": "write", "path": "mine.txt", "content": "new"},
                              {"op": "write", "path": "ro-dir/x/y.txt", "content": "new"}],
                             b"cannot create its directory in")]:
            p = subprocess.run([*NOBODY, sys.executable, "-m", "guardian", "apply", "-",
                                "--root", str(r), "--store", str(base / "store")],
                               input=json.dumps({"operations": ops}).encode(),
                               capture_output=True, env=env, timeout=60, check=False)
            assert p.returncode == 1 and needle in p.stderr, p.stderr
            assert (r / "mine.txt").read_text() == "nobody's"
        assert not list(r.rglob(".~guardian.*"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_through_a_running_daemon(cli: Cli, root: Path, watch) -> None:
    setup_tree(root)
    w = watch(root)
    m = w.mark()
    p = apply(cli, root, ISSUE_MANIFEST, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    w.wait(lambda e: e["event"] == "version" and e["origin"] == "batch"
           and e["path"] == str(root / "c.py"), start=m)
    cli.json("snapshot")  # barrier: the watcher has seen the renames
    log = cli.json("log", str(root / "c.py"))["versions"]
    assert [v["origin"] for v in log[:2]] == ["batch", "scan"]
    assert not [v for v in cli.log(root) if v["origin"] == "watcher"]
    assert out["batch"] and state(root) == expected(NEW)
    # A big batch (unnamed temps linked into place, replaced files released afterwards):
    # one version per file, all from the batch, none from the watcher.
    (root / "many").mkdir()
    for i in range(100):
        (root / "many" / f"old{i}.txt").write_text(f"old {i}\n")
    cli.json("snapshot")
    before = max(v["id"] for v in cli.log(root))
    big = {"operations": [{"op": "write", "path": f"many/{kind}{i}.txt",
                           "content": f"{kind} {i} new\n"}
                          for kind in ("old", "new") for i in range(100)]}
    assert apply(cli, root, big).returncode == 0
    cli.json("snapshot")
    versions = [v for v in cli.log(root) if v["id"] > before]
    assert sorted(v["path"] for v in versions) == sorted(
        str(root / "many" / f"{kind}{i}.txt") for kind in ("old", "new") for i in range(100))
    assert {v["origin"] for v in versions} == {"batch"}
    assert all((root / "many" / f"{k}{i}.txt").read_text() == f"{k} {i} new\n"
               for k in ("old", "new") for i in range(100))
    # A refused batch through the daemon reports the same structured error.
    p = apply(cli, root, {"operations": [{"op": "write", "path": "x.json", "content": "{,}"}]},
              "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["error"]["category"] == "validation"
    assert w.proc.poll() is None


def test_python_async_api(root: Path, env: dict[str, str], store: Path, monkeypatch) -> None:
    import anyio

    from guardian import Batch, BatchError  # the README's names, loaded on first use

    for k in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(k, env[k])
    setup_tree(root)

    async def main() -> None:
        result = await (Batch(root, store=str(store))
                        .write("a.txt", "text").write("b.bin", b"\0\1\2")
                        .edit("c.py", "x = 1", "x = 2")
                        .edit("d.py", patch=ISSUE_MANIFEST["operations"][3]["patch"])
                        .delete("e.txt")
                        .render("f.txt", "Hello $name", vars={"name": "x"})
                        .mkdir("g/h").commit())
        assert result.batch_id and len(result.files) == 7
        with pytest.raises(BatchError) as info:
            await Batch(root, store=str(store)).write("z.json", "{").commit()
        assert info.value.category == "validation" and info.value.line == 1

    anyio.run(main)
    assert state(root) == expected(NEW) and not (root / "z.json").exists()


def _recover_or_explain(cli: Cli, timeout: float = 60) -> bool:
    """`guardian recover`; if it does not finish, fail with where it was stuck (the kernel's
    wait channel and every Python thread's stack, from faulthandler on SIGABRT)."""
    proc = subprocess.Popen([sys.executable, "-m", "guardian", "recover", "--json", "--store",
                             str(cli.store)], env=dict(cli.env, PYTHONFAULTHANDLER="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        wchan = Path(f"/proc/{proc.pid}/wchan").read_text(errors="replace")
        proc.send_signal(signal.SIGABRT)
        _out, err = proc.communicate(timeout=30)
        pytest.fail(f"recover stuck for {timeout}s in {wchan!r}:\n"
                    f"{err.decode(errors='replace')}")
    if proc.returncode == 2 and b"no Guardian store at" in err:
        return False  # no store yet: nothing was journaled, so nothing was written
    assert proc.returncode == 0, err
    return True


@pytest.mark.stress
@pytest.mark.timeout(3600)  # hundreds of rounds of a second each: not the suite's 120 s
def test_random_kills_hundreds_of_times(cli: Cli, root: Path) -> None:
    """Real SIGKILLs at random moments of real `guardian apply` processes."""
    rng = random.Random(1234)
    files = 40
    for i in range(files):
        (root / f"f{i}.txt").write_text(f"gen 0 file {i}\n")
    gen = 0
    outcomes = {"old": 0, "new": 0}
    window = 0.4  # kills fall within this many seconds of the start...
    for r in range(int(os.environ.get("GUARDIAN_STRESS_ROUNDS", "300"))):
        manifest = {"operations": [{"op": "write", "path": f"f{i}.txt",
                                    "content": f"gen {gen + 1} file {i}\n"}
                                   for i in range(files)]
                    # and new files (unnamed temps, linked into place)
                    + [{"op": "write", "path": f"new/g{gen + 1}/n{i}.txt",
                        "content": f"gen {gen + 1} new {i}\n"} for i in range(files)]}
        proc = subprocess.Popen([sys.executable, "-m", "guardian", "apply", "-", "--root",
                                 str(root), "--store", str(cli.store)], stdin=subprocess.PIPE,
                                env=cli.env, cwd=root, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(manifest).encode())
        proc.stdin.close()
        t0 = time.monotonic()
        if r % 10 == 0:  # ...or of how long a whole apply takes here (a loaded machine)
            proc.wait()
            window = max(window, 1.2 * (time.monotonic() - t0))
        time.sleep(rng.uniform(0.0, window))  # a random moment: this is the point of the test
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not _recover_or_explain(cli):  # killed before its store was made (a loaded machine)
            assert {(root / f"f{i}.txt").read_text() for i in range(files)} == {
                f"gen 0 file {i}\n" for i in range(files)} and not temps(root)
            outcomes["old"] += 1
            continue
        contents = {(root / f"f{i}.txt").read_text() for i in range(files)}
        gens = {c.split()[1] for c in contents}
        assert len(gens) == 1, contents  # every file old, or every file new
        fresh = [(root / f"new/g{gen + 1}/n{i}.txt") for i in range(files)]
        if gens == {str(gen + 1)}:
            assert [p.read_text() for p in fresh] == [f"gen {gen + 1} new {i}\n"
                                                      for i in range(files)]
        else:
            assert not any(p.exists() for p in fresh)
        if gens == {str(gen + 1)}:
            gen += 1
            outcomes["new"] += 1
        else:
            outcomes["old"] += 1
        assert not temps(root)
    assert cli.json("verify")["ok"] is True
    assert outcomes["new"] and outcomes["old"], outcomes


@pytest.mark.parametrize("limit", [256, 1500])
def test_a_batch_bigger_than_the_descriptor_limit(cli: Cli, root: Path, limit: int) -> None:
    """Unnamed temps and replaced files are held open only while descriptors allow: past
    the limit (which cannot be raised here) temps get names and old files are closed."""
    import resource

    for i in range(400):
        (root / f"old{i}.txt").write_text(f"old {i}\n")
    manifest = {"operations": [{"op": "write", "path": f"{kind}{i}.txt",
                                "content": f"{kind} {i} new\n"}
                               for kind in ("old", "new") for i in range(400)]}

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    p = subprocess.run([sys.executable, "-m", "guardian", "apply", "-", "--root", str(root),
                        "--store", str(cli.store), "--json"], input=json.dumps(manifest).encode(),
                       capture_output=True, env=cli.env, cwd=root, preexec_fn=low_limit,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert all((root / f"{k}{i}.txt").read_text() == f"{k} {i} new\n"
               for k in ("old", "new") for i in range(400))
    assert not temps(root) and cli.json("verify")["ok"] is True


def test_replaced_files_are_freed_after_the_command_exits(cli: Cli, root: Path) -> None:
    """`guardian apply` hands the replaced files it still holds to a detached child, which
    holds no pipe of ours (the command's output ends when it exits) and no store lock (the
    next command runs at once), and frees them."""
    n = 64  # more than release_later closes inline
    for i in range(n):
        (root / f"f{i}.txt").write_text(f"old {i}\n")
    marker = f"m-{os.getpid()}.json"
    manifest = root.parent / marker
    manifest.write_text(json.dumps({"operations": [
        {"op": "write", "path": f"f{i}.txt", "content": f"new {i}\n"} for i in range(n)]}))
    p = cli.run("apply", str(manifest), "--root", str(root), timeout=60)  # pipes: must end
    assert p.returncode == 0, p.stderr
    assert [(root / f"f{i}.txt").read_text() for i in range(n)] == [f"new {i}\n"
                                                                     for i in range(n)]
    assert cli.json("verify")["ok"] is True  # the writer lock is free: no wait

    def detached_gone() -> bool:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd:
                return False
        return True

    wait_until(detached_gone, what="the detached child to free the replaced files and exit")
    log = cli.json("log", str(root / "f0.txt"))["versions"]
    assert [v["sha256"] for v in log] == [sha256(b"new 0\n"), sha256(b"old 0\n")]


def test_mode_and_owner_are_kept(cli: Cli, root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file another owner")
    f = root / "owned.txt"
    f.write_text("before")
    os.chown(f, 65534, 65534)
    os.chmod(f, 0o640)
    p = apply(cli, root, {"operations": [{"op": "write", "path": "owned.txt",
                                          "content": "after"}]})
    assert p.returncode == 0, p.stderr
    st = f.stat()
    assert f.read_text() == "after"
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)
    p = apply(cli, root, {"operations": [{"op": "write", "path": "owned.txt",
                                          "content": "again", "mode": "0600"}]})
    assert p.returncode == 0 and f.stat().st_mode & 0o7777 == 0o600


def test_daemon_recovers_an_interrupted_batch_at_start(cli: Cli, root: Path, watch) -> None:
    setup_tree(root)
    env = dict(cli.env, GUARDIAN_FAULT="batch.rename:kill@2")
    assert apply(cli, root, ISSUE_MANIFEST, env=env).returncode == -signal.SIGKILL
    w = watch(root)
    w.wait(lambda e: e["event"] == "warning" and "recovered batch" in e["message"])
    assert state(root) == expected(NEW) and not temps(root)


@pytest.mark.timeout(300)  # two tables of whole processes against fsync-bound baselines
def test_the_batch_benchmark_group_runs(cli: Cli, tmp_path: Path) -> None:
    """`python -m bench --quick batch`: every row measured beside its baseline."""
    repo = Path(__file__).resolve().parent.parent
    env = {**cli.env, "TMPDIR": str(tmp_path), "PYTHONPATH": str(repo)}
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", "batch"],
                       capture_output=True, env=env, cwd=repo, timeout=300)
    assert p.returncode in (0, 1), p.stderr.decode()[-2000:]
    tables = {t["name"]: t for t in json.loads(p.stdout)["tables"]}
    assert set(tables) == {"batch.large", "batch.imports", "batch.apply"}
    for table in tables.values():
        assert not table.get("error"), table
        for row in table["rows"]:
            assert row["value"] > 0 and row["baseline"] > 0, row
    for row in tables["batch.imports"]["rows"]:  # the import check beside the same batch
        assert row["result"] in ("PASS", "FAIL")
    whole = {r["metric"] for r in tables["batch.apply"]["rows"]}
    kinds = {"first apply, new store: 100 files", "second apply, same store: 100 files",
             "new files, same store: 50 files"}
    floors = {"floor: " + k.replace(":", ",") + ", only the I/O" for k in kinds}
    assert {f"{k} (s)" for k in kinds | floors} == whole
    rows = {r["metric"]: r for r in tables["batch.large"]["rows"]}
    for what in ("new files", "rewrites"):
        for base in ("naive loop", "no sync at all"):
            row = rows[f"{what}: batch vs {base} (s)"]
            assert row["value"] > 0 and row["baseline"] > 0 and row["result"] in ("PASS", "FAIL")
    assert rows["new files: I/O floor + hashes and rows vs no sync at all (s)"]["value"] > 0


def test_guardian_bench_runs_the_seed_scenarios(cli: Cli, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    p = cli.run("bench", "--files", "12", "--repeats", "1", "--large", "16", "--dir",
                str(scratch), "--json", store=False, timeout=300)
    out = json.loads(p.stdout)
    assert p.returncode == (0 if out["passed"] else 1), p.stderr
    assert set(out["scenarios"]) == {"batch_operations", "template_operations",
                                     "incremental_updates"}
    for s in out["scenarios"].values():
        assert s["success_rate"] == 1.0 and s["naive_s"] > 0 and s["optimised_s"] > 0
    assert out["overall"]["zero_data_loss"] is True
    assert out["overall"]["optimization_rate"] > 0.4  # read from the operations table
    checks = {c["check"] for c in out["checks"]}
    assert {"batch_operations.improvement", "template_operations.template_reuse_rate",
            "incremental_updates.data_integrity", "overall.net_performance_gain",
            "overall.zero_data_loss"} <= checks
    assert out["large_batch"]["files"] == 16 and out["large_rewrite"]["files"] == 16
    for key in ("large_batch", "large_rewrite"):  # both floors, and the ratios to them
        big = out[key]
        assert big["io_rows_floor_s"] > 0 and big["protocol_floor_s"] > 0
        assert f"{key}.vs_floor" in checks and f"{key}.vs_protocol_floor" in checks
    assert not list(scratch.iterdir())  # the scratch tree is removed
    text = cli.run("bench", "--files", "4", "--repeats", "1", "--large", "0", "--dir",
                   str(scratch), store=False, timeout=300)
    assert b"ACCEPTANCE: " in text.stdout and b"improvement" in text.stdout
    bad = cli.run("bench", "--files", "0", store=False)
    assert bad.returncode == 2 and bad.stderr.count(b"\n") == 1


def test_a_large_batch_stores_every_old_and_new_content_exactly(cli: Cli, root: Path) -> None:
    """Past 256 KiB the contents are compressed and hashed on a thread while the checks
    run (guardian.batch.digests): each one is still stored under its own hash, compressed
    where that makes it smaller, and both the new and the replaced contents come back whole."""
    import base64
    import sqlite3

    rng = random.Random(7)
    old = {f"d/t{i}.txt": (f"old text {i}\n" * 300).encode() for i in range(60)}
    for rel, data in old.items():
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_bytes(data)
    new = {rel: (f"new text {i}\n" * 300).encode() for i, rel in enumerate(old)}
    new.update({f"d/r{i}.bin": rng.randbytes(4096) for i in range(60)})
    manifest = {"operations": [{"op": "write", "path": rel,
                                "content_base64": base64.b64encode(data).decode()}
                               for rel, data in new.items()]}
    p = apply(cli, root, manifest, "--json")
    assert p.returncode == 0, p.stderr
    assert {rel: (root / rel).read_bytes() for rel in new} == new
    db = sqlite3.connect(f"file:{cli.store / 'guardian.db'}?mode=ro", uri=True)
    try:
        codecs = {bytes(h).hex(): c for h, c in db.execute("SELECT hash, codec FROM objects")}
    finally:
        db.close()
    for rel, data in new.items():  # text shrinks; random bytes are kept as they are
        assert codecs[sha256(data)] == ("raw" if rel.endswith(".bin") else "zstd"), rel
    assert all(sha256(data) in codecs for data in old.values())
    assert cli.json("verify")["ok"] is True
    rel = "d/t5.txt"
    before = cli.json("log", str(root / rel))["versions"][1]
    shown = cli.run("show", str(root / rel), "--version", str(before["id"]), check=True)
    assert shown.stdout == old[rel]
