"""``?``: every key of the screen below and of the app, with what it does and why."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label


class Help(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close", id="help.close",
                        tooltip="Back to the screen")]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Label(f"Keys: {self.under.title or type(self.under).__name__}",
                        id="help-title")
            yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "does", "why")
        seen: set[str] = set()
        sources = [self.under, *self.under.query("*"), self.app]
        for source in sources:
            for b in getattr(source, "BINDINGS", []):
                # Ours carry an id (and a tooltip); widgets' own scrolling keys do not.
                if not isinstance(b, Binding) or not b.id or b.id in seen:
                    continue
                seen.add(b.id)
                key = b.key_display or self.app.get_key_display(b)
                table.add_row(key, b.description, b.tooltip)
