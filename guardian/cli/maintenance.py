"""The store's upkeep: ``status``, ``verify``, ``gc``, ``recover``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from guardian.cli.common import explicit_store, find_store, human_size, print_json
from guardian.cli.observe import metrics_summary
from guardian.errors import GuardianError, UsageError
from guardian.exitcodes import ExitCode

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from guardian.writer import Writer



def cmd_status(args: argparse.Namespace) -> int:
    from guardian.locations import find_store_for

    store_path = explicit_store(args) or find_store_for(Path.cwd())
    info = _status(store_path) if store_path is not None else {
        "running": False, "store": None, "roots": []}
    if args.json:
        print_json(info)
    else:
        print(render_status(info))
    return ExitCode.OK


def _status(store_path: Path) -> dict[str, Any]:
    """The daemon's status, or the same read from the store when no daemon runs."""
    from guardian.client import daemon
    from guardian.store.db import Store, store_size
    from guardian.timespec import iso

    conn = daemon(store_path, timeout=10)
    if conn is not None:
        with conn:
            info: dict[str, Any] = conn.call("status")
            return info
    with Store.open(store_path, write=False) as store:
        c = store.counts()
        return {
            "running": False, "pid": None, "store": str(store_path),
            "roots": [str(r.path) for r in store.roots()],
            "files": c["files"], "versions": c["versions"], "objects": c["objects"],
            "store_bytes": store_size(store_path),
            "last_event": iso(c["last_version_ns"]) if c["last_version_ns"] else None,
            "reconcile_count": int(store.meta_get("reconcile_count") or 0),
            "metrics": metrics_summary(store),
        }


def render_status(info: dict[str, Any]) -> str:
    state = f"running (pid {info.get('pid')})" if info["running"] else "not running"
    lines = [f"daemon:     {state}",
             f"store:      {info.get('store') or '(none covers ' + os.getcwd() + ')'}"]
    lines += [f"root:       {r}" for r in info.get("roots", [])]
    if "files" in info:
        lines += [f"files:      {info['files']}",
                  f"versions:   {info['versions']}",
                  f"store size: {human_size(info['store_bytes'])}",
                  f"last event: {info.get('last_event') or '-'}",
                  f"reconciles: {info.get('reconcile_count', 0)}"]
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    from guardian.progress import Progress
    from guardian.store.db import DamagedStoreError, Store
    from guardian.store.verify import unopenable, verify

    store_path = find_store(args, None)
    try:
        store = Store.open(store_path, write=False)
    except DamagedStoreError as e:  # damage is what verify reports: exit 1, not 2
        result = unopenable(e, full=args.full)
    else:
        with store:
            progress = Progress("verify")
            try:
                result = verify(store, progress, full=args.full)
            finally:
                progress.close()
    report = result.to_json()
    fixed: dict[str, Any] = {}
    problem = ""
    if result.damaged and not result.database_ok:
        problem = ("the database itself is damaged: nothing was written to it (objects are "
                   "marked and repaired once it is sound)")
    elif result.damaged:
        try:
            done = _repair(store_path, result, reread=args.repair)
            fixed = {o["sha256"]: o for o in done["objects"]}
        except GuardianError as e:
            problem = f"the damaged objects could not be marked for repair: {e}"
    remaining = [d for d in result.damaged if not fixed.get(d.sha256, {}).get("repaired")]
    ok = result.database_ok and not remaining
    if args.repair:
        for c in report["corrupt"]:
            o = fixed.get(c["sha256"], {})
            c["repaired"] = bool(o.get("repaired"))
            c["repaired_from"] = o.get("from")
        report["ok"] = ok
    if args.json:
        if problem:
            report["repair_error"] = problem
        print_json(report)
    else:
        damage = render_damage(result, fixed, repair=args.repair)
        if damage:
            print(damage)
        if problem:
            print(f"guardian verify: {problem}", file=sys.stderr)
        print(render_verdict(result, len(remaining), repair=args.repair, problem=problem))
    return ExitCode.OK if ok else ExitCode.FAILURE


def render_damage(result: Any, fixed: dict[str, Any], *, repair: bool) -> str:
    """What ``guardian verify`` found damaged, each object with its versions and repair."""
    lines = []
    if not result.database_ok:
        hit = f"; hit: {', '.join(result.database_hit)}" if result.database_hit else ""
        lines.append(f"database: damaged ({result.database_check}: {result.database_message})"
                     f"{hit}")
    for d in result.damaged:
        lines.append(f"corrupt object {d.sha256}: {d.reason}")
        lines += [f"  used by version {v['id']} of {v['path']} ({v['time']})" for v in d.versions]
        o = fixed.get(d.sha256)
        if o and o.get("repaired"):
            lines.append(f"  repaired from {o['from']}")
        elif o and repair:
            lines.append(f"  not repaired: {o.get('why')}")
    return "\n".join(lines)


def render_verdict(result: Any, remaining: int, *, repair: bool, problem: str) -> str:
    """``guardian verify``'s last line (and the hint to repair)."""
    status = "ok" if result.ok else f"{len(result.damaged)} damaged"
    if not result.database_ok:
        status += ", database damaged"
    if repair and result.damaged:
        status += f", {len(result.damaged) - remaining} repaired"
    out = f"{result.objects} objects, {human_size(result.bytes)} checked: {status}"
    if result.damaged and not repair and not problem:
        out += ("\nthe damaged objects are rewritten from the next intact copy of their bytes "
                "Guardian reads; `guardian verify --repair` looks for one now")
    return out


def _repair(store_path: Path, result: Any, *, reread: bool) -> Any:
    """Mark the damaged objects in the store's writer (the daemon, if one runs) and, with
    ``reread``, rewrite each from a path that still holds its bytes."""
    from guardian.client import as_writer

    hashes = [d.sha256 for d in result.damaged]
    reasons = {d.sha256: d.reason for d in result.damaged}

    def direct(writer: Writer) -> Any:
        from guardian.capture.repair import repair

        return repair(writer.recorder, hashes, reasons, reread=reread)

    return as_writer(store_path, "repair", {"objects": hashes, "reasons": reasons,
                                            "reread": reread}, direct, wait=5.0)


def cmd_gc(args: argparse.Namespace) -> int:
    from guardian.client import as_writer

    store_path = find_store(args, None)
    if (args.keep_versions is not None and args.keep_versions < 1) or (
            args.keep_days is not None and args.keep_days < 0):
        raise UsageError("--keep-versions must be at least 1 and --keep-days at least 0")

    def direct(writer: Writer) -> Any:
        from guardian.service import Service

        return Service(writer).gc(dry_run=args.dry_run, keep_versions=args.keep_versions,
                                  keep_days=args.keep_days)

    out = as_writer(store_path, "gc", {"dry_run": args.dry_run,
                                       "keep_versions": args.keep_versions,
                                       "keep_days": args.keep_days}, direct)
    if args.json:
        print_json(out)
    else:
        verb = "would drop" if out["dry_run"] else "dropped"
        print(f"{verb} {out['versions_dropped']} versions of {out['files_affected']} files, "
              f"{out['objects_dropped']} objects ({human_size(out['bytes_freed'])})")
    return ExitCode.OK


def cmd_recover(args: argparse.Namespace) -> int:
    from guardian.client import as_writer

    store_path = find_store(args, None)

    def direct(writer: Writer) -> Any:
        from guardian.service import Service

        return Service(writer).recover(sweep=args.sweep)

    out = as_writer(store_path, "recover", {"sweep": args.sweep}, direct)
    if args.json:
        print_json(out)
        return ExitCode.OK
    for b in out["batches"]:
        print(f"batch {b['batch']} ({b['was']}): {b['outcome'].replace('_', ' ')}, "
              f"{b['files']} files")
    if not out["batches"]:
        print("no interrupted batch")
    if args.sweep:
        print(f"{out['temps_removed']} stray temp files removed")
    return ExitCode.OK
