"""The TUI driven by Textual's pilot against a real daemon on temp dirs: what a person does
with the keys, checked by the bytes on disk and what the store kept."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Tree

from guardian.rules.rulefiles import RULE_FILE
from guardian.store.db import Store
from tui.app import GuardianApp, make_app
from tui.screens.alerts import Alerts
from tui.screens.attime import AtTime
from tui.screens.confirm import ConfirmRestore
from tui.screens.dashboard import Dashboard
from tui.screens.restore import Restore

from .conftest import Cli, Watch

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _same_places(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The app runs in this process: it must look for the daemon where the fixtures put it."""
    for k in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")


def drive(store: Path, body: Callable[[GuardianApp, Pilot[None]], Awaitable[None]]) -> None:
    async def main() -> None:
        app = make_app(store)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await body(app, pilot)

    asyncio.run(main())


async def until(pilot: Pilot[None], cond: Callable[[], Any], what: str,
                timeout: float = 30) -> Any:
    """Wait (letting the app run) until ``cond()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:  # with what the app told the user meanwhile
            said = [n.message for n in getattr(pilot.app, "_notifications", [])]
            raise AssertionError(f"timed out waiting for {what}; notifications: {said}")
        await pilot.pause(0.02)


async def open_file(app: GuardianApp, pilot: Pilot[None], text: str, relpath: bytes) -> Restore:
    """The restore browser, filtered by typing ``text``, with ``relpath`` selected."""
    await pilot.press("3")
    screen = await until(pilot, lambda: isinstance(app.screen, Restore) and app.screen, "restore")
    await until(pilot, lambda: screen.tree_ready, "the path index")
    await pilot.press("slash", *text, "enter")
    await until(pilot, lambda: screen.entry is not None and screen.entry.relpath == relpath
                and screen.versions and screen.versions[0].relpath == relpath,
                f"{relpath!r} selected with its versions")
    assert app.focused is screen.query_one("#paths")  # Enter gave the keys back to the tree
    return screen


async def confirm(app: GuardianApp, pilot: Pilot[None]) -> ConfirmRestore:
    modal = await until(pilot, lambda: isinstance(app.screen, ConfirmRestore) and app.screen,
                        "the confirmation")
    await pilot.pause()
    assert app.focused is not None and app.focused.id == "cancel"  # the safe choice first
    return modal


def restores(cli: Cli) -> list[dict[str, Any]]:
    return [v for v in cli.log() if v["origin"] == "restore"]


def test_restore_a_version_then_undo(root: Path, store: Path, watch, cli: Cli) -> None:
    f = root / "a.txt"
    f.write_bytes(b"one\n")
    w: Watch = watch(root)
    f.write_bytes(b"two\nlines\n")
    w.version(f, "modified")

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        screen = await open_file(app, pilot, "a.txt", b"a.txt")
        assert [v.kind for v in screen.versions] == ["modified", "baseline"]
        await pilot.press("left_square_bracket")  # one older: the baseline
        await until(pilot, lambda: screen.current() == screen.versions[1], "older selected")
        await pilot.press("r")
        modal = await confirm(app, pilot)
        assert "+1 −2 lines" in modal.effect.summary
        await pilot.click("#replace")
        await until(pilot, lambda: f.read_bytes() == b"one\n", "the baseline on disk")
        await until(pilot, lambda: screen.undo_step is not None, "undo remembered")
        await pilot.press("u")
        await confirm(app, pilot)
        await pilot.click("#replace")
        await until(pilot, lambda: f.read_bytes() == b"two\nlines\n", "the restore undone")

    drive(store, body)
    kinds = [v["kind"] for v in cli.log(f)]
    assert kinds[:2] == ["restored", "restored"]  # both recorded like any other restore
    assert w.stop() == 0


def test_cancel_leaves_everything_then_keep_both(root: Path, store: Path, watch,
                                                 cli: Cli) -> None:
    f = root / "notes.md"
    f.write_bytes(b"# old\n")
    w: Watch = watch(root)
    f.write_bytes(b"# new\n")
    w.version(f, "modified")

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        screen = await open_file(app, pilot, "notes", b"notes.md")
        await pilot.press("left_square_bracket", "r")
        await confirm(app, pilot)
        await pilot.press("enter")  # a stray Enter lands on Cancel
        await until(pilot, lambda: app.screen is screen, "back to the browser")
        assert f.read_bytes() == b"# new\n"
        await pilot.press("r")
        modal = await confirm(app, pilot)
        assert modal.effect.keep_both
        await pilot.click("#keep")
        await until(pilot, lambda: (root / "notes (restored).md").exists(), "the copy beside")

    drive(store, body)
    assert f.read_bytes() == b"# new\n"
    assert (root / "notes (restored).md").read_bytes() == b"# old\n"
    assert not restores(cli)  # Cancel restored nothing; Keep both replaced nothing
    assert w.stop() == 0


def test_a_deleted_file_is_found_and_brought_back(root: Path, store: Path, watch) -> None:
    f = root / "docs" / "gone.txt"
    f.parent.mkdir()
    f.write_bytes(b"precious\n")
    (root / "kept.txt").write_bytes(b"k\n")
    w: Watch = watch(root)
    f.unlink()
    w.version(f, "deleted")

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        screen = await open_file(app, pilot, "gone", b"docs/gone.txt")
        assert screen.entry is not None and not screen.entry.live  # shown, as deleted
        assert screen.versions[0].kind == "deleted"
        await pilot.press("left_square_bracket", "r")
        await confirm(app, pilot)
        await pilot.click("#replace")
        await until(pilot, f.exists, "the file back")

    drive(store, body)
    assert f.read_bytes() == b"precious\n"
    assert w.stop() == 0


def test_restore_a_directory_at_a_time(root: Path, store: Path, watch) -> None:
    d = root / "d"
    d.mkdir()
    (d / "x").write_bytes(b"x1\n")
    (d / "y").write_bytes(b"y1\n")
    (root / "outside").write_bytes(b"o1\n")
    w: Watch = watch(root)
    (d / "x").write_bytes(b"x2\n")
    (d / "y").unlink()
    (d / "z").write_bytes(b"z\n")
    (root / "outside").write_bytes(b"o2\n")
    for p, kind in ((d / "x", "modified"), (d / "y", "deleted"), (d / "z", "created"),
                    (root / "outside", "modified")):
        w.version(p, kind)

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        await open_file(app, pilot, "d/x", b"d/x")
        await pilot.press("t")  # on a file: its directory
        picker = await until(pilot, lambda: isinstance(app.screen, AtTime) and app.screen,
                             "the time picker")
        assert len(picker.stops) >= 2
        await pilot.press("end", "enter")  # the oldest stop: the baseline
        modal = await confirm(app, pilot)
        assert modal.effect.summary.startswith("2 restored · 1 removed")
        await pilot.click("#replace")
        await until(pilot, lambda: not (d / "z").exists(), "the directory restored")

    drive(store, body)
    assert sorted(p.name for p in d.iterdir()) == ["x", "y"]
    assert (d / "x").read_bytes() == b"x1\n" and (d / "y").read_bytes() == b"y1\n"
    assert (root / "outside").read_bytes() == b"o2\n"  # outside the directory: untouched
    assert w.stop() == 0


def test_acknowledge_an_alert_and_it_is_persisted(root: Path, store: Path, watch) -> None:
    (root / RULE_FILE).write_text('[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\n'
                                  'on_invalid = "alert"\n')
    w: Watch = watch(root)
    m = w.mark()
    (root / "bad.json").write_text("{nope\n")
    alert = w.wait(lambda e: e["event"] == "alert" and e["kind"] == "invalid", start=m)

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        await pilot.press("2")
        screen = await until(pilot, lambda: isinstance(app.screen, Alerts) and app.screen, "alerts")
        await until(pilot, lambda: any(a["id"] == alert["id"] for a in screen.rows),
                    "the alert listed")
        row = next(i for i, a in enumerate(screen.rows) if a["id"] == alert["id"])
        screen.query_one("#alerts-table").move_cursor(row=row)
        await pilot.press("a")
        await until(pilot, lambda: any(a["id"] == alert["id"] and a["state"] == "acknowledged"
                                       for a in app.alert_rows), "shown acknowledged")

    drive(store, body)
    with Store.open(store, write=False) as s:
        assert s.alert(alert["id"])["state"] == "acknowledged"  # in the store, not the UI
    assert w.stop() == 0


def test_filter_the_tree(root: Path, store: Path, watch) -> None:
    for rel in ("src/app.py", "src/util.py", "docs/readme.md", "old.txt"):
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_text(rel + "\n")
    w: Watch = watch(root)
    (root / "old.txt").unlink()
    w.version(root / "old.txt", "deleted")

    def leaves(screen: Restore) -> set[str]:
        tree: Tree[Any] = screen.query_one("#paths", Tree)
        out, todo = set(), list(tree.root.children)
        while todo:
            n = todo.pop()
            todo += n.children
            if n.data is not None and not n.data.is_dir:
                out.add(n.data.relpath.decode())
        return out

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        screen = await until(pilot, lambda: isinstance(app.screen, Restore) and app.screen,
                             "restore")
        await until(pilot, lambda: screen.tree_ready, "the index")
        await pilot.press("slash", *"src/", "enter")
        await until(pilot, lambda: leaves(screen) == {"src/app.py", "src/util.py"},
                    "only src/ matches")
        await pilot.press("slash", *["backspace"] * 4, "enter", "s", "s", "s")  # deleted
        await until(pilot, lambda: leaves(screen) == {"old.txt"}, "only the deleted file")
        await pilot.press("s", "s", "d")  # any state, deleted files hidden
        await until(pilot, lambda: screen.state == "any" and screen.hide_deleted, "toggles")
        await pilot.press("slash", *".", "enter")  # a filter shows every match, expanded
        await until(pilot, lambda: leaves(screen) == {"src/app.py", "src/util.py",
                                                      "docs/readme.md"}, "deleted hidden")

    drive(store, body)
    assert w.stop() == 0


def test_keys_move_from_the_filter_into_the_tree_and_through_it(root: Path, store: Path,
                                                                watch) -> None:
    for rel in ("src/app.py", "src/util.py", "docs/readme.md", "top.txt"):
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_text(rel + "\n")
    w: Watch = watch(root)

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        screen = await until(pilot, lambda: isinstance(app.screen, Restore) and app.screen,
                             "restore")
        await until(pilot, lambda: screen.tree_ready, "the tree")
        tree: Tree[Any] = screen.query_one("#paths", Tree)

        def at() -> bytes | None:
            n = tree.cursor_node
            return None if n is None or n.data is None else n.data.relpath

        await pilot.press("slash", *"src", "tab")  # Tab: the filter applies, keys to the tree
        await until(pilot, lambda: app.focused is tree and at() == b"src/app.py",
                    "the tree focused on the first match")
        await pilot.press("down")
        await until(pilot, lambda: at() == b"src/util.py", "Down moves in the tree")
        await pilot.press("enter")  # Enter on a file: its versions, to pick one
        await until(pilot, lambda: app.focused is screen.query_one("#versions"),
                    "the versions focused")
        # The filter cleared: the whole tree again, read lazily. Directories come first, so
        # docs/ is the first entry under the root; Enter opens it and reads its children.
        await pilot.press("slash", *["backspace"] * 3, "tab")
        await until(pilot, lambda: app.focused is tree and screen.text == ""
                    and tree.root.children and tree.root.children[0].children,
                    "the unfiltered tree with its root open")
        top = tree.root.children[0]
        await until(pilot, lambda: [c.data.relpath for c in top.children if c.data]
                    == [b"docs", b"src", b"top.txt"], "docs/, src/, top.txt under the root")
        docs = top.children[0]
        assert not docs.children  # not read until opened
        await pilot.press("home", "down")  # the root's line, then the first entry under it
        await until(pilot, lambda: at() == b"docs", "the cursor on docs/")
        await pilot.press("enter")
        await until(pilot, lambda: [c.data.relpath for c in docs.children if c.data]
                    == [b"docs/readme.md"], "docs/ opened, its file read from the store")

    drive(store, body)
    assert w.stop() == 0


def test_the_feed_reads_on_after_the_daemon_drops_it_for_falling_behind(
        root: Path, store: Path, watch, env: dict[str, str]) -> None:
    from guardian.daemon.server import TEST_BACKLOG_ENV

    w: Watch = watch(root, env={**env, TEST_BACKLOG_ENV: "5"})

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.stats_seq > 0,
                    "the dashboard")
        (root / "first.txt").write_text("1\n")
        await until(pilot, lambda: app.feed.versions >= 1, "the feed live")
        # The feed thread stalls (as a process too busy to read would; this coroutine does
        # not yield meanwhile): the socket's buffers fill, then the daemon's backlog of 5,
        # and the daemon drops this subscriber and says so in its log.
        def dropped() -> bool:
            with w.cond:
                return any(e.get("event") == "warning" and "fell behind" in e.get("message", "")
                           for e in w.events)

        with app.feed._lock:
            i = 0
            while not dropped():
                assert i < 20_000, "the daemon never dropped the stalled subscriber"
                for _ in range(250):
                    (root / f"b{i:05}.txt").write_bytes(b"%d\n" % i)
                    i += 1
                w.version(root / f"b{i - 1:05}.txt", "created")
        await until(pilot, lambda: app.feed.resumed == 1, "the feed subscribed again")
        assert not app.feed_ended
        seen = app.feed.versions
        (root / "after.txt").write_text("after\n")
        await until(pilot, lambda: any(getattr(e, "path", "").endswith("after.txt")
                                       for _t, e in app.feed.recent(20)),
                    "a write after the drop in the event list")
        assert app.feed.versions > seen
        said = [n.message for n in app._notifications]
        assert any("fell behind" in m for m in said), said

    drive(store, body)
    assert w.stop() == 0


@pytest.mark.slow
def test_a_burst_while_the_dashboard_is_open(root: Path, store: Path, watch) -> None:
    w: Watch = watch(root)
    n = 5000

    def burst() -> None:
        for i in range(n):
            (root / f"f{i:05}.txt").write_bytes(b"x")

    async def body(app: GuardianApp, pilot: Pilot[None]) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen,
                             "the dashboard")
        await until(pilot, lambda: app.stats_seq > 0, "the first stats")
        writer = threading.Thread(target=burst)
        writer.start()
        await until(pilot, lambda: app.feed.versions > 100, "events arriving")
        await pilot.press("space")  # keys answer while events pour in
        await until(pilot, lambda: screen.paused, "paused")
        await until(pilot, lambda: screen.unseen > 0, "new events counted while paused")
        await pilot.press("space")
        await until(pilot, lambda: not screen.paused, "live again")
        writer.join()
        await until(pilot, lambda: app.feed.versions >= n, "every version event", 90)
        await until(pilot, lambda: screen.shown_seq == app.feed.seq, "the list caught up")

    drive(store, body)
    assert w.stop() == 0


def test_subscribe_yields_typed_events(root: Path, store: Path, watch) -> None:
    from guardian.client import subscribe
    from guardian.events import VersionRecorded

    w: Watch = watch(root)
    sub = subscribe(store)
    assert sub is not None
    with sub:
        (root / "new.txt").write_bytes(b"hi\n")
        for event in sub:
            if isinstance(event, VersionRecorded) and event.path == str(root / "new.txt"):
                assert event.kind == "created" and event.size == 3
                break
    assert w.stop() == 0
    assert subscribe(store) is None  # no daemon: nothing to subscribe to


def test_tui_command_line(cli: Cli, tmp_path: Path) -> None:
    p = cli.run("tui", "--help")
    assert p.returncode == 0 and b"read-only" in p.stdout
    p = cli.run("tui", "--store", str(tmp_path / "nowhere"), store=False)
    assert p.returncode == 2
    assert p.stderr.decode().count("\n") == 1 and b"not a Guardian store" in p.stderr
