"""Core tier: the store, capture and settling, driven through their Python API on real files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardian.capture import recorder as capture
from guardian.capture.recorder import Recorder
from guardian.daemon.settle import Settler
from guardian.errors import StoreBusyError
from guardian.rules.ignore import IgnoreMatcher
from guardian.rules.settings import Settings, load_defaults, parse_size
from guardian.store.db import RACY_NS, Store
from guardian.store.objects import LOOSE_THRESHOLD, Objects

from .conftest import wait_until


@pytest.fixture
def rec(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    store = Store.open(tmp_path / "store", write=True, create=True)
    roots = store.add_roots([root.resolve()])
    r = Recorder(store, roots, Settings(max_file_size=1024 * 1024))
    yield r
    r.close()
    store.close()


def _root(rec: Recorder) -> Path:
    return next(iter(rec.roots.values())).path


def test_reconcile_does_not_reread_unchanged_files(rec: Recorder, monkeypatch) -> None:
    root = _root(rec)
    for i in range(30):
        (root / f"f{i}.txt").write_text(str(i))
    first = rec.reconcile(1, origin="scan", confirm_missing=True, baseline=True)
    assert len(first.recorded) == 30
    reads: list[bytes] = []
    real = capture._read_regular

    def spy(root_id: int, rel: bytes, dfd: int, name: bytes) -> capture.Seen:
        reads.append(rel)
        return real(root_id, rel, dfd, name)

    # Files seen within the racy window of their last change are re-read once; then never.
    newest = max(p.stat().st_ctime_ns for p in root.iterdir())
    wait_until(lambda: time.time_ns() - newest > RACY_NS, what="the racy window to pass")
    assert rec.reconcile(1, origin="scan", confirm_missing=True).recorded == []
    monkeypatch.setattr(capture, "_read_regular", spy)
    second = rec.reconcile(1, origin="scan", confirm_missing=True)
    assert second.recorded == [] and reads == [] and second.unchanged == 30
    (root / "f3.txt").write_text("changed")
    third = rec.reconcile(1, origin="scan", confirm_missing=True)
    assert reads == [b"f3.txt"] and [r.kind for r in third.recorded] == ["modified"]


def test_racy_stat_is_reread(rec: Recorder) -> None:
    root = _root(rec)
    f = root / "racy.txt"
    f.write_text("aaaa")
    rec.reconcile(1, origin="scan", confirm_missing=True)
    st = f.stat()
    # Same size, same mtime (as after a second write in the same clock tick).
    f.write_text("bbbb")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = rec.reconcile(1, origin="scan", confirm_missing=True)
    assert [r.kind for r in res.recorded] == ["modified"]


def test_objects_are_deduplicated_and_big_ones_are_loose(rec: Recorder) -> None:
    root = _root(rec)
    big = os.urandom(LOOSE_THRESHOLD + 10)
    (root / "a.bin").write_bytes(big)
    (root / "b.bin").write_bytes(big)
    (root / "c.txt").write_text("same")
    (root / "d.txt").write_text("same")
    rec.reconcile(1, origin="scan", confirm_missing=True)
    objs = list(Objects(rec.store).all())
    assert len(objs) == 2
    loose = [o for o in objs if o.loose]
    assert len(loose) == 1 and Objects(rec.store).loose_path(loose[0].hash).exists()
    assert Objects(rec.store).get(loose[0].id) == big


def test_oversize_files_are_metadata_only_with_a_warning(rec: Recorder) -> None:
    root = _root(rec)
    (root / "huge.bin").write_bytes(b"x" * (1024 * 1024 + 1))
    res = rec.reconcile(1, origin="scan", confirm_missing=True)
    [v] = res.recorded
    assert v.present and v.sha256 is None and "size cap" in (v.note or "")
    assert res.warnings and "size cap" in res.warnings[0].message
    assert rec.reconcile(1, origin="scan", confirm_missing=True).recorded == []


def test_missing_is_deferred_unless_confirmed(rec: Recorder) -> None:
    root = _root(rec)
    (root / "f").write_text("x")
    rec.reconcile(1, origin="scan", confirm_missing=True)
    (root / "f").unlink()
    res = rec.capture([(1, b"f")], origin="watcher", confirm_missing=False)
    assert res.recorded == [] and res.missing == [(1, b"f")]
    res = rec.capture([(1, b"f")], origin="watcher", confirm_missing=True)
    assert [r.kind for r in res.recorded] == ["deleted"]


def test_file_replaced_by_directory_and_back(rec: Recorder) -> None:
    root = _root(rec)
    (root / "x").write_text("file")
    rec.reconcile(1, origin="scan", confirm_missing=True)
    (root / "x").unlink()
    (root / "x").mkdir()
    (root / "x" / "inner").write_text("in dir")
    res = rec.capture([(1, b"x")], origin="watcher", confirm_missing=True)
    assert [(r.relpath, r.kind) for r in res.recorded] == [(b"x", "deleted")]
    assert res.subtrees == [(1, b"x")]
    res = rec.reconcile(1, b"x", origin="watcher", confirm_missing=True)
    assert [(r.relpath, r.kind) for r in res.recorded] == [(b"x/inner", "created")]


def test_writer_lock_is_exclusive_and_readers_work(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s", write=True, create=True)
    try:
        with pytest.raises(StoreBusyError):
            Store.open(tmp_path / "s", write=True)
        r = Store.open(tmp_path / "s", write=False)
        assert r.counts()["versions"] == 0
        r.close()
    finally:
        s.close()
    Store.open(tmp_path / "s", write=True).close()  # released on close


def test_the_wal_is_checkpointed_off_the_write_path_and_stays_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits leave the WAL alone (SQLite would checkpoint inside the commit that crosses
    1,000 pages) until it passes the inline limit; a checkpoint then starts it over, cut back
    to half the limit, and every version stays readable."""
    import guardian.store.db as store_mod

    def fill(store: Store, n: int, until: int = 0) -> tuple[list[int], list[int]]:
        sizes, ids = [], []
        while len(sizes) < n or (sizes[-1] < until and len(sizes) < 400):
            with store.transaction():  # incompressible: 100 KiB of pages each
                ids.append(Objects(store).put(os.urandom(100 * 1024)))
            sizes.append((store.path / "guardian.db-wal").stat().st_size)
        return sizes, ids

    pages_1000 = 1000 * store_mod.PAGE_SIZE
    monkeypatch.setattr(store_mod, "WAL_INLINE_CHECKPOINT", 2 * pages_1000)
    s = Store.open(tmp_path / "big", write=True, create=True)
    try:
        assert s.page_size() == store_mod.PAGE_SIZE
        sizes, _ = fill(s, 1, until=pages_1000 + 1024 * 1024)
        assert sizes == sorted(sizes)  # no checkpoint in any commit
        s.checkpoint()
        assert s.commits_since_checkpoint == 0
    finally:
        s.close()

    limit = 2 * 1024 * 1024
    monkeypatch.setattr(store_mod, "WAL_INLINE_CHECKPOINT", limit)
    s = Store.open(tmp_path / "small", write=True, create=True)
    try:
        sizes, ids = fill(s, 40)
        assert max(sizes) <= limit + 512 * 1024          # checkpointed inline near the limit
        assert min(sizes[20:]) <= limit // 2 + 256 * 1024  # ...started over and cut back
    finally:
        s.close()
    r = Store.open(tmp_path / "small", write=False)
    try:
        assert all(len(Objects(r).get(i)) == 100 * 1024 for i in ids)
    finally:
        r.close()


def test_ignore_matcher_follows_gitignore_semantics(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.log\n!keep.log\nbuild/\n/top-only.txt\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").write_text("!deep.log\nlocal.txt\n")
    m = IgnoreMatcher(os.fsencode(tmp_path))
    assert m.ignored(b"a.log") and not m.ignored(b"keep.log")
    assert m.ignored(b"build", is_dir=True) and m.ignored(b"build/x.c")
    assert m.ignored(b"top-only.txt") and not m.ignored(b"sub/top-only.txt")
    assert not m.ignored(b"sub/deep.log") and m.ignored(b"sub/other.log")
    assert m.ignored(b"sub/local.txt") and not m.ignored(b"local.txt")
    assert m.ignored(b".git/config") and m.ignored(b"x/.git", is_dir=True)
    assert m.ignored(b".~guardian.f.txt.1234")
    assert "IgnoreMatcher" in repr(m)


def test_settler_windows_cap_and_defer() -> None:
    s: Settler[str] = Settler(window=0.1, cap=1.0)
    s.touch("a", 0.0)
    assert s.pop_due(0.05) == [] and s.next_due() == pytest.approx(0.1)
    s.touch("a", 0.08)  # still being written: the window restarts
    assert s.pop_due(0.15) == [] and s.pop_due(0.2) == ["a"]
    for t in range(200):  # written without pause: processed at the cap anyway
        s.touch("b", t * 0.01)
    assert s.pop_due(1.0) == ["b"]
    s.touch("c", 0.0, done=True)  # closed after writing: a short window suffices
    assert s.pop_due(0.01) == ["c"]
    s.defer("d", 5.0)
    assert s.pop_due(4.9) == [] and s.pop_due(5.0) == ["d"]
    s.touch("e", 0.0)
    assert s.pop_all() == ["e"] and len(s) == 0 and s.next_due() is None


def test_settings_presets_and_sizes() -> None:
    d = load_defaults()
    assert d.max_file_size == 50 * 1024 * 1024 and d.keep_versions >= 1
    assert parse_size("2MiB", "x") == 2 * 1024 * 1024 and parse_size(10, "x") == 10
    with pytest.raises(Exception, match="expected a size"):
        parse_size("lots", "rules/default.toml: rule[0].max_file_size")


def test_core_import_is_cheap_and_never_touches_the_ui() -> None:
    code = ("import sys, guardian.cli.main, guardian.daemon.loop, guardian.service, "
            "guardian.store.history;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"
    code = ("import sys, guardian.cli.main;"
            "print([m for m in ('watchdog', 'anyio', 'sqlite3', 'zstandard') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"


def test_the_public_names_load_only_when_used() -> None:
    code = ("import sys, guardian; before = 'guardian.api' in sys.modules;"
            "from guardian import Batch, BatchError;"
            "print(before, Batch.__module__, BatchError.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.split() == ["False", "guardian.api", "guardian.errors"]
