"""Retention (``gc``) on a real store: exactly which versions go, which objects go with them,
and that the store really shrinks (issue 9 point 22: mutants of retention.py that lost data
or freed nothing survived every test)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardian.errors import UsageError
from guardian.store.db import NewVersion, Store
from guardian.store.objects import LOOSE_THRESHOLD, Objects
from guardian.store.retention import GcResult, gc

DAY = 86400 * 10**9
NOW = 1_800_000_000 * 10**9


class Tree:
    """A store with one root, written through the store's own API at chosen times."""

    def __init__(self, store: Store, root_id: int) -> None:
        self.store = store
        self.root_id = root_id
        self.objects = Objects(store)

    def put(self, rel: str, data: bytes | None, time_ns: int) -> int:
        """A version of ``rel`` holding ``data`` (None: a deletion); its version id."""
        with self.store.transaction():
            fid = self.store.file_id(self.root_id, rel.encode())
            assert fid is not None
            oid = None if data is None else self.objects.put(data)
            vid = self.store.add_version(NewVersion(
                fid, oid, data is not None, "file", "scan", 0o644,
                None if data is None else len(data)), time_ns)
        self.objects.sync()
        return vid

    def versions(self, rel: str) -> list[int]:
        fid = self.store.file_id(self.root_id, rel.encode(), create=False)
        return [v for (v,) in self.store.db.execute(
            "SELECT id FROM versions WHERE file_id=? ORDER BY id", (fid,))]

    def contents(self, rel: str) -> list[bytes | None]:
        fid = self.store.file_id(self.root_id, rel.encode(), create=False)
        rows = self.store.db.execute(
            "SELECT object_id FROM versions WHERE file_id=? ORDER BY id", (fid,)).fetchall()
        return [None if o is None else self.objects.get(o) for (o,) in rows]

    def object_count(self) -> int:
        return int(self.store.db.execute("SELECT count(*) FROM objects").fetchone()[0])

    def loose_files(self) -> set[str]:
        return {f"{d.name}{f.name}" for d in self.objects.dir.iterdir() if d.is_dir()
                for f in d.iterdir()}


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    root = tmp_path / "root"
    root.mkdir()
    store = Store.open(tmp_path / "store", write=True, create=True)
    try:
        (r,) = store.add_roots([root])
        yield Tree(store, r.id)
    finally:
        store.close()


def big(tag: str) -> bytes:
    """Incompressible content over the loose-object threshold (stored as its own file)."""
    seed = hashlib.sha256(tag.encode()).digest()
    out = bytearray()
    while len(out) < LOOSE_THRESHOLD + 4096:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out)


def store_bytes(store: Store) -> dict[str, bytes]:
    return {str(p.relative_to(store.path)): p.read_bytes()
            for p in sorted(store.path.rglob("*")) if p.is_file()}


def store_size(store: Store) -> int:
    return sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------ which versions
# Five versions of one file, 10, 8, 6, 4 and 2 days old (oldest first).
AGES = [10, 8, 6, 4, 2]


@pytest.mark.parametrize(("keep_versions", "keep_days", "kept"), [
    (1, 0, [2]),            # only the newest, whatever its age
    (2, 0, [4, 2]),
    (5, 0, AGES),
    (9, 0, AGES),
    (1, 5, [4, 2]),          # younger than 5 days
    (1, 7, [6, 4, 2]),
    (1, 6, [6, 4, 2]),       # exactly at the horizon: kept (only older ones go)
    (3, 9, [8, 6, 4, 2]),    # either rule keeps a version
    (4, 1, [8, 6, 4, 2]),
    (1, 100, AGES),
    (1, float("inf"), AGES),
    (1, float("nan"), AGES),
    (1, 1e300, AGES),        # beyond every representable time: keeps all, never overflows
    (1, 0.5, [2]),
    (1, -3, [2]),            # a horizon in the future: age keeps nothing, the newest stays
])
def test_versions_kept_by_count_or_age(tree: Tree, keep_versions: int, keep_days: float,
                                       kept: list[int]) -> None:
    for age in AGES:
        tree.put("f.txt", f"{age} days old".encode(), NOW - age * DAY)
    r = gc(tree.store, keep_versions=keep_versions, keep_days=keep_days, now_ns=NOW)
    assert tree.contents("f.txt") == [f"{a} days old".encode() for a in kept]
    dropped = len(AGES) - len(kept)
    assert (r.versions_dropped, r.objects_dropped) == (dropped, dropped)
    assert r.files_affected == (1 if dropped else 0)
    assert tree.object_count() == len(kept)


def test_the_horizon_is_exact_to_the_nanosecond(tree: Tree) -> None:
    tree.put("f", b"older", NOW - DAY - 1)
    tree.put("f", b"at", NOW - DAY)
    tree.put("f", b"newest", NOW)
    r = gc(tree.store, keep_versions=1, keep_days=1, now_ns=NOW)
    assert tree.contents("f") == [b"at", b"newest"]
    assert r.versions_dropped == 1


def test_no_stored_time_is_too_old_for_an_unbounded_age(tree: Tree) -> None:
    """Every time SQLite can hold, down to the smallest, is kept by an age longer than all
    (the horizon was one nanosecond above the smallest time, and dropped a version there);
    an age far in the future keeps none by age, without overflowing."""
    times = [-(2**63), -(2**63) + 1, -(2**62) - 1, 0, 2**62 + 5, 2**63 - 2]
    for i, t in enumerate(times):
        tree.put("f", b"%d" % i, t)
    tree.put("f", b"newest", NOW)
    for keep_days in (float("inf"), float("nan"), 1e300, 1e12):
        assert gc(tree.store, keep_versions=1, keep_days=keep_days, now_ns=NOW,
                  dry_run=True).versions_dropped == 0, keep_days
    assert gc(tree.store, keep_versions=1, keep_days=-1e12, now_ns=NOW,
              dry_run=True).versions_dropped == 6
    assert gc(tree.store, keep_versions=1, keep_days=float("-inf"), now_ns=NOW,
              dry_run=True).versions_dropped == 0
    gc(tree.store, keep_versions=1, keep_days=float("inf"), now_ns=NOW)
    assert tree.contents("f") == [b"0", b"1", b"2", b"3", b"4", b"5", b"newest"]


def test_keep_versions_below_one_is_a_usage_error(tree: Tree) -> None:
    tree.put("f", b"x", NOW - 9 * DAY)
    for bad in (0, -1):
        with pytest.raises(UsageError, match="keep_versions must be at least 1"):
            gc(tree.store, keep_versions=bad, keep_days=0, now_ns=NOW)
    assert tree.contents("f") == [b"x"]


def test_files_counted_and_each_file_keeps_its_own_newest(tree: Tree) -> None:
    for i in range(3):
        tree.put("a", b"a%d" % i, NOW - (9 - i) * DAY)
        tree.put("b", b"b%d" % i, NOW - (9 - i) * DAY)
    tree.put("c", b"c0", NOW - 9 * DAY)
    r = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    assert (tree.contents("a"), tree.contents("b"), tree.contents("c")) == (
        [b"a2"], [b"b2"], [b"c0"])
    assert (r.versions_dropped, r.files_affected, r.objects_dropped) == (4, 2, 4)


def test_a_deleted_file_keeps_its_tombstone_and_last_content(tree: Tree) -> None:
    tree.put("f", b"one", NOW - 9 * DAY)
    tree.put("f", b"two", NOW - 8 * DAY)
    tree.put("f", None, NOW - 7 * DAY)
    gc(tree.store, keep_versions=2, keep_days=0, now_ns=NOW)
    assert tree.contents("f") == [b"two", None]


def test_per_file_rules(tree: Tree) -> None:
    for i in range(4):
        tree.put("logs/x.log", b"log%d" % i, NOW - (9 - i) * DAY)
        tree.put("src/x.py", b"src%d" % i, NOW - (9 - i) * DAY)
        tree.put("keep/x", b"keep%d" % i, NOW - (9 - i) * DAY)
    asked: list[tuple[int, bytes]] = []

    def rules(root_id: int, rel: bytes) -> tuple[int, float]:
        asked.append((root_id, rel))
        if rel.startswith(b"logs/"):
            return 0, 0  # below 1: still keeps the newest
        if rel.startswith(b"keep/"):
            return 10**30, 0  # more than SQLite holds: keeps all
        return 2, 0

    r = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW, per_file=rules)
    assert tree.contents("logs/x.log") == [b"log3"]
    assert tree.contents("src/x.py") == [b"src2", b"src3"]
    assert tree.contents("keep/x") == [b"keep%d" % i for i in range(4)]
    assert sorted(asked) == sorted((tree.root_id, p) for p in (b"logs/x.log", b"src/x.py",
                                                              b"keep/x"))
    assert (r.versions_dropped, r.files_affected) == (5, 2)


def test_gc_twice_drops_nothing_more(tree: Tree) -> None:
    for i in range(4):
        tree.put("f", b"%d" % i, NOW - (9 - i) * DAY)
    first = gc(tree.store, keep_versions=2, keep_days=0, now_ns=NOW)
    second = gc(tree.store, keep_versions=2, keep_days=0, now_ns=NOW)
    assert first.versions_dropped == 2
    assert second.to_json() == GcResult(False).to_json()
    assert tree.contents("f") == [b"2", b"3"]


def test_now_defaults_to_the_clock(tree: Tree) -> None:
    import time

    tree.put("f", b"ancient", time.time_ns() - 400 * DAY)
    tree.put("f", b"fresh", time.time_ns() - DAY)
    tree.put("f", b"newest", time.time_ns())
    gc(tree.store, keep_versions=1, keep_days=30)
    assert tree.contents("f") == [b"fresh", b"newest"]


# ------------------------------------------------------------------------ which objects
def test_shared_objects_stay_while_a_kept_version_names_them(tree: Tree) -> None:
    tree.put("a", b"shared", NOW - 9 * DAY)
    tree.put("a", b"only-old", NOW - 8 * DAY)
    tree.put("a", b"new", NOW - 7 * DAY)
    tree.put("b", b"shared", NOW - 9 * DAY)  # b's only version: kept, so is "shared"
    r = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    assert tree.contents("a") == [b"new"] and tree.contents("b") == [b"shared"]
    assert (r.versions_dropped, r.objects_dropped) == (2, 1)
    assert r.bytes_freed == len_stored(b"only-old")
    assert tree.object_count() == 2


def len_stored(data: bytes) -> int:
    from guardian.store.objects import compress

    return len(compress(data)[1])


def test_live_loose_objects_survive_and_dead_ones_leave_the_disk(tree: Tree) -> None:
    old, live = big("old"), big("live")
    tree.put("big.bin", old, NOW - 9 * DAY)
    tree.put("big.bin", live, NOW - 8 * DAY)
    tree.put("other.bin", big("other"), NOW - 9 * DAY)
    before = store_size(tree.store)
    assert len(tree.loose_files()) == 3
    r = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    assert tree.contents("big.bin") == [live]
    assert tree.contents("other.bin") == [big("other")]
    assert tree.loose_files() == {hashlib.sha256(x).hexdigest() for x in (live, big("other"))}
    assert (r.versions_dropped, r.objects_dropped, r.orphans_removed) == (1, 1, 0)
    assert r.bytes_freed >= len(old)
    # The store really shrank by what gc said it freed.
    assert before - store_size(tree.store) >= r.bytes_freed
    # And reopening finds every live object intact.
    assert tree.objects.check(tree.objects.info(tree.objects.lookup(hashlib.sha256(live)
                                                                    .digest()) or 0)) == live


def test_orphans_and_stray_temps_go_live_loose_objects_stay(tree: Tree) -> None:
    live = big("live")
    tree.put("big.bin", live, NOW)
    h = hashlib.sha256(live).hexdigest()
    orphan = tree.objects.dir / "ab" / ("c" * 62)  # a crash between write and commit
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    temp = tree.objects.dir / h[:2] / f".tmp-{h[2:]}-1-2"
    temp.write_bytes(b"half written")
    stray = tree.objects.dir / "README"  # not a fan-out directory: left alone
    stray.write_bytes(b"not ours")
    r = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    assert r.orphans_removed == 2
    assert not orphan.exists() and not temp.exists() and stray.exists()
    assert tree.loose_files() == {h}
    assert tree.contents("big.bin") == [live]


def test_gc_without_an_objects_directory(tree: Tree) -> None:
    tree.put("f", b"small", NOW)
    tree.objects.dir.rmdir()
    assert gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW).orphans_removed == 0
    assert tree.contents("f") == [b"small"]


def test_objects_of_an_unfinished_batch_are_kept(tree: Tree) -> None:
    tree.put("f", b"old content", NOW - 9 * DAY)
    tree.put("f", b"current", NOW - 8 * DAY)
    old_id = tree.objects.lookup(hashlib.sha256(b"old content").digest())
    with tree.store.transaction():
        new_id = tree.objects.put(b"batch's new content")
        tree.store.db.execute(
            "INSERT INTO batch_entries(batch_id, seq, root_id, relpath, action, old_present,"
            " old_object_id, new_object_id) VALUES(1, 0, ?, ?, 'write', 1, ?, ?)",
            (tree.root_id, b"f", old_id, new_id))
    r = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    assert r.versions_dropped == 1 and r.objects_dropped == 0
    assert tree.objects.get(old_id or 0) == b"old content"
    assert tree.objects.get(new_id) == b"batch's new content"


def test_problems_of_dropped_versions_go_with_them(tree: Tree) -> None:
    old = tree.put("f.json", b"{", NOW - 9 * DAY)
    new = tree.put("f.json", b"{}", NOW - 8 * DAY)
    with tree.store.transaction():
        tree.store.db.executemany(
            "INSERT INTO problems(version_id, validator, severity, message) VALUES(?,?,?,?)",
            [(old, "json", "error", "bad"), (new, "json", "warning", "kept")])
    gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    rows = tree.store.db.execute("SELECT version_id, message FROM problems").fetchall()
    assert rows == [(new, "kept")]


def test_the_wal_is_truncated_after_gc(tree: Tree) -> None:
    for i in range(30):
        tree.put("f", os.urandom(2000) + b"%d" % i, NOW - (60 - i) * DAY)
    gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    wal = tree.store.path / "guardian.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


# ------------------------------------------------------------------------ dry run
def test_a_dry_run_reports_and_leaves_the_store_byte_identical(tree: Tree) -> None:
    tree.put("big.bin", big("old"), NOW - 9 * DAY)
    tree.put("big.bin", big("new"), NOW - 8 * DAY)
    tree.put("f", b"one", NOW - 9 * DAY)
    tree.put("f", b"two", NOW - 8 * DAY)
    with tree.store.transaction():
        vid = tree.versions("f")[0]
        tree.store.db.execute("INSERT INTO problems(version_id, validator, severity, message)"
                              " VALUES(?, 'x', 'error', 'm')", (vid,))
    orphan = tree.objects.dir / "ab" / ("c" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    tree.store.checkpoint()
    before = store_bytes(tree.store)
    dry = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW, dry_run=True)
    assert store_bytes(tree.store) == before
    assert dry.to_json() == {"dry_run": True, "versions_dropped": 2, "objects_dropped": 2,
                             "bytes_freed": dry.bytes_freed, "files_affected": 2,
                             "orphans_removed": 0, "objects_rebased": 0,
                             "objects_repacked": 0}
    assert dry.bytes_freed >= len(big("old"))
    real = gc(tree.store, keep_versions=1, keep_days=0, now_ns=NOW)
    assert real.to_json() == {**dry.to_json(), "dry_run": False, "orphans_removed": 1}
    assert tree.contents("f") == [b"two"]
