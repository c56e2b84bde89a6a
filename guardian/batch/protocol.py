"""Atomic batch writes: many files, all or nothing, crash-safe, validated before they land.

The protocol (every step has a fault-injection point, see ``guardian.faults``):

1. **resolve** every path (inside a root, never through a symlink) and **lock** the targets
   (:mod:`guardian.targetlocks`: sorted, with a timeout);
2. read what each target holds, apply the operations in memory, and **check** the result
   (:mod:`guardian.batchplan`): edits apply, directories creatable and writable, targets
   writable and not locked by another process, nothing protected, every new content valid by
   the watcher's validators and rules. Any failure: nothing has been written;
3. **prepare** the journal: what each target holds now is in the store (captured first if
   the store is behind), the new contents too, and one entry per target, in one transaction;
4. write every new content to a **temp** (:mod:`guardian.batchio`: an unnamed ``O_TMPFILE``
   for a new file, a named temp beside an existing one);
5. **commit** the journal, then one ``syncfs`` per filesystem makes the temps and both
   transactions durable together (without syncfs: an fsync per temp, durable transactions):
   **the commit point**. Before it, a crash leaves every target as it was;
6. **apply**: link each new file's temp into place, exchange a replacement's temp with the
   file it replaces (checking it is the file read), delete (moved aside and checked
   first), rmdir, mkdir; fsync each directory;
7. **verify** each target is the inode written, record the new versions (origin
   ``batch``), mark the batch done.

A restore (:mod:`guardian.restore`) is a batch too (:func:`execute_targets`): its targets
come from the store instead of a manifest, symlinks are written as links, and directories
it empties (or a file replaces) are removed after their files and before the writes.

A failure after the commit point rolls everything back from the stored old contents. The
journal's entries are written by :mod:`guardian.batch.intent`; at start (``guardian recover``,
the daemon, ``guardian apply``) :mod:`guardian.batch.recovery` rolls an unfinished batch back
if it was only prepared, or forward if it was committed (after recording anything another
program wrote to a target meanwhile); leftover temp files go.

The naive way this replaces — for each file: validate, copy a backup, write, fsync, verify —
pays one or two flushes per file; a batch pays one, plus one per directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardian import faults
from guardian.batch import digests, imports
from guardian.batch import io as batchio
from guardian.batch import locks as targetlocks
from guardian.batch import plan as batchplan
from guardian.batch.intent import prepare
from guardian.batch.manifest import Manifest
from guardian.batch.target import Target
from guardian.errors import BatchError, Busy, GuardianError, OutsideRootError
from guardian.exitcodes import ExitCode
from guardian.paths import SEP, Root, show
from guardian.rootfs import RootFS
from guardian.store.db import NewVersion, Store
from guardian.store.history import unified_diff
from guardian.store.objects import Objects

if TYPE_CHECKING:
    from guardian.writer import Writer

__all__ = ["BatchError", "BatchResult", "FileOutcome", "execute", "execute_targets",
           "record_failure"]


@dataclass
class FileOutcome:
    path: str
    action: str                     # write | delete | mkdir | unchanged
    bytes: int
    optimisations: list[str]
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "bytes": self.bytes,
                "optimisations": self.optimisations, "ms": round(self.ms, 3)}


@dataclass
class BatchResult:
    batch_id: int | None
    dry_run: bool
    files: list[FileOutcome]
    duration_ms: float
    diff: str = ""
    versions: list[int] = field(default_factory=list)
    version_of: dict[bytes, int] = field(default_factory=dict)  # relpath -> version id
    #: What the checks let through but say (imports a rule downgraded to a warning).
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        opts: dict[str, int] = {}
        for f in self.files:
            for o in f.optimisations:
                opts[o] = opts.get(o, 0) + 1
        d: dict[str, Any] = {"ok": True, "batch": self.batch_id, "dry_run": self.dry_run,
                             "files": [f.to_json() for f in self.files],
                             "duration_ms": round(self.duration_ms, 3), "optimisations": opts,
                             "versions": self.versions, "warnings": self.warnings}
        if self.dry_run:
            d["diff"] = self.diff
        return d


# ----------------------------------------------------------------------------- execute
def execute(writer: Writer, manifest: Manifest, base: Path, *, dry_run: bool = False,
            session: str | None = None) -> BatchResult:
    """Run a batch with the store's writer (the daemon's store thread, or the CLI's).

    Every failure becomes a BatchError; ``rolled_back`` says whether anything had been
    journaled (and so was undone) or the batch was refused before.
    """
    with _framed() as filesystems:
        return _execute(writer, manifest, base, dry_run=dry_run, session=session,
                        filesystems=filesystems)


def _execute(writer: Writer, manifest: Manifest, base: Path, *, dry_run: bool,
             session: str | None, filesystems: dict[int, RootFS]) -> BatchResult:
    t0 = time.perf_counter_ns()
    session = session or manifest.session
    faults.point("batch.start")
    targets = _resolve(writer, manifest, base)
    _attach(targets, filesystems)
    fds = batchio.fd_budget()
    try:
        with _locked(targets, manifest.lock_timeout):
            return _execute_locked(writer, manifest, base, targets, fds, t0, dry_run=dry_run,
                                   session=session)
    finally:
        batchio.close_fds(targets)


def _execute_locked(writer: Writer, manifest: Manifest, base: Path, targets: list[Target],
                    fds: batchio.Budget, t0: int, *, dry_run: bool, session: str | None
                    ) -> BatchResult:
    faults.point("batch.locked")
    for t in targets:
        batchplan.read_target(t, fds)
    batchplan.fold(targets, manifest, base)
    for t in targets:
        if t.unchanged and t.oldfd is not None:
            os.close(t.oldfd)
            t.oldfd = None
    # Hashing and compressing the contents while the checks run (a dry run does neither).
    with digests.Ahead([] if dry_run else targets) as ahead:
        return _checked(writer, manifest, targets, fds, t0, ahead, dry_run=dry_run,
                        session=session)


def _checked(writer: Writer, manifest: Manifest, targets: list[Target], fds: batchio.Budget,
             t0: int, ahead: digests.Ahead, *, dry_run: bool, session: str | None
             ) -> BatchResult:
    """Steps 2 (the checks) to 7 of targets read and folded."""
    access: dict[tuple[int, bytes], Any] = {}
    for t in targets:
        batchplan.check_writable(t, access)
    warned: list[dict[str, Any]] = []
    if manifest.validate:
        batchplan.validate(writer, targets)
        warned = imports.check(writer, targets)  # no import that resolved breaks
    if dry_run:
        diff = "".join(unified_diff(t.current if t.kind == "file" else None, t.final,
                                    f"a/{show(t.relpath)}", f"b/{show(t.relpath)}")
                       for t in targets if not t.final_dir and not t.unchanged)
        return BatchResult(None, True, _outcomes(targets, {}), _ms(t0), diff, warnings=warned)
    changing = [t for t in targets if not t.unchanged]
    for t in targets:
        if t.unchanged:
            t.optimisations.add("skip_unchanged")
    if not changing:
        result = BatchResult(None, False, _outcomes(targets, {}), _ms(t0), warnings=warned)
        _record_operations(writer.store, targets, None, "ok")
        return result
    ahead.join()
    batch_id, versions = _write(writer, changing, fds, session, operations=targets)
    return BatchResult(batch_id, False, _outcomes(targets, versions), _ms(t0),
                       versions=sorted(versions.values()), warnings=warned)


def execute_targets(writer: Writer, targets: list[Target],
                    plan: Callable[[list[Target], batchio.Budget], list[Target]], *,
                    lock_timeout: float = 5.0, session: str | None = None,
                    dry_run: bool = False) -> BatchResult:
    """Run a batch whose targets the caller made (a restore) through the same protocol.

    Every target is locked, then ``plan`` reads them (:func:`guardian.batchio.look`) and
    returns the ones that change, in the order they are to be put in place (removals before
    the writes they make room for); it may refuse with a BatchError. Nothing is validated:
    the caller's contents come from the store. The result lists the changing targets.
    """
    t0 = time.perf_counter_ns()
    with _framed() as filesystems:
        faults.point("batch.start")
        _attach(targets, filesystems)
        fds = batchio.fd_budget()
        try:
            with _locked(targets, lock_timeout):
                faults.point("batch.locked")
                changing = plan(targets, fds)
                keep = {id(t) for t in changing}
                for t in targets:
                    if id(t) not in keep and t.oldfd is not None:
                        os.close(t.oldfd)
                        t.oldfd = None
                if dry_run or not changing:
                    return BatchResult(None, dry_run, _outcomes(changing, {}), _ms(t0))
                batch_id, versions = _write(writer, changing, fds, session)
                return BatchResult(batch_id, False, _outcomes(changing, versions), _ms(t0),
                                   versions=sorted(versions.values()), version_of=versions)
        finally:
            batchio.close_fds(targets)


@contextlib.contextmanager
def _framed() -> Iterator[dict[int, RootFS]]:
    """The frame of every batch: the root filesystems it opens (closed after it), and every
    failure not already a BatchError as one that says nothing was rolled back."""
    filesystems: dict[int, RootFS] = {}
    try:
        yield filesystems
    except BatchError:
        raise
    except (OSError, GuardianError) as e:
        raise _as_batch_error(e, None, rolled_back=False) from None
    finally:
        for fs in filesystems.values():
            fs.close()


def _attach(targets: list[Target], filesystems: dict[int, RootFS]) -> None:
    """Give each target its root's filesystem (one caching RootFS per root)."""
    for t in targets:
        if t.root.id not in filesystems:
            filesystems[t.root.id] = RootFS(t.root.bpath, cache=True)
        t.fs = filesystems[t.root.id]


def _write(writer: Writer, changing: list[Target], fds: batchio.Budget,
           session: str | None, *, operations: list[Target] | None = None
           ) -> tuple[int, dict[bytes, int]]:
    """Steps 3 to 7 for the targets that change: journal, temps, commit point, in place,
    verify, record; the batch id and the versions recorded (by relpath)."""
    store = writer.store
    # With syncfs, one flush makes the temps and the store's two transactions durable
    # together; without it, each temp is fsynced, then each transaction.
    shared = batchio.syncfs() is not None
    batch_id = prepare(writer, changing, session, durable=not shared)
    try:
        devices = batchio.write_temps(changing, fds, parallel=batchio.parallel(changing))
        if not shared:
            batchio.group_sync(changing, devices, None)
        faults.point("batch.commit")
        with store.transaction(durable=not shared):  # the commit point
            store.commit_batch(batch_id)
    except BaseException as e:
        abandon(writer, batch_id, changing)
        raise _as_batch_error(e, batch_id, rolled_back=True) from None
    try:
        if shared:  # the commit, the new contents and the temps: durable before any rename
            batchio.group_sync(changing, devices, store)
        faults.point("batch.synced")
        faults.point("batch.committed")
        batchio.put_in_place(changing)
        versions = finish(writer, batch_id, changing, session, verify=True,
                           operations=operations)
    except BaseException as e:
        try:
            roll_back(writer, batch_id, changing, str(e))
        except Exception as e2:
            raise BatchError(
                f"batch {batch_id}: {e}; the rollback failed too ({e2}): run `guardian "
                "recover` once the cause is fixed; every old content is in the store",
                category="recovery", batch_id=batch_id) from None
        raise _as_batch_error(e, batch_id, rolled_back=True) from None
    batchio.release_later(changing)
    return batch_id, versions


def _ms(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1e6


def _outcomes(targets: list[Target], versions: dict[bytes, int]) -> list[FileOutcome]:
    return [FileOutcome(t.shown, "unchanged" if t.unchanged else t.action,
                        len(t.final or b""), sorted(t.optimisations), t.elapsed_ns / 1e6)
            for t in targets]


def _as_batch_error(e: BaseException, batch_id: int | None, *, rolled_back: bool) -> BatchError:
    if isinstance(e, BatchError):
        e.rolled_back, e.batch_id = rolled_back, batch_id
        return e
    category = "system"
    if isinstance(e, PermissionError):
        category = "permission"
    elif isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        category = "space"
    message = f"{e.strerror or e}" if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
    if isinstance(e, GuardianError):
        message = str(e)
    what = "rolled back" if rolled_back else "nothing written"
    name = f"batch {batch_id}" if batch_id is not None else "batch"
    return BatchError(f"{name}: {message}; {what}", category=category,
                      rolled_back=rolled_back, batch_id=batch_id)


# ----------------------------------------------------------------------------- 1. resolve
def _resolve(writer: Writer, manifest: Manifest, base: Path) -> list[Target]:
    roots = list(writer.roots.values())
    by_key: dict[tuple[int, bytes], Target] = {}
    # The directory part of each path is resolved once per batch (a batch has many files
    # per directory); the last component never is: a symlink there is refused when read.
    dirs: dict[str, tuple[Root, bytes] | None] = {}
    base_s = os.fspath(base)
    for op in manifest.operations:
        head, _, name = op.path.rpartition("/")
        if name in ("", ".", ".."):  # "dir/", "a/.." ...: the general way
            full = os.path.normpath(os.path.join(base_s, op.path))
            head, name = os.path.split(full)
        if head not in dirs:
            where = os.path.realpath(os.path.join(base_s, head))
            dirs[head] = _locate(where, roots)
        located = dirs[head]
        if located is None:
            full = os.path.normpath(os.path.join(base_s, op.path))
            if any(os.path.realpath(full) == str(r.path) for r in roots):
                raise BatchError(f"{op.describe()}: is a watched root itself", category="usage",
                                 index=op.index, op=op.op, path=op.path,
                                 exit_code=ExitCode.USAGE)
            shown = ", ".join(str(r.path) for r in roots)
            raise BatchError(f"{op.describe()}: {full}: outside the watched roots ({shown})",
                             category="permission", index=op.index, op=op.op, path=op.path,
                             exit_code=ExitCode.USAGE)  # like every path outside the roots
        root, prefix = located
        rel = prefix + SEP + os.fsencode(name) if prefix else os.fsencode(name)
        t = by_key.get((root.id, rel))
        if t is None:
            t = by_key[(root.id, rel)] = Target(root, rel)
        t.ops.append(op)
    return sorted(by_key.values(), key=lambda t: (t.root.id, t.relpath))


def _locate(path: str, roots: list[Root]) -> tuple[Root, bytes] | None:
    """(root, relpath) of an already resolved path (``paths.locate`` resolves it again)."""
    best: tuple[Root, bytes] | None = None
    for root in roots:
        rs = str(root.path)
        if path == rs:
            rel = b""
        elif path.startswith(rs.rstrip("/") + "/"):
            rel = os.fsencode(path[len(rs.rstrip("/")) + 1:])
        else:
            continue
        if best is None or len(root.path.parts) > len(best[0].path.parts):
            best = (root, rel)
    return best


@contextlib.contextmanager
def _locked(targets: list[Target], timeout: float) -> Iterator[None]:
    """Hold every target's lock (see :mod:`guardian.targetlocks`) for the whole batch."""
    try:
        with targetlocks.hold([t.root.join(t.relpath) for t in targets], timeout):
            faults.point("batch.lock")
            yield
    except Busy as e:
        raise targets[e.index].error(
            f"locked by another Guardian batch (waited {timeout:g}s)", "lock") from None


# ----------------------------------------------------------------------------- 3. prepare
# The journal, durably, before anything is overwritten: intent.prepare.


# ----------------------------------------------------------------------------- 7. verify, record
def finish(writer: Writer, batch_id: int, targets: list[Target], session: str | None,
            *, verify: bool, operations: list[Target] | None = None) -> dict[bytes, int]:
    """Verify every target, record the new versions, mark the batch done (one commit)."""
    store = writer.store
    stats: list[os.stat_result | None] = []
    for t in targets:
        st = None if t.remove_dir else batchio.lstat(t)
        stats.append(st)
        if not verify:
            continue
        faults.point("batch.verify")
        if not verified(t, st):
            if t.written is not None and st is not None and t.final is not None:
                # Ours was in place (every step succeeded): another program wrote after us.
                raise t.error("changed while the batch ran (another program wrote it after "
                              "the batch did); keeping theirs", "conflict")
            raise t.error("verification failed: the file on disk is not what was written",
                          "system")
    versions: dict[bytes, int] = {}
    # Not fsynced: lost in a crash, the batch is still "committed" and recovery finds every
    # target done and records it again. The next durable commit makes it durable.
    with store.transaction(durable=False):
        items: list[tuple[int, bytes, NewVersion, os.stat_result | None]] = []
        for t, st in zip(targets, stats, strict=True):
            if t.final_dir or t.remove_dir:
                continue  # directories have no versions
            note = t.note or f"batch {batch_id}"
            if t.final is None:
                nv = NewVersion(0, None, False, t.version_kind or "deleted", t.origin, None,
                                None, note=note, session=session)
            else:
                kind = t.version_kind or ("modified" if t.kind == "file" else "created")
                nv = NewVersion(0, t.new_object_id, True, kind, t.origin,
                                st.st_mode if st else t.mode, len(t.final),
                                note=note, session=session, valid=t.valid)
            items.append((t.root.id, t.relpath, nv, st))
        for (_rid, rel, _nv, _st), vid in zip(items, store.add_versions(items), strict=True):
            versions[rel] = vid
        store.end_batch(batch_id, "done")
        if operations is not None:
            _record_operations(store, operations, batch_id, "ok")
        faults.point("batch.done")
    return versions


def verified(t: Target, st: os.stat_result | None) -> bool:
    """Whether the target holds what the batch put there."""
    if t.final_dir:
        return st is not None and stat.S_ISDIR(st.st_mode)
    if t.remove_dir:  # gone (a file may stand there now), or left in use on purpose
        return True
    if t.final is None:  # gone (a directory of the batch may stand there now)
        return st is None or stat.S_ISDIR(st.st_mode)
    if t.final_link:
        if st is None or not stat.S_ISLNK(st.st_mode):
            return False
        if t.written is not None:
            return (st.st_dev, st.st_ino) == t.written
        return now_on_disk(t) == ("link", t.final)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != len(t.final):
        return False
    if t.written is not None:
        # The very inode we wrote, whole (every write() was checked): reading it back
        # from the page cache would prove nothing more.
        return (st.st_dev, st.st_ino) == t.written
    # Recovery: a process that died wrote it.
    return stat.S_IMODE(st.st_mode) == t.mode and t.rootfs.read(t.relpath) == t.final


def mode_is(t: Target, relpath: bytes) -> bool:
    st = t.rootfs.lstat(relpath)
    return st is not None and stat.S_IMODE(st.st_mode) == t.mode


def now_on_disk(t: Target) -> tuple[str, bytes | None]:
    """What the target holds: ("file", bytes), ("link", its target), ("absent", None), or
    ("other", None) for a directory or a special file; never through a symlink."""
    fs = t.rootfs
    try:
        st = fs.lstat(t.relpath)
        if st is None:
            return "absent", None
        if stat.S_ISLNK(st.st_mode):
            with fs.parent(t.relpath, create=False) as (dfd, name):
                return "link", os.readlink(name, dir_fd=dfd)
        if not stat.S_ISREG(st.st_mode):
            return "other", None
        data = fs.read(t.relpath)
    except FileNotFoundError:
        return "absent", None
    except (OSError, OutsideRootError):
        return "other", None
    return ("absent", None) if data is None else ("file", data)


# ----------------------------------------------------------------------------- failure paths
def abandon(writer: Writer, batch_id: int, targets: list[Target]) -> None:
    """Before the commit point: remove temps and created directories; nothing else moved."""
    batchio.close_tmpfds(targets)  # unnamed temps vanish with their last descriptor
    for t in targets:
        remove_temp(t, t.temp)
        remove_dirs(t)
    with writer.store.transaction():
        writer.store.end_batch(batch_id, "rolled_back", "before commit")


def roll_back(writer: Writer, batch_id: int, targets: list[Target], why: str) -> None:
    """After the commit point: put every old content back (from the store), durably."""
    store = writer.store
    objects = Objects(store)
    # Whatever is on disk now is stored before it is replaced (ours, or someone else's).
    with contextlib.suppress(Exception):
        writer.recorder.capture([(t.root.id, t.relpath) for t in targets], origin="batch",
                         confirm_missing=True, note=f"captured while rolling back batch "
                                                    f"{batch_id}")
    for t in reversed(targets):
        fs = t.rootfs
        # Only what this batch put there is undone: a target another program changed
        # meanwhile keeps that program's content (recorded above, like everything else).
        if t.final_dir:
            with contextlib.suppress(OSError):
                if t.kind != "dir":
                    rmdir_quietly(fs, t.relpath)
        elif t.remove_dir:
            if t.kind == "dir" and fs.lstat(t.relpath) is None:
                fs.makedirs(t.relpath)
                if t.current_mode is not None:
                    with fs.parent(t.relpath, create=False) as (dfd, name):
                        os.chmod(name, stat.S_IMODE(t.current_mode), dir_fd=dfd,
                                 follow_symlinks=False)
        elif t.kind == "file" and t.old_object_id is not None:
            if holds_ours(t):
                fs.write(t.relpath, objects.get(t.old_object_id), t.current_mode or 0o100644)
        elif t.kind == "link" and t.old_object_id is not None:
            if holds_ours(t):
                fs.symlink(t.relpath, objects.get(t.old_object_id))
        elif t.kind == "absent" and t.final is not None and holds_ours(t):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                fs.remove(t.relpath)
        remove_temp(t, t.temp)
        remove_dirs(t)
    writer.recorder.capture([(t.root.id, t.relpath) for t in targets], origin="batch",
                     confirm_missing=True, note=f"batch {batch_id} rolled back")
    with store.transaction():
        store.end_batch(batch_id, "rolled_back", why)


def holds_ours(t: Target) -> bool:
    """Whether the target holds what the batch made of it (absent, for a delete)."""
    if t.final is None:
        return now_on_disk(t)[0] == "absent"
    return now_on_disk(t) == ("link" if t.final_link else "file", t.final)


def remove_temp(t: Target, temp: bytes | None) -> None:
    if not temp:
        return
    d = t.relpath.rpartition(SEP)[0]
    with contextlib.suppress(OSError, OutsideRootError):
        t.rootfs.remove(d + SEP + temp if d else temp)


def remove_dirs(t: Target) -> None:
    for d in reversed(t.created_dirs):
        with contextlib.suppress(OSError, OutsideRootError):
            rmdir_quietly(t.rootfs, d)
            t.rootfs.forget(d)


def rmdir_quietly(fs: RootFS, relpath: bytes) -> None:
    with fs.parent(relpath, create=False) as (dfd, name):
        os.rmdir(name, dir_fd=dfd)


def _record_operations(store: Store, targets: list[Target], batch_id: int | None,
                       outcome: str, category: str | None = None) -> None:
    rows = []
    for t in targets:
        path = t.root.join(t.relpath)
        optimisation = ",".join(sorted(t.optimisations)) or None
        share = t.elapsed_ns // max(1, len(t.ops))
        size = len(t.final) if t.final is not None else None
        rows += [(op.op, share, outcome, path, category, optimisation, batch_id, size,
                  template_label(op)) for op in t.ops]
    with contextlib.suppress(Exception), store.transaction():
        store.record_operations(rows)


def template_label(op: Any) -> str | None:
    """What guardian.observe calls a render's template: its path, or its text's digest."""
    if op.op != "render":
        return None
    if op.template_path is not None:
        return str(op.template_path)
    return "sha256:" + hashlib.sha256(str(op.template or "").encode("utf-8", "surrogatepass")
                                      ).hexdigest()[:12]


def record_failure(store: Store, manifest: Manifest, error: BatchError, elapsed_ns: int) -> None:
    """One operations row per operation of a refused or rolled-back batch."""
    with contextlib.suppress(Exception), store.transaction():
        for op in manifest.operations:
            store.record_operation(
                op.op, duration_ns=elapsed_ns // max(1, len(manifest.operations)),
                outcome="rejected" if not error.rolled_back else "error",
                path=os.fsencode(op.path), error_category=error.category,
                batch_id=error.batch_id, detail={"message": str(error)[:300]},
                label=template_label(op))


# ----------------------------------------------------------------------------- recovery










