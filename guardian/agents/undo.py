"""Undo what an agent did: a session, one prompt of it, the last N changes, or everything
since a time — Bash-made changes included — as one all-or-nothing batch.

Every file the chosen changes touched goes back to the version it had just before the first
of them: a file they created is removed, one they deleted comes back. It runs through the
batch engine (:func:`guardian.batch.protocol.execute_targets`), like ``guardian restore``:
journaled, crash-safe, and the current contents are in the store before anything is
replaced (they are recorded first).

A file someone else changed after the chosen changes (its newest version is not theirs, or
the disk differs from it) is a conflict: listed and left alone, unless ``force``. The undo
is itself recorded as a session (``undo-N``, agent ``guardian``), so it can be undone too.
"""

from __future__ import annotations

import os
import stat
import time
from typing import TYPE_CHECKING, Any

from guardian.batch import io as batchio
from guardian.batch.protocol import execute_targets
from guardian.batch.target import Target
from guardian.errors import NotFoundError, UsageError
from guardian.paths import SEP, Root, parents
from guardian.store.objects import Objects, digest
from guardian.timespec import iso

if TYPE_CHECKING:
    from pathlib import Path

    from guardian.store.db import Store, Version
    from guardian.writer import Writer

LOCK_TIMEOUT_S = 5.0
#: Files larger than this are counted as binary in the plan (no line counts).
DIFFSTAT_MAX = 1024 * 1024


class _File:
    """One file the undo looks at: what the chosen changes did to it, what it goes back to."""

    def __init__(self, root: Root, v: Version) -> None:
        self.root = root
        self.relpath = v.relpath
        self.file_id = v.file_id
        self.first = v
        self.last = v
        self.ambiguous = False
        self.before: Version | None = None
        self.head: Version | None = None
        self.conflict: str | None = None
        self.skip: str | None = None
        self.action = "unchanged"      # write | delete | unchanged
        self.state = "modified"        # modified | created | deleted
        self.insertions = 0
        self.deletions = 0
        self.binary = False
        self.version: int | None = None

    @property
    def path(self) -> str:
        return self.root.display(self.relpath)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "state": self.state,
                "to_version": self.before.id if self.before is not None else None,
                "changes": [self.first.id, self.last.id], "insertions": self.insertions,
                "deletions": self.deletions, "binary": self.binary,
                "ambiguous": self.ambiguous, "conflict": self.conflict, "skipped": self.skip,
                "version": self.version}


def _lines(data: bytes | None) -> list[bytes]:
    return [] if not data else data.splitlines()


def _diffstat(f: _File, old: bytes | None, new: bytes | None) -> None:
    if (old and (len(old) > DIFFSTAT_MAX or b"\0" in old[:8192])) or \
            (new and (len(new) > DIFFSTAT_MAX or b"\0" in new[:8192])):
        f.binary = True
        return
    import difflib

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
            None, _lines(old), _lines(new), autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            f.deletions += i2 - i1
        if tag in ("replace", "insert"):
            f.insertions += j2 - j1


def select(store: Store, *, session: str | None, prompt: str | None, last: int | None,
           since_ns: int | None) -> tuple[str, list[tuple[Version, bool]]]:
    """What the user chose: a description, and (version, ambiguous) oldest first."""
    if sum(x is not None for x in (session, prompt, last, since_ns)) != 1:
        raise UsageError("say what to undo: one of --session, --prompt, --last, --since")
    prompt_id = None
    if prompt is not None:
        prompt_id = store.agent_prompt_id(prompt)
        if prompt_id is None:
            raise NotFoundError(f"no prompt {prompt!r} recorded (see `guardian sessions ID`)")
    rows = store.agent_changes(session=session, prompt=prompt_id, last=last, since_ns=since_ns)
    what = (f"session {session}" if session is not None else
            f"prompt {prompt}" if prompt is not None else
            f"the last {last} changes" if last is not None else
            f"agent changes since {iso(since_ns or 0)}")
    seen: dict[int, bool] = {}
    versions: dict[int, Version] = {}
    for v, _call, _s, _p, _how, amb in rows:
        seen[v.id] = seen.get(v.id, False) or amb
        versions[v.id] = v
    if session is not None:  # also what was labelled so without a hook: MCP, batches
        for v in store.versions_labelled(session):
            # A batch labels the state it found before writing ("captured before a batch")
            # with its session too: that state is what an undo goes back to, not a change.
            if v.id not in versions and not (v.note or "").startswith("captured before"):
                seen[v.id], versions[v.id] = False, v
    if not versions:
        raise NotFoundError(f"nothing to undo: no changes recorded for {what}")
    return what, [(versions[i], seen[i]) for i in sorted(versions)]


def undo(writer: Writer, *, session: str | None = None, prompt: str | None = None,
         last: int | None = None, since_ns: int | None = None, dry_run: bool = False,
         force: bool = False, lock_timeout: float = LOCK_TIMEOUT_S) -> dict[str, Any]:
    store = writer.store
    roots = writer.recorder.roots
    what, chosen = select(store, session=session, prompt=prompt, last=last, since_ns=since_ns)
    files: dict[int, _File] = {}
    for v, amb in chosen:
        if v.root_id not in roots:
            continue
        f = files.get(v.file_id)
        if f is None:
            f = files[v.file_id] = _File(roots[v.root_id], v)
        f.last = v
        f.ambiguous = f.ambiguous or amb
    if not dry_run:  # every byte the undo may replace is in the store first
        writer.recorder.capture([(f.root.id, f.relpath) for f in files.values()],
                                origin="restore", confirm_missing=True)
    for f in files.values():
        f.before = store.version_before(f.file_id, f.first.id)
        f.head = store.head(f.file_id)
        if f.before is None or not f.before.present:
            f.state = "created"
        elif not f.last.present:
            f.state = "deleted"
        if f.head is not None and f.head.id != f.last.id:
            f.conflict = (f"changed after {what} (version {f.head.id}, {f.head.origin}, "
                          f"{iso(f.head.time_ns)})")
        if f.before is not None and f.before.present and f.before.object_id is None:
            f.skip = f"version {f.before.id} kept metadata only (over the size cap)"
    label = f"undo of {what}"
    start_ns = min(v.time_ns for v, _amb in chosen)
    targets = {f.file_id: Target(f.root, f.relpath, origin="restore", note=label)
               for f in files.values() if f.skip is None}
    objects = Objects(store)
    changing: list[Target] = []

    def plan(ts: list[Target], fds: batchio.Budget) -> list[Target]:
        removals: list[Target] = []
        writes: list[Target] = []
        for fid, t in targets.items():
            f = files[fid]
            batchio.look(t, fds)
            head = f.head
            on_disk = digest(t.current) if t.current is not None else None
            expected = head.hash if head is not None and head.present else None
            if f.conflict is None and t.kind in ("file", "link", "absent") and \
                    on_disk != expected:
                f.conflict = "changed on disk after the last recorded version"
            if t.kind in ("dir", "other"):
                f.conflict = f"is a {'directory' if t.kind == 'dir' else 'special file'} now"
            if f.conflict is not None and (not force or t.kind in ("dir", "other")):
                f.skip = "conflict"
                _drop(t)
                continue
            want = f.before if f.before is not None and f.before.present else None
            if want is None:
                if t.kind == "absent":
                    _drop(t)
                    continue
                _diffstat(f, t.current if t.kind == "file" else None, None)
                t.final, f.action = None, "delete"
                removals.append(t)
                continue
            assert want.object_id is not None and want.hash is not None
            is_link = want.mode is not None and stat.S_ISLNK(want.mode)
            mode = stat.S_IMODE(want.mode) if want.mode and not is_link else 0o644
            if t.kind == ("link" if is_link else "file") and on_disk == want.hash and (
                    is_link or stat.S_IMODE(t.current_mode or 0) == mode):
                _drop(t)
                continue
            t.final = objects.get(want.object_id)
            t.digest, t.new_object_id = want.hash, want.object_id
            t.final_link, t.mode = is_link, mode
            t.version_kind = "restored"
            _diffstat(f, t.current if t.kind == "file" else None, t.final)
            f.action = "write"
            _make_room(t)
            writes.append(t)
        removals += _emptied_dirs(store, removals, writes, files, since_ns=start_ns,
                                  label=label)
        removals.sort(key=lambda t: (-t.relpath.count(SEP), t.relpath))
        writes.sort(key=lambda t: t.relpath)
        changing[:] = removals + writes
        return changing

    out: dict[str, Any] = {"what": what, "dry_run": dry_run, "batch": None, "session": None,
                           "versions": []}
    if targets:
        undo_session = None if dry_run else f"undo-{_next_undo(store)}"
        done = execute_targets(writer, list(targets.values()), plan, lock_timeout=lock_timeout,
                               session=undo_session, dry_run=dry_run)
        if not dry_run and done.batch_id is not None and undo_session is not None:
            out.update(batch=done.batch_id, session=undo_session, versions=done.versions)
            for f in files.values():
                f.version = done.version_of.get(f.relpath) if f.action != "unchanged" else None
            _record(store, undo_session, label, done.versions)
    listed = sorted(files.values(), key=lambda f: f.path)
    out["files"] = [f.to_json() for f in listed]
    out["removed_dirs"] = sorted(t.shown for t in changing if t.remove_dir and not t.skipped)
    out["conflicts"] = sum(1 for f in listed if f.conflict is not None)
    out["skipped"] = sum(1 for f in listed if f.skip is not None)
    out["changed"] = sum(1 for f in listed if f.action != "unchanged")
    return out


def request(store_path: Path, params: dict[str, Any]) -> dict[str, Any]:
    """:func:`undo` with ``params`` where every caller runs it: by the daemon when one runs,
    else here under the writer lock (after recovering an interrupted batch)."""
    from guardian.client import as_writer

    def direct(writer: Writer) -> Any:
        from guardian.batch import recovery

        if not params.get("dry_run"):
            recovery.recover(writer)
        return undo(writer, **params)

    out: dict[str, Any] = as_writer(store_path, "undo", params, direct)
    return out


def _emptied_dirs(store: Store, removals: list[Target], writes: list[Target],
                  files: dict[int, _File], *, since_ns: int, label: str) -> list[Target]:
    """The directories the undone changes made, now emptied by removing what they created.

    A directory goes only when it holds nothing once the undo's removals are done and every
    file the store ever saw in it first appeared at or after the first undone change: then
    it came with those changes, as far as anyone can tell. (An empty directory that was there
    before and held nothing Guardian recorded looks the same; it is removed too, and the plan
    lists it.) An rmdir of a directory that is not empty fails in the batch, which leaves it."""
    states = {(f.root.id, f.relpath): f.state for f in files.values()}
    created = {(t.root.id, t.relpath) for t in removals
               if states.get((t.root.id, t.relpath)) == "created"}
    written = {(t.root.id, d) for t in writes for d in parents(t.relpath)}
    gone = {(t.root.id, t.relpath) for t in removals}
    out: list[Target] = []
    seen: set[tuple[int, bytes]] = set()
    roots = {t.root.id: t for t in removals}
    # Deepest first, so a parent sees its emptied children as gone.
    for rid, d in sorted({(rid, p) for rid, rel in created for p in parents(rel)},
                         key=lambda k: -k[1].count(SEP)):
        if (rid, d) in seen or (rid, d) in written:
            continue
        seen.add((rid, d))
        fs = roots[rid].rootfs
        st = fs.lstat(d)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        try:
            names = fs.names(d)
        except OSError:
            continue
        if any((rid, d + SEP + n) not in gone for n in names):
            continue
        if any(t < since_ns for _kind, t in store.first_versions(rid, d).values()):
            continue  # it held a file before the changes: it was there before them
        t = Target(roots[rid].root, d, origin="restore", remove_dir=True, optional=True,
                   note=label)
        t.fs = fs  # the batch's own (caching) view of the root, as its other targets use
        batchio.look(t, batchio.Budget(0))
        gone.add((rid, d))
        out.append(t)
    return out


def _drop(t: Target) -> None:
    t.current = None
    if t.oldfd is not None:
        os.close(t.oldfd)
        t.oldfd = None


def _make_room(t: Target) -> None:
    """The directories a write needs made (a file whose directory was removed too)."""
    made: list[bytes] = []
    for d in reversed(parents(t.relpath)):
        if made:
            made.append(d)
            continue
        st = t.rootfs.lstat(d)
        if st is None:
            made.append(d)
        elif not stat.S_ISDIR(st.st_mode):
            raise t.error(f"{t.root.display(d)} is not a directory now; not undoing under it",
                          "conflict")
    t.created_dirs = made


def _next_undo(store: Store) -> int:
    with store.transaction():
        return store.meta_incr("agent_undo_count")


def _record(store: Store, session: str, label: str, versions: list[int]) -> None:
    """The undo as a session of its own, so ``guardian undo --session undo-N`` undoes it."""
    now = time.time_ns()
    with store.transaction():
        store.agent_session_seen(session, "guardian", now, detail=label, ended=True)
        call = store.agent_call_add(session, None, None, "undo", "undo", now, command=label,
                                    outcome="done", ended=True)
        store.agent_label([(v, call, session, None, "undo", False) for v in versions])
