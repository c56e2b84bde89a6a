"""The batch writer's unit of work: one path with every operation on it folded together,
and the one error every refused or failed batch becomes."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from guardian.batch.manifest import Operation
from guardian.errors import BatchError
from guardian.kinds import Origin, VersionKind
from guardian.paths import Root, show
from guardian.rootfs import RootFS


def signature(st: os.stat_result) -> tuple[int, ...]:
    """What changes when anyone writes, replaces or chmods a file."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


@dataclass
class Target:
    """One path the batch touches, with every operation on it folded together."""

    root: Root
    relpath: bytes
    ops: list[Operation] = field(default_factory=list)
    kind: str = "absent"            # what is there now: file | link | absent | dir | other
    fs: RootFS | None = None        # shared by the batch's targets of one root (cached fds)
    current: bytes | None = None    # a file's bytes, a link's target
    current_mode: int | None = None
    current_uid: int | None = None
    current_gid: int | None = None
    final: bytes | None = None      # None: absent after the batch (a delete)
    final_dir: bool = False         # a mkdir
    final_link: bool = False        # ``final`` is a symlink's target (a restore)
    remove_dir: bool = False        # an rmdir (a restore: emptied, or replaced by a file)
    optional: bool = False          # an rmdir that may find the directory not empty
    deferred: bool = False          # written after the commit point: a parent of it is a
    #                                 file or link the batch removes first
    mode: int = 0o644
    optimisations: set[str] = field(default_factory=set)
    temp: bytes | None = None
    created_dirs: list[bytes] = field(default_factory=list)
    old_object_id: int | None = None
    new_object_id: int | None = None
    tmpfd: int | None = None        # an unnamed O_TMPFILE temp, open until linked
    oldfd: int | None = None        # the replaced file, held open: see release_later
    written: tuple[int, int] | None = None  # (st_dev, st_ino) of the temp written
    digest: bytes | None = None     # SHA-256 of final
    packed: tuple[str, bytes] | None = None  # final as the store keeps it (codec, bytes)
    current_digest: bytes | None = None  # SHA-256 of current (see guardian.batch.digests)
    read_sig: tuple[int, ...] | None = None  # the file as read (see signature)
    read_stat: os.stat_result | None = None  # the fstat of the file read (its bytes: current)
    valid: bool | None = None       # the validators' verdict on final (None: none ran)
    # How the new version is recorded (a restore's differ from a batch's).
    origin: Origin = "batch"
    version_kind: VersionKind | None = None  # None: created / modified / deleted
    note: str | None = None          # None: "batch N"
    skipped: bool = False            # an optional rmdir that found the directory in use
    _where: tuple[int, bytes] | None = None
    elapsed_ns: int = 0

    @property
    def shown(self) -> str:
        return show(self.root.join(self.relpath))

    @property
    def action(self) -> str:
        if self.final_dir:
            return "mkdir"
        if self.remove_dir:
            return "rmdir"
        if self.final is None:
            return "delete"
        return "link" if self.final_link else "write"

    @property
    def unchanged(self) -> bool:
        if self.final_dir:
            return self.kind == "dir"
        if self.remove_dir:
            return self.kind == "absent"
        if self.final is None:
            return self.kind == "absent"
        if self.final_link:
            return self.kind == "link" and self.final == self.current
        return self.kind == "file" and self.final == self.current and (
            self.current_mode is None or stat.S_IMODE(self.current_mode) == self.mode)

    def where(self, *, create: bool = False) -> tuple[int, bytes]:
        """(fd of the parent directory, name), found once per batch (a missing parent is not
        remembered: it raises FileNotFoundError until ``create`` makes it)."""
        if self._where is None:
            self._where = self.rootfs.locate(self.relpath, create=create)
        return self._where

    def forget_where(self) -> None:
        """Look the parent directory up again next time (it was made since)."""
        self._where = None

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
