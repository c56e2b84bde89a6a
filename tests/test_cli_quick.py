"""``guardian status`` and ``guardian snapshot PATH`` on their quick paths (guardian.cli.quick):
what they print and how they fail is what the full CLI prints, with a daemon and without."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import Cli, sha256


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Every test here uses a store whose path holds characters an SQLite URI reserves."""
    return tmp_path / "a store ?#%20 here"


def _fields(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key, []).append(value.strip())
    return out


def _agrees(cli: Cli) -> dict[str, list[str]]:
    """The text status, checked against the JSON one (which argparse and the Store make)."""
    human = cli.run("status", check=True)
    assert human.stderr == b""
    f = _fields(human.stdout.decode())
    js = cli.json("status")
    assert f["store"] == [js["store"]]
    assert f["root"] == js["roots"]
    assert f["files"] == [str(js["files"])] and f["versions"] == [str(js["versions"])]
    assert f["last event"] == [js["last_event"] or "-"]
    assert f["reconciles"] == [str(js["reconcile_count"])]
    assert re.fullmatch(r"\d+(\.\d)?[BKMGT]", f["store size"][0])
    return f


def test_status_says_what_the_json_says_without_and_with_a_daemon(cli: Cli, root: Path,
                                                                   watch) -> None:
    (root / "a.txt").write_text("one")
    (root / "b.txt").write_text("two")
    cli.run("snapshot", str(root), check=True)
    f = _agrees(cli)
    assert f["daemon"] == ["not running"] and f["files"] == ["2"]
    w = watch(root)
    f = _agrees(cli)
    assert f["daemon"] == [f"running (pid {w.proc.pid})"]


def test_status_of_what_is_not_a_store_is_one_line_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "not-a-store"
    other.mkdir()
    (other / "guardian.db").write_bytes(b"not sqlite at all" * 100)
    p = cli.run("status", "--store", str(other), store=False)
    assert p.returncode == 2 and p.stdout == b""
    assert len(p.stderr.decode().splitlines()) == 1 and "Traceback" not in p.stderr.decode()


def test_status_where_no_store_covers_the_directory(cli: Cli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = cli.run("status", store=False, cwd=elsewhere, check=True)
    assert f"(none covers {elsewhere})" in p.stdout.decode()


def test_snapshot_of_a_file_through_the_daemon(cli: Cli, root: Path, tmp_path: Path,
                                               watch) -> None:
    f = root / "notes.txt"
    f.write_text("first\n")
    cli.run("snapshot", str(root), check=True)
    watch(root)
    f.write_text("second\n")
    p = cli.run("snapshot", str(f), check=True)
    assert re.fullmatch(r"\d+ recorded, \d+ unchanged\n", p.stdout.decode().splitlines()[-1]
                        + "\n")
    # Whoever recorded it (the watcher or this snapshot), the content on disk is in the store.
    assert sha256(b"second\n") in [v["sha256"] for v in cli.json("log", str(f))["versions"]]
    out = cli.json("snapshot", str(f))
    assert out["recorded"] == 0 and out["unchanged"] == 1 and out["versions"] == []
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    p = cli.run("snapshot", str(outside))
    assert p.returncode == 2 and p.stdout == b""
    err = p.stderr.decode()
    assert len(err.splitlines()) == 1 and "outside the watched roots" in err
    gone = root / "never-there.txt"
    p = cli.run("snapshot", str(gone))
    assert p.returncode == 2 and "no such file" in p.stderr.decode()
    assert len(p.stderr.decode().splitlines()) == 1
    assert json.loads(cli.run("status", "--json", check=True).stdout)["running"] is True


def test_snapshot_of_every_root_through_the_daemon_skips_the_cli(cli: Cli, root: Path,
                                                                  watch) -> None:
    """`guardian snapshot` with no path, a daemon watching: the quick path asks the daemon
    (no argparse, no Store import) and prints what the full path prints."""
    (root / "a.txt").write_text("one")
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_text("two")
    cli.run("snapshot", str(root), check=True)
    watch(root)
    (root / "sub" / "b.txt").write_text("three")
    p = cli.run("snapshot", check=True, cwd=root / "sub",
                env={**cli.env, "PYTHONPROFILEIMPORTTIME": "1"})
    loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.decode().splitlines()
              if line.startswith("import time:")}
    assert "argparse" not in loaded and "guardian.store.db" not in loaded
    # The daemon answered from its watcher: it scanned nothing, and says so (not "0 unchanged").
    assert re.fullmatch(rb"(modified +\S*sub/b.txt\n)?\d+ recorded; the daemon watching had "
                        rb"already recorded every other change\n", p.stdout), p.stdout
    # Recorded before the command returned (by the watcher, or the snapshot it asked for).
    versions = cli.json("log", str(root / "sub" / "b.txt"))["versions"]
    assert sha256(b"three") in [v["sha256"] for v in versions]
