"""Where alerts go besides the store and the headless log: a file, a command, the desktop.

Each sink gets an alert when it opens and when it resolves (not each repeat: those are
counted on the alert). A rule file is untrusted input until the user trusts it, and a file or
a command sink reaches outside the watched tree, so both work only while their rule file is
trusted (``guardian trust FILE``, the same pinned SHA-256 as command validators; until then
an ``untrusted`` alert says so). A file sink appends one JSON object per line (one ``write``
with ``O_APPEND``: lines of concurrent writers never interleave; a symlink at its name is
refused). A command runs without a shell, with ``{id}``, ``{kind}``, ``{severity}``,
``{state}``, ``{path}``, ``{message}`` replaced in its arguments and the alert as JSON on its
standard input; it is killed (its whole process group) after its timeout. A desktop sink runs
``notify-send`` when it is installed, and is skipped quietly when it is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from guardian.rules.thresholds import Sink

Problem = Callable[[str, str, str], None]  # (kind: "untrusted" | "sink", message, key)


def key_of(sink: Sink) -> str:
    """The key of the ``untrusted`` alert about this sink (resolved once it is trusted)."""
    return f"untrusted:sink:{sink.source}:{sink.kind}:{sink.target}"


def trusted(sink: Sink) -> bool:
    return sink.kind == "desktop" or _trusted(sink)


def deliver(sinks: tuple[Sink, ...], alert: dict[str, Any], problem: Problem) -> list[str]:
    """Send ``alert`` to every sink that wants its severity; return what was done, one line
    each. Never raises: a failing sink is reported through ``problem``."""
    done = []
    for sink in sinks:
        if not sink.wants(str(alert.get("severity", "warning"))):
            continue
        try:
            if sink.kind in ("file", "command") and not _trusted(sink):
                what = " ".join(_argv(sink)) if sink.kind == "command" else str(sink.target)
                problem("untrusted", f"alert sink {sink.kind} {what} (from {sink.source}) "
                                     f"not used: run `guardian trust {sink.source}` to allow it",
                        key_of(sink))
                continue
            if sink.kind == "file":
                _to_file(str(sink.target), alert)
            elif sink.kind == "command":
                _run(sink, alert)
            elif sink.kind == "desktop" and not _desktop(alert):
                continue
            done.append(f"{sink.kind}: {sink.target or 'notify-send'}")
        except Exception as e:  # a sink must never break the daemon
            problem("sink", f"alert sink {sink.kind} {sink.target or ''} failed: {e}", "")
    return done


def _to_file(path: str, alert: dict[str, Any]) -> None:
    line = (json.dumps(alert, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _trusted(sink: Sink) -> bool:
    from guardian.rules.trust import is_trusted

    return bool(sink.source and sink.digest and is_trusted(sink.source, sink.digest))


def _argv(sink: Sink) -> list[str]:
    return list(sink.target) if isinstance(sink.target, tuple) else []


def _run(sink: Sink, alert: dict[str, Any]) -> None:
    fields = {k: "" if alert.get(k) is None else str(alert.get(k))
              for k in ("id", "kind", "severity", "state", "path", "message", "key")}
    argv = []
    for a in _argv(sink):
        for k, v in fields.items():
            a = a.replace("{" + k + "}", v)
        argv.append(a)
    cwd = os.path.dirname(sink.source) or None
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    try:
        proc.communicate(json.dumps(alert, default=str).encode(), timeout=sink.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RuntimeError(f"timed out after {sink.timeout:g}s") from None
    if proc.returncode:
        raise RuntimeError(f"exited {proc.returncode}")


def _desktop(alert: dict[str, Any]) -> bool:
    exe = shutil.which("notify-send")
    if exe is None:
        return False
    urgency = {"critical": "critical", "warning": "normal"}.get(str(alert.get("severity")), "low")
    state = " (resolved)" if alert.get("state") == "resolved" else ""
    subprocess.run([exe, "-u", urgency, "-a", "Guardian", f"Guardian: {alert.get('kind')}{state}",
                    str(alert.get("message", ""))[:500]], timeout=5, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return True
