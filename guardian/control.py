"""The control socket protocol: newline-delimited JSON over a Unix socket (0600).

Request:  ``{"v": 1, "id": 7, "method": "status", "params": {...}}``
Response: ``{"v": 1, "id": 7, "ok": true, "result": {...}}`` or
          ``{"v": 1, "id": 7, "ok": false, "error": {"message": "...", "exit_code": 2}}``
``subscribe`` answers ``ok`` once, then streams one event object per line until the client
closes. The server side runs in the daemon (anyio); the client side is blocking (the CLI).
"""

from __future__ import annotations

import json
import socket

from guardian.errors import GuardianError
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


class DaemonError(GuardianError):
    """The daemon answered with an error (``data``: its structured details, if any)."""

    data: dict[str, Any] | None = None


class Connection:
    """A blocking client connection to a daemon."""

    def __init__(self, path: str, timeout: float | None = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self._buf = b""
        self._next_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        self.sock.sendall(encode({"v": PROTOCOL_VERSION, "id": self._next_id, "method": method,
                                  "params": params or {}}))
        return self._next_id

    def read(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise ConnectionError("reply too long")
        line, _, self._buf = self._buf.partition(b"\n")
        obj = json.loads(line)
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
