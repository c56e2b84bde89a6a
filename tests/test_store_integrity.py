"""A damaged store is reported, repaired where the bytes still exist, and never crashes.

Damage is made the way a disk makes it: bytes of a page of a copy of ``guardian.db`` are
overwritten (a b-tree page's header, a byte of an index cell), or bytes of a stored object
flipped, after every commit is checkpointed into the database file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

from .conftest import Cli, sha256


def snap(cli: Cli, root: Path, *paths: Path | str) -> dict:
    return cli.json("snapshot", *map(str, paths), cwd=root)


def _page_size_and_pages(db_path: Path, name: str) -> tuple[int, list[tuple[int, str]]]:
    assert not os.path.exists(f"{db_path}-wal") or os.path.getsize(f"{db_path}-wal") == 0, \
        "the WAL must be checkpointed first: the damage goes to the database file"
    db = sqlite3.connect(db_path)
    try:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("SELECT pageno, pagetype FROM dbstat WHERE name=? ORDER BY pageno",
                           (name,)).fetchall()
    finally:
        db.close()
    return page_size, pages


def damage_btree_page(db_path: Path, name: str, pagetype: str = "leaf", nth: int = 0) -> int:
    """Overwrite the b-tree header of a page of table or index ``name`` (a malformed page)."""
    page_size, pages = _page_size_and_pages(db_path, name)
    pageno = [p for p, t in pages if t == pagetype][nth]
    with open(db_path, "r+b") as f:
        f.seek((pageno - 1) * page_size)
        f.write(b"\xff" * 12)
    return pageno


def damage_index_key(db_path: Path, name: str) -> None:
    """Change the first key column of the last cell of an index leaf (its largest key, so the
    order still holds): the b-tree is well formed, but no longer matches its table."""
    page_size, pages = _page_size_and_pages(db_path, name)
    pageno = [p for p, t in pages if t == "leaf"][-1]
    with open(db_path, "r+b") as f:
        f.seek((pageno - 1) * page_size)
        page = bytearray(f.read(page_size))
        ncell = int.from_bytes(page[3:5], "big")
        cell = int.from_bytes(page[8 + 2 * (ncell - 1):10 + 2 * (ncell - 1)], "big")
        # payload size (1 byte), header size (1 byte), serial types..., values
        header = page[cell + 1]
        assert page[cell + 2] == 1, "first key column must be a one-byte integer"
        value_at = cell + 1 + header
        assert page[value_at] < 0x7F
        page[value_at] += 1
        f.seek((pageno - 1) * page_size)
        f.write(page)


def _one_line(p: subprocess.CompletedProcess[bytes], code: int, *needles: bytes) -> str:
    err = p.stderr.decode(errors="replace")
    assert p.returncode == code, (p.returncode, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, err
    for n in needles:
        assert n.decode() in lines[0], err
    return lines[0]


def _many_files(root: Path, n: int = 120) -> None:
    for i in range(n):
        (root / f"f{i:03}.txt").write_bytes(os.urandom(1500).hex().encode())


# ----------------------------------------------------------------------------- point 10
def test_verify_reports_a_malformed_page_as_damage(cli: Cli, root: Path, store: Path) -> None:
    _many_files(root)
    snap(cli, root)
    damage_btree_page(store / "guardian.db", "objects", "leaf", 1)
    p = cli.run("verify", "--json")
    assert p.returncode == 1, p.stderr
    assert b"Traceback" not in p.stderr and b"internal error" not in p.stderr, p.stderr
    report = json.loads(p.stdout)
    assert report["ok"] is False
    assert report["database"]["ok"] is False and report["database"]["check"] == "quick_check"
    assert "table objects" in report["database"]["damaged"]
    # The objects whose rows sit on that page are named, with the files they belong to.
    assert report["corrupt"], report
    paths = {v["path"] for c in report["corrupt"] for v in c["versions"]}
    assert paths and all(p_ and p_.startswith(str(root)) for p_ in paths), paths
    human = cli.run("verify")
    assert human.returncode == 1 and b"database: damaged" in human.stdout
    assert b"Traceback" not in human.stderr
    full = cli.run("verify", "--full", "--json")
    assert full.returncode == 1 and json.loads(full.stdout)["database"]["check"] == \
        "integrity_check"


def test_verify_full_runs_integrity_check(cli: Cli, root: Path, store: Path) -> None:
    for i in range(3):
        (root / f"f{i}.txt").write_text(f"content {i}")
    snap(cli, root)
    damage_index_key(store / "guardian.db", "versions_by_object")
    quick = cli.run("verify", "--json")
    assert quick.returncode == 0, quick.stdout  # quick_check does not compare indexes
    full = cli.run("verify", "--full", "--json")
    assert full.returncode == 1, full.stdout
    db = json.loads(full.stdout)["database"]
    assert db["ok"] is False and "versions_by_object" in db["message"], db


def test_commands_on_a_malformed_store_name_it_and_say_what_to_do(cli: Cli, root: Path,
                                                                  store: Path) -> None:
    (root / "a.txt").write_text("a")
    snap(cli, root)
    damage_btree_page(store / "guardian.db", "versions")  # its root: the only page
    for args in (["log"], ["log", str(root / "a.txt")], ["show", str(root / "a.txt")],
                 ["status"]):
        line = _one_line(cli.run(*args), 2, str(store).encode(), b"database is damaged",
                         b"guardian verify")
        assert "malformed" in line
    # verify reports it (exit 1), in JSON too, rather than failing with it.
    p = cli.run("verify", "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["database"]["ok"] is False, p.stderr


def test_watch_on_a_malformed_store_exits_2_at_once(cli: Cli, root: Path, store: Path) -> None:
    (root / "a.txt").write_text("a")
    snap(cli, root)
    damage_btree_page(store / "guardian.db", "versions")
    (root / "a.txt").write_text("changed while Guardian was down")
    p = cli.run("watch", str(root), timeout=60)  # it used to crash at baseline, then hang
    _one_line(p, 2, str(store).encode(), b"database is damaged", b"guardian verify")


def test_a_file_that_is_not_a_database(cli: Cli, root: Path, store: Path) -> None:
    (root / "a.txt").write_text("a")
    snap(cli, root)
    db = store / "guardian.db"
    with open(db, "r+b") as f:
        f.write(b"\0" * 100)  # the header: "file is not a database"
    _one_line(cli.run("log"), 2, b"database is damaged")
    _one_line(cli.run("watch", str(root), timeout=60), 2, b"database is damaged")
    p = cli.run("verify", "--json")
    assert p.returncode == 1 and b"Traceback" not in p.stderr, p.stderr
    report = json.loads(p.stdout)
    assert report["ok"] is False and report["database"]["ok"] is False
    assert "not a database" in report["database"]["message"], report


# ----------------------------------------------------------------------------- point 11
def _flip_inline(store: Path, data: bytes) -> None:
    db = sqlite3.connect(store / "guardian.db")
    (blob,) = db.execute("SELECT data FROM objects WHERE hash=?",
                         (bytes.fromhex(sha256(data)),)).fetchone()
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x01
    db.execute("UPDATE objects SET data=? WHERE hash=?", (bytes(flipped),
                                                          bytes.fromhex(sha256(data))))
    db.commit()
    db.close()


def _flip_loose(store: Path, data: bytes) -> None:
    loose = store / "objects" / sha256(data)[:2] / sha256(data)[2:]
    os.chmod(loose, 0o600)
    b = bytearray(loose.read_bytes())
    b[len(b) // 2] ^= 0xFF
    loose.write_bytes(bytes(b))
    os.chmod(loose, 0o400)


def test_capturing_the_same_bytes_again_rewrites_a_damaged_object(cli: Cli, root: Path,
                                                                  store: Path) -> None:
    text = b"precious text " * 20
    f = root / "f.txt"
    f.write_bytes(text)
    snap(cli, root)
    _flip_inline(store, text)
    assert cli.run("verify").returncode == 1  # found, and marked for repair
    f.write_bytes(b"an edit")
    snap(cli, root, f)
    f.write_bytes(text)  # the same bytes again: a new version linked to the same object
    snap(cli, root, f)
    f.unlink()
    snap(cli, root, f)
    assert cli.json("verify")["ok"] is True
    versions = cli.json("log", str(f))["versions"]
    for v in versions:
        if v["sha256"] == sha256(text):
            shown = cli.run("show", str(f), "--version", str(v["id"]))
            assert shown.returncode == 0 and shown.stdout == text, shown.stderr


def test_a_snapshot_of_an_unchanged_file_rewrites_its_damaged_object(cli: Cli, root: Path,
                                                                     store: Path) -> None:
    big = os.urandom(300 * 1024)
    (root / "big.bin").write_bytes(big)
    snap(cli, root)
    _flip_loose(store, big)
    assert cli.run("verify").returncode == 1
    out = snap(cli, root, root / "big.bin")  # unchanged: nothing recorded, bytes read
    assert out["recorded"] == 0
    assert cli.json("verify")["ok"] is True
    loose = store / "objects" / sha256(big)[:2] / sha256(big)[2:]
    assert stat.S_IMODE(loose.stat().st_mode) == 0o400


def test_verify_repair_rereads_the_paths_that_held_the_bytes(cli: Cli, root: Path,
                                                             store: Path) -> None:
    big = os.urandom(300 * 1024)
    small = b"small but precious " * 10
    gone = b"this one is only in the store " * 5
    (root / "big.bin").write_bytes(big)
    (root / "sub").mkdir()
    (root / "sub" / "small.txt").write_bytes(small)
    (root / "gone.txt").write_bytes(gone)
    snap(cli, root)
    (root / "gone.txt").write_bytes(b"overwritten")
    snap(cli, root)
    for data in (big, small):
        _flip_inline(store, data) if data is small else _flip_loose(store, data)
    _flip_inline(store, gone)
    p = cli.run("verify", "--repair", "--json")
    assert p.returncode == 1, p.stderr  # `gone` has no intact copy left anywhere
    report = json.loads(p.stdout)
    by = {c["sha256"]: c for c in report["corrupt"]}
    assert by[sha256(big)]["repaired"] and by[sha256(big)]["repaired_from"] == \
        str(root / "big.bin")
    assert by[sha256(small)]["repaired"]
    assert not by[sha256(gone)]["repaired"] and report["ok"] is False
    human = cli.run("verify", "--repair")
    assert human.returncode == 1 and b"not repaired: no path still holds those bytes" in \
        human.stdout
    assert cli.run("show", str(root / "big.bin"), check=True).stdout == big
    assert cli.run("show", str(root / "sub" / "small.txt"), check=True).stdout == small
    # Once the bytes come back, it is repaired too, and verify is clean.
    (root / "gone.txt").write_bytes(gone)
    assert cli.run("verify", "--repair").returncode == 0
    assert cli.json("verify")["ok"] is True


def test_repair_through_a_running_daemon(cli: Cli, root: Path, store: Path, watch) -> None:
    big = os.urandom(300 * 1024)
    text = b"text kept by the daemon " * 8
    (root / "big.bin").write_bytes(big)
    (root / "t.txt").write_bytes(text)
    w = watch(root)
    _flip_inline(store, text)
    # verify marks the damaged object in the daemon; the daemon's next capture of those
    # bytes (an edit, then the old text back) rewrites it.
    p = cli.run("verify", "--json")
    assert p.returncode == 1 and [c["sha256"] for c in json.loads(p.stdout)["corrupt"]] == [
        sha256(text)]
    m = w.mark()
    (root / "t.txt").write_bytes(b"edited")
    w.version(root / "t.txt", "modified", start=m)
    m = w.mark()
    (root / "t.txt").write_bytes(text)
    w.version(root / "t.txt", "modified", start=m, sha256=sha256(text))
    assert cli.json("verify")["ok"] is True
    # --repair goes through the daemon too: it re-reads big.bin and rewrites the object.
    _flip_loose(store, big)
    p = cli.run("verify", "--repair", "--json")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert [c["repaired_from"] for c in json.loads(p.stdout)["corrupt"]] == [
        str(root / "big.bin")]
    assert cli.json("verify")["ok"] is True
    assert cli.run("show", str(root / "big.bin"), check=True).stdout == big
    assert w.proc.poll() is None


def test_show_of_a_damaged_version_exits_1_and_says_what_to_do(cli: Cli, root: Path,
                                                               store: Path) -> None:
    text = b"will be damaged " * 10
    (root / "f.txt").write_bytes(text)
    snap(cli, root)
    _flip_inline(store, text)
    p = cli.run("show", str(root / "f.txt"))
    line = _one_line(p, 1, b"damaged", b"verify --repair")
    assert str(root / "f.txt") in line
