"""Pick a point in time for a directory: the times its versions were recorded are the stops
(newest first), or type one (``2h ago``, ``15m``, an ISO time, ``@EPOCH``). Returns ns."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from guardian.errors import UsageError
from guardian.timespec import parse_time


def parse(text: str, now_ns: int) -> int:
    t = text.strip()
    if t.lower().endswith(" ago"):
        t = t[:-4].strip()
    return parse_time(t, now_ns=now_ns)


class AtTime(ModalScreen[int | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="attime.cancel",
                        tooltip="Back, nothing restored")]

    def __init__(self, path: str, stops: list[tuple[int, str]], now_ns: int) -> None:
        super().__init__()
        self.path = path
        self.stops = stops
        self.now_ns = now_ns

    def compose(self) -> ComposeResult:
        with Vertical(id="attime"):
            yield Label(f"Restore {self.path} as it was at…", id="attime-title")
            yield Input(placeholder="a time: 2h ago, 15m, 2026-12-01T10:00, @EPOCH",
                        id="attime-input")
            yield Label("or pick a moment something changed (↑/↓, Enter):")
            yield OptionList(*[Option(text, id=str(ns)) for ns, text in self.stops],
                             id="attime-stops")
            yield Label("", id="attime-error")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(Input.Submitted)
    def typed(self, event: Input.Submitted) -> None:
        try:
            ns = parse(event.value, self.now_ns)
        except UsageError as e:
            self.query_one("#attime-error", Label).update(str(e))
            return
        self.dismiss(ns)

    @on(OptionList.OptionSelected)
    def picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    def action_cancel(self) -> None:
        self.dismiss(None)
