"""The dashboard: KPI tiles, what the daemon is doing, recent events, open alerts.

It renders from a 2 Hz timer, inside one ``batch_update``, from what the app keeps (the
feed's copy and the last metrics read): never one widget update per event.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Header, Label, Static

from guardian.events import (
    Alert,
    ErrorEvent,
    Event,
    Reconciled,
    Validation,
    VersionRecorded,
    WarningEvent,
)
from tui.screens.base import GuardianScreen
from tui.widgets.events import EventList
from tui.widgets.footer import Keys
from tui.widgets.kpi import Kpi

#: Recent events the table shows.
SHOWN = 100

#: (tile id, name, metric getter, format, thresholds (warn, bad), higher is worse).
TILES: list[tuple[str, str]] = [
    ("ops", "ops/min"), ("avg", "avg op"), ("p95", "p95 op"), ("success", "success"),
    ("errors", "errors"), ("optimised", "optimised"), ("vpm", "versions/min"),
    ("lat", "capture p99"), ("size", "store size"),
]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.1f}ms" if s < 1 else f"{s:.2f}s"


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def _level(x: float | None, warn: float, bad: float, *, low_is_bad: bool = False) -> str:
    if x is None:
        return ""
    if low_is_bad:
        return "bad" if x < bad else "warn" if x < warn else "ok"
    return "bad" if x > bad else "warn" if x > warn else "ok"


def describe(event: Event) -> tuple[str, str, str]:
    """(what, path, detail) of an event, for the recent-events table."""
    if isinstance(event, VersionRecorded):
        return event.kind, event.path, event.origin
    if isinstance(event, Alert):
        return f"alert {event.severity}", event.path or "", event.message
    if isinstance(event, Validation):
        first = event.problems[0].get("message", "") if event.problems else ""
        return ("invalid" if event.valid is False else "validated"), event.path, first
    if isinstance(event, Reconciled):
        return "reconcile", event.path, f"{event.reason}: {event.recorded} recorded"
    if isinstance(event, WarningEvent | ErrorEvent):
        return event.name, event.path or "", event.message
    return event.name, getattr(event, "path", "") or "", ""


class Dashboard(GuardianScreen):
    TITLE = "Dashboard"
    BINDINGS = [
        Binding("space", "pause", "Pause", id="dashboard.pause",
                tooltip="Freeze the event list (the KPIs keep moving)"),
        # Not in the footer: "2 Alerts" is there already, and 80 columns hold only so many.
        Binding("a", "app.switch_mode('alerts')", "Alerts", id="dashboard.alerts", show=False,
                tooltip="The open alerts, to read and acknowledge"),
        Binding("home", "newest", "Newest", id="dashboard.newest",
                tooltip="Scroll the event list back to the newest event"),
        Binding("s", "app.switch_mode('sessions')", "Sessions", id="dashboard.sessions",
                tooltip="Agent sessions: their prompts, the files they touched, undo one"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.shown_seq = -1
        self.unseen = 0
        self.shown_stats = -1
        self.restate = False

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("", id="status-line", markup=False)
        with Grid(id="kpis"):
            for tid, name in TILES:
                yield Kpi(name, id=f"kpi-{tid}")
        with Horizontal(id="lower"):
            with Vertical(id="events-box"):
                yield Label("Recent events", id="events-title")
                yield EventList(id="events")
            with Vertical(id="alerts-box"):
                yield Label("Open alerts", id="alerts-title")
                yield Static("", id="alerts-summary", markup=False)
        yield Keys()

    def on_mount(self) -> None:
        self.set_interval(0.5, self.render_now)
        self.render_now()

    def on_screen_resume(self) -> None:
        self.render_now()

    def action_pause(self) -> None:
        # Said in the list's title, not a toast: a toast per press is a widget per press.
        self.paused = not self.paused
        self.restate = True  # the title changes even when no event came meanwhile
        self.render_now()

    def action_newest(self) -> None:
        self.query_one("#events", EventList).scroll_home(animate=False)
        self.unseen = 0
        self.render_now()

    def render_now(self) -> None:
        if not self.is_current:
            return  # another mode is shown: nothing to draw (on_screen_resume catches up)
        app = self.gapp
        with app.batch_update():
            if self.shown_stats != app.stats_seq:
                self.shown_stats = app.stats_seq
                self._render_stats(app.status, app.metrics, app.alert_rows)
            self._render_events()

    # ----------------------------------------------------------------- parts
    def _render_stats(self, status: dict[str, Any], m: dict[str, Any] | None,
                      alerts: list[dict[str, Any]]) -> None:
        app = self.gapp
        mode = "attached to the daemon" if status.get("running") else "read-only (no daemon)"
        uptime = status.get("uptime_s")
        up = f" · up {app.age(uptime)}" if uptime is not None else ""
        last = app.feed.last_reconcile
        rec = (f" · last reconcile: {last.reason} ({last.recorded} recorded)" if last else
               f" · reconciles: {status.get('reconcile_count', 0)}")
        causes = status.get("degraded_causes") or []
        health = app.feed.health
        if health is not None:
            causes = health.causes
        degraded = " · DEGRADED: " + "; ".join(c.get("message", "") for c in causes) \
            if causes else ""
        roots = ", ".join(status.get("roots", [])) or "(no roots)"
        self.query_one("#status-line", Static).update(
            f"{mode} · {roots} · {status.get('files', 0):,} files · "
            f"{status.get('versions', 0):,} versions{up}{rec}{degraded}")
        self.set_class(bool(causes), "degraded")
        if m is not None:
            t, cap = m["totals"], m.get("capture") or {}
            lat = (cap.get("latency") or {}).get("p99_ms")
            vpm = (cap.get("versions") or {}).get("per_minute")
            size = status.get("store_bytes")
            d = t["duration_s"]
            show = {
                "ops": (f"{t['operations_per_minute']:.1f}", t["operations_per_minute"], ""),
                "avg": (_dur(d["average"]), d["average"], _level(d["average"], 0.5, 2)),
                "p95": (_dur(d["p95"]), d["p95"], _level(d["p95"], 1, 5)),
                "success": (_pct(t["success_rate"]["overall"]), t["success_rate"]["overall"],
                            _level(t["success_rate"]["overall"], 0.99, 0.95, low_is_bad=True)),
                "errors": (_pct(t["error_rate"]), t["error_rate"],
                           _level(t["error_rate"], 0.01, 0.05)),
                "optimised": (_pct(t["optimisation_usage_rate"]),
                              t["optimisation_usage_rate"], ""),
                "vpm": (f"{vpm or 0:.1f}", vpm, ""),
                "lat": ("-" if lat is None else f"{lat:.0f}ms", lat, _level(lat, 500, 2000)),
                "size": (_size(size), size, ""),
            }
            for tid, (text, sample, level) in show.items():
                self.query_one(f"#kpi-{tid}", Kpi).show(text, sample, level)
        open_ = [a for a in alerts if a.get("state") == "open"]
        by = {s: sum(1 for a in open_ if a["severity"] == s)
              for s in ("critical", "warning", "info")}
        lines = [f"{by['critical']} critical · {by['warning']} warning · {by['info']} info",
                 "(a: the alerts screen)", ""]
        lines += [f"{a['severity'][:4]} {a['kind']}: {a.get('path') or a['message']}"
                  for a in open_[:8]]
        self.query_one("#alerts-summary", Static).update("\n".join(lines))
        self.query_one("#alerts-title", Label).update(f"Open alerts ({len(open_)})",
                                                      layout=False)

    def _render_events(self) -> None:
        """The feed's newest rows into the list (which draws only what is on screen)."""
        app = self.gapp
        feed = app.feed
        if feed.seq == self.shown_seq and not self.restate:
            return
        self.restate = False
        events = self.query_one("#events", EventList)
        scrolled = events.scroll_y > 0
        if self.paused or scrolled:
            self.unseen += feed.seq - max(self.shown_seq, 0)
            self.shown_seq = feed.seq
            why = "paused" if self.paused else "scrolled"
            self.query_one("#events-title", Label).update(
                f"Recent events · {self.unseen:,} new ({why}; "
                f"{'space' if self.paused else 'home'} to see them)", layout=False)
            return
        self.shown_seq = feed.seq
        self.unseen = 0
        style = {"deleted": "red", "created": "green", "restored": "cyan", "invalid": "red"}
        rows = []
        for t, ev in feed.recent(SHOWN):
            what, path, detail = describe(ev)
            rows.append((app.clock_text(t), what, app.short_path(path), detail,
                         style.get(what, "")))
        events.set_rows(rows)
        self.query_one("#events-title", Label).update(
            f"Recent events ({feed.seq:,} since start)", layout=False)
