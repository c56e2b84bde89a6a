"""What ``guardian sessions`` shows: each agent session seen, its prompts, tool calls, the
files it touched (by write tools, and by Bash windows, which are windows in time) and the
writes Guardian refused."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from guardian.timespec import iso

if TYPE_CHECKING:
    from guardian.store.db import Store


def _files(store: Store, session: str, roots: dict[int, Any]) -> list[dict[str, Any]]:
    by_path: dict[str, dict[str, Any]] = {}
    for rid, rel, how, amb in store.agent_files(session):
        root = roots.get(rid)
        path = root.display(rel) if root is not None else os.fsdecode(rel)
        f = by_path.setdefault(path, {"path": path, "by": [], "ambiguous": False})
        f["by"].append(how)
        f["ambiguous"] = f["ambiguous"] or amb
    return list(by_path.values())


def summaries(store: Store, session: str | None = None) -> list[dict[str, Any]]:
    """One dict per session (newest first); with ``session``, its prompts and calls too."""
    roots = {r.id: r for r in store.roots()}
    out = []
    for s in store.agent_sessions(session):
        files = _files(store, s["id"], roots)
        d = {**s, "started": iso(s["started_ns"]), "last": iso(s["last_ns"]),
             "ended": iso(s["ended_ns"]) if s["ended_ns"] else None,
             "files": files, "files_by_tools": sum(1 for f in files if "tool" in f["by"]),
             "files_by_bash": sum(1 for f in files if "window" in f["by"])}
        if session is not None:
            calls = store.agent_calls(s["id"])
            d["prompt_list"] = [{**p, "started": iso(p["started_ns"]),
                             "calls": [c["id"] for c in calls if c["prompt"] == p["id"]]}
                            for p in store.agent_prompts(s["id"])]
            d["calls"] = [{**c, "started": iso(c["started_ns"])} for c in calls]
        out.append(d)
    return out


def render(items: list[dict[str, Any]], detail: bool) -> str:
    if not items:
        return "no agent sessions recorded (install the hooks: guardian hook install --claude)"
    lines = []
    for s in items:
        span = s["started"] + " .. " + (s["ended"] or s["last"])
        lines.append(f"{s['id']}  {s['agent']}  {span}")
        lines.append(f"  {s['prompts']} prompts, {s['write_calls']} write calls, "
                     f"{s['bash_calls']} Bash commands, {len(s['files'])} files touched "
                     f"({s['files_by_tools']} by write tools, {s['files_by_bash']} in Bash "
                     f"windows), {s['rejected']} writes refused")
        if detail:
            for p in s.get("prompt_list", []):
                text = (p["text"] or "").replace("\n", " ")
                lines.append(f"  prompt {p['id']}  {p['started']}  {text[:70]}")
            for c in s.get("calls", []):
                what = c["command"] if c["kind"] == "window" else ", ".join(c["paths"])
                why = f"  ({c['reason']})" if c["reason"] else ""
                sub = f" [subagent {c['agent_id']}]" if c.get("agent_id") else ""
                lines.append(f"    call {c['id']}{sub}  {c['tool']}  {c['outcome']}  "
                             f"{(what or '')[:80]}{why[:200]}")
            for f in s["files"]:
                amb = " (ambiguous window)" if f["ambiguous"] else ""
                lines.append(f"    {'+'.join(sorted(set(f['by'])))}: {f['path']}{amb}")
    return "\n".join(lines)
