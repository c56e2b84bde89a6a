"""Talking to a running daemon, or doing the work directly when none runs.

The CLI and the TUI go through here: ``daemon()`` answers whether a daemon serves a store;
``as_writer()`` runs a writer request through the daemon if one runs, else takes the store's
writer lock itself (waiting while a daemon is starting up and not yet answering).
"""

from __future__ import annotations

import time
from pathlib import Path

from guardian.control import Connection
from guardian.errors import StoreBusyError
from guardian.locations import socket_path

TYPE_CHECKING = False  # keeps `typing` off the CLI's start-up path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from guardian.store import Store

    T = TypeVar("T")


def daemon(store_path: Path, timeout: float | None = 30.0) -> Connection | None:
    """A connection to the daemon writing ``store_path``, or None if none answers."""
    path = socket_path(store_path)
    try:
        return Connection(str(path), timeout=timeout)
    except OSError:
        return None


def as_writer(store_path: Path, method: str, params: dict[str, Any],
              direct: Callable[[Store], T], *, wait: float = 30.0,
              timeout: float | None = None, create: bool = False) -> T | Any:
    """Run ``method`` on the daemon if one runs; else ``direct(store)`` holding the writer lock.

    ``create`` makes the store if there is none yet (``snapshot`` and ``apply`` only; see
    ``Store.open``); without it a directory that is not a store is an error.
    """
    deadline = time.monotonic() + wait
    while True:
        conn = daemon(store_path, timeout=timeout)
        if conn is not None:
            with conn:
                return conn.call(method, params)
        from guardian.store import Store  # only when no daemon answers

        try:
            store = Store.open(store_path, write=True, create=create)
        except StoreBusyError:
            if time.monotonic() > deadline:
                raise StoreBusyError(
                    f"store {store_path} is locked by another guardian process that does not "
                    "answer on its control socket; try again when it has started"
                ) from None
            time.sleep(0.05)
            continue
        with store:
            return direct(store)
