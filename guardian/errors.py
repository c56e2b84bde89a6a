"""Errors that reach the user as one clear line, each with its exit code: every one of
Guardian's own is here (the one left elsewhere, ``store.db.DamagedStoreError``, must also be
an ``sqlite3.DatabaseError``, and this module stays free of sqlite3: the CLI's start-up)."""

from __future__ import annotations

from guardian.exitcodes import ExitCode

TYPE_CHECKING = False  # keeps `typing` off the CLI's start-up path
if TYPE_CHECKING:
    from typing import Any


class GuardianError(Exception):
    """An error the CLI prints as one line and turns into an exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(GuardianError):
    """Bad arguments or input: exit 2."""


class StoreError(GuardianError):
    """The store cannot be opened, locked or written."""


class StoreBusyError(StoreError):
    """Another process holds the store's writer lock."""


class OutsideRootError(GuardianError):
    """A path is not inside any watched root, or reaches outside one through a symlink."""


class NotFoundError(GuardianError):
    """A file, version or store the user named does not exist."""


# ----------------------------------------------------------------------------- input
class RuleError(UsageError):
    """A rule file is wrong; the message is ``file:line: key: what is wrong``."""


class GlobError(UsageError, ValueError):
    """A glob that cannot be compiled; the message says where and why."""


class AlertsError(RuleError):
    """An ``[alerts]`` table is wrong: ``file:line: alerts.key: what is wrong``."""


class TemplateError(UsageError):
    """A template that cannot be compiled or rendered; names the line and the placeholder."""


class PatchError(UsageError):
    """A patch that does not apply; the message names the hunk and why."""


# ----------------------------------------------------------------------------- store
class CorruptObjectError(GuardianError):
    """Stored bytes no longer hash to their name: the command found a problem (exit 1).

    ``object_hash``: the object found damaged, when known (in a delta chain, the link that
    failed, which may be the base of the object asked for)."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, object_hash: bytes | None = None) -> None:
        super().__init__(message)
        self.object_hash = object_hash


# ----------------------------------------------------------------------------- daemon
class DaemonError(GuardianError):
    """The daemon answered with an error (``data``: its structured details, if any)."""

    data: dict[str, Any] | None = None


class PeerError(GuardianError):
    """The process behind a control socket is not the user a daemon must run as."""


# ----------------------------------------------------------------------------- batches
class Busy(GuardianError):
    """A target's lock is held by another batch; ``index`` says which of the given paths."""

    def __init__(self, index: int) -> None:
        super().__init__(f"target {index} is locked by another batch")
        self.index = index


class BatchError(GuardianError):
    """A batch that was refused or rolled back; names the operation, the path and why."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, category: str = "system", index: int | None = None,
                 op: str | None = None, path: str | None = None, line: int | None = None,
                 column: int | None = None, rolled_back: bool = False,
                 batch_id: int | None = None, exit_code: ExitCode | None = None) -> None:
        super().__init__(message, exit_code=exit_code)
        self.category = category
        self.index, self.op, self.path = index, op, path
        self.line, self.column = line, column
        self.rolled_back = rolled_back
        self.batch_id = batch_id

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BatchError:
        return cls(str(d.get("message", "batch failed")), category=d.get("category", "system"),
                   index=d.get("operation"), op=d.get("op"), path=d.get("path"),
                   line=d.get("line"), column=d.get("column"),
                   rolled_back=bool(d.get("rolled_back")), batch_id=d.get("batch"))

    def to_json(self) -> dict[str, Any]:
        return {"message": str(self), "category": self.category, "operation": self.index,
                "op": self.op, "path": self.path, "line": self.line, "column": self.column,
                "rolled_back": self.rolled_back, "batch": self.batch_id}
