"""The dashboard's recent events: a Line API list that renders only the rows on screen.

A Rich table in a scrolling Static is measured and rendered whole on every update (its
height is the table's): with a hundred rows refreshed twice a second during a burst that
was most of the UI thread's time, and keys waited behind it. Here an update swaps a list of
tuples, and a frame draws the visible lines, each from a few cropped strings.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

#: (time, what, path, detail, colour of "what")
Row = tuple[str, str, str, str, str]

#: Fixed widths of the time and what columns; path and detail share the rest 2:1.
TIME_W, WHAT_W, GAP = 8, 10, 2


def _cell(text: str, width: int) -> str:
    """``text`` in exactly ``width`` cells: padded, or cropped with an ellipsis."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


class EventList(ScrollView, can_focus=False):
    DEFAULT_CSS = """
    EventList { height: 1fr; overflow-x: hidden; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: list[Row] = []

    def set_rows(self, rows: list[Row]) -> None:
        self._rows = rows
        self.virtual_size = Size(self.scrollable_content_region.width, len(rows) + 1)
        self.refresh()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._rows) + 1)

    def _widths(self, width: int) -> tuple[int, int]:
        rest = max(0, width - TIME_W - WHAT_W - 3 * GAP)
        path = (rest * 2) // 3
        return path, rest - path

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = self.scroll_offset.y + y
        base = self.rich_style
        path_w, detail_w = self._widths(width)
        gap = " " * GAP
        if index == 0:
            cells = (("time", TIME_W), ("what", WHAT_W), ("path", path_w), ("detail", detail_w))
            bold = base + Style(bold=True)
            text = gap.join(_cell(t, w) for t, w in cells)
            return Strip([Segment(_cell(text, width), bold)], width)
        if index > len(self._rows):
            return Strip.blank(width, base)
        t, what, path, detail, colour = self._rows[index - 1]
        what_style = base + Style.parse(colour) if colour else base
        segments = [
            Segment(_cell(t, TIME_W) + gap, base),
            Segment(_cell(what, WHAT_W), what_style),
            Segment(gap + _cell(path, path_w) + gap + _cell(detail, detail_w), base),
        ]
        return Strip(segments).crop_extend(0, width, base)
