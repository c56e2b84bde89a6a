"""Capture: turning what is on disk into versions in the store.

Both the watcher (a list of paths that changed) and reconcile scans (a walk compared with the
stat cache) end here. Work happens in three steps so disks and cores stay busy:

1. observe, in parallel: lstat, read, hash (no database);
2. compress, in parallel, only the contents the store does not have yet;
3. record, in one transaction (a group commit): versions, moves, tombstones, scan cache.

A path that vanished is a tombstone only when the caller confirms it (the daemon re-checks after
a grace period first, so an editor's brief absence of a file during a safe save is not a delete).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

from guardian.capture import anchored
from guardian.capture.anchored import MAX_KEPT, NOT_A_DIR, RootDirs
from guardian.capture.scan import WalkReport, is_blind, walk
from guardian.kinds import Origin, VersionKind
from guardian.paths import SEP, Root
from guardian.rules.ignore import GITIGNORE, IgnoreMatcher
from guardian.rules.policy import Policy
from guardian.rules.settings import Settings
from guardian.store import objects as obj
from guardian.store.commit_rows import CommitRows
from guardian.store.db import NewVersion, Store, Version
from guardian.store.objects import Objects

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from guardian.capture.early import EarlyReads, Read

PathKey = tuple[int, bytes]  # (root id, relpath)
_ABSENT: tuple[int, ...] = ()
_BAD_NAMES = (b"", b".", b"..")

# Observed states of a path.
FILE, LINK, DIR, MISSING, SPECIAL, UNREADABLE, UNSTABLE, OVERSIZE, IGNORED = (
    "file", "link", "dir", "missing", "special", "unreadable", "unstable", "oversize", "ignored"
)

#: States recorded without looking the file up (see Recorder._record_one).
_NO_ROWS = (IGNORED, UNSTABLE, UNREADABLE)

_CHUNK_FILES = 1000
#: Files smaller than this are read with one read(2).
_ONE_READ = 1024 * 1024
_CHUNK_BYTES = 64 * 1024 * 1024


@dataclass
class Seen:
    """One path as observed on disk, before anything is recorded."""

    root_id: int
    relpath: bytes
    state: str
    st: os.stat_result | None = None
    data: bytes | None = None
    hash: bytes | None = None
    error: str | None = None
    #: (codec, stored bytes), compressed in the worker that read the file.
    packed: tuple[str, bytes] | None = None
    #: Its bytes count against the early reads' budget (see guardian.capture.early).
    held: bool = False


@dataclass(frozen=True)
class Warning_:
    """Something a user should know that did not stop capture (unreadable file, size cap)."""

    root_id: int
    relpath: bytes
    message: str


@dataclass
class CaptureResult:
    #: The versions committed, as the store holds them (what the log and the events report).
    recorded: list[Version] = field(default_factory=list)
    #: Live in the store, absent on disk, not yet tombstoned: re-check after a grace period.
    missing: list[PathKey] = field(default_factory=list)
    #: Changed while being read: try again once writes stop.
    retry: list[PathKey] = field(default_factory=list)
    #: Directories to reconcile (a directory appeared where events named a path).
    subtrees: list[PathKey] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)
    unchanged: int = 0
    scanned: int = 0
    complete: bool = True
    #: Content of recorded versions the caller asked to keep (for validation), by version id.
    contents: dict[int, bytes] = field(default_factory=dict)

    def merge(self, other: CaptureResult) -> None:
        self.recorded += other.recorded
        self.missing += other.missing
        self.retry += other.retry
        self.subtrees += other.subtrees
        self.warnings += other.warnings
        self.unchanged += other.unchanged
        self.scanned += other.scanned
        self.complete = self.complete and other.complete
        self.contents.update(other.contents)


Progress = Callable[[int, int], None]


class Recorder:
    """Records paths of a store's roots. Owns the store's write side; not thread-safe."""

    def __init__(self, store: Store, roots: Sequence[Root], settings: Settings,
                 *, workers: int | None = None, policy: Policy | None = None) -> None:
        self.store = store
        self.objects = Objects(store)
        self.settings = settings
        self.roots = {r.id: r for r in roots}
        self.policy = policy
        store_rel = {r.id: _inside(store.path, r) for r in roots}
        self.ignore = {
            r.id: IgnoreMatcher(r.bpath, extra_ignored=[p for p in [store_rel[r.id]] if p],
                                rules=(_rules_ignore(policy, r.id) if policy else None),
                                rules_in=(_rules_in(policy, r.id) if policy else None))
            for r in roots
        }
        #: Which recorded versions' content to keep in the result (the daemon validates them).
        self.keep_content: Callable[[int, bytes], bool] | None = None
        n = workers or min(4, os.cpu_count() or 2)
        self._workers = n
        self._pool_: ThreadPoolExecutor | None = None  # started when first needed
        self._warned: dict[PathKey, str] = {}
        #: Hook for tests of the store-full path: raise from inside the transaction.
        self.before_commit: Callable[[], None] | None = None
        #: Reads of closed files at once (the daemon's; see :mod:`guardian.capture.early`).
        self.early: EarlyReads | None = None

    def close(self) -> None:
        if self.early is not None:
            self.early.close()
        if self._pool_ is not None:
            self._pool_.shutdown(wait=True)

    @property
    def _pool(self) -> ThreadPoolExecutor:
        """The observing threads, started on first use (an unchanged tree needs none; and
        ``concurrent.futures`` is not imported by a command that does not use it)."""
        if self._pool_ is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool_ = ThreadPoolExecutor(max_workers=self._workers,
                                             thread_name_prefix="guardian-io")
        return self._pool_

    def read_early(self) -> EarlyReads:
        """Start reading closed files at once (:meth:`EarlyReads.read_soon`); from then on
        :meth:`capture` with ``early=True`` records what those reads saw, in order."""
        if self.early is None:
            from guardian.capture.early import EarlyReads

            self.early = EarlyReads(self._observe_alone, threads=min(2, self._workers),
                                    inline=self._observe_inline, from_read=self._observe_read)
        return self.early

    def _observe_alone(self, key: PathKey, last: Seen | None) -> Seen:
        """One path, its own directory fds (an early read's thread keeps none between
        reads: a directory renamed meanwhile must not be read through an old fd)."""
        s = self._observe_small(key, last, None)
        assert s is not None
        return s

    def _observe_inline(self, key: PathKey, last: Seen | None) -> Seen | None:
        """:meth:`_observe_alone`, or None for a file too big to read inline."""
        from guardian.capture.early import INLINE_MAX

        return self._observe_small(key, last, INLINE_MAX)

    def _observe_read(self, key: PathKey, last: Seen | None, read: Read) -> Seen:
        """What the reader process read of a regular file (guardian.daemon.reader_process:
        opened as :meth:`_observe` opens it, found stable), with :meth:`_observe`'s checks of
        the path and its size."""
        root_id, rel = key
        if not rel or self.ignore[root_id].ignored(rel):
            return Seen(root_id, rel, IGNORED)
        if rel.rpartition(SEP)[2] in _BAD_NAMES:
            return Seen(root_id, rel, MISSING)
        _path, st_args, sha, data = read
        st = os.stat_result(*st_args)  # type: ignore[arg-type]
        if last is not None and last.state == FILE and last.st is not None \
                and _same_stat(st, last.st):
            return last
        if st.st_size > self.max_size(root_id, rel):
            return Seen(root_id, rel, OVERSIZE, st)
        return Seen(root_id, rel, FILE, st, data, sha, packed=obj.compress(data))

    def _observe_small(self, key: PathKey, last: Seen | None, limit: int | None) -> Seen | None:
        with RootDirs(self.roots[key[0]].bpath, 8) as dirs:
            s = self._observe(key, dirs, last, limit)
        if s is None:
            return None
        if s.data is not None and s is not last:
            s.packed = obj.compress(s.data)
        return s

    # ----------------------------------------------------------------- public API
    def capture(self, keys: Iterable[PathKey], *, origin: Origin, confirm_missing: bool,
                session: str | None = None, note: str | None = None,
                early: bool = False) -> CaptureResult:
        """Record the current state of each path (one group commit). ``early``: first every
        version the early reads saw of these paths (see :meth:`read_early`)."""
        keys = list(dict.fromkeys(keys))
        if early and self.early is not None:
            # The watcher's paths: a burst can make tens of thousands due at once; a commit
            # per chunk keeps what is held in memory (contents read, rows) bounded.
            result = CaptureResult()
            for i in range(0, len(keys), _CHUNK_FILES):
                seen = _in_order(self.early.take(keys[i:i + _CHUNK_FILES]))
                result.merge(self._record(seen, origin=origin, confirm_missing=confirm_missing,
                                          baseline=False, session=session, note=note))
            return result
        seen = self._observe_all(keys)
        return self._record(seen, origin=origin, confirm_missing=confirm_missing,
                            baseline=False, session=session, note=note)

    def reconcile(self, root_id: int, prefix: bytes = b"", *, origin: Origin, confirm_missing: bool,
                  baseline: bool = False, progress: Progress | None = None,
                  session: str | None = None,
                  cancel: threading.Event | None = None) -> CaptureResult:
        """Compare a tree with the stat cache and record everything that differs.

        Unchanged files (same size, mtime, ctime, inode, mode as last seen) are not re-read.
        ``cancel`` stops between group commits (what was committed stays); ``result.complete``
        says whether the whole tree was seen.
        """
        root = self.roots[root_id]
        ignore = self.ignore[root_id]
        result = CaptureResult()
        if prefix and ignore.ignored(prefix, is_dir=True):
            return result
        state = self.store.scan_state(root_id, prefix)
        report = WalkReport()
        todo: list[tuple[bytes, int]] = []
        absent = _ABSENT
        for rel, st in walk(root.bpath, prefix, ignore, report):
            result.scanned += 1
            sig = state.pop(rel, absent)
            if sig is not None and sig is not absent and sig == (
                    st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev,
                    st.st_mode):
                result.unchanged += 1
                continue
            todo.append((rel, st.st_size))
        for d, why in report.unreadable_dirs:
            self._warn(result, (root_id, d), f"cannot read: {why}; its files are left as recorded")
        blind = [d for d, _ in report.unreadable_dirs]
        # Live in the store, not seen by the walk: gone (unless we could not look).
        gone = [rel for rel in state if not is_blind(rel, blind)]
        total = len(todo) + len(gone)
        done = 0
        if progress:
            progress(0, total)
        fresh = not self.store.has_files()
        # Observing and recording take turns, on purpose: sqlite3 releases the GIL on every
        # step, and Python threads busy at the same time make each step wait for it (a
        # pipelined version of this loop ran several times slower).
        for chunk in _chunks(todo):
            if cancel is not None and cancel.is_set():
                result.complete = False
                return result
            seen = self._observe_all([(root_id, rel) for rel in chunk])
            result.merge(self._record(seen, origin=origin, confirm_missing=confirm_missing,
                                      baseline=baseline, session=session, fresh=fresh))
            done += len(chunk)
            if progress:
                progress(done, total)
        for i in range(0, len(gone), _CHUNK_FILES):
            part = gone[i:i + _CHUNK_FILES]
            seen = self._observe_all([(root_id, rel) for rel in part])
            result.merge(self._record(seen, origin=origin, confirm_missing=confirm_missing,
                                      baseline=False, session=session))
            done += len(part)
            if progress:
                progress(done, total)
        return result

    def observe(self, keys: list[PathKey]) -> list[Seen]:
        """Look at paths without recording anything (dry runs)."""
        return self._observe_all(keys)

    def locate_key(self, path: bytes) -> PathKey | None:
        """The (root, relpath) of an absolute path, if it is inside a root."""
        best: tuple[int, Root] | None = None
        for r in self.roots.values():
            rb = r.bpath
            if (path == rb or path.startswith(rb + SEP)) and (best is None or len(rb) > best[0]):
                best = (len(rb), r)
        if best is None:
            return None
        root = best[1]
        return root.id, path[len(root.bpath) + 1:]

    # ----------------------------------------------------------------- observe
    def _observe_all(self, keys: list[PathKey]) -> list[Seen]:
        return self._observe_start(keys)()

    def _observe_start(self, keys: list[PathKey]) -> Callable[[], list[Seen]]:
        """Start observing in parallel, in slices (a task per file costs more than a small
        read); the returned function waits for the results.

        Every path is looked at from its root's fd, one directory at a time with
        ``O_NOFOLLOW`` (:mod:`guardian.anchored`).
        """
        # Each thread its own directory fds (see RootDirs), all closed once every slice is
        # done; one budget of MAX_KEPT for the batch, whatever its roots and threads.
        share = MAX_KEPT // (self._workers * len({k[0] for k in keys}) or 1)
        per_thread: dict[int, dict[int, RootDirs]] = {}

        inline = len(keys) <= 2

        def some(part: list[PathKey]) -> list[Seen]:
            mine = per_thread.setdefault(threading.get_ident(), {})  # only this thread's key
            out = []
            for key in part:
                dirs = mine.get(key[0])
                if dirs is None:
                    dirs = mine[key[0]] = RootDirs(self.roots[key[0]].bpath, share)
                s = self._observe(key, dirs)
                if s.data is not None and not inline:
                    # Most content that changed is new to the store: compress it here, in
                    # parallel, rather than later in the single recording thread. Inline
                    # (a hook's one file, often unchanged) it is compressed only if new.
                    s.packed = obj.compress(s.data)
                out.append(s)
            return out

        def close() -> None:
            for mine in per_thread.values():
                for dirs in mine.values():
                    dirs.close()

        if inline:
            try:
                done = some(keys)
            finally:
                close()
            return lambda: done
        step = max(1, min(64, len(keys) // (self._workers * 2) or 1))
        futures = [self._pool.submit(some, keys[i:i + step]) for i in range(0, len(keys), step)]

        def results() -> list[Seen]:
            from concurrent.futures import wait

            wait(futures)  # every slice is done with the fds before they are closed
            close()
            return [s for f in futures for s in f.result()]

        return results

    @overload
    def _observe(self, key: PathKey, dirs: RootDirs, last: Seen | None = None,
                 limit: None = None) -> Seen: ...

    @overload
    def _observe(self, key: PathKey, dirs: RootDirs, last: Seen | None,
                 limit: int) -> Seen | None: ...

    def _observe(self, key: PathKey, dirs: RootDirs, last: Seen | None = None,
                 limit: int | None = None) -> Seen | None:
        """``last``: an earlier read of this path, returned as is if the file has not changed
        since (same size, mtime, ctime, inode, mode). ``limit``: None instead of reading a
        regular file of more bytes."""
        root_id, rel = key
        if not rel or self.ignore[root_id].ignored(rel):
            return Seen(root_id, rel, IGNORED)
        parent, _, name = rel.rpartition(SEP)
        if name in _BAD_NAMES:
            return Seen(root_id, rel, MISSING)
        try:
            dfd = dirs.lease(parent)
        except OSError as e:
            if e.errno in NOT_A_DIR:  # a parent is absent, a file or a symlink
                return Seen(root_id, rel, MISSING)
            return Seen(root_id, rel, UNREADABLE, error=e.strerror or str(e))
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return Seen(root_id, rel, MISSING)
        except OSError as e:
            return Seen(root_id, rel, UNREADABLE, error=e.strerror or str(e))
        mode = st.st_mode
        if last is not None and last.state == FILE and last.st is not None \
                and _same_stat(st, last.st):
            return last
        if stat.S_ISDIR(mode):
            return Seen(root_id, rel, DIR, st)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(name, dir_fd=dfd)
            except FileNotFoundError:
                return Seen(root_id, rel, MISSING)
            except OSError as e:
                if e.errno == errno.EINVAL:  # no longer a symlink: read it again
                    return Seen(root_id, rel, UNSTABLE)
                return Seen(root_id, rel, UNREADABLE, error=e.strerror or str(e))
            return Seen(root_id, rel, LINK, st, target, obj.digest(target))
        if not stat.S_ISREG(mode):
            return Seen(root_id, rel, SPECIAL, st)
        if st.st_size > self.max_size(root_id, rel):
            return Seen(root_id, rel, OVERSIZE, st)
        if limit is not None and st.st_size > limit:
            return None
        return _read_regular(root_id, rel, dfd, name)

    def max_size(self, root_id: int, rel: bytes) -> int:
        if self.policy is None:
            return self.settings.max_file_size
        return int(self.policy.effective(root_id, rel).get("max_file_size",
                                                           self.settings.max_file_size))

    # ----------------------------------------------------------------- record
    def _record(self, seen: list[Seen], *, origin: Origin, confirm_missing: bool, baseline: bool,
                session: str | None = None, note: str | None = None,
                fresh: bool = False) -> CaptureResult:
        """Record observations in one transaction. ``fresh``: these paths are new to a store
        that had no files when the scan began (no lookups, no move detection)."""
        result = CaptureResult()
        store, objects = self.store, self.objects
        # Present paths first, so a move's destination claims its source before the source is
        # taken for a deletion.
        seen.sort(key=lambda s: s.state == MISSING)
        now = time.time_ns()
        with store.transaction():
            if fresh:
                seen = self._record_fresh(seen, result, origin=origin, baseline=baseline,
                                          now=now, session=session, note=note)
            content = [s for s in seen if s.state in (FILE, LINK)]
            rows = CommitRows(
                store,
                () if fresh else [(s.root_id, s.relpath) for s in seen if s.state not in _NO_ROWS],
                [s.hash for s in content if s.hash is not None],
                () if fresh else [s.st.st_ino for s in content if s.st is not None])
            for s in seen:
                self._record_one(s, rows, result, origin=origin, confirm_missing=confirm_missing,
                                 baseline=baseline, now=now, session=session, note=note,
                                 fresh=fresh)
            rows.flush()
            objects.sync()
            if self.before_commit is not None:
                self.before_commit()
        return result

    def _record_fresh(self, seen: list[Seen], result: CaptureResult, *, origin: Origin,
                      baseline: bool, now: int, session: str | None,
                      note: str | None) -> list[Seen]:
        """Bulk-record files new to a store that was empty when the scan began; return the
        observations that need the general path."""
        bulk = [s for s in seen if s.state in (FILE, LINK)]
        rest = [s for s in seen if s.state not in (FILE, LINK)]
        if not bulk:
            return rest
        ids = self.objects.put_many([(s.hash, s.data, s.packed) for s in bulk
                                     if s.hash is not None and s.data is not None])
        kind: VersionKind = "baseline" if baseline else "created"
        rows = []
        for s in bulk:
            assert s.st is not None and s.hash is not None and s.data is not None
            rows.append((s.root_id, s.relpath, NewVersion(
                0, ids[s.hash], True, kind, origin, s.st.st_mode, len(s.data), note=note,
                session=session), s.st))
        ids_of = self.store.add_new_files(rows, now)
        keep = self.keep_content
        for s, (_r, _p, nv, _st), (fid, vid) in zip(bulk, rows, ids_of, strict=True):
            assert s.hash is not None and s.data is not None and s.st is not None
            result.recorded.append(_version(vid, fid, s, nv, now))
            if keep is not None and keep(s.root_id, s.relpath):
                result.contents[vid] = s.data
            self._after_change(s)
        return rest

    def _record_one(self, s: Seen, rows: CommitRows, result: CaptureResult, *, origin: Origin,
                    confirm_missing: bool, baseline: bool, now: int, session: str | None,
                    note: str | None, fresh: bool) -> None:
        store = self.store
        key = (s.root_id, s.relpath)
        if s.state == IGNORED:
            return
        if s.state == UNSTABLE:
            result.retry.append(key)
            return
        if s.state == UNREADABLE:
            self._warn(result, key, f"cannot read: {s.error}; keeping its last recorded version")
            return
        fid, head = (None, None) if fresh else rows.file_and_head(key)
        live = head is not None and head.present
        if s.state in (MISSING, SPECIAL, DIR):
            if s.state == DIR:
                result.subtrees.append(key)
            if not live or fid is None:
                if fid is not None:
                    rows.cache_drop(fid)
                return
            if s.state == MISSING and not confirm_missing:
                result.missing.append(key)
                return
            why = {MISSING: None, SPECIAL: "replaced by a special file",
                   DIR: "replaced by a directory"}[s.state]
            self._add(result, rows, NewVersion(fid, None, False, "deleted", origin, None, None,
                                               note=why or note, session=session), s, now)
            self._after_change(s)
            return
        assert s.st is not None
        st = s.st
        if s.state == OVERSIZE:
            if live and head is not None and head.object_id is None and head.size == st.st_size \
                    and head.mode == st.st_mode:
                result.unchanged += 1
                assert fid is not None
                rows.cache_put(fid, st, now)
            else:
                fid = fid or rows.new_file(key)
                kind = self._kind(head, baseline)
                msg = (f"{st.st_size} bytes is over the size cap "
                       f"({self.max_size(s.root_id, s.relpath)}); recorded metadata only")
                self._add(result, rows, NewVersion(fid, None, True, kind, origin, st.st_mode,
                                                   st.st_size, note=msg, session=session),
                          s, now, st)
                self._warn(result, key, msg)
            return
        # A regular file or a symlink, with its content in hand.
        assert s.hash is not None and s.data is not None
        if live and head is not None and head.hash == s.hash and head.mode == st.st_mode:
            result.unchanged += 1
            assert fid is not None
            if store.damaged and s.hash in store.damaged:  # intact bytes of a damaged object
                rows.flush_objects()
                self.objects.put(s.data, s.hash, s.packed)
            rows.cache_put(fid, st, now)
            self._warned.pop(key, None)
            return
        fid = fid or rows.new_file(key)
        kind = self._kind(head, baseline)
        vnote, peer = note, None
        # A store that was empty when this scan began has nothing to have moved from.
        source = None if fresh else self._move_source(rows, st, fid, s.hash)
        if source is not None:
            src_fid, src_root, src_rel = source
            src_show = self._rel_show(src_root, src_rel, s.root_id)
            kind = "moved" if not live else kind
            vnote, peer = f"from {src_show}", src_fid
            result.recorded.append(rows.add_version(NewVersion(
                src_fid, None, False, "moved", origin, None, None,
                note=f"to {self._rel_show(s.root_id, s.relpath, src_root)}", peer_id=fid,
                session=session), now, None, None))
        # The previous version is the base a delta is tried against (guardian.store.objects).
        object_id = self._put(rows, s.data, s.hash, s.packed,
                              head.object_id if head is not None else None)
        self._add(result, rows, NewVersion(fid, object_id, True, kind, origin, st.st_mode,
                                           len(s.data), note=vnote, peer_id=peer,
                                           session=session), s, now, st)
        self._warned.pop(key, None)
        self._after_change(s)

    def _add(self, result: CaptureResult, rows: CommitRows, nv: NewVersion, s: Seen, now: int,
             st: os.stat_result | None = None) -> None:
        v = rows.add_version(nv, now, st, s.hash)
        if nv.present and s.data is not None and self.keep_content is not None \
                and self.keep_content(s.root_id, s.relpath):
            result.contents[v.id] = s.data
        result.recorded.append(v)

    def _put(self, rows: CommitRows, data: bytes, h: bytes, packed: tuple[str, bytes] | None,
             base: int | None) -> int:
        """:meth:`Objects.put` of a version's content; a small whole copy goes in with the
        commit's other rows (:mod:`guardian.store.commit_rows`)."""
        damaged = bool(self.store.damaged) and h in self.store.damaged
        oid = rows.object_id(h)
        if not damaged:
            if oid is not None:
                return oid
            if self.objects.plain(len(data), base):
                codec, stored = packed if packed is not None else obj.compress(data)
                oid = rows.add_object(h, len(data), codec, stored)
                self.objects.remember(oid, h, data)
                return oid
        rows.flush_objects()  # put() reads the base's chain and lets SQLite pick the id
        oid = self.objects.put(data, h, packed, base=base)
        rows.added_object(h, oid)
        return oid

    @staticmethod
    def _kind(head: Version | None, baseline: bool) -> VersionKind:
        if head is None:
            return "baseline" if baseline else "created"
        return "modified" if head.present else "created"

    def _move_source(self, rows: CommitRows, st: os.stat_result, fid: int,
                     h: bytes) -> tuple[int, int, bytes] | None:
        """A live file last seen with this inode whose path no longer holds it: a rename.
        (A file last seen with the inode it has now was written in place: none.)"""
        if rows.cached_inode(fid) == (st.st_dev, st.st_ino):
            return None
        for src_fid, src_root, src_rel in rows.files_with_inode(st.st_dev, st.st_ino):
            if src_fid == fid or src_root not in self.roots:
                continue
            head = rows.head(src_fid)
            if head is None or not head.present or head.hash != h:
                continue
            try:
                now_st = anchored.lstat(self.roots[src_root].bpath, src_rel)
                if now_st is not None and now_st.st_ino == st.st_ino \
                        and now_st.st_dev == st.st_dev:
                    continue  # still there: a hard link, not a move
            except OSError:
                pass
            return src_fid, src_root, src_rel
        return None

    def _rel_show(self, root_id: int, rel: bytes, other_root: int) -> str:
        if root_id == other_root:
            return os.fsdecode(rel)
        return self.roots[root_id].display(rel)

    def _after_change(self, s: Seen) -> None:
        if s.relpath == GITIGNORE or s.relpath.endswith(SEP + GITIGNORE):
            self.ignore[s.root_id].invalidate()

    def _warn(self, result: CaptureResult, key: PathKey, message: str) -> None:
        if self._warned.get(key) == message:
            return
        self._warned[key] = message
        result.warnings.append(Warning_(key[0], key[1], message))


def _rules_ignore(policy: Policy, root_id: int) -> Callable[[bytes], bool]:
    return lambda rel: policy.ignored(root_id, rel)


def _rules_in(policy: Policy, root_id: int) -> Callable[[bytes], bool]:
    return lambda d: policy.ignores_in(root_id, d)


def _version(vid: int, fid: int, s: Seen, nv: NewVersion, now: int) -> Version:
    """The version just added, as :meth:`Store.version` would read it back."""
    h = s.hash if nv.present and nv.object_id is not None else None
    return Version(vid, fid, s.root_id, s.relpath, nv.object_id, h, nv.present, nv.kind,
                   nv.origin, now, nv.mode, nv.size, nv.valid, nv.session, nv.note, nv.peer_id)

def _same_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino, a.st_dev, a.st_mode) == (
        b.st_size, b.st_mtime_ns, b.st_ctime_ns, b.st_ino, b.st_dev, b.st_mode)


def _in_order(groups: list[list[Seen]]) -> list[Seen]:
    """The observations to record from :meth:`EarlyReads.take`'s groups: each path's early
    reads of content (repeats dropped), then its state now.

    A file read early that is gone now, whose inode is now another path of the batch, was a
    temp file renamed into place (an atomic save, ``sed -i``, rsync): its content is recorded
    there, and the temp file is not recorded on its own.
    """
    here = {(s.st.st_dev, s.st.st_ino) for g in groups for s in g[-1:]
            if s.st is not None and s.state in (FILE, LINK)}
    out: list[Seen] = []
    for g in groups:
        now = g[-1]
        early: list[Seen] = []
        for s in g[:-1]:
            if s.state == FILE and s is not now and (not early or s is not early[-1]):
                early.append(s)
        if early and now.state == MISSING:
            st = early[-1].st
            if st is not None and (st.st_dev, st.st_ino) in here:
                early = []
        out += early
        out.append(now)
    return out


def _read_regular(root_id: int, rel: bytes, dfd: int, name: bytes) -> Seen:
    """Read regular file ``name`` of directory ``dfd`` whole, refusing symlinks and noticing
    writes during the read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except (FileNotFoundError, NotADirectoryError):
        return Seen(root_id, rel, MISSING)
    except OSError as e:
        if e.errno == errno.ELOOP:  # it became a symlink between lstat and open
            return Seen(root_id, rel, UNSTABLE)
        return Seen(root_id, rel, UNREADABLE, error=e.strerror or str(e))
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return Seen(root_id, rel, UNSTABLE)
        if before.st_size < _ONE_READ:
            # One read of a byte more than it holds (a file object's readall costs another
            # fstat and a read to find the end): a file that grew meanwhile is unstable below,
            # and so is a short read.
            data = os.read(fd, before.st_size + 1)
        else:
            with open(fd, "rb", closefd=False) as f:
                data = f.read()
        after = os.fstat(fd)
    except OSError as e:
        return Seen(root_id, rel, UNREADABLE, error=e.strerror or str(e))
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) \
            or len(data) != after.st_size:
        return Seen(root_id, rel, UNSTABLE)
    return Seen(root_id, rel, FILE, after, data, obj.digest(data))


def _inside(store_path: os.PathLike[str], root: Root) -> bytes:
    sp = os.fsencode(os.path.realpath(store_path))
    rb = root.bpath
    return sp[len(rb) + 1:] if sp.startswith(rb + SEP) else b""


def _chunks(todo: list[tuple[bytes, int]]) -> Iterable[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for rel, n in todo:
        chunk.append(rel)
        size += n
        if len(chunk) >= _CHUNK_FILES or size >= _CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
