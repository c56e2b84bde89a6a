"""The in-process daemon tier: a real :class:`~guardian.daemon.loop.Daemon` on temp dirs, run
in the test's own event loop (anyio's pytest plugin), driven by real files and asserted on its
typed events.

The subprocess tier (``conftest.watch``) tests what a user runs; this one tests the daemon as
a library, the way the TUI and the agent hooks use it: no JSON parsing between the test and
the events, the daemon's state open to inspection, and a start in milliseconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import anyio

from guardian.daemon.loop import Daemon
from guardian.events import Event, Ready, Stopped
from guardian.writer import open_writer

E = TypeVar("E", bound=Event)

DEFAULT_TIMEOUT = 30.0


class InProcessDaemon:
    """A running daemon and every event it emitted, in order."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.events: list[Event] = []
        self.daemon: Daemon | None = None

    def emit(self, event: Event) -> None:  # the daemon's sink (called in its event loop)
        self.events.append(event)

    def mark(self) -> int:
        return len(self.events)

    async def wait(self, kind: type[E], pred: Callable[[E], bool] = lambda e: True, *,
                   start: int = 0, timeout: float = DEFAULT_TIMEOUT) -> E:
        """The first event of ``kind`` (from index ``start``) that ``pred`` accepts."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for e in self.events[seen:]:
                if isinstance(e, kind) and pred(e):
                    return e
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind.__name__} event within {timeout}s; "
                                     f"last events: {self.events[-10:]}")
            await anyio.sleep(0.01)  # the polling interval of a condition wait

    async def call(self, method: str, params: dict[str, object] | None = None) -> object:
        """A control-socket method, dispatched in the daemon's loop as a client's would be."""
        assert self.daemon is not None
        return await self.daemon.server.dispatch(method, params or {})


@contextlib.asynccontextmanager
async def running_daemon(roots: list[Path], store: Path) -> AsyncIterator[InProcessDaemon]:
    """Open the store (creating it), start a daemon over ``roots``, wait for its baseline;
    on exit stop it and wait until it has stopped."""
    harness = InProcessDaemon(store)
    with open_writer(store, roots, create=True, discover=True) as writer:
        daemon = Daemon(writer, emit=harness.emit)
        harness.daemon = daemon
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await harness.wait(Ready)
            try:
                yield harness
            finally:
                daemon.request_stop("test")
                await harness.wait(Stopped)
