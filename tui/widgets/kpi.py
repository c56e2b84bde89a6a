"""A KPI tile: a name, the current value (coloured by its thresholds) and its history."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

#: Samples of history a tile keeps (one per metrics read).
HISTORY = 60


class Kpi(Vertical):
    """``level`` is ``ok``, ``warn`` or ``bad`` (a CSS class: the theme picks the colours)."""

    DEFAULT_CSS = """
    Kpi { height: 5; border: round $panel; padding: 0 1; }
    Kpi .kpi-name { color: $text-muted; }
    Kpi .kpi-value { text-style: bold; width: 100%; height: 1; }
    Kpi.warn .kpi-value { color: $warning; }
    Kpi.bad .kpi-value { color: $error; }
    Kpi.ok .kpi-value { color: $success; }
    Kpi Sparkline { height: 1; }
    """

    def __init__(self, name: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = name
        self.history: deque[float] = deque(maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Label(self.title, classes="kpi-name")
        yield Label("-", classes="kpi-value")
        yield Sparkline([], summary_function=max)

    def show(self, text: str, sample: float | None, level: str = "") -> None:
        if sample is not None:
            self.history.append(sample)
        # A fixed-size line: no layout pass of the whole screen for a new figure.
        self.query_one(".kpi-value", Label).update(text, layout=False)
        self.query_one(Sparkline).data = list(self.history)
        for cls in ("ok", "warn", "bad"):
            self.set_class(cls == level, cls)
