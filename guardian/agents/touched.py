"""The files a session (or one prompt of it) touched, one entry per file: what it did to
each (created, modified, deleted), how Guardian knows (a write tool, a Bash window, a label)
and the version an undo would put back. The TUI's sessions screen lists these; the version
set is :func:`guardian.agents.undo.select`'s, so the list and the undo agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from guardian.agents.undo import select
from guardian.errors import NotFoundError

if TYPE_CHECKING:
    from guardian.store.db import Store, Version


@dataclass(frozen=True, slots=True)
class Touched:
    root_id: int
    relpath: bytes
    path: str
    state: str                  # created | modified | deleted (as an undo sees it)
    by: tuple[str, ...]         # "tool", "window" (Bash), "undo", "label" (batch, MCP)
    ambiguous: bool             # a window open beside another: the credit is a guess
    before: Version | None      # what it was before (None: it did not exist)
    last: Version               # the newest version the session or prompt made
    changes: int                # versions of it the session or prompt made


def touched(store: Store, *, session: str | None = None,
            prompt: str | None = None) -> list[Touched]:
    """Every file ``session`` (or ``prompt``, as ``guardian undo --prompt`` names it) changed,
    by path; [] when it changed nothing."""
    try:
        _what, chosen = select(store, session=session, prompt=prompt, last=None, since_ns=None)
    except NotFoundError:
        return []
    prompt_id = store.agent_prompt_id(prompt) if prompt is not None else None
    how: dict[int, set[str]] = {}
    for v, _call, _s, _p, h, _amb in store.agent_changes(session=session, prompt=prompt_id):
        how.setdefault(v.id, set()).add(h)
    roots = {r.id: r for r in store.roots()}
    files: dict[int, list[tuple[Version, bool]]] = {}
    for v, amb in chosen:
        if v.root_id in roots:
            files.setdefault(v.file_id, []).append((v, amb))
    out = []
    for vs in files.values():
        first, last = vs[0][0], vs[-1][0]
        before = store.version_before(first.file_id, first.id)
        state = ("created" if before is None or not before.present else
                 "deleted" if not last.present else "modified")
        by = sorted({h for v, _ in vs for h in how.get(v.id, {"label"})})
        out.append(Touched(first.root_id, first.relpath, roots[first.root_id].display(
            first.relpath), state, tuple(by), any(a for _, a in vs), before, last, len(vs)))
    return sorted(out, key=lambda t: t.path)
