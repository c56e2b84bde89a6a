"""The commands' behaviour, output shapes (``--json`` is an API) and exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import Cli, sha256

VERSION_KEYS = {"id", "path", "root", "relpath", "time", "time_ns", "kind", "origin", "present",
                "size", "mode", "type", "sha256", "valid", "session", "note"}


def snap(cli: Cli, *paths: Path) -> dict:
    return cli.json("snapshot", *map(str, paths), cwd=cli.cwd / "root")


def test_version_help_and_module_entry(cli: Cli) -> None:
    from guardian import __version__

    out = cli.run("--version", check=True).stdout.decode()
    assert out.strip() == f"guardian {__version__}"
    helptext = cli.run("--help", check=True).stdout.decode()
    for command in ("watch", "snapshot", "log", "show", "diff", "restore", "status", "verify",
                    "gc"):
        assert command in helptext
    for command in ("watch", "restore", "gc"):
        assert "--store" in cli.run(command, "--help", check=True, store=False).stdout.decode()


def test_status_spellings_parsed_without_argparse_match_argparse(cli: Cli, root: Path) -> None:
    """`status` and `--version` skip argparse (start-up time); every spelling still works,
    and anything else falls through to argparse's one-line errors and help."""
    cli.run("snapshot", str(root), check=True)
    store = str(cli.store)
    plain = cli.run("status", "--store", store, store=False, check=True).stdout
    assert cli.run("status", f"--store={store}", store=False, check=True).stdout == plain
    a = cli.run("status", "--json", "--store", store, store=False, check=True).stdout
    b = cli.run("status", "--store", store, "--json", store=False, check=True).stdout
    assert json.loads(a) == json.loads(b) and json.loads(a)["store"] == store
    bad = cli.run("status", "--bogus", store=False)
    assert bad.returncode == 2 and bad.stderr.count(b"\n") == 1 and b"--bogus" in bad.stderr
    missing = cli.run("status", "--store", store=False)
    assert missing.returncode == 2 and b"--store" in missing.stderr
    assert b"--json" in cli.run("status", "--help", store=False, check=True).stdout


def test_console_script_is_installed(tmp_path: Path) -> None:
    """pip install puts a `guardian` command beside the interpreter; it runs from any
    directory and loads no ``re`` before the CLI does (pip's console-script wrapper did)."""
    script = Path(sys.executable).parent / "guardian"
    assert script.exists(), "pip install should put a `guardian` script beside the interpreter"
    p = subprocess.run([str(script), "--version"], capture_output=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}, timeout=60,
                       check=False)
    assert p.returncode == 0 and p.stdout.startswith(b"guardian "), p
    loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.decode().splitlines()
              if line.startswith("import time:")}
    assert "guardian.cli.main" in loaded and "re" not in loaded


def test_usage_errors_are_one_line_exit_2(cli: Cli, root: Path) -> None:
    for args in (["log", "--bogus"], ["show"], ["restore", str(root), "--at", "yesterday-ish"],
                 ["watch", str(root / "nope")]):
        p = cli.run(*args)
        err = p.stderr.decode()
        assert p.returncode == 2, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err


def test_snapshot_log_show_json_shapes(cli: Cli, root: Path) -> None:
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_bytes(b"beta\n")
    out = snap(cli)
    assert out["recorded"] == 2 and out["unchanged"] == 0
    (root / "a.txt").write_bytes(b"alpha 2\n")
    out = snap(cli)
    assert out["recorded"] == 1 and out["unchanged"] == 1
    log = cli.json("log", str(root / "a.txt"))["versions"]
    assert [v["kind"] for v in log] == ["modified", "created"]
    for v in log:
        assert set(v) == VERSION_KEYS
        assert v["origin"] == "snapshot" and v["present"] and v["type"] == "file"
        assert v["path"] == str(root / "a.txt") and v["relpath"] == "a.txt"
        assert v["root"] == str(root)
        assert "T" in v["time"] and isinstance(v["time_ns"], int)
        assert stat.S_ISREG(v["mode"])
    assert log[0]["sha256"] == sha256(b"alpha 2\n") and log[0]["size"] == 8
    # sha256 is what sha256sum prints of the raw bytes.
    assert log[1]["sha256"] == sha256(b"alpha\n")
    shown = cli.run("show", str(root / "a.txt"), "--version", str(log[1]["id"]), check=True)
    assert shown.stdout == b"alpha\n"
    assert cli.run("show", str(root / "a.txt"), check=True).stdout == b"alpha 2\n"
    # A directory lists the versions of everything under it; no path: the whole store.
    assert {v["relpath"] for v in cli.json("log", str(root / "sub"))["versions"]} == {"sub/b.txt"}
    assert len(cli.json("log")["versions"]) == 3
    human = cli.run("log", str(root / "a.txt"), check=True).stdout.decode()
    assert "modified" in human and log[0]["sha256"][:12] in human


def test_store_is_found_from_any_directory_under_its_root(cli: Cli, root: Path, env) -> None:
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "f.txt").write_text("x")
    p = cli.run("snapshot", "--json", store=False, cwd=root)
    assert p.returncode == 0, p.stderr
    stores = list((Path(env["XDG_STATE_HOME"]) / "guardian" / "stores").iterdir())
    assert len(stores) == 1
    assert stat.S_IMODE(stores[0].stat().st_mode) == 0o700
    assert stat.S_IMODE((stores[0] / "guardian.db").stat().st_mode) == 0o600
    log = cli.run("log", "f.txt", "--json", store=False, cwd=root / "deep" / "er")
    assert log.returncode == 0, log.stderr
    assert json.loads(log.stdout)["versions"][0]["relpath"] == "deep/er/f.txt"
    elsewhere = cli.run("log", store=False, cwd=root.parent)
    assert elsewhere.returncode == 2 and b"no Guardian store covers" in elsewhere.stderr


def test_show_at_time_and_errors(cli: Cli, root: Path) -> None:
    f = root / "f.txt"
    f.write_text("one")
    snap(cli)
    t_between = time.time_ns()
    f.write_text("two")
    snap(cli)
    at = f"@{t_between / 1e9:.6f}"
    assert cli.run("show", str(f), "--at", at, check=True).stdout == b"one"
    p = cli.run("show", str(f), "--at", "10m ago")
    assert p.returncode == 2 and b"no version recorded at or before" in p.stderr
    f.unlink()
    snap(cli)
    # The newest version is a deletion: show gives the last content; --version of the tombstone
    # says there is none.
    assert cli.run("show", str(f), check=True).stdout == b"two"
    tomb = cli.json("log", str(f))["versions"][0]
    p = cli.run("show", str(f), "--version", str(tomb["id"]))
    assert p.returncode == 1 and b"deletion" in p.stderr
    p = cli.run("show", str(root / "never.txt"))
    assert p.returncode == 2 and b"no recorded versions" in p.stderr
    p = cli.run("show", str(f), "--version", "999999")
    assert p.returncode == 2 and b"does not exist" in p.stderr
    p = cli.run("show", "/etc/passwd")
    assert p.returncode == 2 and b"outside the watched roots" in p.stderr


def test_diff_between_versions_and_disk(cli: Cli, root: Path) -> None:
    f = root / "code.py"
    f.write_text("a = 1\nb = 2\n")
    snap(cli)
    f.write_text("a = 1\nb = 3\n")
    p = cli.run("diff", str(f), check=True)
    text = p.stdout.decode()
    assert "-b = 2\n" in text and "+b = 3\n" in text and "(on disk)" in text
    snap(cli)
    first, second = reversed(cli.json("log", str(f))["versions"])
    text = cli.run("diff", str(f), "--from", str(first["id"]), "--to", str(second["id"]),
                   check=True).stdout.decode()
    assert "-b = 2" in text and "+b = 3" in text
    assert cli.run("diff", str(f), check=True).stdout == b""  # disk equals the newest version
    assert cli.run("diff", str(f), "--exit-code", "--from", str(first["id"])).returncode == 1
    (root / "blob.bin").write_bytes(b"\0\1\2")
    snap(cli)
    (root / "blob.bin").write_bytes(b"\0\1\3")
    assert b"Binary files" in cli.run("diff", str(root / "blob.bin"), check=True).stdout


def test_restore_file_version_keeps_mode_and_stores_current_first(cli: Cli, root: Path) -> None:
    f = root / "tool.sh"
    f.write_text("#!/bin/sh\necho v1\n")
    os.chmod(f, 0o750)
    snap(cli)
    v1 = cli.json("log", str(f))["versions"][0]["id"]
    f.write_text("#!/bin/sh\necho v2 unsaved\n")  # never recorded: restore must keep it
    out = cli.json("restore", str(f), "--version", str(v1))
    assert [c["action"] for c in out["changes"]] == ["write"]
    assert f.read_text() == "#!/bin/sh\necho v1\n"
    assert stat.S_IMODE(f.stat().st_mode) == 0o750
    log = cli.json("log", str(f))["versions"]
    assert [v["kind"] for v in log] == ["restored", "modified", "created"]
    assert log[1]["sha256"] == sha256(b"#!/bin/sh\necho v2 unsaved\n")
    assert log[1]["origin"] == "restore"
    # Restoring what is already there changes nothing.
    out = cli.json("restore", str(f), "--version", str(v1))
    assert out["changes"] == [] and out["unchanged"] == 1
    # A version of another file is refused.
    (root / "other.txt").write_text("o")
    snap(cli)
    other = cli.json("log", str(root / "other.txt"))["versions"][0]["id"]
    p = cli.run("restore", str(f), "--version", str(other))
    assert p.returncode == 2 and b"not a version of" in p.stderr


def test_restore_directory_at_time(cli: Cli, root: Path) -> None:
    d = root / "proj"
    (d / "pkg").mkdir(parents=True)
    (d / "keep.txt").write_text("keep v1")
    (d / "pkg" / "gone.txt").write_text("will be deleted")
    (d / "edit.txt").write_text("edit v1")
    (root / "outside-proj.txt").write_text("untouched")
    snap(cli)
    t = time.time_ns()
    (d / "pkg" / "gone.txt").unlink()
    (d / "edit.txt").write_text("edit v2")
    (d / "new" / "deeper").mkdir(parents=True)
    (d / "new" / "deeper" / "made-later.txt").write_text("created after t")
    (root / "outside-proj.txt").write_text("changed outside the restored dir")
    at = f"@{t / 1e9:.6f}"
    dry = cli.json("restore", str(d), "--at", at, "--dry-run")
    actions = {c["relpath"]: c["action"] for c in dry["changes"]}
    assert actions == {"proj/pkg/gone.txt": "write", "proj/edit.txt": "write",
                       "proj/new/deeper/made-later.txt": "delete"}
    assert (d / "new" / "deeper" / "made-later.txt").exists()  # a dry run changes nothing
    out = cli.json("restore", str(d), "--at", at)
    assert {c["relpath"]: c["action"] for c in out["changes"]} == actions
    assert (d / "pkg" / "gone.txt").read_text() == "will be deleted"
    assert (d / "edit.txt").read_text() == "edit v1"
    assert (d / "keep.txt").read_text() == "keep v1"
    assert not (d / "new").exists()  # emptied directories go too
    assert (root / "outside-proj.txt").read_text() == "changed outside the restored dir"
    # Nothing was lost: the removed file and the overwritten edit are in the store.
    later = cli.json("log", str(d / "new" / "deeper" / "made-later.txt"))["versions"]
    assert any(v["sha256"] == sha256(b"created after t") for v in later)
    edits = cli.json("log", str(d / "edit.txt"))["versions"]
    assert any(v["sha256"] == sha256(b"edit v2") for v in edits)
    p = cli.run("restore", str(d))
    assert p.returncode == 2 and b"--at" in p.stderr


def test_restore_never_writes_through_a_symlink_out_of_the_root(cli: Cli, root: Path,
                                                                 tmp_path: Path) -> None:
    (root / "proj" / "dir").mkdir(parents=True)
    (root / "proj" / "dir" / "f.txt").write_text("mine")
    snap(cli)
    t = time.time_ns()
    v = cli.json("log", str(root / "proj" / "dir" / "f.txt"))["versions"][0]["id"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "proj" / "dir" / "f.txt").unlink()
    (root / "proj" / "dir").rmdir()
    (root / "proj" / "dir").symlink_to(outside)
    # Named through the link, the path resolves outside the root: refused.
    p = cli.run("restore", str(root / "proj" / "dir" / "f.txt"), "--version", str(v))
    assert p.returncode == 2 and b"outside the watched roots" in p.stderr
    p = cli.run("restore", str(root / ".." / "x"), "--version", str(v))
    assert p.returncode == 2 and b"outside the watched roots" in p.stderr
    # Restoring the directory as it was: the link (made later) goes, a real directory returns.
    out = cli.json("restore", str(root / "proj"), "--at", f"@{t / 1e9:.6f}")
    assert {c["relpath"]: c["action"] for c in out["changes"]} == {
        "proj/dir": "delete", "proj/dir/f.txt": "write"}
    assert list(outside.iterdir()) == []
    assert not (root / "proj" / "dir").is_symlink()
    assert (root / "proj" / "dir" / "f.txt").read_text() == "mine"
    assert [v["type"] for v in cli.json("log", str(root / "proj" / "dir"))["versions"]
            if v["relpath"] == "proj/dir" and v["present"]] == ["symlink"]


def test_restore_through_a_running_daemon(cli: Cli, root: Path, watch) -> None:
    f = root / "f.txt"
    f.write_text("v1")
    w = watch(root)
    m = w.mark()
    f.write_text("v2")
    w.version(f, "modified", start=m)
    v1 = cli.json("log", str(f))["versions"][-1]["id"]
    m = w.mark()
    out = cli.json("restore", str(f), "--version", str(v1))
    assert out["changes"][0]["action"] == "write" and f.read_text() == "v1"
    w.version(f, "restored", start=m)
    # The daemon recognises its own write: no extra "modified" version follows.
    cli.json("snapshot", str(f))
    assert [v["kind"] for v in cli.json("log", str(f))["versions"]] == [
        "restored", "modified", "baseline"]


def test_status_without_and_with_daemon(cli: Cli, root: Path, watch) -> None:
    (root / "a").write_text("a")
    snap(cli)
    st = cli.json("status")
    assert st["running"] is False and st["files"] == 1 and st["versions"] == 1
    assert st["roots"] == [str(root)] and st["store_bytes"] > 0
    w = watch(root)
    st = cli.json("status")
    assert st["running"] is True and st["pid"] == w.proc.pid and st["files"] == 1
    for key in ("roots", "files", "versions", "store_bytes", "last_event", "reconcile_count"):
        assert key in st
    human = cli.run("status", check=True).stdout.decode()
    assert f"running (pid {w.proc.pid})" in human


def test_verify_finds_flipped_bytes_in_loose_and_database_objects(cli: Cli, root: Path,
                                                                   store: Path) -> None:
    big = os.urandom(300 * 1024)
    (root / "big.bin").write_bytes(big)
    (root / "small.txt").write_text("small text content " * 10)
    snap(cli)
    assert cli.json("verify")["ok"] is True
    loose = store / "objects" / sha256(big)[:2] / sha256(big)[2:]
    assert loose.exists() and stat.S_IMODE(loose.stat().st_mode) == 0o400
    os.chmod(loose, 0o600)
    data = bytearray(loose.read_bytes())
    data[len(data) // 2] ^= 0xFF
    loose.write_bytes(bytes(data))
    db = sqlite3.connect(store / "guardian.db")
    (blob,) = db.execute("SELECT data FROM objects WHERE loose=0").fetchone()
    flipped = bytearray(blob)
    flipped[-5] ^= 0x01
    db.execute("UPDATE objects SET data=? WHERE loose=0", (bytes(flipped),))
    db.commit()
    db.close()
    p = cli.run("verify", "--json")
    assert p.returncode == 1
    report = json.loads(p.stdout)
    assert report["ok"] is False
    bad = {c["sha256"]: c for c in report["corrupt"]}
    assert set(bad) == {sha256(big), sha256(b"small text content " * 10)}
    assert bad[sha256(big)]["loose"] is True
    assert bad[sha256(big)]["versions"][0]["path"] == str(root / "big.bin")
    human = cli.run("verify")
    assert human.returncode == 1 and b"used by version" in human.stdout
    # show refuses to hand out damaged bytes.
    p = cli.run("show", str(root / "big.bin"))
    assert p.returncode != 0 and b"does not match" in p.stderr


def test_gc_applies_retention_and_keeps_newest(cli: Cli, root: Path) -> None:
    f = root / "f.txt"
    for i in range(5):
        f.write_text(f"v{i}")
        snap(cli)
    (root / "gone.txt").write_text("bye")
    snap(cli)
    (root / "gone.txt").unlink()
    snap(cli)
    dry = cli.json("gc", "--keep-versions", "2", "--keep-days", "0", "--dry-run")
    assert dry["dry_run"] and dry["versions_dropped"] == 3
    assert len(cli.json("log", str(f))["versions"]) == 5
    out = cli.json("gc", "--keep-versions", "2", "--keep-days", "0")
    assert out["versions_dropped"] == 3 and out["objects_dropped"] == 3
    log = cli.json("log", str(f))["versions"]
    assert [cli.run("show", str(f), "--version", str(v["id"]), check=True).stdout
            for v in log] == [b"v4", b"v3"]
    out = cli.json("gc", "--keep-versions", "1", "--keep-days", "0")
    assert cli.run("show", str(f), check=True).stdout == b"v4"
    assert cli.json("verify")["ok"] is True
    # Default retention (100 versions, 30 days) drops nothing young.
    assert cli.json("gc")["versions_dropped"] == 0
    p = cli.run("gc", "--keep-versions", "0")
    assert p.returncode == 2


def test_non_utf8_names_round_trip(cli: Cli, root: Path) -> None:
    name = b"caf\xe9-\xff.txt"
    path = os.path.join(os.fsencode(root), name)
    with open(path, "wb") as f:
        f.write(b"latin-1 name")
    out = snap(cli)
    assert out["recorded"] == 1
    log = cli.run("log", check=True).stdout.decode()
    assert "caf\\xe9-\\xff.txt" in log
    entry = cli.json("log")["versions"][0]
    assert os.fsencode(entry["relpath"]) == name
    os.unlink(path)
    p = cli.run("restore", os.fsdecode(path), "--version", str(entry["id"]))
    assert p.returncode == 0, p.stderr
    with open(path, "rb") as f:
        assert f.read() == b"latin-1 name"


@pytest.mark.parametrize("spec", ["15m", "2h ago", "2026-01-02T03:04:05", "2026-01-02",
                                  "@1700000000"])
def test_time_specs_accepted(cli: Cli, root: Path, spec: str) -> None:
    (root / "f").write_text("x")
    snap(cli)
    p = cli.run("show", str(root / "f"), "--at", spec)
    assert p.returncode in (0, 2)
    assert b"not a time" not in p.stderr


def test_verify_shows_progress_on_a_terminal_only(cli: Cli, root: Path, store: Path) -> None:
    import pty
    import subprocess

    for i in range(30):
        (root / f"f{i}").write_text(f"content {i}" * 20)
    snap(cli)
    plain = cli.run("verify", check=True)
    assert b"[" not in plain.stderr  # not a terminal: no progress bar
    controller, terminal = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "guardian", "verify", "--store", str(store)],
                           stdout=terminal, stderr=terminal, env=cli.env, timeout=60,
                           check=False)
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        out = b"".join(chunks)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert p.returncode == 0
    assert b"verify [" in out and b"30/30" in out and b"objects" in out


@pytest.mark.parametrize("argv", [
    ["snapshot"], ["snapshot", "a", "b"], ["snapshot", "--json", "--full", "x"],
    ["snapshot", "--store", "/s", "--session", "abc", "p"], ["snapshot", "--store=/s", "p"],
    ["snapshot", "--session=s1", "--", "--weird-name"], ["snapshot", "-"],
])
def test_the_quick_snapshot_parser_agrees_with_argparse(argv: list[str]) -> None:
    from guardian.cli.parser import build_parser
    from guardian.cli.quick import snapshot_args as quick_snapshot_args

    quick = quick_snapshot_args(argv)
    full = build_parser().parse_args(argv)
    assert quick is not None
    for key in ("command", "paths", "full", "json", "session", "store", "func"):
        assert getattr(quick, key) == getattr(full, key), key


@pytest.mark.parametrize("argv", [["snapshot", "--help"], ["snapshot", "--bogus"],
                                  ["snapshot", "--store"], ["log", "x"]])
def test_the_quick_snapshot_parser_leaves_the_rest_to_argparse(argv: list[str]) -> None:
    from guardian.cli.quick import snapshot_args as quick_snapshot_args

    assert quick_snapshot_args(argv) is None
