"""``degraded`` tells the truth: true in every state in which writes are not being recorded.

Before, ``status`` said ``degraded: false`` while every capture failed because the store's disk
was full. A full store here is a real small tmpfs mount (root only, like CI). (A read-only
remount is refused while the daemon holds the database open for writing, so the other store
failures take the same path untested: any error of a capture defers it and degrades.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cli, Watch, sha256


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root and tmpfs mounts to make a real full or read-only filesystem")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)


def _store_health(w: Watch, start: int, degraded: bool) -> dict[str, object]:
    return w.wait(lambda e: e["event"] == "health" and e["degraded"] is degraded
                  and (not degraded or "store" in [c["cause"] for c in e["causes"]]),
                  timeout=90, start=start, what=f"health degraded={degraded}")


def test_a_full_store_is_degraded_until_it_records_again(
        root: Path, small_fs: Path, env: dict[str, str]) -> None:
    store = small_fs / "store"
    w = Watch([root], store, env)
    cli = Cli(env, store, root.parent)
    try:
        w.ready()
        assert cli.json("status")["degraded"] is False
        m = w.mark()
        filler = small_fs / "filler"
        _fill(filler)
        data = os.urandom(512 * 1024)  # incompressible, a loose object: needs space
        (root / "big.bin").write_bytes(data)
        w.wait(lambda e: e["event"] == "error" and "cannot record" in e["message"],
               timeout=30, start=m, what="a store error")
        _store_health(w, m, True)
        status = cli.json("status")
        assert status["degraded"] is True, status
        assert [c["cause"] for c in status["degraded_causes"]] == ["store"], status
        assert "cannot record" in status["degraded_causes"][0]["message"]
        m2 = w.mark()
        filler.unlink()
        w.version(root / "big.bin", sha256=sha256(data), timeout=90)
        _store_health(w, m2, False)
        status = cli.json("status")
        assert status["degraded"] is False and status["degraded_causes"] == [], status
        assert cli.json("verify")["ok"] is True
    finally:
        assert w.stop() == 0
        w.close()
    assert not w.raw, w.raw[:5]
