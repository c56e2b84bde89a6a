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


def _standard_runtime_dir(uid: int) -> Path:
    """``$XDG_RUNTIME_DIR/guardian``, else ``/tmp/guardian-UID`` (a predictable name: anyone
    may create it first, which is why its owner and mode are checked before any use)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "guardian"
    return Path(_tempdir()) / f"guardian-{uid}"


def _tempdir() -> str:
    """``tempfile.gettempdir()`` without importing tempfile (and random, shutil...: 5-20 ms
    of every command's start-up that asks for the daemon) in the usual case: no TMPDIR,
    TEMP or TMP, and a writable ``/tmp``, which is what gettempdir answers then."""
    tmp = "/tmp"  # noqa: S108 - what gettempdir answers here; the dir made in it is checked
    if not any(os.environ.get(k) for k in ("TMPDIR", "TEMP", "TMP")) and os.path.isdir(
            tmp) and os.access(tmp, os.W_OK | os.X_OK):
        return tmp
    import tempfile

    return tempfile.gettempdir()


def private_dir_problem(path: Path, uid: int, *, tighten: bool = False) -> str | None:
    """Why ``path`` is not a directory of ``uid``'s (None: it is one, or is absent).

    Only its owner can change who may use a directory, so the owner is what is checked; with
    ``tighten`` (a directory of ours) a mode letting others in is set back to 0700 (a socket
    or lock planted while it was open is caught by the peer check, or is ours to replace).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be checked ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != uid:
        return f"is owned by uid {st.st_uid}, not {uid}"
    if tighten and stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(path, 0o700, follow_symlinks=False)
        except OSError as e:
            return f"has mode {stat.S_IMODE(st.st_mode):04o} and cannot be made 0700 ({e})"
    return None


def runtime_dir(*, create: bool = False) -> Path:
    """Where control sockets and batch locks live: the standard runtime directory if it is
    ours (then 0700) or absent, else a private one under the state dir.

    Another user may create ``/tmp/guardian-UID`` before us: a socket there would be theirs,
    and would receive what clients send (manifests) and answer in the daemon's place. Daemon
    and clients of one user make the same choice, so they still find each other. ``create``
    makes the directory (0700); a standard one planted meanwhile means the fallback.
    """
    uid = os.geteuid()
    std = _standard_runtime_dir(uid)
    std_problem = private_dir_problem(std, uid, tighten=True)
    if std_problem is None:
        if not create:
            return std
        try:
            return ensure_private_dir(std)
        except (OSError, StoreError) as e:  # made by someone else since the check
            std_problem = str(e)
    fallback = state_dir() / "run"
    problem = private_dir_problem(fallback, uid, tighten=True)
    if create and problem is None:
        try:
            ensure_private_dir(fallback)
        except (OSError, StoreError) as e:
            problem = f"cannot be made ({e})"
    if problem is not None:
        raise StoreError(f"no private runtime directory: {std} {std_problem}, and {fallback} "
                         f"{problem}; remove them or set XDG_RUNTIME_DIR to a directory of yours")
    return fallback


def runtime_dir_problem() -> str | None:
    """What is wrong with the standard runtime directory, if anything (for warnings)."""
    std = _standard_runtime_dir(os.geteuid())
    problem = private_dir_problem(std, os.geteuid())
    return None if problem is None else f"{std} {problem}"


def socket_name(store: Path) -> str:
    """The control socket's file name for ``store`` (short: sun_path holds 108 bytes)."""
    import hashlib

    return hashlib.sha256(os.fsencode(store.resolve())).hexdigest()[:16] + ".sock"


def socket_path(store: Path, *, create: bool = False) -> Path:
    """The control socket of the daemon writing ``store``, for a daemon of this user."""
    return runtime_dir(create=create) / socket_name(store)


def store_owner(store: Path) -> int:
    """The uid a daemon writing ``store`` runs as: its owner (ours if it does not exist)."""
    try:
        return os.stat(store).st_uid
    except OSError:
        return os.geteuid()


def client_socket_path(store: Path) -> tuple[Path, int]:
    """Where a client finds the daemon of ``store``, and the uid that daemon must run as.

    A store of ours: :func:`runtime_dir`. Another user's (root looking at a service user's
    store): that user's standard runtime directory, which must be theirs alone (their
    fallback cannot be known from here).
    """
    owner = store_owner(store)
    if owner == os.geteuid():
        return runtime_dir() / socket_name(store), owner
    std = _standard_runtime_dir(owner)
    problem = private_dir_problem(std, owner)
    if problem is not None:
        raise StoreError(f"the control socket directory {std} {problem}")
    return std / socket_name(store), owner
