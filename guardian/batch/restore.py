"""Restoring a file to a version, or a directory (or a file) to a point in time: one batch.

A restore is a batch of the batch engine (:func:`guardian.batch.protocol.execute_targets`), so it
has the same guarantees as ``guardian apply``: all or nothing, journaled, crash-safe
(``guardian recover`` finishes or undoes it), and it never overwrites a write it has not
stored. The steps:

1. record the current state of the directory (a reconcile: every byte the restore may
   replace or remove is in the store before the plan is made);
2. the desired state: each file's newest version at TIME (or the version asked for);
3. under the targets' locks, read what is on disk (with each target's signature, which the
   engine checks again right before it replaces or removes anything) and plan: what is
   removed (files and links, then the directories emptied, or replaced by a file), then what
   is written (files with their version's mode, symlinks as symlinks). A file another
   program changes after that read is a conflict: the whole restore is refused, naming it,
   and what it wrote stays (and is recorded);
4. the engine's commit point, renames, verification; the versions are recorded with kind
   ``restored`` / ``deleted``, origin ``restore`` and a note ("restored to TIME", "from
   version N").

A file whose first version is the baseline existed before Guardian started recording: a
restore to a time before that leaves it alone (and says so). A TIME before every version
under the path is refused, like a file's. Ignored paths are never touched. Nothing is
validated: a restore is deliberate (restoring a rejected version is allowed).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guardian.batch import io as batchio
from guardian.batch.protocol import execute_targets
from guardian.batch.target import Target
from guardian.capture.scan import WalkReport, walk
from guardian.errors import BatchError, GuardianError, NotFoundError, UsageError
from guardian.exitcodes import ExitCode
from guardian.paths import SEP, Root, parents, show
from guardian.rootfs import RootFS
from guardian.store.db import Version
from guardian.store.history import resolve
from guardian.store.objects import Objects, digest
from guardian.timespec import iso

if TYPE_CHECKING:
    from guardian.writer import Writer

#: Why a file Guardian found at its start is left alone by a restore to before that start.
BEFORE_GUARDIAN = "existed before Guardian started recording; left as is"
LOCK_TIMEOUT_S = 5.0


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
    removed_dirs: list[bytes] = field(default_factory=list)
    batch_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.root.display(self.target),
            "dry_run": self.dry_run,
            "batch": self.batch_id,
            "changes": [
                {"path": self.root.display(c.relpath), "relpath": os.fsdecode(c.relpath),
                 "action": c.action,
                 "from_version": c.source.id if c.source else None,
                 "version": c.new_version}
                for c in self.changes
            ],
            "removed_dirs": [self.root.display(d) for d in self.removed_dirs],
            "unchanged": self.unchanged,
            "skipped": [{"path": self.root.display(r), "reason": why} for r, why in self.skipped],
        }


def restore(writer: Writer, root: Root, relpath: bytes, *, version: int | None = None,
            at_ns: int | None = None, dry_run: bool = False, session: str | None = None,
            lock_timeout: float = LOCK_TIMEOUT_S) -> RestoreResult:
    """Restore ``relpath`` (b"": the whole root) as one batch; see the module docstring."""
    store = writer.store
    shown = show(root.join(relpath))
    try:
        st: os.stat_result | None = os.lstat(root.join(relpath))
    except (FileNotFoundError, NotADirectoryError):
        st = None
    is_dir = st is not None and stat.S_ISDIR(st.st_mode)
    if relpath and writer.recorder.ignore[root.id].ignored(relpath, is_dir=is_dir):
        raise UsageError(f"{shown}: is ignored by Guardian (never recorded); nothing to restore")
    fid = store.file_id(root.id, relpath, create=False) if relpath else None
    is_file = fid is not None and store.head(fid) is not None
    firsts = store.first_versions(root.id, relpath)
    if not firsts:
        raise NotFoundError(f"{shown}: no recorded versions")
    if version is None and at_ns is None and (is_dir or not is_file):
        raise UsageError(f"{shown}: is a directory: restoring it needs --at TIME")
    if version is not None and not is_file:
        raise UsageError(f"{shown}: is a directory: --version names a file's version; "
                         "use --at TIME to restore the directory as it was")
    # A directory (or what is under a path) as it was at a time; else one file's version.
    tree = at_ns is not None and (is_dir or not is_file)
    scan = tree or is_dir  # what is under the path now matters (and is recorded first)
    if scan and not dry_run:
        _record_tree(writer, root, relpath, session)
    if at_ns is not None:
        desired = store.states_at(root.id, relpath, at_ns)
        if not desired:
            earliest = min(t for _kind, t in firsts.values())
            raise NotFoundError(f"{shown}: no version recorded at or before {iso(at_ns)} "
                                f"(the earliest is from {iso(earliest)}); nothing restored")
    else:
        desired = {relpath: resolve(store, root, relpath, version=version,
                                    want_content=version is None)}
    result = RestoreResult(root, relpath, dry_run)
    planner = _Planner(writer, root, relpath, desired, firsts, result, at_ns=at_ns,
                       version=version, tree=tree, scan=scan and dry_run)
    targets = planner.targets()
    if not targets:
        return result
    try:
        done = execute_targets(writer, targets, planner.plan, lock_timeout=lock_timeout,
                               session=session, dry_run=dry_run)
    except BatchError as e:
        raise _restore_error(e) from None
    planner.report(done.batch_id, done.version_of)
    return result


def _record_tree(writer: Writer, root: Root, prefix: bytes, session: str | None) -> None:
    """Record what is on disk under ``prefix`` now, durably, before the plan is made."""
    res = writer.recorder.reconcile(root.id, prefix, origin="restore", confirm_missing=True,
                             session=session)
    if res.warnings:
        w = res.warnings[0]
        raise GuardianError(f"{show(root.join(w.relpath))}: {w.message}; not restoring a "
                            "tree Guardian cannot see whole", exit_code=ExitCode.FAILURE)


def _restore_error(e: BatchError) -> BatchError:
    """The engine's error, in a restore's words: what happened, that nothing was restored
    (all or nothing), and what to do."""
    text = str(e).replace("the batch", "the restore").replace("a batch", "a restore")
    if "run the restore again" in text:
        pass
    elif e.category == "conflict":
        text += "; nothing was restored (what it wrote is kept, and recorded): run the " \
                "restore again"
    elif e.category == "lock":
        text += "; nothing was restored: run the restore again when it is done"
    elif not text.endswith(("rolled back", "nothing written")):
        text += "; nothing was restored"
    out = BatchError(text, category=e.category, path=e.path, rolled_back=e.rolled_back,
                     batch_id=e.batch_id)
    out.exit_code = e.exit_code
    return out


class _Planner:
    """The targets of one restore, and (under their locks) what each of them becomes."""

    def __init__(self, writer: Writer, root: Root, prefix: bytes,
                 desired: dict[bytes, Version], firsts: dict[bytes, tuple[str, int]],
                 result: RestoreResult, *, at_ns: int | None, version: int | None,
                 tree: bool, scan: bool) -> None:
        self.store = writer.store
        self.root = root
        self.prefix = prefix
        self.desired = desired
        self.firsts = firsts
        self.result = result
        self.tree = tree  # a directory (or what is under a path) as it was at a time
        self.scan = scan  # also walk the disk for candidates (a dry run: nothing recorded)
        self.label = f"restored to {iso(at_ns)}" if at_ns is not None and version is None \
            else None
        self.ignore = writer.recorder.ignore[root.id]
        self.files: dict[bytes, Target] = {}   # relpath -> the target of a file or link
        self.dirs: dict[bytes, Target] = {}    # relpath -> a directory it may remove
        self.keep: set[bytes] = set()          # files present after the restore
        self.changing: list[Target] = []
        self.seen: dict[bytes, os.stat_result | None] = {}  # directories looked at

    # ----------------------------------------------------------------- before the locks
    def targets(self) -> list[Target]:
        """Every path the restore may touch (locked before anything is read)."""
        root, prefix = self.root, self.prefix
        candidates = set(self.desired)
        candidates.update(self.store.live_files(root.id, prefix))
        if self.scan:  # the store may be behind the disk: look too
            candidates.update(rel for rel, _st in walk(root.bpath, prefix, self.ignore,
                                                       WalkReport()))
        candidates.discard(b"")
        for rel in sorted(candidates):
            if self.ignore.ignored(rel):
                if rel in self.desired:
                    self.result.skipped.append((rel, "ignored by Guardian; left as is"))
                continue
            want = self.desired.get(rel)
            if want is not None and want.present:
                if want.object_id is None:
                    self.result.skipped.append(
                        (rel, f"version {want.id} kept metadata only (over the size cap)"))
                    continue
                self.keep.add(rel)
            elif want is None and self.tree and self.firsts.get(rel, ("", 0))[0] == "baseline":
                self.result.skipped.append((rel, BEFORE_GUARDIAN))
                continue
            self.files[rel] = self._target(rel)
        for rel in sorted(self.keep):  # a file under a file of the same time: inconsistent
            parent = _parent_in(rel, self.keep)
            if parent is not None:
                self.keep.discard(rel)
                self.files.pop(rel, None)
                self.result.skipped.append(
                    (rel, f"{show(parent)} was a file at that time; left as is"))
        # Directories it may remove: inside a directory restored, the parents of every path
        # (emptied by the removals); anywhere, a directory where a file is to be.
        for rel in list(self.files):
            if self.tree:
                for d in parents(rel):
                    if not _inside(d, prefix):
                        break
                    if d not in self.dirs:
                        self.dirs[d] = self._target(d, remove_dir=True)
            if rel in self.keep and rel not in self.dirs and _is_dir(root.join(rel)):
                self.dirs[rel] = self._target(rel, remove_dir=True)
        return [*self.files.values(), *self.dirs.values()]

    def _target(self, rel: bytes, *, remove_dir: bool = False) -> Target:
        return Target(self.root, rel, origin="restore", remove_dir=remove_dir,
                      note=self.label)

    # ----------------------------------------------------------------- under the locks
    def plan(self, targets: list[Target], fds: batchio.Budget) -> list[Target]:
        """Read every target, then say what changes, in order: files and links removed
        (deepest first), directories removed (deepest first), then what is written."""
        fs = targets[0].rootfs
        none = batchio.Budget(0)
        for t in self.dirs.values():
            batchio.look(t, none)
        removals: list[Target] = []
        writes: list[Target] = []
        objects = Objects(self.store)
        removed: set[bytes] = set()  # what this restore removes
        for rel, t in self.files.items():
            # Read and judged one at a time: only what changes stays in memory.
            batchio.look(t, fds)
            want = self.desired.get(rel) if rel in self.keep else None
            if want is None:  # to be absent
                if t.kind in ("file", "link"):
                    t.final = None
                    t.note = self.label or "removed by restore"
                    removals.append(t)
                    removed.add(rel)
                else:
                    t.current = None
                continue
            assert want.object_id is not None and want.hash is not None
            is_link = want.mode is not None and stat.S_ISLNK(want.mode)
            mode = stat.S_IMODE(want.mode) if want.mode and not is_link else 0o644
            if t.kind == "other":
                raise t.error("is a special file now (a FIFO, socket or device); not "
                              "replacing it", "conflict")
            if t.kind == ("link" if is_link else "file") and t.current is not None \
                    and digest(t.current) == want.hash \
                    and (is_link or stat.S_IMODE(t.current_mode or 0) == mode):
                t.current = None
                if t.oldfd is not None:
                    os.close(t.oldfd)
                    t.oldfd = None
                self.result.unchanged += 1
                continue
            t.final = objects.get(want.object_id)
            t.digest, t.new_object_id = want.hash, want.object_id
            t.final_link, t.mode = is_link, mode
            t.version_kind = "restored"
            t.note = self.label or f"from version {want.id}"
            writes.append(t)
        # Directories: one a file now takes the place of must go, with all it holds; one
        # the removals empty goes too (Guardian cannot tell it existed then).
        gone: list[Target] = []
        keep_dirs = {d for k in self.keep for d in parents(k)}
        for rel in sorted(self.dirs, key=_depth, reverse=True):
            t = self.dirs[rel]
            if t.kind != "dir":
                continue
            if rel in self.keep:
                gone += self._replaced_dir(t, removed, fs)
            elif self.tree and rel not in keep_dirs and self._emptied(rel, removed, fs):
                t.optional = True
                gone.append(t)
                removed.add(rel)
        for t in writes:
            if t.kind == "dir":
                if t.relpath not in removed:
                    raise t.error("became a directory while the restore ran; not replacing "
                                  "it", "conflict")
                t.kind, t.read_sig, t.current_mode = "absent", None, None
            self._make_room(t, removed)
        removals.sort(key=lambda t: (-_depth(t.relpath), t.relpath))
        gone.sort(key=lambda t: (-_depth(t.relpath), t.relpath))
        writes.sort(key=lambda t: t.relpath)
        self.changing = removals + gone + writes
        return self.changing

    def _replaced_dir(self, top: Target, removed: set[bytes], fs: RootFS) -> list[Target]:
        """``top`` is a directory where a file is restored: everything in it must be a file
        or link this restore removes, or a directory of such. Its directories are removed
        (deepest first: the caller sorts) after those files; anything else in it refuses
        the restore, naming it."""
        out = [top]
        removed.add(top.relpath)
        stack = [top.relpath]
        while stack:  # no recursion on the tree's depth
            d = stack.pop()
            try:
                names = _names(fs, d)
            except OSError as e:
                raise top.error(f"cannot look inside it: {e.strerror or e}", "permission") \
                    from None
            for name, is_dir in names:
                rel = d + SEP + name
                if is_dir:
                    sub = self.dirs.get(rel)
                    if sub is None:
                        sub = self.dirs[rel] = self._target(rel, remove_dir=True)
                        sub.fs = fs
                        batchio.look(sub, batchio.Budget(0))
                    out.append(sub)
                    removed.add(rel)
                    stack.append(rel)
                elif rel not in removed:
                    why = ("ignored by Guardian, so never recorded" if self.ignore.ignored(rel)
                           else "not recorded (a FIFO, socket or device, or written since)")
                    shown = show(self.root.join(rel))
                    raise BatchError(
                        f"{shown}: {why}; the restore would have to remove it with "
                        f"{show(self.root.join(top.relpath))}/, which was a file at that "
                        "time: move it away, then run the restore again",
                        category="conflict", path=shown)
        return out

    def _emptied(self, rel: bytes, removed: set[bytes], fs: RootFS) -> bool:
        """Whether directory ``rel`` (where nothing is written) holds nothing once this
        restore's removals are done."""
        try:
            return all(rel + SEP + name in removed for name, _d in _names(fs, rel))
        except OSError:
            return False

    def _make_room(self, t: Target, removed: set[bytes]) -> None:
        """The directories a write makes (for its rollback), and whether it waits for a
        removal of this restore: a parent of it is a file or link now."""
        made: list[bytes] = []
        for d in reversed(parents(t.relpath)):
            if made:
                made.append(d)
                continue
            if d not in self.seen:  # a restore writes many files per directory
                self.seen[d] = t.rootfs.lstat(d)
            st = self.seen[d]
            if st is not None and stat.S_ISDIR(st.st_mode) and d not in removed:
                continue
            if st is not None and not stat.S_ISDIR(st.st_mode):
                if d not in removed:
                    raise t.error(f"{show(self.root.join(d))} is not a directory now (and "
                                  "the restore does not remove it); not restoring under it",
                                  "conflict")
                t.deferred = True
            made.append(d)
        t.created_dirs = made

    # ----------------------------------------------------------------- after
    def report(self, batch_id: int | None, versions: dict[bytes, int]) -> None:
        res = self.result
        res.batch_id = batch_id
        for t in self.changing:
            if t.remove_dir:
                if not t.skipped:
                    res.removed_dirs.append(t.relpath)
            elif t.final is None:
                res.changes.append(Change(t.relpath, "delete", None, versions.get(t.relpath)))
            else:
                res.changes.append(Change(t.relpath, "write", self.desired[t.relpath],
                                          versions.get(t.relpath)))
        res.changes.sort(key=lambda c: c.relpath)
        res.removed_dirs.sort()


def _names(fs: RootFS, rel: bytes) -> list[tuple[bytes, bool]]:
    """(name, is a directory) of each entry of directory ``rel``, opened from the root."""
    with fs.parent(rel + SEP + b".", create=False) as (dfd, _), os.scandir(dfd) as entries:
        return [(os.fsencode(e.name), e.is_dir(follow_symlinks=False)) for e in entries]


def _is_dir(path: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _depth(rel: bytes) -> int:
    return rel.count(SEP)


def _inside(rel: bytes, prefix: bytes) -> bool:
    """Whether ``rel`` lies strictly inside directory ``prefix`` (b"": the root)."""
    return not prefix or rel.startswith(prefix + SEP)


def _parent_in(rel: bytes, files: set[bytes]) -> bytes | None:
    return next((d for d in parents(rel) if d in files), None)
