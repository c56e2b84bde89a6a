"""The sessions screen against a real session: the real `guardian hook claude` subprocess fed
documented payloads around real writes and real Bash commands, a real daemon watching, then
the keys a person presses — and the bytes on disk checked after each undo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from tests.conftest import Cli
from tests.test_agents_cli import Hook, tree
from tests.test_tui import _same_places, drive, until  # noqa: F401 (the fixture, autouse)
from tui.app import GuardianApp
from tui.screens.sessions import ConfirmUndo, Sessions


def session(env: dict[str, str], store: Path, root: Path) -> tuple[dict[str, bytes],
                                                                    dict[str, bytes]]:
    """Two prompts: a Write and an Edit, then two Bash commands. (before, after) trees."""
    (root / "notes.txt").write_text("hello world\nsecond line\n")
    (root / "old.txt").write_text("old\n")
    before = tree(root)
    h = Hook(env, store, root)
    h("SessionStart", source="startup")
    h("UserPromptSubmit", prompt="add docs")
    assert h.tool("PreToolUse", "Write", "w1", file_path=root / "docs.md",
                  content="# Docs\n") is None
    (root / "docs.md").write_text("# Docs\n")
    h.tool("PostToolUse", "Write", "w1", file_path=root / "docs.md", content="# Docs\n")
    edit = {"file_path": root / "notes.txt", "old_string": "second", "new_string": "2nd"}
    assert h.tool("PreToolUse", "Edit", "e1", **edit) is None
    (root / "notes.txt").write_text("hello world\n2nd line\n")
    h.tool("PostToolUse", "Edit", "e1", **edit)
    h("Stop", stop_hook_active=False)
    h("UserPromptSubmit", prompt="clean up")
    h.bash("b1", "printf 'more\\n' >> notes.txt")
    h.bash("b2", "rm old.txt")
    h("Stop", stop_hook_active=False)
    h("SessionEnd", reason="exit")
    return before, tree(root)


def rows(screen: Sessions, table: str) -> list[list[str]]:
    t = screen.query_one(f"#{table}", DataTable)
    return [[str(c) for c in t.get_row_at(i)] for i in range(t.row_count)]


def shown_diff(screen: Sessions) -> str:
    """The diff pane's text (a Syntax of the unified diff, or a note)."""
    content = screen.query_one("#sess-diff", Static).content
    return str(getattr(content, "code", content))


def files(screen: Sessions) -> dict[str, tuple[str, str]]:
    """name -> (what the session did, how Guardian knows) as the files table shows them."""
    return {r[0].rpartition("/")[2]: (r[1], r[2]) for r in rows(screen, "files-table")}


async def open_sessions(app: GuardianApp, pilot: Pilot[None]) -> Sessions:
    await pilot.press("s")  # from the dashboard
    screen = await until(pilot, lambda: isinstance(app.screen, Sessions) and app.screen,
                         "the sessions screen")
    try:
        await until(pilot, lambda: screen.files_of == ("S1", None) and len(files(screen)) == 3,
                    "S1 selected with its files")
    except AssertionError as e:  # what the screen held instead
        raise AssertionError(f"{e}; session {screen.session_id!r}, prompt {screen.prompt_id!r},"
                             f" files of {screen.files_of!r}: {files(screen)}") from None
    return screen


async def ask_undo(app: GuardianApp, pilot: Pilot[None]) -> ConfirmUndo:
    await pilot.press("u")
    modal = await until(pilot, lambda: isinstance(app.screen, ConfirmUndo) and app.screen,
                        "the undo plan")
    await pilot.pause()
    assert app.focused is not None and app.focused.id == "cancel"  # the safe choice first
    return modal


def test_browse_a_session_cancel_undo_and_undo_the_undo(
        env: dict[str, str], root: Path, store: Path, watch: Any, cli: Cli) -> None:
    watch(root)
    before, after = session(env, store, root)

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        screen = await open_sessions(app, pilot)
        [s1] = [r for r in rows(screen, "sess-table") if r[0] == "S1"]
        assert s1[1] == "claude" and s1[3:] == ["2", "4", "3", "0"]  # prompts, calls, files
        assert [r[1] for r in rows(screen, "prompts-table")] == ["whole session", "add docs",
                                                                  "clean up"]
        assert files(screen) == {"docs.md": ("created", "tool"),
                                 "notes.txt": ("modified", "tool+bash"),
                                 "old.txt": ("deleted", "bash")}
        await pilot.press("enter", "down", "down")  # the prompts pane: "clean up"
        await until(pilot, lambda: screen.files_of == ("S1", screen.prompt_id)
                    and screen.prompt_id is not None
                    and set(files(screen)) == {"notes.txt", "old.txt"}, "prompt 2's files")
        await pilot.press("enter")  # the files pane
        t = screen.query_one("#files-table", DataTable)
        assert app.focused is t
        await pilot.press("down" if rows(screen, "files-table")[0][0].endswith("old.txt")
                          else "up")
        await until(pilot, lambda: "+more" in shown_diff(screen), "the diff of notes.txt")
        assert " 2nd line" in shown_diff(screen)  # before the prompt: after the first's Edit

        modal = await ask_undo(app, pilot)  # the prompt's undo: its plan, as a diffstat
        assert modal.effect.title.startswith("Undo prompt")
        assert any("notes.txt" in line and "+" not in line.split("|")[0]
                   for line in modal.effect.lines)
        assert any("old.txt" in line and "deleted by it: restored" in line
                   for line in modal.effect.lines)
        assert "2 files changed" in modal.effect.summary
        await pilot.press("enter")  # a stray Enter lands on Cancel
        await until(pilot, lambda: app.screen is screen, "back, nothing done")
        assert tree(root) == after

        await pilot.press("escape", "up", "up")  # the prompts pane: the whole session
        await until(pilot, lambda: screen.files_of == ("S1", None) and len(files(screen)) == 3,
                    "the whole session again")
        modal = await ask_undo(app, pilot)
        assert "3 files changed" in modal.effect.summary and not modal.query("#force")
        await pilot.click("#undo")
        await until(pilot, lambda: tree(root) == before, "the session undone on disk")
        result = await until(pilot, lambda: screen.last_result, "the result")
        assert result["session"].startswith("undo-") and result["conflicts"] == 0
        undo_id = result["session"]
        await until(pilot, lambda: any(r[0] == undo_id for r in rows(screen, "sess-table")),
                    "the undo listed as a session")
        assert undo_id in str(screen.query_one("#sess-status").render())

        # The undo is a session too: select it, undo it, and the agent's work is back.
        await pilot.press("escape")
        assert app.focused is screen.query_one("#sess-table", DataTable)
        ids = [r[0] for r in rows(screen, "sess-table")]
        screen.query_one("#sess-table", DataTable).move_cursor(row=ids.index(undo_id))
        await until(pilot, lambda: screen.files_of == (undo_id, None)
                    and len(files(screen)) == 3, "the undo's files")
        assert {v[1] for v in files(screen).values()} == {"undo"}
        modal = await ask_undo(app, pilot)
        await pilot.click("#undo")
        await until(pilot, lambda: tree(root) == after, "the undo undone")

    drive(store, body)
    assert [s["id"] for s in cli.json("sessions")][:2] == ["undo-2", "undo-1"]


def test_a_conflict_is_listed_skipped_then_forced(
        env: dict[str, str], root: Path, store: Path, watch: Any) -> None:
    w = watch(root)
    before, _after = session(env, store, root)
    mine = b"the user's own edit, after the agent\n"
    (root / "notes.txt").write_bytes(mine)
    w.version(root / "notes.txt", "modified")

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        screen = await open_sessions(app, pilot)
        modal = await ask_undo(app, pilot)
        assert any(line.startswith(" !") and "notes.txt" in line and "conflict" in line
                   for line in modal.effect.lines)
        assert "1 conflict" in modal.effect.summary and modal.query("#force")
        await pilot.click("#undo")  # not forced: the conflicting file is left alone
        await until(pilot, lambda: not (root / "docs.md").exists()
                    and (root / "old.txt").exists(), "the rest undone")
        result = await until(pilot, lambda: screen.last_result, "the result")
        assert result["skipped"] == 1
        assert (root / "notes.txt").read_bytes() == mine
        screen.last_result = None
        modal = await ask_undo(app, pilot)
        await pilot.click("#force")
        await until(pilot, lambda: screen.last_result, "the forced result")

    drive(store, body)
    assert tree(root) == before
