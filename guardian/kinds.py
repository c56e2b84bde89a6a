"""The words the store records, as types.

The database holds bare strings; code names them with these ``Literal`` types, so a typo in
a kind or an origin is a mypy error instead of a row that no query ever finds. ``get_args``
gives each set at run time (a store row or a wire value is checked against it where it
enters)."""

from __future__ import annotations

from typing import Literal

#: What a version is: the first sight of a file (``baseline``), a change seen on disk, or what
#: Guardian itself did (``moved``: a rename seen as one; ``rejected``: bytes a rule refused,
#: kept; ``reverted``: the good bytes put back; ``restored``: a restore's result).
VersionKind = Literal["baseline", "created", "modified", "deleted", "moved", "rejected",
                      "reverted", "restored"]

#: Who or what produced a version: the watcher, a rescan (``scan``), ``guardian snapshot``, a
#: batch (``apply``, the Python API), a restore, or Guardian's own revert (``guardian``).
Origin = Literal["watcher", "scan", "snapshot", "batch", "restore", "guardian"]

#: Where a journaled batch stands (see :mod:`guardian.batch.protocol`).
BatchState = Literal["prepared", "committed", "done", "rolled_back"]

#: What a batch entry does to its path.
EntryAction = Literal["write", "delete", "mkdir"]
