"""The daemon's socket and a store's location with os, the C socket and JSON modules only:
what start-up-bound callers (``guardian-hook``, ``guardian status``, ``guardian snapshot
FILE``) use before they know whether they need anything more.

It makes the same checks as :mod:`guardian.locations` and :mod:`guardian.client` (a
runtime directory that is ours alone, the daemon's uid by SO_PEERCRED) on the usual case;
anything unusual raises :class:`NoFast` and the caller takes the full path, which says what
is wrong. :func:`call` raises FileNotFoundError or ConnectionRefusedError when no daemon
listens.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # keeps `typing` off the start-up path
if TYPE_CHECKING:
    from typing import Any

ROOTS_FILE = "roots.json"  # guardian.locations.ROOTS_FILE


class NoFast(Exception):
    """This path cannot decide; the full one (guardian.client, guardian.locations) does."""


class Refused(Exception):
    """The daemon answered with an error (its message and exit code)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def stores_dir() -> str | None:
    """``$XDG_STATE_HOME/guardian/stores``; None when platformdirs would decide."""
    base = os.environ.get("XDG_STATE_HOME")
    if base and os.path.isabs(base):
        return os.path.join(base, "guardian", "stores")
    return None


def store_roots(store: str) -> list[str] | None:
    """The roots a store's ``roots.json`` names (None: no readable file)."""
    from guardian import wirejson

    try:
        with open(os.path.join(store, ROOTS_FILE), encoding="utf-8") as f:
            roots = wirejson.loads(f.read()).get("roots", [])
    except (OSError, ValueError, AttributeError):
        return None
    return [r for r in roots if isinstance(r, str)] if isinstance(roots, list) else None


def find(stores: str, path: str) -> str | None:
    """:func:`guardian.locations.find_store_for`, on strings."""
    try:
        names = os.listdir(stores)
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for name in names:
        store = os.path.join(stores, name)
        for root in store_roots(store) or ():
            if path == root or path.startswith(root.rstrip("/") + "/"):
                depth = root.rstrip("/").count("/")
                if best is None or depth > best[0]:
                    best = (depth, store)
    return best[1] if best else None


def socket_of(store: str) -> tuple[str, int]:
    """The daemon's socket path and uid when the usual case holds: a store of ours and the
    standard runtime directory, ours alone. FileNotFoundError: no runtime directory, so no
    daemon listens (it makes one before it binds); NoFast: anything else unusual."""
    uid = os.geteuid()
    try:
        if os.stat(store).st_uid != uid:
            raise NoFast
    except OSError:
        raise NoFast from None
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if not xdg or not os.path.isdir(xdg):
        raise NoFast
    run_dir = os.path.join(xdg, "guardian")
    import stat

    try:
        st = os.lstat(run_dir)
    except FileNotFoundError:
        raise
    except OSError:
        raise NoFast from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or stat.S_IMODE(st.st_mode) & 0o077:
        raise NoFast
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # hashlib costs ~10 ms
    except ImportError:
        from hashlib import sha256
    name = sha256(os.fsencode(os.path.realpath(store))).hexdigest()[:16] + ".sock"
    return os.path.join(run_dir, name), uid


def call(store: str, method: str, params: dict[str, Any], timeout: float) -> Any:
    """One request to the daemon of ``store``: its result; Refused for its error reply."""
    path, uid = socket_of(store)
    if len(os.fsencode(path)) >= 108:
        raise NoFast
    if not os.path.lexists(path):  # no daemon, said without loading the socket module
        raise FileNotFoundError(path)
    import _socket

    from guardian import wirejson

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        import struct

        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", cred)[1] != uid:
            raise NoFast  # the full path says what is wrong
        sock.sendall(wirejson.dumps({"v": 1, "id": 1, "method": method,
                                     "params": params}).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            buf += chunk
        reply = wirejson.loads(buf.partition(b"\n")[0])
    finally:
        sock.close()
    if not isinstance(reply, dict):
        raise RuntimeError("daemon error: not a JSON object")
    if not reply.get("ok"):
        err = reply.get("error")
        if not isinstance(err, dict):
            err = {}
        try:
            code = int(err.get("exit_code", 1))
        except (TypeError, ValueError):
            code = 1
        raise Refused(str(err.get("message", "daemon error")), code)
    return reply.get("result")
