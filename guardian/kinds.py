"""The words the store records, as types.

The database holds bare strings; code names them with these ``Literal`` types, so a typo in
a kind or an origin is a mypy error instead of a row that no query ever finds. ``get_args``
gives each set at run time (a store row or a wire value is checked against it where it
enters)."""

from __future__ import annotations

from typing import Final, Literal

#: What a version is: the first sight of a file (``baseline``), a change seen on disk, or what
#: Guardian itself did (``moved``: a rename seen as one; ``rejected``: bytes a rule refused,
#: kept; ``reverted``: the good bytes put back; ``restored``: a restore's result).
VersionKind = Literal["baseline", "created", "modified", "deleted", "moved", "rejected",
                      "reverted", "restored"]

#: Who or what produced a version: the watcher, a rescan (``scan``), ``guardian snapshot``, a
#: batch (``apply``, the Python API), a restore, Guardian's own revert (``guardian``), or an
#: agent hook (``agent``: the "before" copy of a write tool's target, or what it wrote).
Origin = Literal["watcher", "scan", "snapshot", "batch", "restore", "guardian", "agent"]

#: Where a journaled batch stands (see :mod:`guardian.batch.protocol`).
BatchState = Literal["prepared", "committed", "done", "rolled_back"]

#: What a batch entry does to its path.
EntryAction = Literal["write", "delete", "mkdir"]

#: What the daemon does with a settle key ``(action, root id, relpath)`` once that path has
#: been quiet long enough (:mod:`guardian.daemon.settle`): record the path's current state
#: (``CAPTURE``), walk the directory tree (``RESCAN``: a new or moved directory, a root's
#: first scan, a lost event), or record a vanished path's deletion if it is still missing
#: after a grace period (``CONFIRM_GONE``: a save that replaces a file removes it first).
SettleAction = Literal["p", "t", "m"]
CAPTURE: Final = "p"
RESCAN: Final = "t"
CONFIRM_GONE: Final = "m"
SettleKey = tuple[SettleAction, int, bytes]
