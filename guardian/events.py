"""Domain events: what the daemon reports to the headless log, the control socket and the TUI.

Each event serialises to one JSON object with ``event`` (its name) and ``time`` first; those
objects are an API (``guardian watch --headless`` prints one per line on stderr).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from guardian.timespec import iso


@dataclass(frozen=True)
class Event:
    name: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: fields hold plain values; asdict() deep-copies (slow in bursts).
        return {"event": self.name, "time": iso(time.time_ns()),
                **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class Ready(Event):
    """The baseline is stored: from now on every change is captured."""

    name: ClassVar[str] = "ready"
    store: str
    roots: list[str]
    pid: int
    files: int
    versions: int
    recorded: int
    elapsed_ms: int
    socket: str | None


@dataclass(frozen=True)
class VersionRecorded(Event):
    name: ClassVar[str] = "version"
    id: int
    path: str
    kind: str
    origin: str
    sha256: str | None
    size: int | None
    note: str | None = None


@dataclass(frozen=True)
class Reconciled(Event):
    name: ClassVar[str] = "reconcile"
    reason: str
    path: str
    scanned: int
    recorded: int
    unchanged: int
    elapsed_ms: int


@dataclass(frozen=True)
class Warning(Event):
    name: ClassVar[str] = "warning"
    message: str
    path: str | None = None
    source: str = "guardian"


@dataclass(frozen=True)
class Error(Event):
    name: ClassVar[str] = "error"
    message: str
    path: str | None = None


@dataclass(frozen=True)
class Stopping(Event):
    name: ClassVar[str] = "stopping"
    reason: str
    pending: int = 0


@dataclass(frozen=True)
class Stopped(Event):
    name: ClassVar[str] = "stopped"
    versions: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Validation(Event):
    """What the validators said of a new version (``valid`` null: none ran)."""

    name: ClassVar[str] = "validation"
    id: int
    path: str
    valid: bool | None
    problems: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Alert(Event):
    """Something a user should look at: an invalid write, a revert, a broken rule file."""

    name: ClassVar[str] = "alert"
    severity: str          # info | warning | critical
    kind: str              # invalid | reverted | kept | gave-up | revert-failed | rules | untrusted
    message: str
    path: str | None = None
    versions: list[int] = field(default_factory=list)
    # guardian.observe's model: the stored alert, its dedupe key, state and repeat count.
    id: int | None = None
    key: str | None = None
    state: str = "open"    # open | acknowledged | resolved
    count: int = 1


@dataclass(frozen=True)
class RulesReloaded(Event):
    name: ClassVar[str] = "rules"
    path: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Health(Event):
    """Whether every write is being recorded now; emitted each time that changes.

    ``causes``: what stops it (``watcher``, ``watch-limit``, ``events-lost``, ``store``),
    each ``{"cause": …, "message": …}``; empty when healthy again.
    """

    name: ClassVar[str] = "health"
    degraded: bool
    causes: list[dict[str, str]] = field(default_factory=list)
