"""Domain events: what the daemon reports to the headless log, the control socket and the TUI.

This module is the only shape of a domain event. Each serialises to one JSON object with
``event`` (its name) and ``time`` first; those objects are an API (``guardian watch
--headless`` prints one per line on stderr, ``subscribe`` streams them), and
:meth:`Event.from_dict` reads one back into its class, so a client (the TUI, a hook) works
with the same types the daemon emits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from guardian.timespec import iso

if TYPE_CHECKING:
    from collections.abc import Mapping

    from guardian.paths import Root
    from guardian.store.db import Version

#: Event name -> class, filled as each class is defined (see Event.__init_subclass__).
_BY_NAME: dict[str, type[Event]] = {}


@dataclass(frozen=True)
class Event:
    name: ClassVar[str] = "event"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _BY_NAME[cls.name] = cls

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: fields hold plain values; asdict() deep-copies (slow in bursts).
        return {"event": self.name, "time": iso(time.time_ns()),
                **{f.name: getattr(self, f.name) for f in fields(self)}}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Event:
        """The event a JSON object describes (``to_dict``'s inverse, without ``time``).

        Keys a newer daemon added are dropped; an unknown event name becomes
        :class:`UnknownEvent`, so an older client keeps reading a newer daemon's stream."""
        cls = _BY_NAME.get(str(d.get("event")))
        if cls is None:
            return UnknownEvent(event=str(d.get("event")),
                                data={k: v for k, v in d.items() if k not in ("event", "time")})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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

    @classmethod
    def of(cls, v: Version, roots: Mapping[int, Root]) -> VersionRecorded:
        """The event of a version the store holds (capture, a batch, a restore, a revert)."""
        root = roots.get(v.root_id)
        path = root.display(v.relpath) if root else v.relpath.decode("utf-8", "surrogateescape")
        return cls(id=v.id, path=path, kind=v.kind, origin=v.origin, sha256=v.sha256,
                   size=v.size, note=v.note)


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
class WarningEvent(Event):
    """Something a user should know that did not stop anything (the ``warning`` line)."""

    name: ClassVar[str] = "warning"
    message: str
    path: str | None = None
    source: str = "guardian"


@dataclass(frozen=True)
class ErrorEvent(Event):
    """Something failed and is retried or reported (the ``error`` line)."""

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


@dataclass(frozen=True)
class UnknownEvent(Event):
    """An event this Guardian does not know (a newer daemon's): its name and fields."""

    name: ClassVar[str] = "unknown"
    event: str
    data: dict[str, Any] = field(default_factory=dict)
