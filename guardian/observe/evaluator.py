"""The reads of alert evaluation, in a helper process: they never hold the daemon's GIL.

Evaluating the alert rules reads every operation row of the window (:func:`metrics.compute`,
twice: the window and the error window) and folds them in Python: 60-200 ms at 1,000 writes/s,
every few seconds, during which capture waited for the GIL. With it in the daemon, the p99
write -> recorded latency at 1,000 writes/s was 35 ms; with no evaluation at all, 22-26 ms.

The helper is ``python -P -m guardian.observe.evaluator`` on a pair of pipes, one JSON line
per request (the store's directory and the windows) and one per answer (each window's
:func:`metrics.compute`, or an error). It opens the store read-only, keeps it open between
requests, exits when its stdin closes (it never outlives the daemon) and ignores the
terminal's Ctrl-C (its own session) and runs at the lowest CPU priority (under load an
evaluation waits; the daemon backs evaluations off by their cost). It starts on first use.
Whatever goes wrong with it (it cannot start, dies, hangs past the timeout, answers an
error), the caller computes the windows itself, as before, and the helper is started again
at a later evaluation.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Seconds an answer may take before the helper is killed and the caller computes instead.
TIMEOUT_S = 60.0
#: Evaluations done here after the helper failed, before it is started again.
RETRY_AFTER = 6
_MAX_LINE = 64 * 1024 * 1024

Span = tuple[int, int]


class Evaluator:
    """The daemon's side: :meth:`windows` asks the helper (one request at a time)."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._skip = 0  # evaluations left to do in the caller after a failure
        self._closed = False
        self.failures = 0

    def windows(self, spans: list[Span], timeout: float = TIMEOUT_S) -> list[dict[str, Any]] | None:
        """:func:`metrics.compute` of each ``(since_ns, until_ns)``, by the helper; None if it
        could not answer (the caller computes them itself)."""
        with self._lock:
            if self._closed:
                return None
            if self._skip:
                self._skip -= 1
                return None
            try:
                proc = self._proc or self._start()
                request = json.dumps({"store": os.fspath(self.store_path),
                                      "spans": [list(s) for s in spans]})
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(request.encode() + b"\n")
                proc.stdin.flush()
                answer = json.loads(_read_line(proc.stdout.fileno(), timeout))
                if not isinstance(answer, dict) or "windows" not in answer:
                    raise OSError(f"the evaluator could not compute: {answer.get('error')}"
                                  if isinstance(answer, dict) else "a malformed answer")
                out: list[dict[str, Any]] = answer["windows"]
                if len(out) != len(spans):
                    raise OSError("a malformed answer")
                return out
            except (OSError, ValueError):
                self.failures += 1
                self._skip = RETRY_AFTER
                self._stop()
                return None

    def _start(self) -> subprocess.Popen[bytes]:
        self._proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "guardian.observe.evaluator"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True, close_fds=True)
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.wait(5)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def close(self) -> None:
        """Stop the helper (closing its stdin ends it; killed if it does not end). Not under
        the lock: a request in flight then fails (and its caller computes itself)."""
        proc, self._proc = self._proc, None
        self._closed = True  # no helper is started again
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()


def _read_line(fd: int, timeout: float) -> bytes:
    """One line from ``fd`` within ``timeout`` seconds (OSError past it, or at EOF)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError("the evaluator did not answer in time")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise OSError("the evaluator exited")
        buf += chunk
        if len(buf) > _MAX_LINE:
            raise OSError("the evaluator's answer is too long")
    return bytes(buf[:buf.index(b"\n")])


def main() -> int:
    """The helper: a request per line on stdin, an answer per line on stdout."""
    import signal

    from guardian.observe.metrics import compute
    from guardian.store.db import Store

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Background work: on a machine the writers keep busy, capture's CPU comes first (at
    # 2,000 writes/s on 2 CPUs, the helper at the daemon's priority cost it versions).
    with contextlib.suppress(OSError):
        os.nice(19)
    stores: dict[str, Store] = {}
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            path = str(req["store"])
            store = stores.get(path)
            if store is None:
                store = stores[path] = Store.open(Path(path), write=False)
            windows = [compute(store, since_ns=int(a), until_ns=int(b), sections=frozenset())
                       for a, b in req["spans"]]
            answer: dict[str, Any] = {"windows": windows}
        except Exception as e:  # said to the caller, who computes itself
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    for store in stores.values():
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
