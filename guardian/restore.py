"""Restoring a file to a version, or a directory to a point in time.

Order matters for "nothing is lost": the current state of everything the restore may touch is
recorded first (one durable commit), then each file is replaced atomically inside the root, then
the restored versions are recorded (kind ``restored``, origin ``restore``). Files created since
TIME are removed (their bytes are already in the store); ignored files are never touched.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from guardian.capture import FILE, LINK, MISSING, Recorder
from guardian.errors import GuardianError, UsageError
from guardian.exitcodes import ExitCode
from guardian.history import resolve
from guardian.objects import Objects
from guardian.paths import Root, show, under
from guardian.rootfs import RootFS
from guardian.scan import WalkReport, walk
from guardian.store import NewVersion, Version
from guardian.timespec import iso


@dataclass
class Change:
    relpath: bytes
    action: str  # "write" | "delete"
    source: Version | None  # the version brought back (None for a delete)
    new_version: int | None = None


@dataclass
class RestoreResult:
    root: Root
    target: bytes
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[bytes, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.root.display(self.target),
            "dry_run": self.dry_run,
            "changes": [
                {"path": self.root.display(c.relpath), "relpath": os.fsdecode(c.relpath),
                 "action": c.action,
                 "from_version": c.source.id if c.source else None,
                 "version": c.new_version}
                for c in self.changes
            ],
            "unchanged": self.unchanged,
            "skipped": [{"path": self.root.display(r), "reason": why} for r, why in self.skipped],
        }


def restore(recorder: Recorder, root: Root, relpath: bytes, *, version: int | None = None,
            at_ns: int | None = None, dry_run: bool = False,
            session: str | None = None) -> RestoreResult:
    store = recorder.store
    result = RestoreResult(root, relpath, dry_run)
    fid = store.file_id(root.id, relpath, create=False) if relpath else None
    is_file = fid is not None and store.head(fid) is not None
    if version is not None and not is_file:
        raise UsageError(
            f"{show(root.join(relpath))}: --version needs a file with recorded versions")
    if is_file:
        v = resolve(store, root, relpath, version=version, at_ns=at_ns, want_content=True)
        desired = {relpath: v}
        scope = [relpath]
    else:
        if at_ns is None:
            raise UsageError(f"{show(root.join(relpath))}: restoring a directory needs --at TIME")
        desired = store.states_at(root.id, relpath, at_ns)
        scope = []
    # 1. What is on disk now (recorded first, unless this is a dry run).
    current = _current_state(recorder, root, relpath, scope, dry_run=dry_run, session=session)
    # 2. Plan.
    for rel in sorted(set(desired) | set(current)):
        want = desired.get(rel)
        have = current.get(rel)
        if want is not None and want.present:
            if want.object_id is None:
                result.skipped.append(
                    (rel, f"version {want.id} kept metadata only (over the size cap)"))
                continue
            if have is not None and have[0] == want.hash and have[1] == want.mode:
                result.unchanged += 1
                continue
            result.changes.append(Change(rel, "write", want))
        elif have is not None:
            result.changes.append(Change(rel, "delete", None))
    if dry_run:
        return result
    # 3. Apply, one atomic step per file; record each restored version.
    fs = RootFS(root.bpath)
    objects = Objects(store)
    label = f"restored to {iso(at_ns)}" if at_ns is not None and version is None else None
    for c in result.changes:
        if c.action == "write":
            assert c.source is not None and c.source.object_id is not None
            data = objects.get(c.source.object_id)
            mode = c.source.mode or 0o100644
            try:
                st = fs.symlink(c.relpath, data) if stat.S_ISLNK(mode) else fs.write(
                    c.relpath, data, mode)
            except OSError as e:
                raise GuardianError(f"{show(root.join(c.relpath))}: cannot restore: "
                                    f"{e.strerror or e}", exit_code=ExitCode.FAILURE) from None
            with store.transaction():
                file_id = store.file_id(root.id, c.relpath)
                assert file_id is not None
                c.new_version = store.add_version(NewVersion(
                    file_id, c.source.object_id, True, "restored", "restore", st.st_mode, len(data),
                    note=label or f"from version {c.source.id}", session=session), st=st)
        else:
            fs.remove(c.relpath)
            fs.prune_empty_dirs(c.relpath, relpath if not is_file else b"")
            with store.transaction():
                file_id = store.file_id(root.id, c.relpath)
                assert file_id is not None
                c.new_version = store.add_version(NewVersion(
                    file_id, None, False, "deleted", "restore", None, None,
                    note=label or "removed by restore", session=session))
    return result


def _current_state(recorder: Recorder, root: Root, prefix: bytes, scope: list[bytes], *,
                   dry_run: bool, session: str | None) -> dict[bytes, tuple[bytes | None, int]]:
    """relpath -> (sha256, mode) of what is on disk now under the restore target.

    A real restore records that state durably first; a dry run only looks.
    """
    if not dry_run:
        if scope:
            recorder.capture([(root.id, k) for k in scope], origin="restore",
                             confirm_missing=True, session=session,
                             note="captured before a restore")
        else:
            res = recorder.reconcile(root.id, prefix, origin="restore", confirm_missing=True,
                                     session=session)
            if res.warnings:
                w = res.warnings[0]
                raise GuardianError(f"{show(root.join(w.relpath))}: {w.message}; not restoring "
                                    "a tree Guardian cannot see whole", exit_code=ExitCode.FAILURE)
        live = recorder.store.live_files(root.id, prefix)
        return {rel: (v.hash, v.mode or 0) for rel, v in live.items()}
    keys = scope
    if not scope:
        report = WalkReport()
        keys = [rel for rel, _ in walk(root.bpath, prefix, recorder.ignore[root.id], report)]
    state: dict[bytes, tuple[bytes | None, int]] = {}
    for seen in recorder.observe([(root.id, k) for k in keys]):
        if seen.state in (FILE, LINK) and seen.st is not None:
            state[seen.relpath] = (seen.hash, seen.st.st_mode)
        elif seen.state != MISSING and seen.st is not None and under(seen.relpath, prefix):
            state[seen.relpath] = (None, seen.st.st_mode)
    return state
