"""A scratch "container" for the headless tests: empty HOME, XDG and TMPDIR directories, a
``guardian`` on PATH (this interpreter's), no XDG_RUNTIME_DIR (as in most containers), and a
way to list everything that appeared outside the store and the watched tree."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The directories a program may write to unasked (all empty at the start).
PRIVATE = ("home", "config", "cache", "data", "state", "tmp")


class Scratch:
    def __init__(self) -> None:
        # Short (sockets hold 108 bytes) and outside pytest's tree, like a container's /.
        self.base = Path(tempfile.mkdtemp(prefix="gsc", dir="/tmp")).resolve()
        for name in (*PRIVATE, "bin", "root", "vol"):
            (self.base / name).mkdir()
        self.root = self.base / "root"
        self.vol = self.base / "vol"
        self.bin = self.base / "bin"
        wrapper = self.bin / "guardian"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m guardian "$@"\n')
        wrapper.chmod(0o755)
        self.env = {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.base / "home"),
            "XDG_CONFIG_HOME": str(self.base / "config"),
            "XDG_CACHE_HOME": str(self.base / "cache"),
            "XDG_DATA_HOME": str(self.base / "data"),
            "XDG_STATE_HOME": str(self.base / "state"),
            "TMPDIR": str(self.base / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        if "PYTHONPATH" in os.environ:
            self.env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    def map(self, container_path: str) -> Path:
        """Where a path of the container's lives in the scratch tree."""
        return self.base / "c" / container_path.lstrip("/")

    def written(self) -> set[str]:
        """Every entry that appeared in the private directories (relative paths)."""
        found: set[str] = set()
        for name in PRIVATE:
            top = self.base / name
            stack = [top]
            while stack:
                d = stack.pop()
                for entry in os.scandir(d):
                    found.add(str(Path(entry.path).relative_to(self.base)))
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        return found

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def box() -> Iterator[Scratch]:
    """Import it into a test module to use it (``from .scratch import box``)."""
    s = Scratch()
    yield s
    s.cleanup()


def no_stdin() -> None:
    """preexec_fn: file descriptor 0 closed, as under some supervisors (no TTY, no stdin)."""
    os.close(0)
