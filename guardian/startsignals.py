"""SIGINT and SIGTERM from the first line of ``guardian watch``, before its event loop runs.

Loading the daemon's modules, opening the store and reading every rule file take from tens of
milliseconds to seconds; a signal then used to give a traceback (SIGINT) or kill the process
without ``stopped`` (SIGTERM's default action, exit 143). Installed first, these handlers only
record the signal; the daemon honours it as soon as its loop takes the signals over (a clean
stop: ``stopping``, ``stopped``, exit 0). Inside :func:`interruptible` (reading rule files: no
writes) a signal also cuts the work short. Imported only by ``guardian watch``, before
anything else: it uses ``_signal``, the C module under ``signal``, whose ``enum`` import is
milliseconds more during which a signal would still be lost.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub; `signal` re-exports it

TYPE_CHECKING = False  # keeps `typing` off the start-up path
if TYPE_CHECKING:
    from types import FrameType

_NAMES: dict[int, str] = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM"}
_installed = False
_requested: str | None = None
_interruptible = False


class Interrupted(BaseException):
    """A stop was requested during :func:`interruptible` work (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""


def _record(signum: int, _frame: FrameType | None) -> None:
    global _requested
    if _requested is None:
        _requested = _NAMES.get(signum, f"signal {signum}")
    if _interruptible:
        raise Interrupted(_requested)


def install() -> None:
    """Record SIGINT/SIGTERM from now on (again after an event loop gave them back)."""
    global _installed
    _installed = True
    for s in _NAMES:
        _signal.signal(s, _record)


def reinstall() -> None:
    """After the daemon's loop removed its own handlers: record again, if we did before."""
    if _installed:
        install()


def requested() -> str | None:
    """The name of the first stop signal received since :func:`install`, if any."""
    return _requested


class interruptible:
    """Work during which a stop signal raises :class:`Interrupted` (at once if one came)."""

    def __enter__(self) -> None:
        global _interruptible
        _interruptible = True
        if _requested is not None:
            _interruptible = False
            raise Interrupted(_requested)

    def __exit__(self, *exc: object) -> None:
        global _interruptible
        _interruptible = False

