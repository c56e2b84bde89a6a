"""Talking to a running daemon, or doing the work directly when none runs.

The CLI and the TUI go through here: ``daemon()`` answers whether a daemon serves a store;
``as_writer()`` runs a writer request through the daemon if one runs, else takes the store's
writer lock itself (waiting while a daemon is starting up and not yet answering).

Only a daemon we can trust is talked to: its socket's directory is the store owner's alone
(0700) and the process behind it runs as that user (SO_PEERCRED). Anything else is "no
daemon" (said once on stderr); the writer lock then decides whether the work can be done
directly, so nothing is written beside a daemon that may run.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from guardian.closing import Closing
from guardian.control import Connection
from guardian.errors import PeerError, StoreBusyError, StoreError
from guardian.locations import client_socket_path, runtime_dir_problem

TYPE_CHECKING = False  # keeps `typing` off the CLI's start-up path
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, TypeVar

    from guardian.events import Event
    from guardian.writer import Writer

    T = TypeVar("T")


_warned: set[str] = set()


def _warn(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        sys.stderr.write(f"guardian: warning: {message}\n")


def daemon(store_path: Path, timeout: float | None = 30.0) -> Connection | None:
    """A connection to the daemon writing ``store_path``, or None if none answers (or only
    one we must not trust answers: that is said on stderr)."""
    try:
        path, uid = client_socket_path(store_path)
    except StoreError as e:
        _warn(f"{e}: not talking to a daemon through it")
        return None
    if uid == os.geteuid() and (problem := runtime_dir_problem()) is not None:
        _warn(f"{problem}, so it is not used (another user may have made it to receive what "
              f"clients send); looking for the daemon in {path.parent}")
    try:
        return Connection(str(path), timeout=timeout, expect_uid=uid)
    except PeerError as e:
        _warn(str(e))
        return None
    except OSError:
        return None


def as_writer(store_path: Path, method: str,
              params: dict[str, Any] | Callable[[], dict[str, Any]],
              direct: Callable[[Writer], T], *, wait: float = 30.0,
              timeout: float | None = None, create: bool = False,
              roots: list[Path] | None = None, leave: bool = False) -> T | Any:
    """Run ``method`` on the daemon if one runs; else ``direct(writer)`` holding the writer lock.

    ``params`` may be a function making them, called only if a daemon answers (a 16 MB
    manifest's wire form is not built for nothing). ``create`` makes the store if there is
    none yet (``snapshot`` and ``apply`` only; see
    ``Store.open``); without it a directory that is not a store is an error. ``roots`` are
    added to the store when this process opens it (a daemon already has its roots).
    ``leave``: a process about to end with ``os._exit`` (``guardian apply``) leaves the store
    when ``direct`` succeeded (see :meth:`Store.leave`), its WAL checkpointed after it exits.
    """
    deadline = time.monotonic() + wait
    while True:
        conn = daemon(store_path, timeout=timeout)
        if conn is not None:
            with conn:
                return conn.call(method, params() if callable(params) else params)
        from guardian.store.db import Store  # only when no daemon answers
        from guardian.writer import writer_of

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
        if not leave:
            with store, writer_of(store, roots) as writer:
                return direct(writer)
        try:
            with writer_of(store, roots) as writer:
                out = direct(writer)
        except BaseException:
            store.close()
            raise
        LEFT.append(store.leave(checkpoint_later=True))
        return out


#: The connections of stores left (``as_writer(leave=True)``), kept open until the process
#: ends (collected, one would close and checkpoint: safe, only slower).
LEFT: list[object] = []


class Subscription(Closing):
    """The daemon's event stream (``subscribe``), as :class:`~guardian.events.Event` objects.

    Iterating blocks on the socket; :meth:`close` (from any thread) ends the iteration, as
    does the daemon going away. The TUI's feed thread is its one user.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._closed = False

    def __iter__(self) -> Iterator[Event]:
        from guardian.events import Event

        try:
            while not self._closed:
                try:
                    obj = self._conn.read()
                except (OSError, ConnectionError, ValueError):
                    return
                yield Event.from_dict(obj)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the stream; safe to call twice and from another thread than the reader's."""
        if self._closed:
            return
        self._closed = True
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv
        self._conn.close()


def subscribe(store_path: Path) -> Subscription | None:
    """The event stream of the daemon writing ``store_path``; None if no daemon answers.

    The daemon acknowledges once, then sends one event per line until either side closes."""
    conn = daemon(store_path, timeout=10.0)
    if conn is None:
        return None
    try:
        conn.call("subscribe")
    except BaseException:
        conn.close()
        raise
    conn.sock.settimeout(None)  # events may be minutes apart
    return Subscription(conn)
