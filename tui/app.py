"""The Guardian TUI: :func:`make_app` builds it for the CLI and the tests alike.

Three modes (dashboard, alerts, restore) and modals. One feed: a thread worker reads the
daemon's event subscription into a :class:`~tui.feed.Feed` and posts one coalescing
:class:`~tui.messages.FeedChanged`; status, metrics and alerts are read by a second thread
worker every couple of seconds (it reschedules itself when done, so reads never overlap).
Screens render from timers, never per event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from guardian.paths import Root
from tui.backend import Backend
from tui.feed import Feed
from tui.messages import FeedChanged, FeedEnded, StatsUpdated
from tui.screens.alerts import Alerts
from tui.screens.dashboard import Dashboard
from tui.screens.help import Help
from tui.screens.restore import Restore
from tui.screens.sessions import Sessions

#: Seconds between status/metrics/alerts reads.
STATS_EVERY_S = 2.0


class GuardianApp(App[None]):
    CSS_PATH = "guardian.tcss"
    TITLE = "Guardian"
    MODES = {"dashboard": Dashboard, "alerts": Alerts, "restore": Restore,
             "sessions": Sessions}
    DEFAULT_MODE = "dashboard"
    BINDINGS = [
        Binding("1", "switch_mode('dashboard')", "Dashboard", id="app.dashboard",
                tooltip="Live metrics, recent events, open alerts"),
        Binding("2", "switch_mode('alerts')", "Alerts", id="app.alerts",
                tooltip="Read, acknowledge and follow alerts"),
        Binding("3", "switch_mode('restore')", "Restore", id="app.restore",
                tooltip="Browse every version of every file and get one back"),
        Binding("question_mark", "help", "Help", key_display="?", id="app.help",
                tooltip="Every key of this screen, with what it does"),
        Binding("q", "quit", "Quit", id="app.quit",
                tooltip="Leave the TUI (with `guardian watch`, this stops watching)"),
    ]

    def __init__(self, backend: Backend, *, clock: Callable[[], float] | None = None,
                 live: bool = True, stops_daemon: bool = False) -> None:
        super().__init__()
        self.backend = backend
        self.now = clock or time.time
        self.live = live
        self.stops_daemon = stops_daemon
        self.feed = Feed()
        self.status: dict[str, Any] = {}
        self.metrics: dict[str, Any] | None = None
        self.alert_rows: list[dict[str, Any]] = []
        self.stats_seq = 0
        self.feed_alerts = 0
        self.feed_ended = False  # the daemon's event stream ended for good
        self._roots: dict[int, Root] = {}
        self._nudged = threading.Event()
        self._feed_stop = threading.Event()  # set when the app closes

    # ----------------------------------------------------------------- helpers for screens
    def roots(self) -> list[Root]:
        if not self._roots:
            self._roots = {r.id: r for r in self.backend.read(lambda s: s.roots())}
        return list(self._roots.values())

    def root(self, root_id: int) -> Root | None:
        if root_id not in self._roots:
            self.roots()
        return self._roots.get(root_id)

    def clock_text(self, t: float) -> str:
        """A local time: the time of day if today, else the date and minute."""
        now = time.localtime(self.now())
        lt = time.localtime(t)
        if lt[:3] == now[:3]:
            return time.strftime("%H:%M:%S", lt)
        return time.strftime("%Y-%m-%d %H:%M", lt)

    @staticmethod
    def age(seconds: float) -> str:
        s = max(0.0, seconds)
        for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= n:
                return f"{s / n:.0f}{unit}"
        return f"{s:.0f}s"

    def short_path(self, path: str) -> str:
        """A path inside a root, relative to it (the root's name first)."""
        for r in self._roots.values():
            prefix = str(r.path) + "/"
            if path.startswith(prefix):
                return f"{r.path.name}/{path[len(prefix):]}"
        return path

    def open_in_restore(self, path: str) -> None:
        self.switch_mode("restore")
        screen = self.screen
        if isinstance(screen, Restore):
            screen.focus_path(path)

    # ----------------------------------------------------------------- lifecycle
    def on_mount(self) -> None:
        self.roots()
        self.refresh_stats()
        self.read_feed()

    @work(thread=True, exclusive=True, group="stats", exit_on_error=False)
    def refresh_stats(self) -> None:
        """Status, metrics and alerts, read once; then again in STATS_EVERY_S."""
        b = self.backend
        try:
            status = b.status()
            metrics = b.metrics(int(self.now() * 1e9))
            alerts = b.alerts()
        except Exception as e:  # a store being replaced, a daemon going away: keep going
            self.call_from_thread(self.notify, f"could not read the store: {e}",
                                  severity="error")
        else:
            self.status, self.metrics, self.alert_rows = status, metrics, alerts
            self.post_message(StatsUpdated())
        if self.live:
            self.call_from_thread(self.set_timer, STATS_EVERY_S, self.refresh_stats)

    @work(thread=True, exclusive=True, group="feed", exit_on_error=False)
    def read_feed(self) -> None:
        from guardian.events import VersionRecorded

        sub = self.backend.subscribe() if self.live else None
        # What happened just before we came: the newest versions, as the feed would have
        # shown them (subscribed first, so nothing falls between the two).
        roots = {r.id: r for r in self.roots()}
        recent = self.backend.versions_under(None, b"", limit=50)
        for v in reversed(recent):
            self.feed.add(VersionRecorded.of(v, roots), now=v.time_ns / 1e9)
        self.post_message(FeedChanged())
        while sub is not None:
            self._subscription = sub
            began = time.monotonic()
            for event in sub:
                self.feed.add(event)
                if not self._nudged.is_set():  # one message in flight is enough
                    self._nudged.set()
                    self.post_message(FeedChanged())
            if getattr(self, "_closing", False):
                return
            # The stream ended: the daemon stopped, or it dropped us for falling more than
            # its backlog behind (a burst faster than this process reads). If it still
            # answers, read on from now: the figures come from the store, only the event
            # list misses what came meanwhile, and the user is told.
            if time.monotonic() - began < 1.0:
                self._feed_stop.wait(1.0)  # not in a tight loop if it drops us at once
                if self._feed_stop.is_set():
                    return
            sub = self.backend.subscribe()
            if sub is not None:
                self.feed.resumed += 1
                self.call_from_thread(
                    self.notify, "the event list fell behind a burst and skipped some "
                    "events; it is live again (the figures are read from the store)",
                    severity="warning", timeout=8)
        self.feed_ended = True
        self.post_message(FeedEnded())

    def on_stats_updated(self, message: StatsUpdated) -> None:
        self.stats_seq += 1

    def on_feed_changed(self, message: FeedChanged) -> None:
        self._nudged.clear()
        if self.feed.alerts != self.feed_alerts:  # a new or changed alert: read them now
            self.feed_alerts = self.feed.alerts
            self.refresh_stats()

    def on_feed_ended(self, message: FeedEnded) -> None:
        if self.is_running and not getattr(self, "_closing", False):
            self.notify("the daemon stopped: the data shown is no longer live",
                        severity="warning", timeout=10)

    def on_unmount(self) -> None:
        self._closing = True
        self._feed_stop.set()
        sub = getattr(self, "_subscription", None)
        if sub is not None:
            sub.close()
        self.backend.close()

    # ----------------------------------------------------------------- actions
    def action_help(self) -> None:
        if not isinstance(self.screen, Help):
            self.push_screen(Help(self.screen))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Find a version to restore", "Pick a file by name, then a version",
                            self.find_file)
        yield SystemCommand("Jump to file", "Open the restore browser filtered by a path",
                            self.find_file)
        yield SystemCommand("Acknowledge all alerts", "Every open alert, acknowledged",
                            self.ack_all)
        yield SystemCommand("Restore a directory at a time",
                            "Pick a directory in the browser, then a time", self.dir_at_time)
        yield SystemCommand("Agent sessions", "What an agent changed, by session and prompt; "
                            "undo one", lambda: self.switch_mode("sessions"))

    def find_file(self) -> None:
        self.switch_mode("restore")
        screen = self.screen
        if isinstance(screen, Restore):
            screen.action_filter()

    def ack_all(self) -> None:
        self.switch_mode("alerts")
        screen = self.screen
        if isinstance(screen, Alerts):
            screen.action_ack_all()

    def dir_at_time(self) -> None:
        self.switch_mode("restore")
        screen = self.screen
        if isinstance(screen, Restore):
            screen.action_at_time()


def make_app(store_path: Path, *, clock: Callable[[], float] | None = None,
             live: bool = True, stops_daemon: bool = False) -> GuardianApp:
    """The app on ``store_path``: attached to its daemon if one runs, else read-only.

    ``clock`` fixes "now" (snapshot tests); ``live=False`` reads once and subscribes to
    nothing (a still picture, for snapshots)."""
    return GuardianApp(Backend(store_path), clock=clock, live=live, stops_daemon=stops_daemon)
