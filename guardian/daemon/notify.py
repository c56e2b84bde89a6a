"""systemd's notification protocol (``sd_notify``), for ``Type=notify`` units.

A datagram of ``KEY=VALUE`` lines to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path,
or ``@name`` in the abstract namespace). What Guardian says: ``READY=1`` once the baseline is
stored (the ``ready`` event), ``STOPPING=1`` when it starts to shut down, ``STATUS=`` lines a
``systemctl status`` shows, and ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from the daemon's
event loop (if that is ours: ``$WATCHDOG_PID`` unset or our pid), so a hung loop gets the unit
restarted. Until ready, the same timer sends ``EXTEND_TIMEOUT_USEC`` so that a long baseline of a
big tree is not killed by ``TimeoutStartSec`` while the loop still runs.

Written here (twenty lines of socket code) rather than taken from a library: the protocol is
one ``sendto``, and the daemon should not need a C binding of libsystemd to be a good unit.
Sending never blocks and never fails the daemon: systemd gone is not Guardian's problem.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping, MutableMapping
from typing import Any

import anyio

from guardian.events import Event, Health, Ready, Stopping

ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
#: While the baseline runs: each keepalive asks systemd for this much more start-up time.
EXTEND_USEC = 30_000_000
#: The keepalive period when there is no watchdog (only EXTEND_TIMEOUT_USEC to send).
EXTEND_EVERY_S = 10.0


def socket_address(value: str) -> str | None:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address: ``@name`` is abstract (a leading NUL)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # unset, empty or relative (e.g. vsock:…): nothing we speak


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``, as sd_notify(3) asks;
    None when no watchdog is set for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 2 / 1_000_000


class Notifier:
    """Tells systemd about the daemon; every method is a no-op without ``$NOTIFY_SOCKET``."""

    def __init__(self, address: str | None = None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s if address else None
        self._sock: socket.socket | None = None
        self._ready = False
        self._stopping = False
        #: Datagrams that could not be sent (systemd gone, a full queue): for tests and status.
        self.failures = 0

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, *,
                         unset: bool = True) -> Notifier:
        """The notifier the service manager asked for. ``unset`` removes the variables (as
        sd_notify's ``unset_environment``), so no validator or sink Guardian starts speaks
        for it."""
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        address = socket_address(env.get("NOTIFY_SOCKET", ""))
        watchdog = watchdog_interval(env, os.getpid())
        if unset:
            for key in ENV_KEYS:
                env.pop(key, None)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: Any) -> bool:
        """One datagram: ``send(READY=1, STATUS="…")`` → ``READY=1\\nSTATUS=…``."""
        if self.address is None:
            return False
        lines = [f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items()]
        data = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, self.address)
        except OSError:
            self.failures += 1
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def on_event(self, event: Event) -> None:
        """Follow the daemon's own events: ready, health changes, stopping."""
        if self.address is None:
            return
        if isinstance(event, Ready):
            self._ready = True
            roots = ", ".join(event.roots)
            self.send(READY=1, STATUS=f"watching {roots}: {event.files} files, "
                                      f"{event.versions} versions")
        elif isinstance(event, Health):
            status = ("degraded: " + "; ".join(c.get("message", c.get("cause", ""))
                                               for c in event.causes)
                      if event.degraded else "watching (healthy again)")
            self.send(STATUS=status)
        elif isinstance(event, Stopping):
            self._stopping = True
            self.send(STOPPING=1, STATUS=f"stopping ({event.reason}): recording "
                                         f"{event.pending} pending changes")

    async def keepalive(self) -> None:
        """Run in the daemon's task group: ``WATCHDOG=1`` every half watchdog period (it
        proves the event loop runs), and while starting or stopping ``EXTEND_TIMEOUT_USEC``."""
        if self.address is None:
            return
        self.send(STATUS="starting: recording the baseline, or what changed while stopped")
        every = self.watchdog_s or EXTEND_EVERY_S
        while True:
            fields: dict[str, Any] = {}
            if self.watchdog_s:
                fields["WATCHDOG"] = 1
            if not self._ready or self._stopping:  # start-up or shutdown: still working
                fields["EXTEND_TIMEOUT_USEC"] = max(EXTEND_USEC, int(every * 3_000_000))
            if fields:
                self.send(**fields)
            elif not self.watchdog_s:
                return  # ready and no watchdog: nothing more to say on a timer
            await anyio.sleep(every)
