"""Recovery of batches a crash interrupted (``guardian recover``, the daemon at start,
``guardian apply``): a batch only prepared is rolled back, a committed one rolled forward
(after recording whatever another program wrote to a target meanwhile); leftover temp files
of ours go.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardian.batch.intent import entries_as_targets
from guardian.batch.protocol import (
    abandon,
    finish,
    mode_is,
    now_on_disk,
    remove_temp,
    rmdir_quietly,
    roll_back,
)
from guardian.batch.target import Target
from guardian.paths import SEP, TEMP_PREFIX, Root
from guardian.store.objects import Objects

if TYPE_CHECKING:
    from guardian.writer import Writer


@dataclass
class Recovered:
    batch_id: int
    state_before: str
    outcome: str            # rolled_back | completed
    files: int

    def to_json(self) -> dict[str, Any]:
        return {"batch": self.batch_id, "was": self.state_before, "outcome": self.outcome,
                "files": self.files}


def recover(writer: Writer) -> list[Recovered]:
    """Finish or undo every batch a crash interrupted; remove its temp files."""
    store = writer.store
    out: list[Recovered] = []
    for batch_id, state, session in store.unfinished_batches():
        targets = entries_as_targets(writer, batch_id)
        if state == "prepared":
            abandon(writer, batch_id, targets)
            out.append(Recovered(batch_id, state, "rolled_back", len(targets)))
            continue
        try:
            # Whatever another program wrote to a target since the crash is kept first.
            others = _written_by_others(writer, targets)
            if others:
                writer.recorder.capture(others, origin="scan", confirm_missing=False,
                                 note=f"captured before completing batch {batch_id}")
            _roll_forward(writer, targets)
            finish(writer, batch_id, targets, session, verify=True)
            out.append(Recovered(batch_id, state, "completed", len(targets)))
        except Exception as e:
            roll_back(writer, batch_id, targets, f"recovery: {e}")
            out.append(Recovered(batch_id, state, "rolled_back", len(targets)))
    return out


def _written_by_others(writer: Writer, targets: list[Target]) -> list[tuple[int, bytes]]:
    """Targets that hold neither their old nor their new content."""
    objects = Objects(writer.store)
    out = []
    for t in targets:
        if t.final_dir or t.remove_dir:
            continue
        what, now = now_on_disk(t)
        if what in ("absent", "other"):
            continue
        if t.final is not None and (what == "link") == t.final_link and now == t.final:
            continue
        if t.old_object_id is not None and (what == "link") == (t.kind == "link") \
                and objects.get(t.old_object_id) == now:
            continue
        out.append((t.root.id, t.relpath))
    return out


def _roll_forward(writer: Writer, targets: list[Target]) -> None:
    for t in targets:
        fs = t.rootfs
        if t.final_dir:
            fs.makedirs(t.relpath)
            continue
        if t.remove_dir:
            try:
                rmdir_quietly(fs, t.relpath)
            except (FileNotFoundError, NotADirectoryError):
                pass  # gone already (a file of the batch may stand there now)
            except OSError as e:  # in use
                if not (t.optional and e.errno in (errno.ENOTEMPTY, errno.EEXIST)):
                    raise
            fs.forget(t.relpath)
            continue
        if t.final is None:  # (a directory the batch made may stand there already)
            if now_on_disk(t)[0] in ("file", "link"):
                fs.remove(t.relpath)
            remove_temp(t, t.temp)  # moved aside before it was unlinked
            continue
        want = ("link" if t.final_link else "file", t.final)
        if now_on_disk(t) == want and (t.final_link or mode_is(t, t.relpath)):
            remove_temp(t, t.temp)
            continue
        d = t.relpath.rpartition(SEP)[0]
        temp_rel = (d + SEP + t.temp if d else t.temp) if t.temp else None
        temp_holds = False
        if temp_rel is not None:
            temp_holds = now_on_disk(Target(t.root, temp_rel, fs=fs)) == want
        if temp_holds and (t.final_link or mode_is(t, temp_rel or b"")):
            with fs.parent(t.relpath, create=False) as (dfd, name):
                os.rename(t.temp or b"", name, src_dir_fd=dfd, dst_dir_fd=dfd)
            fs.fsync_dir(d)
        else:
            if t.final_link:
                fs.symlink(t.relpath, t.final)
            else:
                fs.write(t.relpath, t.final, t.mode)
            remove_temp(t, t.temp)


def sweep_temps(root: Root) -> int:
    """Remove Guardian temp files left anywhere under a root (their data is in the store).

    An explicit stack, like :func:`guardian.scan.walk`: the tree's depth is untrusted (os.walk
    recurses once per level). Symlinks are neither followed nor removed.
    """
    removed = 0
    stack = [root.bpath]
    while stack:
        d = stack.pop()
        try:
            entries = os.scandir(d)
        except OSError:
            continue  # vanished or unreadable: nothing of ours can be swept there
        with entries:
            for entry in entries:
                name = entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if name != b".git":
                        stack.append(entry.path)
                elif name.startswith(TEMP_PREFIX):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed += 1
    return removed
