"""Repair of damaged objects (``guardian verify --repair``), in the store's writer.

Each damaged object is marked, so the next intact copy of its bytes rewrites it; with
``reread`` the paths that ever held it are read now (through the recorder, which reads a tree
safely: no FIFOs, no symlinks followed) and the first whose bytes hash right rewrites it.
"""

from __future__ import annotations

from typing import Any

from guardian.capture.recorder import FILE, LINK, Recorder
from guardian.errors import UsageError


def repair(recorder: Recorder, hashes: list[str], reasons: dict[str, str], *,
           reread: bool) -> dict[str, Any]:
    """Mark each damaged object (by SHA-256); with ``reread``, rewrite it from the first path
    that ever held it and still holds bytes that hash right (the file's own history first).

    Runs in the store's writer: the daemon's store thread, or the CLI holding the lock.
    """
    store, objects, roots = recorder.store, recorder.objects, recorder.roots
    out: list[dict[str, Any]] = []
    for x in hashes:
        if len(x) != 64 or x.strip("0123456789abcdef"):
            raise UsageError(f"{x!r}: not a SHA-256 (64 hex digits)")
    with store.transaction():
        for x in hashes:
            h = bytes.fromhex(x)
            store.mark_damaged(h, reasons.get(x, "found damaged by guardian verify"))
    if not reread:
        return {"marked": len(hashes), "objects": []}
    for x in hashes:
        h = bytes.fromhex(x)
        oid = objects.lookup(h)
        entry: dict[str, Any] = {"sha256": x, "repaired": False, "from": None, "tried": []}
        out.append(entry)
        if oid is None:
            entry["why"] = "no longer in the store"
            continue
        for root_id, rel in store.paths_of_object(oid, roots):
            path = roots[root_id].display(rel)
            seen = recorder.observe([(root_id, rel)])[0]
            if seen.state not in (FILE, LINK) or seen.hash != h or seen.data is None:
                entry["tried"].append(path)
                continue
            with store.transaction():
                done = objects.rewrite(oid, seen.data, h)
                objects.sync()
            if done:
                entry.update(repaired=True, **{"from": path})
                break
        if not entry["repaired"]:
            entry["why"] = ("no path still holds those bytes" if entry["tried"]
                            else "no version of a watched path uses it")
    return {"marked": len(hashes), "objects": out}
