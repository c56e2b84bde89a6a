"""Auto-revert: putting back the last good content after an invalid or forbidden write.

Order, for "nothing is lost": the new bytes are already in the store (capture recorded them);
the version is marked ``rejected`` (and invalid) in a committed transaction; the disk is
checked to still hold those bytes (else a newer write came and will be judged on its own);
only then is the last good content written back atomically inside the root, and recorded as
a ``reverted`` version (origin ``guardian``). The watcher then sees a file equal to its newest
version, so Guardian's own write is never judged again: no loops.

A path reverted ``max_reverts_per_minute`` times within a minute is left alone (with an
alert) so a writer that keeps rewriting the same content cannot make Guardian flap forever.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guardian.capture.recorder import FILE, LINK, MISSING
from guardian.errors import OutsideRootError
from guardian.paths import SEP, TEMP_PREFIX
from guardian.rootfs import RootFS
from guardian.rules.rulefiles import Effective
from guardian.store.db import NewVersion, Version
from guardian.store.objects import Objects, digest
from guardian.validation.check import Check, check

if TYPE_CHECKING:
    from guardian.writer import Writer

DEFAULT_MAX_REVERTS = 5


@dataclass
class Judgement:
    """What Guardian did about one version after the rules and validators spoke."""

    version_id: int
    root_id: int
    relpath: bytes
    valid: bool | None
    #: none | alert | reverted | kept (no good version) | gave-up (flapping) | superseded |
    #: failed (the revert could not be written)
    action: str
    reason: str = ""          # invalid | protected
    message: str = ""
    reverted_version: int | None = None
    restored_from: int | None = None
    problems: list[dict[str, str | int | None]] = field(default_factory=list)
    #: Other versions the revert recorded (what stood in the way of the file, and its removal).
    recorded: list[int] = field(default_factory=list)


class Reverter:
    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.store = writer.store
        self._history: dict[tuple[int, bytes], deque[float]] = {}

    def judge(self, version_id: int, eff: Effective, verdict: Check | None,
              reason: str, earlier: Mapping[int, Check] | None = None) -> Judgement:
        """Apply the verdict on a version; call in the store's writer thread. ``earlier``:
        verdicts on never-validated earlier versions, found off this thread (the daemon's
        validation path), so no validator runs here."""
        store = self.store
        v = store.version(version_id)
        if v is None:
            return Judgement(version_id, 0, b"", None, "superseded")
        root = self.writer.roots[v.root_id]
        shown = root.display(v.relpath)
        valid = verdict.valid if verdict is not None else None
        problems = [{"validator": name, "line": p.line, "column": p.column,
                     "severity": p.severity, "message": p.message}
                    for name, p in (verdict.problems() if verdict else [])]
        j = Judgement(v.id, v.root_id, v.relpath, valid, "none", reason, problems=problems)
        if verdict is not None:
            with store.transaction():
                store.set_verdict(v.id, valid)
                store.add_problems(v.id, ((name, p.line, p.column, p.severity, p.message)
                                          for name, p in verdict.problems()))
        if reason == "invalid":
            if valid is not False:
                return j
            assert verdict is not None
            j.message = verdict.summary(shown)
            if eff.on_invalid == "record":
                return j
            if eff.on_invalid == "alert":
                j.action = "alert"
                return j
        return self._revert(v, eff, j, shown, earlier)

    def record_verdicts(self, items: list[tuple[int, Check]]) -> list[int]:
        """Verdicts that call for no action (valid, or not validated), in one commit: at
        1,000 versions/s a commit per verdict was the daemon's bottleneck. Returns the ids of
        the versions that still exist (a version gc'd meanwhile has nothing to record).

        Without an fsync of its own (the next capture's durable commit makes it durable): a
        verdict is derived from a version already stored, and one lost in a crash leaves the
        version "not validated", which a revert validates before it puts that version back.
        Under a busy disk this fsync per batch of verdicts held up the captures behind it."""
        store = self.store
        done: list[int] = []
        with store.transaction(durable=False):
            live = store.set_verdicts([(vid, verdict.valid) for vid, verdict in items])
            for vid, verdict in items:
                if vid not in live:
                    continue
                problems = [(name, p.line, p.column, p.severity, p.message)
                            for name, p in verdict.problems()]
                if problems:
                    store.add_problems(vid, problems)
                done.append(vid)
        return done

    # ----------------------------------------------------------------- revert
    def _revert(self, v: Version, eff: Effective, j: Judgement, shown: str,
                earlier: Mapping[int, Check] | None = None) -> Judgement:
        store = self.store
        head = store.head(v.file_id)
        if head is None or head.id != v.id:
            j.action = "superseded"
            return j
        key = (v.root_id, v.relpath)
        limit = int(eff.get("max_reverts_per_minute", DEFAULT_MAX_REVERTS))
        now = time.monotonic()
        recent = self._history.setdefault(key, deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= limit:
            j.action = "gave-up"
            j.message = (f"{shown}: reverted {len(recent)} times in the last minute; leaving "
                         f"version {v.id} in place (max_reverts_per_minute = {limit})")
            return j
        target, none_why = self._target(v, eff, j.reason, earlier)
        if target is None and none_why:
            j.action = "kept"
            j.message = f"{shown}: {none_why}; version {v.id} stays" + (
                f" ({j.message})" if j.message else "")
            return j
        # The disk must still hold what we recorded: then those bytes are safe in the store.
        [seen] = self.writer.recorder.observe([(v.root_id, v.relpath)])
        on_disk = seen.hash if seen.state in (FILE, LINK) else None
        if (v.present and on_disk != v.hash) or (not v.present and seen.state != MISSING):
            j.action = "superseded"
            return j
        with store.transaction():
            store.set_verdict(v.id, j.valid if j.valid is not None else None, kind="rejected")
        fs = RootFS(self.writer.roots[v.root_id].bpath)
        why = "invalid" if j.reason == "invalid" else "protected path"
        cleared = ""
        try:
            if target is not None:
                cleared = self._make_way(fs, v, j)
            if target is None:  # the path did not exist before: a protected area stays as it was
                fs.remove(v.relpath)
                nv = NewVersion(v.file_id, None, False, "reverted", "guardian", None, None,
                                note=f"removed: version {v.id} rejected ({why})", valid=None)
                st = None
            else:
                assert target.object_id is not None
                data = Objects(store).get(target.object_id)
                mode = target.mode or 0o100644
                st = fs.symlink(v.relpath, data) if stat.S_ISLNK(mode) else fs.write(
                    v.relpath, data, mode)
                nv = NewVersion(v.file_id, target.object_id, True, "reverted", "guardian",
                                st.st_mode, len(data),
                                note=f"version {v.id} rejected ({why}); content of version "
                                     f"{target.id} put back", valid=target.valid)
        except (OSError, OutsideRootError) as e:
            j.action = "failed"
            j.message = f"{shown}: cannot revert: {getattr(e, 'strerror', None) or e}"
            return j
        with store.transaction():
            j.reverted_version = store.add_version(nv, st=st)
        recent.append(now)
        j.action = "reverted"
        j.restored_from = target.id if target is not None else None
        j.message = (f"{shown}: version {v.id} rejected ({why}"
                     + (f": {j.message}" if j.message else "") + "); "
                     + (f"version {target.id} put back as version {j.reverted_version}"
                        if target is not None else f"removed (version {j.reverted_version})")
                     + cleared)
        return j

    def _make_way(self, fs: RootFS, v: Version, j: Judgement) -> str:
        """Clear the way to write ``v``'s path back when one of its directories was replaced
        by a symlink or a file (``mv conf conf.bak; ln -s elsewhere conf``): that is a change
        at the protected place too. What stands there is stored first (a link as a link
        version), then removed; the write then makes the directory again. Returns what to
        add to the message ("" if the way was clear)."""
        cur = b""
        for part in v.relpath.split(SEP)[:-1]:
            cur = cur + SEP + part if cur else part
            st = fs.lstat(cur)
            if st is None:
                return ""  # absent: the write makes it (and everything below it)
            if stat.S_ISDIR(st.st_mode):
                continue
            what, kept = self._take_out(fs, v, cur, j)
            return (f"; the {what} at {self.writer.roots[v.root_id].display(cur)} was "
                    f"removed first (kept as version {kept})")
        return ""

    def _take_out(self, fs: RootFS, v: Version, rel: bytes, j: Judgement) -> tuple[str, int]:
        """Store what is at ``rel`` (a symlink or a file), then remove it; return its kind and
        the version that holds it.

        It is renamed aside first, so what is stored is exactly what is removed, even if
        ``rel`` changes meanwhile; anything else (a directory back in place) is put back.
        """
        store = self.store
        with fs.parent(rel, create=False) as (dfd, name):
            tmp = TEMP_PREFIX + name[:150] + b"." + secrets.token_hex(4).encode()
            os.rename(name, tmp, src_dir_fd=dfd, dst_dir_fd=dfd)
            try:
                st = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    what, data = "symlink", os.readlink(tmp, dir_fd=dfd)
                elif stat.S_ISREG(st.st_mode) and st.st_size <= self.writer.recorder.max_size(
                        v.root_id, rel):
                    what, data = "file", _read_file(dfd, tmp)
                else:
                    raise IsADirectoryError(f"{os.fsdecode(rel)}: not a symlink or a file "
                                            "Guardian can store; left in place")
                h = digest(data)
                with store.transaction():
                    fid, head = store.file_and_head(v.root_id, rel)
                    if head is None or not head.present or head.hash != h \
                            or head.mode != st.st_mode:
                        fid = fid or store.new_file(v.root_id, rel)
                        oid = Objects(store).put(data, h)
                        kept = store.add_version(NewVersion(
                            fid, oid, True, "modified" if head and head.present else "created",
                            "guardian", st.st_mode, len(data),
                            note=f"captured before the revert of version {v.id}"))
                        j.recorded.append(kept)
                    else:
                        assert fid is not None
                        kept = head.id
            except BaseException:
                _put_back(dfd, tmp, name)
                raise
            os.unlink(tmp, dir_fd=dfd)
            os.fsync(dfd)
        with store.transaction():
            j.recorded.append(store.add_version(NewVersion(
                fid, None, False, "reverted", "guardian", None, None,
                note=f"removed: a {what} stood where the directory of "
                     f"{os.fsdecode(v.relpath)} belongs (version {v.id} rejected)")))
        return what, kept

    def _target(self, v: Version, eff: Effective, reason: str,
                earlier: Mapping[int, Check] | None = None) -> tuple[Version | None, str]:
        """The version to put back, or (None, why not) / (None, "") for "remove the file"."""
        store = self.store
        older = [x for x in store.versions_of(v.file_id) if x.id < v.id]
        if reason == "protected":
            # Whatever was there before the change, present or not.
            if not older:
                return None, ""
            prev = older[0]
            if not prev.present:
                return None, ""
            if prev.object_id is None:
                return None, "the previous version kept metadata only (over the size cap)"
            return prev, ""
        objects = Objects(store)
        path = self.writer.roots[v.root_id].display(v.relpath)
        for x in older:
            if not x.present or x.object_id is None or x.valid is False:
                continue
            if x.valid is None:  # never validated (a baseline): judge it now, or take the
                # verdict found in ``earlier`` (none there: not validated, like a too-large one)
                verdict = earlier.get(x.id) if earlier is not None else check(
                    eff, objects.get(x.object_id), path)
                if verdict is not None:
                    with store.transaction():
                        store.set_verdict(x.id, verdict.valid)
                if verdict is not None and verdict.valid is False:
                    continue
            return x, ""
        return None, "it never had a valid version to go back to"



def _read_file(dfd: int, name: bytes) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    try:
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def _put_back(dfd: int, tmp: bytes, name: bytes) -> None:
    """Undo the rename of ``name`` to ``tmp``, never replacing what may have taken its place
    meanwhile (a link for files and symlinks; a directory's rename only replaces an empty
    directory)."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.stat(tmp, dir_fd=dfd, follow_symlinks=False).st_mode):
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        else:
            os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            os.unlink(tmp, dir_fd=dfd)
