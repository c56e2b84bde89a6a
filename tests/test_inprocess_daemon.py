"""The daemon as a library, in the test's event loop (see tests/inprocess.py): versions,
verdicts and reverts arrive as typed events, the control methods answer, a stop is clean."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from guardian.client import daemon as connect
from guardian.events import Alert, Stopped, Validation, VersionRecorded
from guardian.rules.rulefiles import RULE_FILE
from guardian.store.db import Store

from .inprocess import running_daemon

pytestmark = pytest.mark.anyio

JSON_REVERT = '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\non_invalid = "revert"\n'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Guardian location inside this test's temp dirs (sockets: a short path)."""
    runtime = tempfile.mkdtemp(prefix="grt", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("GUARDIAN_STORE", raising=False)
    yield
    shutil.rmtree(runtime, ignore_errors=True)


async def test_a_write_arrives_as_a_typed_version_event(root: Path, store: Path) -> None:
    (root / "old.txt").write_text("before\n")
    async with running_daemon([root], store) as d:
        m = d.mark()
        (root / "new.txt").write_text("hello\n")
        v = await d.wait(VersionRecorded, lambda e: e.path.endswith("/new.txt"), start=m)
        assert v.kind == "created" and v.origin == "watcher" and v.size == 6
        m = d.mark()
        (root / "old.txt").write_text("after\n")
        v = await d.wait(VersionRecorded, lambda e: e.path.endswith("/old.txt"), start=m)
        assert v.kind == "modified"
        # The store holds both versions of old.txt, the first from the baseline.
        with Store.open(store, write=False) as reader:
            fid = reader.file_id(1, b"old.txt", create=False)
            assert fid is not None
            assert [x.kind for x in reader.versions_of(fid)] == ["modified", "baseline"]
    assert isinstance(d.events[-1], Stopped)


async def test_an_invalid_write_is_reverted_and_both_versions_are_kept(
        root: Path, store: Path) -> None:
    (root / RULE_FILE).write_text(JSON_REVERT)
    (root / "conf.json").write_text('{"ok": true}\n')
    async with running_daemon([root], store) as d:
        m = d.mark()
        (root / "conf.json").write_text('{"ok": true,}\n')
        verdict = await d.wait(Validation, lambda e: not e.valid, start=m)
        assert verdict.problems[0]["line"] == 1 and verdict.problems[0]["column"] == 13
        alert = await d.wait(Alert, lambda e: e.kind == "reverted", start=m)
        assert alert.path is not None and alert.path.endswith("conf.json")
        back = await d.wait(VersionRecorded, lambda e: e.kind == "reverted", start=m)
        assert alert.versions == [verdict.id, 2, back.id]  # rejected, put back, the new one
        assert (root / "conf.json").read_text() == '{"ok": true}\n'
        # The rejected bytes are kept too: a version of their own.
        with Store.open(store, write=False) as reader:
            fid = reader.file_id(1, b"conf.json", create=False)
            assert fid is not None
            kinds = [x.kind for x in reader.versions_of(fid)]
            assert kinds == ["reverted", "rejected",
                             "baseline"], kinds


async def test_the_control_socket_answers_a_real_client_while_it_runs(
        root: Path, store: Path) -> None:
    async with running_daemon([root], store) as d:
        def status() -> dict[str, object]:
            conn = connect(store, timeout=5)
            assert conn is not None, "no daemon answered on the control socket"
            with conn:
                out: dict[str, object] = conn.call("status")
                return out

        out = await anyio.to_thread.run_sync(status)
        assert out["ready"] is True and out["roots"] == [str(root)]
        assert d.daemon is not None and d.daemon.socket is not None
        assert oct(d.daemon.socket.parent.stat().st_mode & 0o777) == "0o700"


async def test_a_batch_a_crash_interrupted_is_finished_when_the_daemon_starts(
        root: Path, store: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from guardian.events import WarningEvent

    for i in range(3):
        (root / f"f{i}.txt").write_text(f"old {i}\n")
    manifest = {"operations": [{"op": "write", "path": f"f{i}.txt", "content": f"new {i}\n"}
                               for i in range(3)]}
    env = dict(os.environ, GUARDIAN_FAULT="batch.rename:kill@1")  # after the commit point
    p = subprocess.run([sys.executable, "-m", "guardian", "apply", "-", "--root", str(root),
                        "--store", str(store)], input=json.dumps(manifest).encode(),
                       env=env, capture_output=True, timeout=60)
    assert p.returncode == -9, p.stderr  # killed half-way through the renames
    assert sorted((root / f"f{i}.txt").read_text() for i in range(3)) != [
        f"new {i}\n" for i in range(3)]
    async with running_daemon([root], store) as d:
        done = await d.wait(WarningEvent, lambda e: e.source == "journal")
        assert "completed" in done.message, done
        assert [(root / f"f{i}.txt").read_text() for i in range(3)] == [
            f"new {i}\n" for i in range(3)]
