"""An undo's plan (or result) as a diffstat: what ``guardian undo`` prints and the TUI's
sessions screen shows before it asks."""

from __future__ import annotations

from typing import Any


def render_plan(out: dict[str, Any], force: bool,
                force_hint: str = "--force undoes it anyway") -> str:
    """The undo as a diffstat: one line per file, then the totals (``force_hint``: how to
    undo a conflicting file anyway, where this is shown)."""
    files = out["files"]
    width = max((len(f["path"]) for f in files), default=0)
    width = min(width, 60)
    lines = [f"{'would undo' if out['dry_run'] else 'undid'} {out['what']}"
             + (f" (recorded as session {out['session']}, batch {out['batch']})"
                if out.get("session") else "") + ":"]
    ins = dels = 0
    for f in files:
        if f["skipped"]:
            why = f["conflict"] if f["skipped"] == "conflict" else f["skipped"]
            hint = f"; skipped ({force_hint})" if f["skipped"] == "conflict" \
                and not force else "; skipped"
            lines.append(f" ! {f['path']:<{width}} | conflict: {why}{hint}" if
                         f["skipped"] == "conflict" else f" ! {f['path']:<{width}} | {why}")
            continue
        if f["action"] == "unchanged":
            lines.append(f"   {f['path']:<{width}} | already as before")
            continue
        mark = {"created": "D", "deleted": "A"}.get(f["state"], "M")
        what = {"created": "created by it: removed", "deleted": "deleted by it: restored"}.get(
            f["state"], f"back to version {f['to_version']}")
        if f["binary"]:
            stat = "Bin"
        else:
            n = f["insertions"] + f["deletions"]
            stat = f"{n:>3} " + "+" * min(f["insertions"], 30) + "-" * min(f["deletions"], 30)
            ins += f["insertions"]
            dels += f["deletions"]
        amb = " (ambiguous window)" if f["ambiguous"] else ""
        conflict = " (conflict, forced)" if f["conflict"] else ""
        lines.append(f" {mark} {f['path']:<{width}} | {stat}  {what}{amb}{conflict}")
    verb = "would remove" if out["dry_run"] else "removed"
    lines += [f" - {d}/ (made by it: {verb}, now empty)" for d in out.get("removed_dirs", [])]
    lines.append(f" {out['changed']} file{'s' if out['changed'] != 1 else ''} changed, "
                 f"{ins} insertion{'s' if ins != 1 else ''}(+), "
                 f"{dels} deletion{'s' if dels != 1 else ''}(-)"
                 + (f", {out['skipped']} skipped" if out["skipped"] else ""))
    return "\n".join(lines)
