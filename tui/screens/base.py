"""The screen base every Guardian screen shares: typed access to the app that owns it, and
what happens when one of its background reads fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from tui.app import GuardianApp


class GuardianScreen(Screen[None]):
    """A screen of the Guardian app; ``gapp`` is the app, typed (its backend, its feed)."""

    @property
    def gapp(self) -> GuardianApp:
        from tui.app import GuardianApp

        assert isinstance(self.app, GuardianApp)
        return self.app

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A read that failed says so (its pane would otherwise stay stale without a word;
        the workers do not exit the app on error). ``r`` or the next change reads again."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"could not read {event.worker.group}: "
                        f"{type(error).__name__}: {error}", severity="error", timeout=8)
