"""Where Guardian keeps things on disk: stores, the control socket.

Discovery order for a store:
1. ``--store DIR`` or ``$GUARDIAN_STORE``;
2. a store under the user state dir (``$XDG_STATE_HOME/guardian/stores``) whose roots contain
   the path the command is about (the deepest root wins);
3. for ``watch`` and ``snapshot`` only: a new store for that set of roots.

Stores live outside the watched tree, so ``git clean -fdx`` or ``rm -rf`` in the tree cannot take
the history with it. Every directory Guardian creates here is private to the user (0700).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from guardian.errors import StoreError

STORE_ENV = "GUARDIAN_STORE"
ROOTS_FILE = "roots.json"


def state_dir() -> Path:
    """The user state dir (XDG), without creating it."""
    base = os.environ.get("XDG_STATE_HOME")
    if base and os.path.isabs(base):
        return Path(base) / "guardian"
    import platformdirs  # lazy: keeps `import guardian.cli` cheap for hooks

    return Path(platformdirs.user_state_dir("guardian", appauthor=False))


def stores_dir() -> Path:
    return state_dir() / "stores"


def store_dir_for_roots(roots: list[Path]) -> Path:
    """One store per set of roots: the name says which, the hash makes it unique."""
    import hashlib

    key = b"\0".join(sorted(os.fsencode(r) for r in roots))
    digest = hashlib.sha256(key).hexdigest()[:12]
    first = sorted(roots)[0].name or "root"
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in first)[:40]
    return stores_dir() / f"{slug}-{digest}"


def read_store_roots(store: Path) -> list[Path]:
    try:
        data = json.loads((store / ROOTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(p) for p in data.get("roots", []) if isinstance(p, str)]


def find_store_for(path: Path) -> Path | None:
    """The store whose roots contain ``path`` (deepest root first), if one exists."""
    base = stores_dir()
    try:
        candidates = list(base.iterdir())
    except OSError:
        return None
    best: tuple[int, Path] | None = None
    for store in candidates:
        for root in read_store_roots(store):
            if path == root or root in path.parents:
                depth = len(root.parts)
                if best is None or depth > best[0]:
                    best = (depth, store)
    return best[1] if best else None


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 and refuse one we do not own."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path}: not a directory")
    if st.st_uid != os.getuid():
        raise StoreError(f"{path}: owned by uid {st.st_uid}, not by you; refusing to use it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def runtime_dir() -> Path:
    """Where control sockets live: ``$XDG_RUNTIME_DIR/guardian``, else a private temp dir."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "guardian"
    import tempfile

    return Path(tempfile.gettempdir()) / f"guardian-{os.getuid()}"


def socket_path(store: Path) -> Path:
    """The control socket of the daemon writing ``store`` (short: sun_path holds 108 bytes)."""
    import hashlib

    digest = hashlib.sha256(os.fsencode(store.resolve())).hexdigest()[:16]
    return runtime_dir() / f"{digest}.sock"
