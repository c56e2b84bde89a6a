"""Atomic batch writes: many files, all or nothing, crash-safe, validated before they land.

The protocol (every step has a fault-injection point, see ``guardian.faults``):

1. resolve every path (inside a root, never through a symlink), then **lock** the targets
   (a filelock per target, in sorted order, with a timeout; and no other process may hold an
   flock/lockf lock on an existing target);
2. read the current contents, apply the operations in memory, and **check** them: edits
   apply, directories are creatable and writable, targets writable, nothing protected, every
   new content valid by the same validators and rules as the watcher. Any failure: nothing
   has been written;
3. record the current contents (versions, durably) and **prepare** the journal: old and new
   contents stored, one entry per target with its temp file name, in one transaction;
4. write every new file to its **temp** file beside the target (in parallel), then make them
   all durable at once (one ``syncfs`` per filesystem, else grouped fsyncs);
5. **commit** the journal: the commit point. Before it, a crash leaves every target as it was;
6. **apply**: rename every temp over its target, delete, mkdir; fsync each parent directory;
7. **verify** every target's hash, record the new versions (origin ``batch``), mark done.

A failure after the commit point rolls everything back from the stored old contents. At
start (``guardian recover``, the daemon, ``guardian apply``) an unfinished batch is rolled
back if it was only prepared, or forward if it was committed; leftover temp files go.

The naive way this replaces — for each file: copy a backup, write, fsync, verify — pays one
or two fsyncs per file; here a whole batch pays a handful.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardian import faults, patch, targetlocks, templates
from guardian.capture import Recorder
from guardian.errors import GuardianError, OutsideRootError
from guardian.exitcodes import ExitCode
from guardian.history import unified_diff
from guardian.ignore import TEMP_PREFIX
from guardian.manifest import Manifest, Operation
from guardian.objects import Objects
from guardian.paths import SEP, Root, show
from guardian.policy import check
from guardian.rootfs import RootFS
from guardian.store import NewVersion, Store, Version

# Temps are written by a few threads from this many files and bytes on: below, creating a
# small file is mostly Python and kernel work the GIL hand-offs only slow down (measured on
# two cores: 1,000 x 4 KiB took as long or longer with 4 threads).
PARALLEL_MIN = 8
PARALLEL_BYTES = 4 * 1024 * 1024


class BatchError(GuardianError):
    """A batch that was refused or rolled back; names the operation, the path and why."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, category: str = "system", index: int | None = None,
                 op: str | None = None, path: str | None = None, line: int | None = None,
                 column: int | None = None, rolled_back: bool = False,
                 batch_id: int | None = None) -> None:
        super().__init__(message)
        self.category = category
        self.index, self.op, self.path = index, op, path
        self.line, self.column = line, column
        self.rolled_back = rolled_back
        self.batch_id = batch_id

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BatchError:
        return cls(str(d.get("message", "batch failed")), category=d.get("category", "system"),
                   index=d.get("operation"), op=d.get("op"), path=d.get("path"),
                   line=d.get("line"), column=d.get("column"),
                   rolled_back=bool(d.get("rolled_back")), batch_id=d.get("batch"))

    def to_json(self) -> dict[str, Any]:
        return {"message": str(self), "category": self.category, "operation": self.index,
                "op": self.op, "path": self.path, "line": self.line, "column": self.column,
                "rolled_back": self.rolled_back, "batch": self.batch_id}


@dataclass
class Target:
    """One path the batch touches, with every operation on it folded together."""

    root: Root
    relpath: bytes
    ops: list[Operation] = field(default_factory=list)
    kind: str = "absent"            # what is there now: file | absent | dir | other
    fs: RootFS | None = None        # shared by the batch's targets of one root (cached fds)
    current: bytes | None = None
    current_mode: int | None = None
    current_uid: int | None = None
    current_gid: int | None = None
    final: bytes | None = None      # None: absent after the batch (a delete)
    final_dir: bool = False         # a mkdir
    mode: int = 0o644
    optimisations: set[str] = field(default_factory=set)
    temp: bytes | None = None
    created_dirs: list[bytes] = field(default_factory=list)
    old_object_id: int | None = None
    new_object_id: int | None = None
    tmpfd: int | None = None        # an unnamed O_TMPFILE temp, open until linked
    oldfd: int | None = None        # the replaced file, held open: see _release_later
    written: tuple[int, int] | None = None  # (st_dev, st_ino) of the temp written
    digest: bytes | None = None     # SHA-256 of final
    _where: tuple[int, bytes] | None = None
    elapsed_ns: int = 0

    @property
    def shown(self) -> str:
        return show(self.root.join(self.relpath))

    @property
    def action(self) -> str:
        if self.final_dir:
            return "mkdir"
        return "delete" if self.final is None else "write"

    @property
    def unchanged(self) -> bool:
        if self.final_dir:
            return self.kind == "dir"
        if self.final is None:
            return self.kind == "absent"
        return self.kind == "file" and self.final == self.current and (
            self.current_mode is None or stat.S_IMODE(self.current_mode) == self.mode)

    def where(self, *, create: bool = False) -> tuple[int, bytes]:
        """(fd of the parent directory, name), found once per batch (a missing parent is not
        remembered: it raises FileNotFoundError until ``create`` makes it)."""
        if self._where is None:
            self._where = self.rootfs.locate(self.relpath, create=create)
        return self._where

    @property
    def rootfs(self) -> RootFS:
        if self.fs is None:
            self.fs = RootFS(self.root.bpath)
        return self.fs

    def error(self, message: str, category: str, op: Operation | None = None,
              line: int | None = None, column: int | None = None) -> BatchError:
        op = op or (self.ops[-1] if self.ops else None)
        where = f"{op.describe()}: " if op else ""
        return BatchError(f"{where}{self.shown}: {message}", category=category,
                          index=op.index if op else None, op=op.op if op else None,
                          path=self.shown, line=line, column=column)


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

    def to_json(self) -> dict[str, Any]:
        opts: dict[str, int] = {}
        for f in self.files:
            for o in f.optimisations:
                opts[o] = opts.get(o, 0) + 1
        d: dict[str, Any] = {"ok": True, "batch": self.batch_id, "dry_run": self.dry_run,
                             "files": [f.to_json() for f in self.files],
                             "duration_ms": round(self.duration_ms, 3), "optimisations": opts,
                             "versions": self.versions}
        if self.dry_run:
            d["diff"] = self.diff
        return d


# ----------------------------------------------------------------------------- execute
def execute(recorder: Recorder, manifest: Manifest, base: Path, *, dry_run: bool = False,
            session: str | None = None) -> BatchResult:
    """Run a batch with the store's writer (the daemon's store thread, or the CLI's).

    Every failure becomes a BatchError; ``rolled_back`` says whether anything had been
    journaled (and so was undone) or the batch was refused before.
    """
    filesystems: dict[int, RootFS] = {}
    try:
        return _execute(recorder, manifest, base, dry_run=dry_run, session=session,
                        filesystems=filesystems)
    except BatchError:
        raise
    except (OSError, GuardianError) as e:
        raise _as_batch_error(e, None, rolled_back=False) from None
    finally:
        for fs in filesystems.values():
            fs.close()


def _execute(recorder: Recorder, manifest: Manifest, base: Path, *, dry_run: bool,
             session: str | None, filesystems: dict[int, RootFS]) -> BatchResult:
    t0 = time.perf_counter_ns()
    session = session or manifest.session
    faults.point("batch.start")
    targets = _resolve(recorder, manifest, base)
    for t in targets:
        if t.root.id not in filesystems:
            filesystems[t.root.id] = RootFS(t.root.bpath, cache=True)
        t.fs = filesystems[t.root.id]
    fds = _fd_budget()
    try:
        with _locked(targets, manifest.lock_timeout):
            return _execute_locked(recorder, manifest, base, targets, fds, t0, dry_run=dry_run,
                                   session=session)
    finally:
        _close_fds(targets)


def _execute_locked(recorder: Recorder, manifest: Manifest, base: Path, targets: list[Target],
                    fds: _Budget, t0: int, *, dry_run: bool, session: str | None
                    ) -> BatchResult:
    faults.point("batch.locked")
    for t in targets:
        _read(t, fds)
    _fold(targets, manifest, base)
    for t in targets:
        if t.unchanged and t.oldfd is not None:
            os.close(t.oldfd)
            t.oldfd = None
    access: dict[tuple[int, bytes], Any] = {}
    for t in targets:
        _check_writable(t, access)
    if manifest.validate:
        for t in targets:
            _validate(recorder, t)
    if dry_run:
        diff = "".join(unified_diff(t.current if t.kind == "file" else None, t.final,
                                    f"a/{show(t.relpath)}", f"b/{show(t.relpath)}")
                       for t in targets if not t.final_dir and not t.unchanged)
        return BatchResult(None, True, _outcomes(targets, {}), _ms(t0), diff)
    changing = [t for t in targets if not t.unchanged]
    for t in targets:
        if t.unchanged:
            t.optimisations.add("skip_unchanged")
    if not changing:
        result = BatchResult(None, False, _outcomes(targets, {}), _ms(t0))
        _record_operations(recorder.store, targets, None, "ok")
        return result
    store = recorder.store
    # With syncfs, one flush makes the temps and the store's two transactions durable
    # together; without it, each temp is fsynced, then each transaction.
    shared = _syncfs() is not None
    batch_id = _prepare(recorder, changing, session, durable=not shared)
    try:
        devices = _write_temps(recorder, changing, batch_id, fds, parallel=_parallel(changing))
        if not shared:
            _group_sync(changing, devices, None)
        faults.point("batch.commit")
        with store.transaction(durable=not shared):  # the commit point
            store.db.execute("UPDATE batches SET state='committed' WHERE id=?", (batch_id,))
    except BaseException as e:
        _abandon(recorder, batch_id, changing)
        raise _as_batch_error(e, batch_id, rolled_back=True) from None
    try:
        if shared:  # the commit, the new contents and the temps: durable before any rename
            _group_sync(changing, devices, store)
        faults.point("batch.synced")
        faults.point("batch.committed")
        _apply(recorder, changing)
        versions = _finish(recorder, batch_id, changing, session, verify=True,
                           operations=targets)
    except BaseException as e:
        try:
            _roll_back(recorder, batch_id, changing, str(e))
        except Exception as e2:
            raise BatchError(
                f"batch {batch_id}: {e}; the rollback failed too ({e2}): run `guardian "
                "recover` once the cause is fixed; every old content is in the store",
                category="recovery", batch_id=batch_id) from None
        raise _as_batch_error(e, batch_id, rolled_back=True) from None
    _release_later(changing)
    return BatchResult(batch_id, False, _outcomes(targets, versions), _ms(t0),
                       versions=sorted(versions.values()))


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
def _resolve(recorder: Recorder, manifest: Manifest, base: Path) -> list[Target]:
    roots = list(recorder.roots.values())
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
                                 index=op.index, op=op.op, path=op.path)
            shown = ", ".join(str(r.path) for r in roots)
            raise BatchError(f"{op.describe()}: {full}: outside the watched roots ({shown})",
                             category="permission", index=op.index, op=op.op, path=op.path)
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
    except targetlocks.Busy as e:
        raise targets[e.index].error(
            f"locked by another Guardian batch (waited {timeout:g}s)", "lock") from None


def _probe_os_lock(t: Target, fd: int) -> None:
    """Refuse a target another process holds an flock or a POSIX (lockf) lock on.

    Probed on the read-only descriptor the content is read through: ``flock`` ignores the
    access mode, and ``F_GETLK`` asks without taking anything (a write lock could only be
    taken through a writable descriptor, and opening one would look like a write to inotify).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise t.error("locked by another process", "lock") from None
    except OSError:
        pass  # a filesystem without flock: nothing can hold one
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    if _LINUX:
        try:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, _WHOLE_FILE_WRITE_LOCK)
        except OSError:
            return
        if struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK:
            raise t.error("locked by another process", "lock")
        return
    # Elsewhere struct flock is laid out differently: take (and drop) a lockf lock through a
    # writable descriptor instead.
    try:
        wfd = os.open(t.root.join(t.relpath), os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK
                      | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.lockf(wfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(wfd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise t.error("locked by another process", "lock") from None
    except OSError:
        pass
    finally:
        os.close(wfd)


_LINUX = sys.platform.startswith("linux")
_FLOCK = "hhqqi4x"  # Linux's struct flock: l_type, l_whence, l_start, l_len, l_pid
_WHOLE_FILE_WRITE_LOCK = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)


# ----------------------------------------------------------------------------- 2. check
def _read(t: Target, fds: _Budget) -> None:
    """What is at the target now; a regular file's bytes, read through one descriptor that
    also probes for other processes' locks (and is kept, while ``fds`` allows)."""
    try:
        dfd, name = t.where()
    except FileNotFoundError:
        t.kind = "absent"  # a parent is missing: the write creates it
        return
    except NotADirectoryError:
        raise t.error("a parent is not a directory", "usage") from None
    except OutsideRootError as e:
        raise t.error(str(e).split(": ", 1)[-1], "permission") from None
    except OSError as e:
        raise t.error(f"cannot look at it: {e.strerror or e}", "permission") from None
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        t.kind = "absent"
        return
    except OSError as e:
        raise t.error(f"cannot look at it: {e.strerror or e}", "permission") from None
    t.current_mode, t.current_uid, t.current_gid = st.st_mode, st.st_uid, st.st_gid
    if stat.S_ISDIR(st.st_mode):
        t.kind = "dir"
        return
    if stat.S_ISLNK(st.st_mode):
        raise t.error("is a symlink; write to what it points to instead", "permission")
    if not stat.S_ISREG(st.st_mode):
        t.kind = "other"
        return
    t.kind = "file"
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError as e:
        raise t.error(f"cannot read: {e.strerror or e}", "permission") from None
    try:
        size = os.fstat(fd).st_size
        chunks = []
        while True:
            chunk = os.read(fd, max(size + 1, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            size = 0
        t.current = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        _probe_os_lock(t, fd)
    except BaseException as e:
        os.close(fd)
        if isinstance(e, OSError):
            raise t.error(f"cannot read: {e.strerror or e}", "permission") from None
        raise
    if fds.take():
        t.oldfd = fd
    else:
        os.close(fd)


def _fold(targets: list[Target], manifest: Manifest, base: Path) -> None:
    """Apply each target's operations in order, in memory."""
    template_files: dict[str, str] = {}
    for t in targets:
        t0 = time.perf_counter_ns()
        content: bytes | None = t.current if t.kind == "file" else None
        is_dir = t.kind == "dir"
        for op in t.ops:
            if op.op == "mkdir":
                if content is not None or t.kind == "other":
                    raise t.error("exists and is not a directory", "usage", op)
                is_dir, t.final_dir = True, True
                continue
            if is_dir or t.kind == "other":
                raise t.error("is a directory" if is_dir else "is not a regular file",
                              "usage", op)
            if op.op == "write":
                content = op.content
            elif op.op == "delete":
                if content is None:
                    raise t.error("does not exist", "usage", op)
                content = None
            elif op.op == "edit":
                content = _edit(t, op, content)
                t.optimisations.add("incremental")
            elif op.op == "render":
                content = _render(t, op, base, template_files)
            if op.mode is not None:
                t.mode = op.mode
        t.final = content
        if not any(op.mode is not None for op in t.ops):
            t.mode = stat.S_IMODE(t.current_mode) if t.kind == "file" and t.current_mode \
                else 0o666 & ~_umask()
        t.elapsed_ns += time.perf_counter_ns() - t0


def _edit(t: Target, op: Operation, content: bytes | None) -> bytes:
    if content is None:
        raise t.error("does not exist; nothing to edit", "usage", op)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise t.error(f"is not UTF-8 text (byte {e.start}); edit needs text", "usage",
                      op) from None
    if op.patch is not None:
        try:
            return patch.apply(text, op.patch).encode("utf-8")
        except patch.PatchError as e:
            raise t.error(str(e), "usage", op) from None
    assert op.old is not None and op.new is not None
    count = text.count(op.old)
    if count == 0:
        raise t.error("the text to replace is not in the file", "usage", op)
    if count > 1:
        raise t.error(f"the text to replace occurs {count} times; give more context so it "
                      "occurs once", "usage", op)
    return text.replace(op.old, op.new, 1).encode("utf-8")


def _render(t: Target, op: Operation, base: Path, read: dict[str, str]) -> bytes:
    if op.template_path is not None:
        text = read.get(op.template_path)  # a template file is read once per batch
        if text is None:
            try:
                text = read[op.template_path] = (base / op.template_path).read_text(
                    encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise t.error(f"template {op.template_path}: cannot read: {e}", "usage",
                              op) from None
    else:
        assert op.template is not None
        text = op.template
    hits = templates.cache_info()[0]
    try:
        compiled = templates.compile_template(text)
        out = compiled.render(op.vars)
    except templates.TemplateError as e:
        raise t.error(f"template: {e}", "usage", op) from None
    if templates.cache_info()[0] > hits:
        t.optimisations.add("template_cache")
    return out.encode("utf-8")


def _check_writable(t: Target, seen: dict[tuple[int, bytes], Any]) -> None:
    """Refuse now what the writes would fail on: an uncreatable or unwritable directory, an
    unwritable target. ``seen`` caches per directory (a batch has many files per directory).
    """
    if t.unchanged:
        return
    fs = t.rootfs
    try:
        faults.point("batch.permission")
        parent = t.relpath if t.final_dir else t.relpath.rpartition(SEP)[0]
        key = (t.root.id, parent)
        missing = seen.get(key)
        if missing is None:
            missing = seen[key] = fs.missing_dirs(parent + b"/x") if parent else []
        t.created_dirs = list(missing)
        existing = missing[0].rpartition(SEP)[0] if missing else parent
        if t.final_dir and not missing:
            return  # the directory is there already
        directory = t.root.join(existing)
        akey = (-t.root.id - 1, existing)
        if akey not in seen:
            seen[akey] = os.access(directory, os.W_OK | os.X_OK)
        if not seen[akey]:
            what = "create its directory in" if missing else "write in its directory"
            raise t.error(f"cannot {what} {show(directory)}: permission denied", "permission")
        if t.kind == "file" and not os.access(t.root.join(t.relpath), os.W_OK):
            raise t.error("is not writable: permission denied", "permission")
    except OSError as e:
        raise t.error(f"{e.strerror or e}", "permission") from None
    except OutsideRootError as e:
        raise t.error(str(e).split(": ", 1)[-1], "permission") from None


def _validate(recorder: Recorder, t: Target) -> None:
    if t.unchanged or t.final_dir:
        return
    policy = recorder.policy
    if policy is None:
        return
    eff = policy.effective(t.root.id, t.relpath)
    if eff.protected:
        origin = eff.settings["protect"][1]
        raise t.error(f"is protected by {origin}; Guardian would revert the change",
                      "validation")
    if t.final is None:
        return
    verdict = check(eff, t.final, t.root.display(t.relpath))
    if verdict.valid is False:
        first = next(p for _n, p in verdict.problems() if p.severity == "error")
        raise t.error(f"invalid: {verdict.summary(t.shown)}", "validation", line=first.line,
                      column=first.column)


# ----------------------------------------------------------------------------- 3. prepare
def _heads(store: Store, targets: list[Target]) -> list[Version | None]:
    by_root: dict[int, list[bytes]] = {}
    for t in targets:
        by_root.setdefault(t.root.id, []).append(t.relpath)
    found = {rid: store.heads(rid, rels) for rid, rels in by_root.items()}
    return [found[t.root.id].get(t.relpath) for t in targets]


def _prepare(recorder: Recorder, targets: list[Target], session: str | None, *,
             durable: bool = True) -> int:
    """The intent, durably, in one transaction: the batch, its new contents, and one entry
    per target (its old and new contents' objects, its temp's name)."""
    store = recorder.store
    # What is there now is in the store, durably, before anything is overwritten. With a
    # daemon keeping up, the newest versions already are what we read: nothing to capture.
    heads = _heads(store, targets)
    current = [hashlib.sha256(t.current).digest() if t.kind == "file" and t.current is not None
               else None for t in targets]
    stale = []
    for i, t in enumerate(targets):
        head = heads[i]
        live = head is not None and head.present
        if t.kind == "file":
            if head is None or not live or head.hash != current[i] \
                    or head.mode != t.current_mode:
                stale.append(i)
        elif live:
            stale.append(i)
    if stale:
        recorder.capture([(targets[i].root.id, targets[i].relpath) for i in stale],
                         origin="batch", confirm_missing=True, session=session,
                         note="captured before a batch")
        for i in stale:
            heads[i] = store.file_and_head(targets[i].root.id, targets[i].relpath)[1]
    faults.point("batch.prepare")
    token = secrets.token_hex(4).encode()
    with store.transaction(durable=durable):
        cur = store.db.execute(
            "INSERT INTO batches(state, created_ns, session, files) VALUES('prepared',?,?,?)",
            (time.time_ns(), session, len(targets)))
        batch_id = int(cur.lastrowid or 0)
        suffix = b".b" + str(batch_id).encode() + b"." + token
        rows = []
        new_ids = _store_new(store, targets)
        for seq, t in enumerate(targets):
            head = heads[seq]
            if t.kind == "file":
                if head is None or not head.present or head.object_id is None \
                        or head.hash != current[seq]:
                    raise t.error("its current content could not be stored (over the size "
                                  "cap, or changing); not overwriting it", "system")
                t.old_object_id = head.object_id
            if t.final is not None:
                t.new_object_id = new_ids[t.digest] if t.digest else None
                # A name even when the content goes through an unnamed O_TMPFILE: the
                # fallback, and what recovery looks for.
                t.temp = TEMP_PREFIX + t.relpath.rpartition(SEP)[2][:120] + suffix
            rows.append((batch_id, seq, t.root.id, t.relpath, t.action, int(t.kind == "file"),
                         t.old_object_id, t.current_mode, t.new_object_id, t.mode, t.temp,
                         json.dumps([os.fsdecode(d) for d in t.created_dirs])
                         if t.created_dirs else "[]"))
        store.db.executemany("INSERT INTO batch_entries VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    return batch_id


def _store_new(store: Store, targets: list[Target]) -> dict[bytes, int]:
    """Store every new content (inside the caller's transaction); hash -> object id."""
    objects = Objects(store)
    for t in targets:
        if t.final is not None:
            t.digest = hashlib.sha256(t.final).digest()
    ids = objects.put_many([(t.digest, t.final, None) for t in targets
                            if t.digest is not None and t.final is not None])
    objects.sync()
    return ids


# ----------------------------------------------------------------------------- 4. temps
def _parallel(targets: list[Target]) -> bool:
    writes = [t for t in targets if t.final is not None and not t.final_dir]
    return len(writes) >= PARALLEL_MIN and sum(len(t.final or b"") for t in writes) \
        >= PARALLEL_BYTES


def _write_temps(recorder: Recorder, targets: list[Target], batch_id: int,
                 fds: _Budget, *, parallel: bool) -> dict[int, int]:
    """Write every new content beside its target (not yet durable: see _group_sync); return
    a directory fd per filesystem written to.

    A new file is written to an unnamed ``O_TMPFILE`` inode (held open until it is linked
    into place: no directory entry to create and rename, nothing to sweep after a crash); a
    replacement goes to a named temp file that is renamed over its target. Many files are
    written by a few threads, each taking a contiguous slice (the kernel's share of creating
    a file runs without the GIL).
    """
    writes = [t for t in targets if t.final is not None and not t.final_dir]
    for t in writes:  # open (and create) every parent now: the threads only look them up
        t.where(create=True)
    anonymous = fds if _TMPFILE_OK else _Budget(0)
    devices: dict[int, int] = {}  # st_dev -> a directory fd on it, for syncfs

    def one(t: Target) -> None:
        t0 = time.perf_counter_ns()
        faults.point("batch.temp_write")
        assert t.temp is not None and t.final is not None
        dfd, _name = t.where()
        fd = -1
        if t.kind == "absent" and anonymous.take():
            fd = _open_tmpfile(dfd)
            if fd < 0:
                anonymous.give()
        named = fd < 0
        if named:
            fd = os.open(t.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            view = memoryview(t.final)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, t.mode)
            if t.current_uid is not None and (t.current_uid, t.current_gid) != (
                    os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, t.current_uid, t.current_gid or -1)
            st = os.fstat(fd)
            t.written = (st.st_dev, st.st_ino)
            devices.setdefault(st.st_dev, dfd)
        except BaseException:
            os.close(fd)
            raise
        if named:
            os.close(fd)
        else:
            t.tmpfd = fd
        t.elapsed_ns += time.perf_counter_ns() - t0

    if parallel:
        workers = min(4, (os.cpu_count() or 2) * 2)
        slices = [writes[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guardian-batch") as pool:
            def run(part: list[Target]) -> None:
                for t in part:
                    one(t)

            for f in [pool.submit(run, part) for part in slices]:
                f.result()
        for t in writes:
            t.optimisations.add("parallel_io")
    else:
        for t in writes:
            one(t)
    if len(writes) > 1:
        for t in writes:
            t.optimisations.add("group_sync")
    return devices


class _Budget:
    """How many more unnamed temp files may be held open (thread-safe countdown)."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give(self) -> None:
        with self._lock:
            self._left += 1


_TMPFILE_OK: bool = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def _fd_budget() -> _Budget:
    """How many descriptors a batch may hold open: unnamed temps until they are linked, and
    replaced files until they are released. The soft limit is raised toward the hard one
    (as most servers do); past the budget, temps get names and old files are closed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return _Budget(max(0, (soft - 1024) // 2))


def _open_tmpfile(dfd: int) -> int:
    """An unnamed file in directory ``dfd`` (-1 where the filesystem has no O_TMPFILE)."""
    try:
        return os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return -1
        raise


def _close_fds(targets: list[Target]) -> None:
    _close_tmpfds(targets)
    for t in targets:
        if t.oldfd is not None:
            with contextlib.suppress(OSError):
                os.close(t.oldfd)
            t.oldfd = None


def _release_later(targets: list[Target]) -> None:
    """Close the replaced files' descriptors on a background thread.

    The last close of a replaced inode frees its blocks, which costs far more than the
    rename itself (~0.1 ms a file on ext4 mounted with ``discard``, where it is a TRIM). The
    batch held each old file open, so its renames only swapped names; the freeing happens
    here, after the batch has returned. Nothing in it is needed: the old bytes are in the
    store, durably, since before the first rename.
    """
    fds = [t.oldfd for t in targets if t.oldfd is not None]
    for t in targets:
        t.oldfd = None
    if not fds:
        return
    if len(fds) < 16:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        return

    def close_all() -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    thread = threading.Thread(target=close_all, name="guardian-release", daemon=True)
    with _releasing_lock:
        _releasing[:] = [t for t in _releasing if t.is_alive()] + [thread]
    thread.start()


_releasing: list[threading.Thread] = []
_releasing_lock = threading.Lock()


def wait_released(timeout: float | None = None) -> None:
    """Wait until every replaced file of earlier batches is released (benchmarks, tests)."""
    with _releasing_lock:
        threads = list(_releasing)
    for thread in threads:
        thread.join(timeout)


def _close_tmpfds(targets: list[Target]) -> None:
    for t in targets:
        if t.tmpfd is not None:
            with contextlib.suppress(OSError):
                os.close(t.tmpfd)
            t.tmpfd = None


def _group_sync(writes: list[Target], devices: dict[int, int], store: Store | None) -> None:
    """Make every temp durable, and (``store``) every commit of the store so far: one
    ``syncfs`` per filesystem (the store's included) instead of an fsync per file; without
    syncfs, an fsync per temp."""
    syncfs = _syncfs()
    if syncfs is not None:
        for fd in devices.values():
            if syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"syncfs: {os.strerror(code)}")
        if store is not None and os.stat(store.path).st_dev not in devices:
            store.sync_wal()
        return
    for t in writes:
        if t.tmpfd is not None:
            os.fsync(t.tmpfd)
            continue
        if t.temp is None or t.final is None or t.final_dir:
            continue
        dfd, _name = t.where()
        fd = os.open(t.temp, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if store is not None:
        store.sync_wal()


_SYNCFS: Any = False


def _syncfs() -> Callable[[int], int] | None:
    global _SYNCFS
    if _SYNCFS is False:
        _SYNCFS = None
        if not os.environ.get("GUARDIAN_NO_SYNCFS"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.syncfs
                fn.argtypes = [ctypes.c_int]
                _SYNCFS = fn
    return _SYNCFS  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- 6. apply
def _apply(recorder: Recorder, targets: list[Target]) -> None:
    """Put every new content in place: link an unnamed temp, rename a named one over its
    target; delete, mkdir; then fsync each directory touched."""
    dirs: set[tuple[int, bytes]] = set()
    try:
        for t in targets:
            t0 = time.perf_counter_ns()
            fs = t.rootfs
            faults.point("batch.rename")
            if t.final_dir:
                fs.makedirs(t.relpath)
            elif t.final is None:
                fs.remove(t.relpath)
            elif t.tmpfd is not None:
                _link(t)
            else:
                assert t.temp is not None
                dfd, name = t.where()
                os.rename(t.temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            dirs.add((t.root.id, t.relpath.rpartition(SEP)[0]))
            t.elapsed_ns += time.perf_counter_ns() - t0
    finally:
        _close_tmpfds(targets)
    fs_of = {t.root.id: t.rootfs for t in targets}
    for rid, d in sorted(dirs):
        fs_of[rid].fsync_dir(d)
    faults.point("batch.applied")


def _link(t: Target) -> None:
    """Give an unnamed temp its target's name. It never replaces anything: a file that
    appeared there since the batch looked (another program's) fails the batch, which rolls
    back after recording it."""
    assert t.tmpfd is not None and t.temp is not None and t.final is not None
    dfd, name = t.where()
    try:
        os.link(f"/proc/self/fd/{t.tmpfd}", name, dst_dir_fd=dfd, follow_symlinks=True)
        return
    except FileExistsError:
        raise t.error("appeared while the batch ran (another program wrote it); not "
                      "replacing it", "system") from None
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EACCES):
            raise
    # No usable /proc: the named way, durable before it is renamed into place.
    fd = os.open(t.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dfd)
    try:
        view = memoryview(t.final)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, t.mode)
        os.fsync(fd)
        st = os.fstat(fd)
        t.written = (st.st_dev, st.st_ino)
    finally:
        os.close(fd)
    os.rename(t.temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _lstat(t: Target) -> os.stat_result | None:
    fs = t.rootfs
    if fs._fds is None:
        return fs.lstat(t.relpath)
    try:
        dfd, name = t.where()
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, OutsideRootError):
        return None


def _finish(recorder: Recorder, batch_id: int, targets: list[Target], session: str | None,
            *, verify: bool, operations: list[Target] | None = None) -> dict[bytes, int]:
    """Verify every target, record the new versions, mark the batch done (one commit)."""
    store = recorder.store
    stats: dict[bytes, os.stat_result | None] = {}
    for t in targets:
        fs = t.rootfs
        st = _lstat(t)
        stats[t.relpath] = st
        if not verify:
            continue
        faults.point("batch.verify")
        if t.final_dir:
            ok = st is not None and stat.S_ISDIR(st.st_mode)
        elif t.final is None:
            ok = st is None
        elif st is None or not stat.S_ISREG(st.st_mode) or st.st_size != len(t.final):
            ok = False
        elif t.written is not None:
            # The very inode we wrote, whole (every write() was checked): reading it back
            # from the page cache would prove nothing more.
            ok = (st.st_dev, st.st_ino) == t.written
        else:  # recovery: written by a process that died; compare the bytes
            ok = fs.read(t.relpath) == t.final
        if not ok:
            raise t.error("verification failed: the file on disk is not what was written",
                          "system")
    versions: dict[bytes, int] = {}
    # Not fsynced: lost in a crash, the batch is still "committed" and recovery finds every
    # target done and records it again. The next durable commit makes it durable.
    with store.transaction(durable=False):
        items: list[tuple[int, bytes, NewVersion, os.stat_result | None]] = []
        for t in targets:
            if t.final_dir:
                continue
            st = stats[t.relpath]
            if t.final is None:
                nv = NewVersion(0, None, False, "deleted", "batch", None, None,
                                note=f"batch {batch_id}", session=session)
            else:
                kind = "modified" if t.kind == "file" else "created"
                nv = NewVersion(0, t.new_object_id, True, kind, "batch",
                                st.st_mode if st else t.mode, len(t.final),
                                note=f"batch {batch_id}", session=session, valid=None)
            items.append((t.root.id, t.relpath, nv, st))
        for (_rid, rel, _nv, _st), vid in zip(items, store.add_versions(items), strict=True):
            versions[rel] = vid
        store.db.execute("UPDATE batches SET state='done', finished_ns=? WHERE id=?",
                         (time.time_ns(), batch_id))
        store.db.execute("DELETE FROM batch_entries WHERE batch_id=?", (batch_id,))
        if operations is not None:
            _record_operations(store, operations, batch_id, "ok")
        faults.point("batch.done")
    return versions


# ----------------------------------------------------------------------------- failure paths
def _abandon(recorder: Recorder, batch_id: int, targets: list[Target]) -> None:
    """Before the commit point: remove temps and created directories; nothing else moved."""
    _close_tmpfds(targets)  # unnamed temps vanish with their last descriptor
    for t in targets:
        _remove_temp(t, t.temp)
        _remove_dirs(t)
    with recorder.store.transaction():
        recorder.store.db.execute(
            "UPDATE batches SET state='rolled_back', finished_ns=?, error='before commit'"
            " WHERE id=?", (time.time_ns(), batch_id))
        recorder.store.db.execute("DELETE FROM batch_entries WHERE batch_id=?", (batch_id,))


def _roll_back(recorder: Recorder, batch_id: int, targets: list[Target], why: str) -> None:
    """After the commit point: put every old content back (from the store), durably."""
    store = recorder.store
    objects = Objects(store)
    # Whatever is on disk now is stored before it is replaced (ours, or someone else's).
    with contextlib.suppress(Exception):
        recorder.capture([(t.root.id, t.relpath) for t in targets], origin="batch",
                         confirm_missing=True, note=f"captured while rolling back batch "
                                                    f"{batch_id}")
    for t in reversed(targets):
        fs = t.rootfs
        if t.final_dir:
            with contextlib.suppress(OSError):
                if t.kind != "dir":
                    _rmdir(fs, t.relpath)
        elif t.kind == "file" and t.old_object_id is not None:
            data = objects.get(t.old_object_id)
            now = fs.lstat(t.relpath)
            if now is None or fs.read(t.relpath) != data or (
                    t.current_mode is not None and now.st_mode != t.current_mode):
                fs.write(t.relpath, data, t.current_mode or 0o100644)
        elif t.kind == "absent":
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                fs.remove(t.relpath)
        _remove_temp(t, t.temp)
        _remove_dirs(t)
    recorder.capture([(t.root.id, t.relpath) for t in targets], origin="batch",
                     confirm_missing=True, note=f"batch {batch_id} rolled back")
    with store.transaction():
        store.db.execute("UPDATE batches SET state='rolled_back', finished_ns=?, error=? "
                         "WHERE id=?", (time.time_ns(), why[:500], batch_id))
        store.db.execute("DELETE FROM batch_entries WHERE batch_id=?", (batch_id,))


def _remove_temp(t: Target, temp: bytes | None) -> None:
    if not temp:
        return
    d = t.relpath.rpartition(SEP)[0]
    with contextlib.suppress(OSError, OutsideRootError):
        t.rootfs.remove(d + SEP + temp if d else temp)


def _remove_dirs(t: Target) -> None:
    for d in reversed(t.created_dirs):
        with contextlib.suppress(OSError, OutsideRootError):
            _rmdir(t.rootfs, d)
            t.rootfs.forget(d)


def _rmdir(fs: RootFS, relpath: bytes) -> None:
    with fs.parent(relpath, create=False) as (dfd, name):
        os.rmdir(name, dir_fd=dfd)


def _record_operations(store: Store, targets: list[Target], batch_id: int | None,
                       outcome: str, category: str | None = None) -> None:
    with contextlib.suppress(Exception), store.transaction():
        for t in targets:
            for op in t.ops:
                store.record_operation(
                    op.op, duration_ns=t.elapsed_ns // max(1, len(t.ops)), outcome=outcome,
                    path=t.root.join(t.relpath), error_category=category,
                    optimisation=",".join(sorted(t.optimisations)) or None, batch_id=batch_id)


def record_failure(store: Store, manifest: Manifest, error: BatchError, elapsed_ns: int) -> None:
    """One operations row per operation of a refused or rolled-back batch."""
    with contextlib.suppress(Exception), store.transaction():
        for op in manifest.operations:
            store.record_operation(
                op.op, duration_ns=elapsed_ns // max(1, len(manifest.operations)),
                outcome="rejected" if not error.rolled_back else "error",
                path=os.fsencode(op.path), error_category=error.category,
                batch_id=error.batch_id, detail={"message": str(error)[:300]})


_UMASK: int | None = None


def _umask() -> int:
    """The process umask, read without changing it (os.umask is not thread-safe)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = 0o022
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("Umask:"):
                    _UMASK = int(line.split()[1], 8)
    return _UMASK


# ----------------------------------------------------------------------------- recovery
@dataclass
class Recovered:
    batch_id: int
    state_before: str
    outcome: str            # rolled_back | completed
    files: int

    def to_json(self) -> dict[str, Any]:
        return {"batch": self.batch_id, "was": self.state_before, "outcome": self.outcome,
                "files": self.files}


def recover(recorder: Recorder) -> list[Recovered]:
    """Finish or undo every batch a crash interrupted; remove its temp files."""
    store = recorder.store
    out: list[Recovered] = []
    batches = store.db.execute(
        "SELECT id, state, session FROM batches WHERE state IN ('prepared', 'committed')"
        " ORDER BY id").fetchall()
    for batch_id, state, session in batches:
        targets = _targets_of(recorder, batch_id)
        if state == "prepared":
            _abandon(recorder, batch_id, targets)
            out.append(Recovered(batch_id, state, "rolled_back", len(targets)))
            continue
        try:
            # Whatever another program wrote to a target since the crash is kept first.
            others = _written_by_others(recorder, targets)
            if others:
                recorder.capture(others, origin="scan", confirm_missing=False,
                                 note=f"captured before completing batch {batch_id}")
            _roll_forward(recorder, targets)
            _finish(recorder, batch_id, targets, session, verify=True)
            out.append(Recovered(batch_id, state, "completed", len(targets)))
        except Exception as e:
            _roll_back(recorder, batch_id, targets, f"recovery: {e}")
            out.append(Recovered(batch_id, state, "rolled_back", len(targets)))
    return out


def _targets_of(recorder: Recorder, batch_id: int) -> list[Target]:
    rows = recorder.store.db.execute(
        "SELECT root_id, relpath, action, old_present, old_object_id, old_mode, new_object_id,"
        " new_mode, temp, created_dirs FROM batch_entries WHERE batch_id=? ORDER BY seq",
        (batch_id,)).fetchall()
    objects = Objects(recorder.store)
    out = []
    for rid, rel, action, old_present, old_oid, old_mode, new_oid, new_mode, temp, dirs in rows:
        root = recorder.roots.get(rid)
        if root is None:
            continue
        t = Target(root, bytes(rel), kind="file" if old_present else "absent",
                   current_mode=old_mode, old_object_id=old_oid, new_object_id=new_oid,
                   mode=new_mode or 0o644, temp=bytes(temp) if temp else None,
                   created_dirs=[os.fsencode(d) for d in json.loads(dirs or "[]")])
        if action == "mkdir":
            t.final_dir = True
            t.kind = "absent"
        elif action == "write":
            t.final = objects.get(new_oid)
        out.append(t)
    return out


def _written_by_others(recorder: Recorder, targets: list[Target]) -> list[tuple[int, bytes]]:
    """Targets that hold neither their old nor their new content."""
    objects = Objects(recorder.store)
    out = []
    for t in targets:
        if t.final_dir:
            continue
        try:
            now = t.rootfs.read(t.relpath)
        except (OSError, OutsideRootError):
            continue
        if now is None or now == t.final:
            continue
        if t.old_object_id is not None and objects.get(t.old_object_id) == now:
            continue
        out.append((t.root.id, t.relpath))
    return out


def _roll_forward(recorder: Recorder, targets: list[Target]) -> None:
    for t in targets:
        fs = t.rootfs
        if t.final_dir:
            fs.makedirs(t.relpath)
            continue
        if t.final is None:
            fs.remove(t.relpath)
            continue
        if fs.read(t.relpath) == t.final:
            _remove_temp(t, t.temp)
            continue
        d = t.relpath.rpartition(SEP)[0]
        temp_rel = (d + SEP + t.temp if d else t.temp) if t.temp else None
        if temp_rel is not None and fs.read(temp_rel) == t.final:
            with fs.parent(t.relpath, create=False) as (dfd, name):
                os.rename(t.temp or b"", name, src_dir_fd=dfd, dst_dir_fd=dfd)
            fs.fsync_dir(d)
        else:
            fs.write(t.relpath, t.final, t.mode)
            _remove_temp(t, t.temp)


def sweep_temps(root: Root) -> int:
    """Remove Guardian temp files left anywhere under a root (their data is in the store)."""
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root.bpath):
        dirnames[:] = [d for d in dirnames if d != b".git"]
        for name in filenames:
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed
