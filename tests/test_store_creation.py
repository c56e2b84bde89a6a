"""Which commands may create a store, where, and with which roots; what a typo cannot do.

Only ``watch``, ``snapshot`` and ``apply`` create a store, and only in a new or empty
directory; everything else (dry runs included) says ``no Guardian store at DIR``, exit 2,
and leaves the directory exactly as it was.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from .conftest import Cli


def _state(d: Path) -> tuple[int, list[tuple[str, int, int]]]:
    """A directory's mode and every entry's name, mode and mtime: proof nothing changed."""
    entries = []
    for dirpath, dirs, files in os.walk(d):
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(dirpath, name))
            entries.append((os.path.relpath(os.path.join(dirpath, name), d), st.st_mode,
                            st.st_mtime_ns))
    return stat.S_IMODE(os.stat(d).st_mode), sorted(entries)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A directory like /tmp: sticky and world-writable, full of someone's files."""
    d = tmp_path / "scratch-tmp"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    (d / "sub").mkdir()
    (d / "sub" / "data.bin").write_bytes(b"\0\1")
    os.chmod(d, 0o1777)
    return d


def _err(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode(errors="replace")
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


NOT_CREATING = [
    ["gc"], ["gc", "--dry-run"], ["recover"], ["recover", "--sweep"],
    ["restore", "{root}/a.txt", "--dry-run"], ["restore", "{root}/a.txt", "--at", "1h"],
    ["log"], ["show", "{root}/a.txt"], ["diff", "{root}/a.txt"], ["status"], ["verify"],
    ["verify", "--repair"], ["alerts"],
]


def test_commands_that_do_not_create_leave_a_directory_alone(cli: Cli, root: Path,
                                                             user_dir: Path) -> None:
    (root / "a.txt").write_text("a")
    before = _state(user_dir)
    for args in NOT_CREATING:
        argv = [a.format(root=root) for a in args]
        for how in ("flag", "env"):
            if how == "flag":
                p = cli.run(*argv, "--store", str(user_dir), store=False, cwd=root)
            else:
                p = cli.run(*argv, store=False, cwd=root,
                            env=dict(cli.env, GUARDIAN_STORE=str(user_dir)))
            assert p.returncode == 2, (argv, how, p.returncode, p.stdout, p.stderr)
            assert f"no Guardian store at {user_dir}" in _err(p), argv
            assert _state(user_dir) == before, (argv, how)


def test_commands_that_do_not_create_make_nothing_at_a_new_path(cli: Cli, root: Path,
                                                                tmp_path: Path) -> None:
    (root / "a.txt").write_text("a")
    missing = tmp_path / "no" / "such" / "store"
    for args in NOT_CREATING:
        p = cli.run(*[a.format(root=root) for a in args], "--store", str(missing),
                    store=False, cwd=root)
        assert p.returncode == 2 and f"no Guardian store at {missing}" in _err(p), (args,
                                                                                   p.stderr)
        assert not (tmp_path / "no").exists(), args


def test_creating_commands_only_create_in_a_new_or_empty_directory(cli: Cli, root: Path,
                                                            user_dir: Path,
                                                            tmp_path: Path) -> None:
    (root / "a.txt").write_text("a")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"operations": [{"op": "write", "path": "b.txt",
                                                    "content": "b"}]}))
    before = _state(user_dir)
    for argv in (["watch", str(root)], ["snapshot"], ["snapshot", str(root / "a.txt")],
                 ["apply", str(manifest), "--root", str(root)],
                 ["apply", str(manifest), "--root", str(root), "--dry-run"]):
        p = cli.run(*argv, "--store", str(user_dir), store=False, cwd=root, timeout=60)
        assert p.returncode == 2, (argv, p.stderr)
        err = _err(p)
        assert f"no Guardian store at {user_dir}" in err and "not empty" in err, err
        assert _state(user_dir) == before, argv
    assert not (root / "b.txt").exists()
    # A new or an empty directory becomes a store (0700), and is a store from then on.
    empty = tmp_path / "empty"
    empty.mkdir()
    new = tmp_path / "new" / "store"
    for d in (empty, new):
        out = cli.json("snapshot", "--store", str(d), store=False, cwd=root)
        assert out["recorded"] == 1
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        again = cli.json("snapshot", "--store", str(d), store=False, cwd=root)
        assert again["recorded"] == 0 and again["unchanged"] == 1
        assert cli.json("log", "--store", str(d), store=False)["versions"]


def test_apply_dry_run_creates_no_store(cli: Cli, root: Path, tmp_path: Path,
                                        env: dict[str, str]) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"operations": [{"op": "write", "path": "b.txt",
                                                    "content": "b"}]}))
    store = tmp_path / "dry-store"
    p = cli.run("apply", str(manifest), "--root", str(root), "--dry-run", "--store",
                str(store), store=False)
    assert p.returncode == 0, p.stderr
    assert b"+b" in p.stdout and not store.exists() and not (root / "b.txt").exists()
    p = cli.run("apply", str(manifest), "--root", str(root), "--dry-run", store=False)
    assert p.returncode == 0, p.stderr
    assert not (Path(env["XDG_STATE_HOME"]) / "guardian" / "stores").exists()


def test_status_of_a_store_that_does_not_exist_is_an_error(cli: Cli, tmp_path: Path) -> None:
    p = cli.run("status", "--store", str(tmp_path / "nonexistent"), store=False)
    assert p.returncode == 2 and "no Guardian store at" in _err(p)
    p = cli.run("status", "--json", "--store", str(tmp_path / "nonexistent"), store=False)
    assert p.returncode == 2


# ----------------------------------------------------------------------------- point 13
def test_a_new_store_has_the_given_paths_as_roots(cli: Cli, root: Path, tmp_path: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "f.txt").write_text("f")
    (root / "top.txt").write_text("t")
    # From a subdirectory, its parent: the parent is the root (no store existed yet).
    out = cli.json("snapshot", str(root), store=False, cwd=root / "sub")
    assert out["recorded"] == 2
    st = cli.json("status", store=False, cwd=root)
    assert st["roots"] == [str(root)]
    # From /, a file elsewhere: the file's directory is the root, not /.
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    (other / "y.txt").write_text("y")
    out = cli.json("snapshot", str(other / "x.txt"), store=False, cwd=Path("/"))
    assert out["recorded"] == 1 and out["versions"][0]["path"] == str(other / "x.txt")
    st = cli.json("status", store=False, cwd=other)
    assert st["roots"] == [str(other)]
    assert cli.json("snapshot", store=False, cwd=other)["recorded"] == 1  # y.txt, same store


# ----------------------------------------------------------------------------- point 18
def test_snapshot_of_a_path_that_never_existed_is_an_error(cli: Cli, root: Path,
                                                           env: dict[str, str]) -> None:
    p = cli.run("snapshot", str(root / "nonexist.txt"), store=False, cwd=root)
    assert p.returncode == 2 and "nonexist.txt: no such file or directory" in _err(p)
    assert not (Path(env["XDG_STATE_HOME"]) / "guardian" / "stores").exists()
    (root / "a.txt").write_text("a")
    (root / "d").mkdir()
    (root / "d" / "in.txt").write_text("in")
    cli.json("snapshot", cwd=root)
    p = cli.run("snapshot", str(root / "nonexist.txt"), cwd=root)
    assert p.returncode == 2 and "nonexist.txt: no such file or directory" in _err(p)
    # A path that was recorded and is gone now: its deletion is recorded.
    (root / "a.txt").unlink()
    (root / "d" / "in.txt").unlink()
    (root / "d").rmdir()
    out = cli.json("snapshot", str(root / "a.txt"), str(root / "d"), cwd=root)
    assert sorted((v["path"], v["kind"]) for v in out["versions"]) == [
        (str(root / "a.txt"), "deleted"), (str(root / "d" / "in.txt"), "deleted")]


def test_snapshot_session_label_sticks_when_the_watcher_was_first(cli: Cli, root: Path,
                                                                  watch) -> None:
    (root / "old.txt").write_text("baseline")
    w = watch(root)
    f = root / "agent.txt"
    m = w.mark()
    f.write_text("written by the agent")
    w.version(f, "created", start=m)  # the watcher recorded it first
    p = cli.run("snapshot", "--session", "S1", str(f), cwd=root)
    assert p.returncode == 0 and b"labelled with session S1" in p.stdout, p.stdout
    head = cli.log(f)[0]
    assert head["session"] == "S1" and head["origin"] == "watcher"
    # A label is never replaced, and a version the watcher did not record is not labelled.
    assert cli.json("snapshot", "--session", "S2", str(f), cwd=root)["labelled"] == []
    assert cli.log(f)[0]["session"] == "S1"
    assert cli.json("snapshot", "--session", "S2", str(root / "old.txt"),
                    cwd=root)["labelled"] == []
    assert cli.log(root / "old.txt")[0]["session"] is None
    # A tree snapshot labels what the watcher just recorded under it.
    g = root / "dir" / "g.txt"
    g.parent.mkdir()
    m = w.mark()
    g.write_text("another write")
    w.version(g, "created", start=m)
    out = cli.json("snapshot", "--session", "S3", str(root), cwd=root)
    assert [x["path"] for x in out["labelled"]] == [str(g)]
    assert cli.log(g)[0]["session"] == "S3" and cli.log(f)[0]["session"] == "S1"
    # Through the daemon too, a path that never held anything is an error.
    p = cli.run("snapshot", "--session", "S4", str(root / "nope.txt"), cwd=root)
    assert p.returncode == 2 and "nope.txt: no such file or directory" in _err(p)
    assert w.proc.poll() is None
