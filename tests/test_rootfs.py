"""Guardian's own writes stay inside the root and are atomic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from guardian.errors import OutsideRootError
from guardian.rootfs import RootFS


def test_write_is_atomic_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    fs = RootFS(os.fsencode(tmp_path))
    st = fs.write(b"a/b/c.txt", b"payload", 0o100640)
    target = tmp_path / "a" / "b" / "c.txt"
    assert target.read_bytes() == b"payload"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.stat().st_ino == st.st_ino
    fs.write(b"a/b/c.txt", b"second", 0o100600)
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["c.txt"]


@pytest.mark.parametrize("rel", [b"../escape.txt", b"a/../../x", b"/etc/passwd", b"", b"a//b"])
def test_paths_that_leave_the_root_are_refused(tmp_path: Path, rel: bytes) -> None:
    with pytest.raises(OutsideRootError):
        RootFS(os.fsencode(tmp_path / "root")).write(rel, b"x", 0o644)


def test_symlinked_parent_is_refused_even_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    fs = RootFS(os.fsencode(root))
    with pytest.raises(OutsideRootError):
        fs.write(b"link/f.txt", b"x", 0o644)
    with pytest.raises(OutsideRootError):
        fs.remove(b"link/f.txt")
    assert list(outside.iterdir()) == []


def test_replacing_a_symlink_replaces_the_link_not_its_target(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (root / "f.txt").symlink_to(victim)
    RootFS(os.fsencode(root)).write(b"f.txt", b"new", 0o644)
    assert victim.read_text() == "keep me"
    assert not (root / "f.txt").is_symlink() and (root / "f.txt").read_text() == "new"


def test_directories_are_never_removed_or_overwritten(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    fs = RootFS(os.fsencode(tmp_path))
    with pytest.raises(IsADirectoryError):
        fs.write(b"d", b"x", 0o644)
    with pytest.raises(IsADirectoryError):
        fs.remove(b"d")
