"""Early reads (guardian.capture.early): a closed file is read at once, so a version rewritten
before the next group commit is still recorded, in order; temp files renamed into place are not
recorded on their own. Real files, a real store, the recorder's own threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guardian.capture.early import INLINE_MAX
from guardian.capture.recorder import Recorder
from guardian.rules.settings import Settings
from guardian.store.db import Store
from guardian.store.objects import Objects

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


def _contents(rec: Recorder, rel: bytes) -> list[bytes | None]:
    fid = rec.store.file_id(1, rel, create=False)
    assert fid is not None
    objects = Objects(rec.store)
    return [None if v.object_id is None else objects.get(v.object_id)
            for v in reversed(rec.store.versions_of(fid))]


def test_every_closed_version_is_recorded_in_order(rec: Recorder) -> None:
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    key = (1, b"hot.txt")
    for i in range(5):  # rewritten five times before anything is recorded
        (root / "hot.txt").write_bytes(b"version %d\n" % i)
        early.read_soon(key)
        wait_until(early.done, what="the early read")
    res = rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert [r.kind for r in res.recorded] == ["created"] + ["modified"] * 4
    assert _contents(rec, b"hot.txt") == [b"version %d\n" % i for i in range(5)]
    assert early.pending() == 0
    # Nothing new since: the next capture reads the file once more and records nothing.
    again = rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert again.recorded == [] and again.unchanged == 1


def test_an_unchanged_file_is_not_recorded_twice(rec: Recorder) -> None:
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    (root / "a.txt").write_bytes(b"once\n")
    early.read_soon((1, b"a.txt"))
    early.read_soon((1, b"a.txt"))  # two closes of the same content
    res = rec.capture([(1, b"a.txt")], origin="watcher", confirm_missing=False, early=True)
    assert [r.kind for r in res.recorded] == ["created"]
    assert _contents(rec, b"a.txt") == [b"once\n"]


def test_a_temp_file_renamed_into_place_is_recorded_only_there(rec: Recorder) -> None:
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    (root / "notes.md").write_bytes(b"old\n")
    rec.capture([(1, b"notes.md")], origin="watcher", confirm_missing=True)
    (root / ".notes.md.tmp1").write_bytes(b"new\n")  # an atomic save, as sed -i does it
    early.read_soon((1, b".notes.md.tmp1"))
    wait_until(early.done, what="the early read")
    os.replace(root / ".notes.md.tmp1", root / "notes.md")
    early.read_soon((1, b"notes.md"))
    res = rec.capture([(1, b".notes.md.tmp1"), (1, b"notes.md")], origin="watcher",
                      confirm_missing=True, early=True)
    assert [(r.relpath, r.kind) for r in res.recorded] == [(b"notes.md", "modified")]
    assert _contents(rec, b"notes.md") == [b"old\n", b"new\n"]
    assert rec.store.file_id(1, b".notes.md.tmp1", create=False) is None


def test_a_file_written_and_deleted_before_the_commit_is_kept(rec: Recorder) -> None:
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    (root / "brief.txt").write_bytes(b"here a moment\n")
    early.read_soon((1, b"brief.txt"))
    wait_until(early.done, what="the early read")
    (root / "brief.txt").unlink()
    res = rec.capture([(1, b"brief.txt")], origin="watcher", confirm_missing=True, early=True)
    assert [r.kind for r in res.recorded] == ["created", "deleted"]
    assert _contents(rec, b"brief.txt") == [b"here a moment\n", None]


def test_a_small_file_is_read_by_the_thread_that_heard_it_closed(rec: Recorder) -> None:
    """Read inline: done when read_soon returns, so the next rewrite cannot come first."""
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    key = (1, b"small.txt")
    for i in range(3):
        (root / "small.txt").write_bytes(b"small %d\n" % i)
        early.read_soon(key)
        assert early.done()  # no waiting: the read happened in read_soon itself
    rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert _contents(rec, b"small.txt") == [b"small %d\n" % i for i in range(3)]


def test_a_big_file_is_read_by_the_reading_threads_in_order(rec: Recorder) -> None:
    """Over INLINE_MAX the read is left to the reading threads; versions still in order,
    also when a small version of the same path is read inline in between."""
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    key = (1, b"big.bin")
    contents = [bytes([65 + i]) * (INLINE_MAX + 1 + i) for i in range(3)]
    contents.insert(2, b"small in between\n")
    for data in contents:
        (root / "big.bin").write_bytes(data)
        early.read_soon(key)
        wait_until(early.done, what="the early read")
    rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert _contents(rec, b"big.bin") == contents


def test_a_path_last_heard_as_a_close_read_early_is_recorded_from_that_read(
        rec: Recorder) -> None:
    """No second read at record time for it; an event heard after the close brings one."""
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    key = (1, b"hot.txt")
    (root / "hot.txt").write_bytes(b"closed\n")
    assert early.read_soon(key)
    early.heard(key, last_read=True)
    # Written again, its event not routed yet: this commit records what the close left.
    (root / "hot.txt").write_bytes(b"written after, event not routed yet\n")
    res = rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert [r.kind for r in res.recorded] == ["created"]
    assert _contents(rec, b"hot.txt") == [b"closed\n"]
    # Its event is routed: the next commit reads the file.
    early.heard(key, last_read=False)
    res = rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert [r.kind for r in res.recorded] == ["modified"]
    assert _contents(rec, b"hot.txt") == [b"closed\n", b"written after, event not routed yet\n"]


def test_a_write_heard_after_the_close_is_read_at_record_time(rec: Recorder) -> None:
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    key = (1, b"log.txt")
    (root / "log.txt").write_bytes(b"line 1\n")
    early.read_soon(key)
    early.heard(key, last_read=True)
    with open(root / "log.txt", "ab") as f:  # appended, the file still open
        f.write(b"line 2\n")
        f.flush()
        early.heard(key, last_read=False)
        rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert _contents(rec, b"log.txt") == [b"line 1\n", b"line 1\nline 2\n"]


def test_a_close_read_early_that_found_nothing_is_read_again(rec: Recorder) -> None:
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    key = (1, b"quick.txt")
    (root / "quick.txt").write_bytes(b"here\n")
    (root / "quick.txt").rename(root / "aside.txt")
    early.read_soon(key)  # the close is heard after the file had gone
    early.heard(key, last_read=True)
    (root / "aside.txt").rename(root / "quick.txt")  # back (its move's events not routed)
    res = rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert [r.kind for r in res.recorded] == ["created"]
    assert _contents(rec, b"quick.txt") == [b"here\n"]


def test_after_lost_events_a_path_is_read_again_at_record_time(rec: Recorder) -> None:
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    key = (1, b"lost.txt")
    (root / "lost.txt").write_bytes(b"closed\n")
    early.read_soon(key)
    early.heard(key, last_read=True)
    (root / "lost.txt").write_bytes(b"its events lost in an overflow\n")
    early.heard_nothing()
    rec.capture([key], origin="watcher", confirm_missing=False, early=True)
    assert _contents(rec, b"lost.txt") == [b"closed\n", b"its events lost in an overflow\n"]


def test_the_budget_is_released_by_the_commit_that_records_the_reads(
        rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the budget a close is not read early (it is recorded when its settle window ends);
    once a commit records what was held, closes are read early again. Reads on the reading
    threads and inline, released on this thread: the per-thread counters must add up."""
    from guardian.capture import early as early_mod

    monkeypatch.setattr(early_mod, "BUDGET_READS", 4)
    root = next(iter(rec.roots.values())).path
    early = rec.read_early()
    for rnd in range(3):
        keys = [(1, b"f%d.txt" % i) for i in range(6)]
        answers = []
        for i, key in enumerate(keys):
            (root / key[1].decode()).write_bytes(b"round %d file %d\n" % (rnd, i))
            answers.append(early.read_soon(key, inline=i % 2 == 0))
        assert answers == [True] * 4 + [False] * 2, rnd
        wait_until(early.done, what="the early reads")
        res = rec.capture(keys, origin="watcher", confirm_missing=False, early=True)
        assert len(res.recorded) == 6  # the two not read early are read at record time
        assert early.pending() == 0
