"""SVG snapshots of the sessions screen at 80x24 and 120x40, the conventions of
test_tui_snapshots (a fixed store and clock, no animations, no daemon): two agent sessions
recorded through the store's own agent calls at fixed times, the files on disk as the first
one left them. ``GUARDIAN_UPDATE_SNAPSHOTS=1`` rewrites them."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardian.store.db import NewVersion, Store
from guardian.store.objects import Objects
from tests.test_tui_snapshots import NOW, PLACEHOLDER, check, footer_shows, normalise, until
from tui.app import GuardianApp, make_app
from tui.screens.sessions import ConfirmUndo, Sessions

S1 = "5f1c2a9e-7d41-4b8e-9c3a-2e6f0d8b1a47"
S2 = "b7e04d11-93aa-4c2e-8f65-0a9d2c7e5b10"
MIN = 60 * 10**9
T0 = NOW * 10**9 - 120 * MIN  # the first session starts two hours before "now"

BASE = {"notes.txt": b"hello world\nsecond line\n", "old.txt": b"old\n",
        "src/app.py": b"def main():\n    print('hi')\n"}
#: (minutes after T0, prompt (1 or 2), tool, how, relpath, content or None, ambiguous)
CHANGES = [
    (2, 1, "Write", "tool", "docs.md", b"# Docs\n\nUsage: run it.\n", False),
    (4, 1, "Edit", "tool", "src/app.py", b"def main():\n    print('hello')\n    return 0\n",
     False),
    (31, 2, "Bash", "window", "notes.txt", b"hello world\nsecond line\nmore\n", False),
    (33, 2, "Bash", "window", "old.txt", None, True),
]


@pytest.fixture
def sessions_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # no daemon is found
    root = Path(tempfile.mkdtemp(prefix="gsnap-", dir="/tmp"))
    assert len(str(root)) == len(PLACEHOLDER)
    disk = dict(BASE)
    for _m, _p, _t, _h, rel, data, _a in CHANGES:
        disk.pop(rel, None)
        if data is not None:
            disk[rel] = data
    for rel, data in disk.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    store = tmp_path / "store"
    with Store.open(store, write=True, create=True) as s:
        [r] = s.add_roots([root])

        def version(rel: str, data: bytes | None, at: int, kind: str, origin: str) -> int:
            fid = s.file_id(r.id, rel.encode())
            assert fid is not None
            oid = Objects(s).put(data) if data is not None else None
            return s.add_version(NewVersion(fid, oid, data is not None, kind, origin,  # type: ignore[arg-type]
                                            0o100644 if data is not None else None,
                                            len(data) if data is not None else None),
                                 time_ns=at)

        with s.transaction():
            for rel, data in BASE.items():
                version(rel, data, T0 - 60 * MIN, "baseline", "scan")
            s.agent_session_seen(S1, "claude", T0, cwd=str(root))
            prompts = {1: s.agent_prompt_start(S1, None, "add a docs page and fix the "
                                               "greeting in src/app.py", T0),
                       2: 0}
            for minute, prompt, tool, how, rel, data, amb in CHANGES:
                at = T0 + minute * MIN
                if prompt == 2 and not prompts[2]:
                    prompts[2] = s.agent_prompt_start(S1, None, "clean up the old files",
                                                      at - MIN)
                kind = "deleted" if data is None else (
                    "created" if rel not in BASE else "modified")
                vid = version(rel, data, at, kind, "agent" if how == "tool" else "watcher")
                call = s.agent_call_add(S1, prompts[prompt], f"t{minute}", tool,
                                        "write" if how == "tool" else "window", at,
                                        paths=[str(root / rel)], outcome="done", ended=True,
                                        command=None if how == "tool" else f"rm {rel}")
                s.agent_label([(vid, call, S1, prompts[prompt], how, amb)])
            s.agent_call_add(S1, prompts[1], "t5", "Write", "write", T0 + 5 * MIN,
                             paths=[str(root / "src/bad.py")], outcome="denied",
                             reason="src/bad.py:1:5: invalid syntax", ended=True)
            s.agent_session_seen(S1, "claude", T0 + 40 * MIN, ended=True)
            s.agent_session_seen(S2, "gemini", T0 - 30 * MIN)
            p = s.agent_prompt_start(S2, None, "try a config change", T0 - 30 * MIN)
            s.agent_call_add(S2, p, "g1", "write_file", "write", T0 - 29 * MIN,
                             paths=[str(root / "config.json")], outcome="denied",
                             reason="config.json:1:2: expecting value", ended=True)
            s.agent_session_seen(S2, "gemini", T0 - 25 * MIN, ended=True)
    yield store
    shutil.rmtree(root, ignore_errors=True)
    os.environ.pop("TZ", None)
    time.tzset()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_sessions_screen(sessions_store: Path, size: tuple[int, int]) -> None:
    with Store.open(sessions_store, write=False) as s:
        root = str(s.roots()[0].path)
    tag = f"{size[0]}x{size[1]}"

    async def main() -> None:
        app: GuardianApp = make_app(sessions_store, clock=lambda: float(NOW), live=False)
        async with app.run_test(size=size, notifications=False) as pilot:
            await until(pilot, lambda: app.stats_seq > 0, "stats")
            await pilot.press("s")
            screen = await until(pilot, lambda: isinstance(app.screen, Sessions)
                                 and app.screen, "sessions")
            await until(pilot, lambda: screen.files_of == (S1, None) and len(screen.files) == 4,
                        "the first session's files")
            await pilot.press("enter", "down", "down", "enter")  # prompt 2, its files
            await until(pilot, lambda: screen.prompt_id is not None
                        and screen.files_of == (S1, screen.prompt_id)
                        and len(screen.files) == 2 and screen.file is not None
                        and screen.file.relpath == b"notes.txt", "prompt 2's notes.txt")
            await until(pilot, lambda: "more" in str(getattr(
                screen.query_one("#sess-diff").content, "code", "")), "its diff")
            await app.workers.wait_for_complete()
            await footer_shows(app, pilot, "Undo")
            check(f"sessions-{tag}", normalise(app.export_screenshot(), root))

            await pilot.press("u")
            await until(pilot, lambda: isinstance(app.screen, ConfirmUndo), "the plan")
            await until(pilot, lambda: "Cancel" in app.export_screenshot(), "buttons")
            await pilot.pause()
            check(f"sessions-undo-{tag}", normalise(app.export_screenshot(), root))
            await pilot.press("escape")

    asyncio.run(main())
