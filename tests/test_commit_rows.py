"""A capture commit's rows, read in one statement and written in one per table
(guardian.store.commit_rows): the history they leave is the one a row-at-a-time commit left."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from guardian.capture.recorder import FILE, Recorder, Seen
from guardian.rules.settings import Settings
from guardian.store import commit_rows
from guardian.store.db import RACY_NS, Store
from guardian.store.objects import DELTA_MIN_SIZE, Objects

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


def _history(store: Store, rel: str) -> list[tuple[str, bytes | None, str | None]]:
    """(kind, content, note) of a path's versions, oldest first, from a fresh reader."""
    fid = store.file_id(1, rel.encode(), create=False)
    assert fid is not None, rel
    objects = Objects(store)
    return [(v.kind, objects.get(v.object_id) if v.object_id is not None else None, v.note)
            for v in reversed(store.versions_of(fid))]


def test_a_commit_bigger_than_one_statement_keeps_every_rewrite_move_and_delete(
        rec: Recorder, tmp_path: Path) -> None:
    """1,000 paths in one commit: more than a statement's parameters, so every read and write
    of it is split; rewrites (some as deltas, some small), renames and deletes together."""
    root = next(iter(rec.roots.values())).path
    n = 1000
    small = [f"s{i:04d}.txt" for i in range(n // 2)]
    big = [f"b{i:04d}.txt" for i in range(n // 2)]
    pad = "x" * DELTA_MIN_SIZE
    for name in small:
        (root / name).write_text(f"{name} v1\n")
    for name in big:
        (root / name).write_text(f"{name} v1\n{pad}\n")
    rec.reconcile(1, origin="scan", confirm_missing=True, baseline=True)
    assert n > commit_rows._MAX_PARAMS
    moved = small[:40] + big[:40]
    gone = small[40:70] + big[40:70]
    for name in small[70:]:
        (root / name).write_text(f"{name} v2\n")
    for name in big[70:]:
        (root / name).write_text(f"{name} v2\n{pad}\n")
    for name in moved:
        os.rename(root / name, root / f"moved-{name}")
    for name in gone:
        (root / name).unlink()
    result = rec.reconcile(1, origin="scan", confirm_missing=True)
    assert result.complete

    reader = Store.open(tmp_path / "store", write=False)
    try:
        for name in small[70:]:
            assert _history(reader, name) == [
                ("baseline", f"{name} v1\n".encode(), None),
                ("modified", f"{name} v2\n".encode(), None)]
        for name in big[70:]:
            assert [c for _k, c, _n in _history(reader, name)] == [
                f"{name} v1\n{pad}\n".encode(), f"{name} v2\n{pad}\n".encode()]
        for name in moved:
            assert [k for k, _c, _n in _history(reader, name)] == ["baseline", "moved"]
            kind, content, note = _history(reader, f"moved-{name}")[-1]
            assert (kind, note) == ("moved", f"from {name}")
            assert content == (root / f"moved-{name}").read_bytes()
        for name in gone:
            assert [k for k, _c, _n in _history(reader, name)] == ["baseline", "deleted"]
        live = reader.live_files(1)
        assert len(live) == n - len(gone)
    finally:
        reader.close()

    # The scan cache written in the same statements: nothing is read or recorded again.
    newest = max(p.stat().st_ctime_ns for p in root.iterdir())
    wait_until(lambda: time.time_ns() - newest > RACY_NS, what="the racy window to pass")
    rec.reconcile(1, origin="scan", confirm_missing=True)  # racy entries, read once more
    again = rec.reconcile(1, origin="scan", confirm_missing=True)
    assert again.recorded == [] and again.unchanged == n - len(gone)


def test_versions_of_one_path_in_one_commit_stay_in_order(rec: Recorder) -> None:
    """The early reads of a file rewritten three times before a commit: three versions, the
    newest its head, each the base of the next (what the commit reads of its own writes)."""
    root = next(iter(rec.roots.values())).path
    p = root / "f.txt"
    p.write_text("v0\n")
    rec.reconcile(1, origin="scan", confirm_missing=True, baseline=True)
    seen: list[Seen] = []
    for i in (1, 2, 3):
        p.write_text(f"v{i}\n")
        s = rec.observe([(1, b"f.txt")])[0]
        assert s.state == FILE
        seen.append(s)
    result = rec._record(seen, origin="watcher", confirm_missing=False, baseline=False)
    assert [r.kind for r in result.recorded] == ["modified"] * 3
    assert [k for k, _c, _n in _history(rec.store, "f.txt")] == ["baseline"] + ["modified"] * 3
    assert [c for _k, c, _n in _history(rec.store, "f.txt")][1:] == [b"v1\n", b"v2\n", b"v3\n"]
    _fid, head = rec.store.file_and_head(1, b"f.txt")
    assert head is not None and head.id == result.recorded[-1].id
