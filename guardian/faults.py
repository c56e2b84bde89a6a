"""Fault injection at named points of Guardian's write protocols (for tests).

``GUARDIAN_FAULT="batch.rename:EIO@2"`` makes the third pass through point ``batch.rename``
raise ``OSError(EIO)``; ``…:kill`` sends the process SIGKILL there (a real crash, mid-way);
``…:stop`` stops it with SIGSTOP until a SIGCONT (a test does something meanwhile: another
program's write at the worst moment); ``…:ENOSPC``, ``EACCES``… raise that errno. Unset, a
point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os

ENV = "GUARDIAN_FAULT"
_counts: dict[str, int] = {}
_spec: tuple[str, str, int] | bool | None = False  # False: not parsed yet


def _parse() -> tuple[str, str, int] | None:
    raw = os.environ.get(ENV, "")
    if not raw or ":" not in raw:
        return None
    name, _, action = raw.partition(":")
    action, _, nth = action.partition("@")
    return name, action, int(nth or 0)


def point(name: str) -> None:
    """A place where a fault may be injected."""
    global _spec
    if _spec is False:
        _spec = _parse()
    if not _spec:
        return
    assert isinstance(_spec, tuple)
    want, action, nth = _spec
    if name != want:
        return
    seen = _counts.get(name, 0)
    _counts[name] = seen + 1
    if seen != nth:
        return
    import signal

    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    code = getattr(errno, action, errno.EIO)
    raise OSError(code, f"{os.strerror(code)} (injected at {name})")
