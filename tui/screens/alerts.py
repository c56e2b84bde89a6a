"""Alerts: what Guardian wants a person to look at, to read, acknowledge, or follow to the file.

Acknowledging goes through the core (the daemon's ``observe.ack``, or the store's writer
when none runs), exactly as ``guardian alerts ack`` does.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Header, Label, Static

from tui.screens.base import GuardianScreen
from tui.widgets.footer import Keys

if TYPE_CHECKING:
    pass

SEVERITIES = ("all", "critical", "warning", "info")
_COLOUR = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


class Alerts(GuardianScreen):
    TITLE = "Alerts"
    BINDINGS = [
        Binding("a", "ack", "Ack", id="alerts.ack", tooltip="Acknowledge the selected alert"),
        Binding("A", "ack_all", "Ack all", id="alerts.ack_all",
                tooltip="Acknowledge every open alert"),
        Binding("f", "filter", "Severity", id="alerts.filter",
                tooltip="Show all, critical, warning or info alerts"),
        Binding("g", "goto", "Go to file", id="alerts.goto",
                tooltip="Open the alert's file in the restore browser"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.severity = "all"
        self.rows: list[dict[str, Any]] = []
        self.shown_seq = -1

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical():
            yield Label("", id="alerts-filter")
            yield DataTable(id="alerts-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="alert-detail", markup=False)
        yield Keys()

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for name in ("id", "severity", "kind", "path", "first seen", "last seen", "count",
                     "state"):
            t.add_column(name, key=name)
        self.set_interval(0.5, self.refresh_if_changed)
        self.show_rows()

    def on_screen_resume(self) -> None:
        self.show_rows()

    def refresh_if_changed(self) -> None:
        if self.is_current and self.gapp.stats_seq != self.shown_seq:
            self.show_rows()

    def show_rows(self) -> None:
        app = self.gapp
        self.shown_seq = app.stats_seq
        self.rows = [a for a in app.alert_rows
                     if self.severity == "all" or a["severity"] == self.severity]
        t = self.query_one(DataTable)
        keep = t.cursor_row
        with app.batch_update():
            t.clear()
            for a in self.rows:
                t.add_row(str(a["id"]), Text(a["severity"], style=_COLOUR.get(a["severity"], "")),
                          a["kind"], app.short_path(a.get("path") or ""),
                          app.clock_text(a["first_ns"] / 1e9),
                          app.clock_text(a["last_ns"] / 1e9), str(a.get("count", 1)),
                          a["state"], key=str(a["id"]))
            if self.rows:
                t.move_cursor(row=min(keep, len(self.rows) - 1))
            n_open = sum(1 for a in app.alert_rows if a["state"] == "open")
            self.query_one("#alerts-filter", Label).update(
                f"severity: {self.severity} (f) · {len(self.rows)} shown · {n_open} open")
        self.show_detail()

    def selected(self) -> dict[str, Any] | None:
        t = self.query_one(DataTable)
        if not self.rows or t.cursor_row < 0 or t.cursor_row >= len(self.rows):
            return None
        return self.rows[t.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        a = self.selected()
        text = "no alerts" if a is None else (
            f"{a['severity']} {a['kind']} · {a['state']} · seen {a.get('count', 1)}x\n"
            f"{a['message']}\npath: {a.get('path') or '-'}\n"
            f"versions: {json.dumps(a.get('versions') or [])}\n"
            f"first {a.get('first_seen')} · last {a.get('last_seen')} · "
            f"acknowledged {a.get('acknowledged') or '-'}")
        self.query_one("#alert-detail", Static).update(text)

    def action_filter(self) -> None:
        self.severity = SEVERITIES[(SEVERITIES.index(self.severity) + 1) % len(SEVERITIES)]
        self.show_rows()

    def action_ack(self) -> None:
        a = self.selected()
        if a is None or a["state"] != "open":
            self.notify("no open alert selected", severity="warning")
            return
        self.ack([int(a["id"])])

    def action_ack_all(self) -> None:
        self.ack(None)

    @work(thread=True, exclusive=True, group="ack", exit_on_error=False)
    def ack(self, ids: list[int] | None) -> None:
        app = self.gapp
        try:
            out = app.backend.ack(ids)
        except Exception as e:
            app.call_from_thread(app.notify, f"acknowledge failed: {e}", severity="error")
            return
        n = len(out.get("acknowledged", []))
        app.call_from_thread(app.notify, f"acknowledged {n} alert{'s' if n != 1 else ''}")
        app.refresh_stats()

    def action_goto(self) -> None:
        a = self.selected()
        if a is None or not a.get("path"):
            self.notify("this alert names no file", severity="warning")
            return
        self.gapp.open_in_restore(str(a["path"]))
