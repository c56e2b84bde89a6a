"""The screen base every Guardian screen shares: typed access to the app that owns it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from tui.app import GuardianApp


class GuardianScreen(Screen[None]):
    """A screen of the Guardian app; ``gapp`` is the app, typed (its backend, its feed)."""

    @property
    def gapp(self) -> GuardianApp:
        from tui.app import GuardianApp

        assert isinstance(self.app, GuardianApp)
        return self.app
