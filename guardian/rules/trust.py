"""Trust for rule files that run commands (``guardian trust FILE``), like direnv's ``allow``.

A command validator runs only if its rule file's SHA-256 is pinned in the trust store
(``$XDG_STATE_HOME/guardian/trust.json``, mode 0600). Any change to the file changes its hash,
which revokes the trust until the user trusts the new content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from guardian.errors import UsageError
from guardian.locations import ensure_private_dir, state_dir


def trust_file() -> Path:
    return state_dir() / "trust.json"


def _read() -> dict[str, str]:
    try:
        data = json.loads(trust_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def is_trusted(path: str, digest: str) -> bool:
    return _read().get(os.path.realpath(path)) == digest


def trust(path: str | Path, *, revoke: bool = False) -> tuple[str, str | None, bool]:
    """Pin (or with ``revoke`` remove) the current hash of a rule file. Returns (the real
    path, its hash — for a revoke, the hash that had been trusted, None if none —, whether
    anything changed): trusting a file already trusted as it is, or revoking a file that was
    not trusted, changes nothing, and the caller says so. A file may be revoked after it was
    deleted (its entry would otherwise stay)."""
    real = os.path.realpath(path)
    digest: str | None = None
    if not revoke:
        try:
            digest = hashlib.sha256(Path(real).read_bytes()).hexdigest()
        except OSError as e:
            raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    target = trust_file()
    ensure_private_dir(target.parent)
    from filelock import FileLock  # two `guardian trust` at once must not lose an entry

    with FileLock(str(target) + ".lock", mode=0o600):
        entries = _read()
        if revoke:
            digest = entries.pop(real, None)
            if digest is None:
                return real, None, False
        elif entries.get(real) == digest:
            return real, digest, False
        else:
            assert digest is not None
            entries[real] = digest
        _write(target, entries)
    return real, digest, True


def _write(target: Path, entries: dict[str, str]) -> None:
    tmp = target.with_name(f".trust.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
