"""The footer, redrawn once however many times the keys change before the next refresh.

Textual's Footer recomposes (a widget per key) on every change of the active bindings, and
one screen change or focus move publishes several: on the dashboard that was four
recomposes before the first paint, on the restore browser six. Textual is pinned exactly
(pyproject), so overriding ``bindings_changed`` (and setting the flag it sets) is safe.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class Keys(Footer):
    """Compact (one space between keys, not two): at 80 columns the restore browser's
    footer then shows its actions and its navigation keys, not half of them."""

    _queued = False

    def __init__(self) -> None:
        super().__init__(compact=True)

    def bindings_changed(self, screen: Screen[object]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or self._queued:
            return
        if self.is_attached and screen is self.screen:
            self._queued = True
            self.call_after_refresh(self._recompose_once)

    async def _recompose_once(self) -> None:
        self._queued = False
        await self.recompose()
