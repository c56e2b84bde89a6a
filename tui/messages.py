"""Messages the TUI posts to itself.

The feed thread posts :class:`FeedChanged` after every event; Textual merges it with a
pending one (``can_replace``), so a burst of 20,000 events costs the UI a handful of
messages, and the dashboard renders from its own timer, not per event.
"""

from __future__ import annotations

from textual.message import Message


class FeedChanged(Message):
    """New events are waiting in the app's :class:`~tui.feed.Feed`."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FeedChanged)


class StatsUpdated(Message):
    """A fresh status + metrics read is in the app's state."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatsUpdated)


class FeedEnded(Message):
    """The daemon closed the event stream (it stopped, or dropped us for being slow)."""
