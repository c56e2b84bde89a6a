"""The intent log of a batch: before any byte moves, what each target holds and will hold is
in the store, and one journal entry per target says what the batch does to it (in one
transaction with the old and new contents). Recovery reads the entries back as targets.

SQL is the store's (:class:`guardian.store.db.Store`'s journal methods); this module decides
what an entry says.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import time
from typing import TYPE_CHECKING, Any

from guardian import faults
from guardian.batch.target import Target, signature
from guardian.kinds import VersionKind
from guardian.paths import SEP, TEMP_PREFIX
from guardian.store.db import Head, NewVersion, Store
from guardian.store.objects import Objects

if TYPE_CHECKING:
    from guardian.writer import Writer


def current_heads(store: Store, targets: list[Target]) -> list[Head | None]:
    by_root: dict[int, list[bytes]] = {}
    for t in targets:
        by_root.setdefault(t.root.id, []).append(t.relpath)
    found = {rid: store.heads(rid, rels) for rid, rels in by_root.items()}
    return [found[t.root.id].get(t.relpath) for t in targets]


def prepare(writer: Writer, targets: list[Target], session: str | None, *,
             durable: bool = True) -> int:
    """The intent, durably, in one transaction: the batch, its new contents, and one entry
    per target (its old and new contents' objects, its temp's name)."""
    store = writer.store
    # What is there now is in the store, durably, before anything is overwritten. With a
    # daemon keeping up, the newest versions already are what we read: nothing to capture.
    heads = current_heads(store, targets)
    current = [(t.current_digest or hashlib.sha256(t.current).digest())
               if holds_content(t) and t.current is not None else None for t in targets]
    stale = []
    for i, t in enumerate(targets):
        head = heads[i]
        live = head is not None and head.present
        if holds_content(t):
            if head is None or not live or head.hash != current[i] \
                    or head.mode != t.current_mode:
                stale.append(i)
        elif live:
            stale.append(i)
    what = "restore" if targets[0].origin == "restore" else "batch"
    note = f"captured before a {what}"
    held = [i for i in stale if read_whole(writer, targets[i])]
    recorded = set(held)
    others = [i for i in stale if i not in recorded]
    if others:
        writer.recorder.capture([(targets[i].root.id, targets[i].relpath) for i in others],
                                origin=targets[0].origin, confirm_missing=True,
                                session=session, note=note)
        for i in others:
            heads[i] = Head.of(store.file_and_head(targets[i].root.id, targets[i].relpath)[1])
    faults.point("batch.prepare")
    token = secrets.token_hex(4).encode()
    with store.transaction(durable=durable):
        if held:  # in the journal's transaction: durable with it, before any byte moves
            for i, head in zip(held, record_read(store, [targets[i] for i in held],
                                                  [current[i] for i in held], heads=[
                                                      heads[i] for i in held],
                                                  session=session, note=note), strict=True):
                heads[i] = head
        batch_id = store.begin_batch(session, len(targets))
        suffix = b".b" + str(batch_id).encode() + b"." + token
        rows = []
        extra: dict[tuple[Any, ...], str] = {}  # a batch's files share dirs (and notes)
        new_ids = store_new(store, targets)
        for seq, t in enumerate(targets):
            head = heads[seq]
            if holds_content(t):
                if head is None or not head.present or head.object_id is None:
                    raise t.error("its current content could not be stored (over the size "
                                  "cap); not overwriting it", "system")
                if head.hash != current[seq]:
                    raise t.error("changed while the batch ran (another program wrote it); "
                                  "not replacing it", "conflict")
                t.old_object_id = head.object_id
            if t.final is not None and t.new_object_id is None:
                t.new_object_id = new_ids[t.digest] if t.digest else None
            if not (t.final_dir or t.remove_dir):
                # A name even when the content goes through an unnamed O_TMPFILE: the
                # fallback, and what recovery looks for; a deleted file is moved aside
                # under it before it is unlinked (see batchio._remove).
                t.temp = TEMP_PREFIX + t.relpath.rpartition(SEP)[2][:120] + suffix
            key = (tuple(t.created_dirs), t.origin, t.version_kind, t.note, t.deferred,
                   t.optional)
            if key not in extra:
                extra[key] = entry_extra(t)
            rows.append((batch_id, seq, t.root.id, t.relpath, t.action,
                         int(holds_content(t)), t.old_object_id, t.current_mode,
                         t.new_object_id, t.mode, t.temp, extra[key]))
        store.add_batch_entries(rows)
    return batch_id


def read_whole(writer: Writer, t: Target) -> bool:
    """Whether what the batch read of ``t`` can be recorded as its current version as it is
    (no second read): a regular file read whole through a descriptor still open and
    unchanged since (same signature), that the recorder would store in full (not ignored,
    not over the size cap, not a rule or ignore file, whose change the recorder acts on)."""
    if t.kind != "file" or t.current is None or t.oldfd is None or t.read_stat is None:
        return False
    name = t.relpath.rpartition(SEP)[2]
    if name.startswith(b".") and (name == b".gitignore" or name.startswith(b".guardian")):
        return False
    recorder = writer.recorder
    try:
        if signature(os.fstat(t.oldfd)) != t.read_sig:
            return False  # written while it was read: the recorder reads it again
        if recorder.ignore[t.root.id].ignored(t.relpath):
            return False
        return len(t.current) <= recorder.max_size(t.root.id, t.relpath)
    except (OSError, KeyError):
        return False


def record_read(store: Store, targets: list[Target], hashes: list[bytes | None],
                 heads: list[Head | None], *, session: str | None, note: str
                 ) -> list[Head]:
    """Record the bytes the batch read of each target as its newest version (inside the
    caller's transaction): what a capture would have stored, without reading it again."""
    objects = Objects(store)
    items: list[tuple[bytes, bytes, tuple[str, bytes] | None]] = [
        (h, t.current, None) for t, h in zip(targets, hashes, strict=True)
        if h is not None and t.current is not None]
    ids = objects.put_many(items)
    objects.sync()
    now = time.time_ns()
    rows: list[tuple[int, bytes, NewVersion, os.stat_result | None]] = []
    out = []
    for t, h, head in zip(targets, hashes, heads, strict=True):
        assert h is not None and t.current is not None and t.read_stat is not None
        kind: VersionKind = "created" if head is None or not head.present else "modified"
        rows.append((t.root.id, t.relpath, NewVersion(
            0, ids[h], True, kind, t.origin, t.read_stat.st_mode, len(t.current), note=note,
            session=session), t.read_stat))
        out.append(Head(ids[h], h, True, t.read_stat.st_mode))
    store.add_versions(rows, now)
    return out


def holds_content(t: Target) -> bool:
    """Whether what is at the target now is content the store keeps (a file, a link)."""
    return t.kind in ("file", "link")


def entry_extra(t: Target) -> str:
    """The ``created_dirs`` column of a journal entry: the directories the batch made for
    it, as a JSON list; with what recovery needs to finish a restore's entry the same way
    (how its version is recorded; whether it waits for a removal; whether an rmdir may find
    the directory in use), a JSON object holding that list under ``dirs``."""
    dirs = [os.fsdecode(d) for d in t.created_dirs]
    if t.origin == "batch" and not (t.deferred or t.optional):
        return json.dumps(dirs)
    return json.dumps({"dirs": dirs, "origin": t.origin, "kind": t.version_kind,
                       "note": t.note, "deferred": t.deferred, "optional": t.optional})


def store_new(store: Store, targets: list[Target]) -> dict[bytes, int]:
    """Store every new content (inside the caller's transaction); hash -> object id. A
    content that comes from the store already (a restore's) is known by its object."""
    objects = Objects(store)
    for t in targets:
        if t.final is not None and t.digest is None:
            t.digest = hashlib.sha256(t.final).digest()
    ids = objects.put_many([(t.digest, t.final, t.packed) for t in targets
                            if t.digest is not None and t.final is not None
                            and t.new_object_id is None])
    objects.sync()
    return ids


def entries_as_targets(writer: Writer, batch_id: int) -> list[Target]:
    """The journal's entries of a batch, as targets again (recovery finishes or undoes them)."""
    rows = writer.store.batch_entries(batch_id)
    objects = Objects(writer.store)
    out = []
    for rid, rel, action, old_present, old_oid, old_mode, new_oid, new_mode, temp, extra in rows:
        root = writer.roots.get(rid)
        if root is None:
            continue
        meta = json.loads(extra or "[]")
        if isinstance(meta, list):
            meta = {"dirs": meta}
        kind = "absent"
        if old_present:
            kind = "link" if old_mode is not None and stat.S_ISLNK(old_mode) else "file"
        t = Target(root, bytes(rel), kind=kind, current_mode=old_mode,
                   old_object_id=old_oid, new_object_id=new_oid, mode=new_mode or 0o644,
                   temp=bytes(temp) if temp else None,
                   created_dirs=[os.fsencode(d) for d in meta.get("dirs", [])],
                   origin=meta.get("origin", "batch"), version_kind=meta.get("kind"),
                   note=meta.get("note"), deferred=bool(meta.get("deferred")),
                   optional=bool(meta.get("optional")))
        if action == "mkdir":
            t.final_dir = True
            t.kind = "absent"
        elif action == "rmdir":
            t.remove_dir = True
            t.kind = "dir"
        elif action in ("write", "link"):
            t.final = objects.get(new_oid)
            t.final_link = action == "link"
        out.append(t)
    return out
