"""Delta-encoded history (codec ``zstd-delta``): every version restores byte for byte, on its
own, after ``gc`` drops the versions it was encoded against, after a crash in the middle of
that gc, and in a store written before deltas existed; ``verify`` finds a flipped byte."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from pathlib import Path

from guardian.store import objects as objects_mod
from guardian.store.db import Store
from guardian.store.objects import DELTA_CODEC, MAX_DEPTH, Objects
from guardian.writer import open_writer
from tests.conftest import Cli


def _versions(n: int, seed: int = 7) -> list[bytes]:
    """``n`` versions of a ~20 KB text file, one line changed per version."""
    rnd = random.Random(seed)
    lines = [f"line {i}: " + " ".join(f"w{rnd.randrange(10_000)}" for _ in range(8))
             for i in range(600)]
    out = []
    for i in range(n):
        lines[rnd.randrange(len(lines))] = f"changed in version {i}"
        out.append("\n".join(lines).encode())
    return out


def _record(store: Path, root: Path, contents: list[bytes], name: str = "f.txt") -> None:
    """Write each content to ``root/name`` and record it (the recorder's scan, in process)."""
    with open_writer(store, [root], create=True) as w:
        rid = next(iter(w.roots.values())).id
        for data in contents:
            (root / name).write_bytes(data)
            w.recorder.reconcile(rid, b"", origin="snapshot", confirm_missing=True)


def _stored(store: Path, name: str = "f.txt") -> list[bytes]:
    """Every version of ``name`` as the store gives it back, oldest first (a fresh reader)."""
    with Store.open(store, write=False) as s:
        rid = s.roots()[0].id
        fid = s.file_id(rid, name.encode(), create=False)
        assert fid is not None
        objs = Objects(s)
        out = []
        for v in reversed(s.versions_of(fid)):
            assert v.object_id is not None
            out.append(Objects(s).get(v.object_id))  # each on its own: no cache shared
        assert all(objs.info(v.object_id).depth <= MAX_DEPTH
                   for v in s.versions_of(fid) if v.object_id is not None)
        return out


def _codecs(store: Path) -> list[str]:
    db = sqlite3.connect(store / "guardian.db")
    try:
        return [r[0] for r in db.execute("SELECT codec FROM objects ORDER BY id")]
    finally:
        db.close()


def test_a_long_edit_history_is_stored_as_deltas_and_restores_byte_for_byte(
        cli: Cli, root: Path, store: Path) -> None:
    contents = _versions(70)
    _record(store, root, contents)
    codecs = _codecs(store)
    assert codecs.count(DELTA_CODEC) >= 60, codecs
    whole = sum(len(c) for c in contents)
    with Store.open(store, write=False) as s:
        stored = s.counts()["stored_bytes"]
    assert stored < whole // 20  # each whole copy compresses ~2x; the deltas ~300x
    assert _stored(store) == contents
    # The user-visible commands read the oldest and the newest through the chain.
    log = cli.log(root / "f.txt")
    assert cli.run("show", str(root / "f.txt"), check=True).stdout == contents[-1]
    oldest = min(v["id"] for v in log)
    assert cli.run("show", str(root / "f.txt"), "--version", str(oldest),
                   check=True).stdout == contents[0]
    assert cli.json("verify")["ok"] is True


def test_gc_dropping_the_bases_keeps_every_kept_version_restorable(cli: Cli, root: Path,
                                                                  store: Path) -> None:
    contents = _versions(40)
    _record(store, root, contents)
    out = cli.json("gc", "--keep-versions", "5", "--keep-days", "0")
    assert out["versions_dropped"] == 35 and out["objects_rebased"] >= 1, out
    assert _stored(store) == contents[-5:]
    assert cli.json("verify")["ok"] is True
    # New versions after the gc chain onto what is left, and gc again drops the rest.
    more = _versions(52)[40:]
    _record(store, root, more)
    cli.json("gc", "--keep-versions", "2", "--keep-days", "0")
    assert _stored(store) == more[-2:]
    assert cli.json("verify")["ok"] is True


def test_a_crash_in_the_middle_of_gc_leaves_every_version_restorable(cli: Cli, root: Path,
                                                                      store: Path) -> None:
    contents = _versions(40)
    _record(store, root, contents)
    # The second re-encoded object: gc has rewritten one dependent, not the other, and
    # deleted nothing yet.
    env = {**cli.env, "GUARDIAN_FAULT": "gc.rebase:kill@1"}
    p = cli.run("gc", "--keep-versions", "5", "--keep-days", "0", env=env)
    assert p.returncode == -9, (p.returncode, p.stderr)
    assert _stored(store) == contents  # nothing dropped, every version whole
    assert cli.json("verify")["ok"] is True
    out = cli.json("gc", "--keep-versions", "5", "--keep-days", "0")
    assert out["versions_dropped"] == 35
    assert _stored(store) == contents[-5:]
    assert cli.json("verify")["ok"] is True


def test_verify_finds_a_flipped_byte_in_a_delta_and_names_its_version(cli: Cli, root: Path,
                                                                      store: Path) -> None:
    contents = _versions(6)
    _record(store, root, contents)
    target = hashlib.sha256(contents[3]).digest()
    db = sqlite3.connect(store / "guardian.db")
    codec, blob = db.execute("SELECT codec, data FROM objects WHERE hash=?",
                             (target,)).fetchone()
    assert codec == DELTA_CODEC
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x01
    db.execute("UPDATE objects SET data=? WHERE hash=?", (bytes(flipped), target))
    db.commit()
    db.close()
    p = cli.run("verify", "--json")
    assert p.returncode == 1
    corrupt = json.loads(p.stdout)["corrupt"]
    # The damaged delta, and only what decodes through it (version 4 uses it as its base).
    hit = {c["sha256"] for c in corrupt}
    assert target.hex() in hit
    assert hashlib.sha256(contents[0]).hexdigest() not in hit
    assert hashlib.sha256(contents[5]).hexdigest() not in hit
    assert any(v["sha256"] == target.hex() for c in corrupt for v in c["versions"])
    p = cli.run("show", str(root / "f.txt"), "--version",
                str(sorted(v["id"] for v in cli.log(root / "f.txt"))[3]))
    assert p.returncode == 1 and b"damaged" in p.stderr


def test_a_store_from_before_deltas_still_reads_and_takes_deltas_once_written(
        cli: Cli, root: Path, store: Path, monkeypatch) -> None:
    monkeypatch.setattr(objects_mod, "DELTA_ENABLED", False)
    old = _versions(5)
    _record(store, root, old)
    # Make it the store an older Guardian wrote: no delta columns at all.
    db = sqlite3.connect(store / "guardian.db")
    db.executescript("DROP INDEX objects_by_base; ALTER TABLE objects DROP COLUMN base_id;"
                     " ALTER TABLE objects DROP COLUMN depth;"
                     " ALTER TABLE objects DROP COLUMN chain_pos;")
    db.close()
    assert set(_codecs(store)) == {"zstd"}
    assert _stored(store) == old  # read-only: nothing is migrated
    assert cli.run("show", str(root / "f.txt"), check=True).stdout == old[-1]
    monkeypatch.setattr(objects_mod, "DELTA_ENABLED", True)
    new = _versions(9)[5:]
    _record(store, root, new)  # a writer adds the columns; new versions are deltas
    assert _codecs(store).count(DELTA_CODEC) == 4
    assert _stored(store) == old + new
    assert cli.json("verify")["ok"] is True
    # gc re-packs the old whole copies as deltas (versions 1-3: 0 has no previous version,
    # 4 is the base of 5 already); a kill -9 in the middle of it loses nothing.
    env = {**cli.env, "GUARDIAN_FAULT": "gc.repack:kill@1"}
    p = cli.run("gc", "--keep-versions", "100", env=env)
    assert p.returncode == -9, (p.returncode, p.stderr)
    assert _stored(store) == old + new
    out = cli.json("gc", "--keep-versions", "100")
    assert out["versions_dropped"] == 0 and out["objects_repacked"] == 3, out
    assert _codecs(store).count(DELTA_CODEC) == 7
    assert _stored(store) == old + new
    assert cli.json("verify")["ok"] is True


def test_a_cycle_of_bases_in_damaged_rows_is_damage_not_a_hang(cli: Cli, root: Path,
                                                              store: Path) -> None:
    contents = _versions(4)
    _record(store, root, contents)
    db = sqlite3.connect(store / "guardian.db")
    ids = [r[0] for r in db.execute("SELECT id FROM objects WHERE codec=? ORDER BY id",
                                    (DELTA_CODEC,))]
    # Versions 1, 2, 3 are deltas (bases 0, 0, 2): make 2's base 3, so 3 -> 2 -> 3 -> ...
    db.execute("UPDATE objects SET base_id=? WHERE id=?", (ids[2], ids[1]))
    db.commit()
    db.close()
    p = cli.run("show", str(root / "f.txt"), timeout=30)
    # It ends (no recursion, no endless walk), with one line naming the damage.
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert b"damaged" in p.stderr


# ----------------------------------------------------------------------------- big files
def _big_versions(n: int) -> list[bytes]:
    """``n`` versions of a ~400 KB text file (over the loose threshold), one line changed
    per version."""
    rnd = random.Random(11)
    lines = [f"line {i}: " + " ".join(f"w{rnd.randrange(100_000)}" for _ in range(8))
             for i in range(8_000)]
    out = []
    for i in range(n):
        lines[rnd.randrange(len(lines))] = f"changed in version {i}"
        out.append("\n".join(lines).encode())
    assert len(out[0]) > objects_mod.LOOSE_THRESHOLD
    return out


def _loose_files(store: Path) -> set[str]:
    return {p.parent.name + p.name for p in (store / "objects").glob("*/*")}


def _loose_rows(store: Path) -> set[str]:
    db = sqlite3.connect(store / "guardian.db")
    try:
        return {bytes(r[0]).hex() for r in db.execute("SELECT hash FROM objects WHERE loose=1")}
    finally:
        db.close()


def test_a_big_files_edits_are_small_deltas_against_its_loose_copy(cli: Cli, root: Path,
                                                                   store: Path) -> None:
    contents = _big_versions(12)
    _record(store, root, contents)
    # The first version is a loose whole copy; each edit a row of a few hundred bytes.
    assert _codecs(store).count(DELTA_CODEC) == 11
    assert _loose_rows(store) == _loose_files(store) == {hashlib.sha256(contents[0]).hexdigest()}
    with Store.open(store, write=False) as s:
        whole = s.counts()["stored_bytes"]
        per_delta = (whole - Objects(s).info(1).stored_size) / 11
    assert per_delta < 2_000, per_delta
    assert _stored(store) == contents
    log = cli.log(root / "f.txt")
    assert cli.run("show", str(root / "f.txt"), "--version", str(min(v["id"] for v in log)),
                   check=True).stdout == contents[0]
    assert cli.run("show", str(root / "f.txt"), check=True).stdout == contents[-1]
    assert cli.json("verify")["ok"] is True


def test_gc_dropping_a_big_files_loose_base_makes_the_oldest_kept_loose(cli: Cli, root: Path,
                                                                      store: Path) -> None:
    contents = _big_versions(12)
    _record(store, root, contents)
    # A kill -9 once the first kept version's new loose file is written, before the commit:
    # nothing changed, the file is an orphan the next gc removes.
    env = {**cli.env, "GUARDIAN_FAULT": "gc.rebase:kill@0"}
    p = cli.run("gc", "--keep-versions", "3", "--keep-days", "0", env=env)
    assert p.returncode == -9, (p.returncode, p.stderr)
    assert _stored(store) == contents
    assert cli.json("verify")["ok"] is True
    out = cli.json("gc", "--keep-versions", "3", "--keep-days", "0")
    assert out["versions_dropped"] == 9 and out["objects_rebased"] >= 1, out
    assert _stored(store) == contents[-3:]
    # The oldest kept version is a whole loose copy again; the two after it are deltas.
    assert _loose_rows(store) == _loose_files(store) == {
        hashlib.sha256(contents[-3]).hexdigest()}
    assert _codecs(store).count(DELTA_CODEC) == 2
    assert cli.json("verify")["ok"] is True
    more = _big_versions(15)[12:]
    _record(store, root, more)  # new versions chain onto what is left
    assert _stored(store) == contents[-3:] + more
    assert cli.json("verify")["ok"] is True
