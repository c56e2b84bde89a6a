"""What the event subscription delivered, kept for the screens (written by the feed thread).

Only counters and a capped list: the UI thread reads a copy at its own pace.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from guardian.events import Alert, Event, Health, Reconciled, VersionRecorded

#: Recent events the dashboard can show.
RECENT = 500


class Feed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, Event]] = deque(maxlen=RECENT)
        self.seq = 0           # events received in total
        self.versions = 0      # version events in total
        self.alerts = 0        # alert events in total (the alerts screen reloads on change)
        self.last_reconcile: Reconciled | None = None
        self.health: Health | None = None
        self.resumed = 0       # times the stream was dropped (too slow) and read again

    def add(self, event: Event, now: float | None = None) -> None:
        with self._lock:
            self._recent.append((time.time() if now is None else now, event))
            self.seq += 1
            if isinstance(event, VersionRecorded):
                self.versions += 1
            elif isinstance(event, Alert):
                self.alerts += 1
            elif isinstance(event, Reconciled):
                self.last_reconcile = event
            elif isinstance(event, Health):
                self.health = event

    def recent(self, n: int) -> list[tuple[float, Event]]:
        """The newest ``n`` events, newest first."""
        with self._lock:
            items = list(self._recent)[-n:]
        items.reverse()
        return items
