"""The control socket protocol: newline-delimited JSON over a Unix socket (0600).

Request:  ``{"v": 1, "id": 7, "method": "status", "params": {...}}``
Response: ``{"v": 1, "id": 7, "ok": true, "result": {...}}`` or
          ``{"v": 1, "id": 7, "ok": false, "error": {"message": "...", "exit_code": 2}}``
``subscribe`` answers ``ok`` once, then streams one event object per line until the client
closes. The server side runs in the daemon (anyio); the client side is blocking (the CLI).
"""

from __future__ import annotations

import json
import os
import socket
from collections import deque

from guardian.closing import Closing
from guardian.errors import DaemonError, PeerError
from guardian.exitcodes import ExitCode

TYPE_CHECKING = False  # keeps `typing` off the CLI's start-up path
if TYPE_CHECKING:
    from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 16 * 1024 * 1024


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def error_response(req_id: Any, message: str, exit_code: int = ExitCode.USAGE,
                   data: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "exit_code": int(exit_code)}
    if data:
        error["data"] = data
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": False, "error": error}


def ok_response(req_id: Any, result: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": True, "result": result}


def peer_uid(sock: socket.socket) -> int | None:
    """The effective uid of the process at the other end of a Unix socket (SO_PEERCRED;
    None where the platform cannot tell)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:  # pragma: no cover - not Linux
        return None
    import struct

    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt,
                                                         struct.calcsize("3i")))
    return int(uid)


def sun_path(path: str) -> tuple[str, int | None]:
    """``path`` as bind/connect can take it: sun_path holds 107 bytes, so a longer path goes
    through ``/proc/self/fd/N/`` of its directory (the caller closes the returned fd)."""
    if len(os.fsencode(path)) < 108:
        return path, None
    head, _, name = path.rpartition("/")
    fd = os.open(head or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{name}", fd


class Connection(Closing):
    """A blocking client connection to a daemon.

    With ``expect_uid``, the process that answers must run as that user (SO_PEERCRED): a
    socket another user planted in a directory we checked, or swapped in after the check,
    is refused before anything is sent to it.
    """

    def __init__(self, path: str, timeout: float | None = 10.0, *,
                 expect_uid: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        target, fd = sun_path(path)
        try:
            self.sock.connect(target)
            if expect_uid is not None:
                uid = peer_uid(self.sock)
                if uid is not None and uid != expect_uid:
                    raise PeerError(f"{path}: the process behind this control socket runs as "
                                    f"uid {uid}, not {expect_uid}; refusing to talk to it")
        except BaseException:
            self.sock.close()
            raise
        finally:
            if fd is not None:
                os.close(fd)
        self._buf = b""                 # the start of a line not yet complete
        self._lines: deque[bytes] = deque()  # complete lines not yet read
        self._next_id = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        self.sock.sendall(encode({"v": PROTOCOL_VERSION, "id": self._next_id, "method": method,
                                  "params": params or {}}))
        return self._next_id

    def read(self) -> dict[str, Any]:
        # Every line of a chunk split off at once: taking one line at a time copied the
        # rest of a 64 KiB chunk per line, quadratic in an event stream's burst.
        while not self._lines:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            if b"\n" in chunk:
                *lines, rest = (self._buf + chunk).split(b"\n")
                self._lines.extend(lines)
                self._buf = rest
            else:
                self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise ConnectionError("reply too long")
        obj = json.loads(self._lines.popleft())
        if not isinstance(obj, dict):
            raise ConnectionError("malformed reply")
        return obj

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.send(method, params)
        reply = self.read()
        if not reply.get("ok"):
            err = reply.get("error") or {}
            e = DaemonError(str(err.get("message", "daemon error")),
                            exit_code=ExitCode(int(err.get("exit_code", ExitCode.FAILURE))))
            e.data = err.get("data")
            raise e
        return reply.get("result")
