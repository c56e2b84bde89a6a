"""Errors that reach the user as one clear line, each with its exit code."""

from guardian.exitcodes import ExitCode


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
