"""SVG snapshots of every screen at 80x24 and 120x40: a fixed store, a fixed clock, no
animations, read-only (no daemon). ``GUARDIAN_UPDATE_SNAPSHOTS=1`` rewrites them; look at
the SVGs (a browser shows them) before committing new ones.

Compared ourselves from ``App.export_screenshot()`` (pytest-textual-snapshot pins
pytest < 9 and syrupy 4.8; this suite runs on pytest 9): the temp root's name and Textual's
per-render ids are normalised, nothing else.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from guardian.store.db import NewVersion, Store
from guardian.store.objects import Objects
from tui.app import GuardianApp, make_app
from tui.screens.alerts import Alerts
from tui.screens.confirm import ConfirmRestore
from tui.screens.restore import Restore

SNAPSHOTS = Path(__file__).parent / "snapshots" / "tui"
NOW = 1_796_000_000  # 2026-11-30 06:53:20 UTC
H = 3600 * 10**9
PLACEHOLDER = "/tmp/gsnap-ROOTROOT"

#: (relpath, [(hours before NOW, content or None for a deletion, kind, origin, valid)])
FILES: list[tuple[str, list[tuple[float, bytes | None, str, str, bool | None]]]] = [
    ("src/app.py", [(30, b"def main():\n    print('hi')\n", "baseline", "scan", None),
                    (5, b"def main():\n    print('hello')\n    return 0\n", "modified",
                     "watcher", True),
                    (1, b"def main():\n    return 1\n", "modified", "watcher", True)]),
    ("src/util.py", [(30, b"X = 1\n", "baseline", "scan", None)]),
    ("config.json", [(30, b'{"port": 80}\n', "baseline", "scan", True),
                     (2, b'{"port": 80,}\n', "modified", "watcher", False)]),
    ("docs/notes.md", [(30, b"# Notes\n", "baseline", "scan", None),
                       (3, None, "deleted", "watcher", None)]),
]
ON_DISK = {"src/app.py": b"def main():\n    return 2\n", "src/util.py": b"X = 1\n",
           "config.json": b'{"port": 80,}\n'}


@pytest.fixture
def snapshot_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # no daemon is found
    root = Path(tempfile.mkdtemp(prefix="gsnap-", dir="/tmp"))
    assert len(str(root)) == len(PLACEHOLDER)
    for rel, data in ON_DISK.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    store = tmp_path / "store"
    # The store stamps alerts with the time they are raised: fixed here (a boundary).
    monkeypatch.setattr(time, "time_ns", lambda: NOW * 10**9)
    with Store.open(store, write=True, create=True) as s:
        [r] = s.add_roots([root])
        with s.transaction():
            for rel, versions in FILES:
                fid = s.file_id(r.id, rel.encode())
                assert fid is not None
                for hours, data, kind, origin, valid in versions:
                    oid = Objects(s).put(data) if data is not None else None
                    s.add_version(NewVersion(fid, oid, data is not None, kind, origin,
                                             0o100644 if data is not None else None,
                                             len(data) if data is not None else None,
                                             valid=valid),
                                  time_ns=NOW * 10**9 - int(hours * H))
            s.raise_alert(f"invalid:{root}/config.json", "warning", "invalid",
                          f"{root}/config.json: json: expecting property name (line 1)",
                          f"{root}/config.json".encode())
            s.raise_alert("high-error-rate", "critical", "high-error-rate",
                          "error rate 12% over the last 15 minutes (threshold 5%)", None)
    monkeypatch.undo()
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    yield store
    shutil.rmtree(root, ignore_errors=True)
    os.environ.pop("TZ", None)
    time.tzset()


def normalise(svg: str, root: str) -> str:
    svg = svg.replace(root, PLACEHOLDER).replace(Path(root).name, Path(PLACEHOLDER).name)
    return re.sub(r"terminal-\d+", "terminal", svg)


def check(name: str, svg: str) -> None:
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("GUARDIAN_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
        return
    assert path.exists(), f"no snapshot {path}: run with GUARDIAN_UPDATE_SNAPSHOTS=1"
    assert svg == path.read_text(), (
        f"{name} differs from {path}; if the change is intended, rerun with "
        "GUARDIAN_UPDATE_SNAPSHOTS=1 and look at the SVG")


async def footer_shows(app: GuardianApp, pilot: Pilot[None], description: str) -> None:
    """The footer is recomposed after a screen change: wait until the picture has this
    screen's keys, then for one more refresh."""
    await until(pilot, lambda: footer_has(app.export_screenshot(), description),
                f"{description!r} in the footer")
    await pilot.pause()


def footer_has(svg: str, description: str) -> bool:
    """Whether a key's description is a text of its own in the picture (the footer's)."""
    text = re.escape(description.replace(" ", "&#160;"))
    return re.search(rf">(&#160;)*{text}(&#160;)*</text>", svg) is not None


async def until(pilot: Pilot[None], cond: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 30
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)
    return value


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_screens(snapshot_store: Path, size: tuple[int, int]) -> None:
    with Store.open(snapshot_store, write=False) as s:
        root = str(s.roots()[0].path)
    tag = f"{size[0]}x{size[1]}"

    async def main() -> None:
        app: GuardianApp = make_app(snapshot_store, clock=lambda: float(NOW), live=False)
        async with app.run_test(size=size, notifications=False) as pilot:
            await until(pilot, lambda: app.stats_seq > 0 and app.feed.seq > 0, "stats")
            dash = app.screen
            await until(pilot, lambda: getattr(dash, "shown_stats", -1) == app.stats_seq
                        and dash.shown_seq == app.feed.seq, "the dashboard drawn")
            await footer_shows(app, pilot, "Pause")
            check(f"dashboard-{tag}", normalise(app.export_screenshot(), root))

            await pilot.press("2")
            alerts = await until(pilot, lambda: isinstance(app.screen, Alerts) and app.screen,
                                 "alerts")
            await until(pilot, lambda: len(alerts.rows) == 2, "two alerts")
            await footer_shows(app, pilot, "Ack")
            check(f"alerts-{tag}", normalise(app.export_screenshot(), root))

            await pilot.press("3")
            browser = await until(pilot, lambda: isinstance(app.screen, Restore)
                                  and app.screen, "restore")
            await until(pilot, lambda: browser.tree_ready, "index")
            await pilot.press("slash", *"app", "enter")
            await until(pilot, lambda: len(browser.versions) == 3, "versions")
            await pilot.press("left_square_bracket")
            await until(pilot, lambda: "version 2" in str(
                browser.query_one("#diff-title").render()), "the diff of version 2")
            await app.workers.wait_for_complete()
            await footer_shows(app, pilot, "Filter")
            shot = app.export_screenshot()
            # Its actions come first, so even 80 columns show them (they were cut there).
            assert all(footer_has(shot, d) for d in ("Undo", "At time", "Older", "Newer")), \
                "the restore browser's footer lacks its actions"
            check(f"restore-{tag}", normalise(shot, root))

            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmRestore), "confirm")
            await until(pilot, lambda: "Keep&#160;both" in app.export_screenshot(), "buttons")
            await pilot.pause()
            check(f"confirm-{tag}", normalise(app.export_screenshot(), root))
            await pilot.press("escape")

    asyncio.run(main())
