"""Reading history: which version a user means, and how versions look in ``--json``.

The JSON shape of a version (``log --json``) is an API:
``id, path, root, relpath, time, time_ns, kind, origin, present, size, mode, sha256, valid,
session, note``. ``sha256`` is the digest of the raw bytes (what ``sha256sum`` prints) and is
null for a deletion or a file recorded as metadata only.
"""

from __future__ import annotations

import difflib
import os
import stat
from typing import Any

from guardian.errors import CorruptObjectError, GuardianError, NotFoundError, UsageError
from guardian.exitcodes import ExitCode
from guardian.paths import Root, show
from guardian.store.db import Store, Version
from guardian.store.objects import Objects
from guardian.timespec import iso, parse_time


def version_json(v: Version, roots: dict[int, Root]) -> dict[str, Any]:
    root = roots.get(v.root_id)
    return {
        "id": v.id,
        "path": root.display(v.relpath) if root else os.fsdecode(v.relpath),
        "root": str(root.path) if root else None,
        "relpath": os.fsdecode(v.relpath),
        "time": iso(v.time_ns),
        "time_ns": v.time_ns,
        "kind": v.kind,
        "origin": v.origin,
        "present": v.present,
        "size": v.size,
        "mode": v.mode,
        "type": _type(v.mode),
        "sha256": v.sha256,
        "valid": v.valid,
        "session": v.session,
        "note": v.note,
    }


def _type(mode: int | None) -> str | None:
    if mode is None:
        return None
    return "symlink" if stat.S_ISLNK(mode) else "file"


def parse_version_spec(text: str) -> tuple[int | None, int | None]:
    """A ``--from``/``--to`` value: a version id (digits, or ``v12``) or a time."""
    t = text.strip()
    if t.lower().startswith("v") and t[1:].isdigit():
        t = t[1:]
    if t.isdigit() and len(t) < 12:
        return int(t), None
    return None, parse_time(t)


def resolve(store: Store, root: Root, relpath: bytes, *, version: int | None = None,
            at_ns: int | None = None, want_content: bool = False) -> Version:
    """The version of (root, relpath) a user means: by id, by time, or the newest."""
    shown = show(root.join(relpath))
    fid = store.file_id(root.id, relpath, create=False)
    if fid is None:
        raise NotFoundError(f"{shown}: no recorded versions")
    if version is not None:
        v = store.version(version)
        if v is None:
            raise NotFoundError(f"version {version} does not exist")
        if v.file_id != fid:
            raise UsageError(f"version {version} is not a version of {shown}")
    elif at_ns is not None:
        v = store.version_at(fid, at_ns)
        if v is None:
            raise NotFoundError(f"{shown}: no version recorded at or before {iso(at_ns)}")
    else:
        found = store.head(fid)
        if found is not None and want_content and not found.present:
            found = next((x for x in store.versions_of(fid) if x.present), None)
        if found is None:
            raise NotFoundError(f"{shown}: no recorded versions")
        v = found
    return v


def content(store: Store, v: Version, shown: str) -> bytes:
    """The bytes of a version, or a clear error if it has none."""
    if not v.present:
        raise GuardianError(f"{shown}: version {v.id} is a deletion; it has no content",
                            exit_code=ExitCode.FAILURE)
    if v.object_id is None:
        raise GuardianError(
            f"{shown}: version {v.id} was over the size cap; only its metadata was kept",
            exit_code=ExitCode.FAILURE)
    try:
        return Objects(store).get(v.object_id)
    except CorruptObjectError as e:
        raise CorruptObjectError(
            f"{shown}: version {v.id}: its stored content is damaged ({e}); `guardian verify "
            f"--repair --store {store.path}` rewrites it from any file that still holds those "
            "bytes") from None


def is_binary(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def unified_diff(old: bytes | None, new: bytes | None, old_label: str, new_label: str) -> str:
    """A unified diff of two contents (None: absent); binary contents are only named."""
    if old == new:
        return ""
    if (old is not None and is_binary(old)) or (new is not None and is_binary(new)):
        return f"Binary files {old_label} and {new_label} differ\n"
    a = (old or b"").decode("utf-8").splitlines(keepends=True)
    b = (new or b"").decode("utf-8").splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, old_label if old is not None else "/dev/null",
                                 new_label if new is not None else "/dev/null")
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
