"""``guardian status`` and ``guardian snapshot [PATH…]`` without the CLI's imports.

Scripts, prompts and agent hooks run these two on every step, so each call's start-up is
most of its cost. Here they are parsed without argparse and run with os, json, sqlite3 and
the C socket module only: ``status`` of a store no daemon writes reads it directly (one
read-only connection), and both ask a running daemon through :mod:`guardian.quick`.
Anything unusual (a flag this parser does not know, no daemon for a snapshot, a store that
is not one, a path outside the roots) returns None: :mod:`guardian.cli.main` then takes the
full path, which parses, explains and errs exactly as before.
"""

from __future__ import annotations

import os
import sys

from guardian import quick

TYPE_CHECKING = False  # keeps `typing` off the start-up path
if TYPE_CHECKING:
    from typing import Any

#: How long a quick call waits for the daemon (the full path's figures).
STATUS_TIMEOUT_S = 10.0
SNAPSHOT_TIMEOUT_S = 30.0


class _Args:
    """What argparse would make of the words (the attributes the commands read)."""

    def __init__(self, command: str, func: str, **values: Any) -> None:
        self.command = command
        self.func = func
        self.__dict__.update(values)


def status_args(words: list[str]) -> Any:
    """``guardian status [--json] [--store DIR]``; None for anything else (argparse)."""
    if not words or words[0] != "status":
        return None
    ns: Any = _Args("status", "guardian.cli.maintenance:cmd_status", json=False, store=None)
    rest = iter(words[1:])
    for w in rest:
        if w == "--json":
            ns.json = True
        elif w == "--store":
            ns.store = next(rest, None)
            if ns.store is None:
                return None
        elif w.startswith("--store="):
            ns.store = w[len("--store="):]
        else:
            return None
    return ns


def snapshot_args(words: list[str]) -> Any:
    """``guardian snapshot`` parsed without argparse (~10 ms to import and build). Anything
    unusual (``--help``, an unknown flag, a missing value) returns None, and argparse parses
    and explains it."""
    if not words or words[0] != "snapshot":
        return None
    ns: Any = _Args("snapshot", "guardian.cli.history:cmd_snapshot", paths=[], full=False,
               json=False, session=None, store=None)
    i = 1
    while i < len(words):
        w = words[i]
        if w in ("--json", "--full"):
            setattr(ns, w[2:], True)
        elif w in ("--store", "--session"):
            if i + 1 >= len(words):
                return None
            setattr(ns, w[2:], words[i + 1])
            i += 1
        elif w.startswith(("--store=", "--session=")):
            key, _, value = w[2:].partition("=")
            setattr(ns, key, value)
        elif w == "--":
            ns.paths += words[i + 1:]
            break
        elif w.startswith("-") and w != "-":
            return None
        else:
            ns.paths.append(w)
        i += 1
    return ns


def run(words: list[str]) -> int | None:
    """The command's exit status, or None: the full path runs it."""
    try:
        if (args := status_args(words)) is not None and not args.json:
            return status(args)
        if (args := snapshot_args(words)) is not None:
            return snapshot(args)
    except (quick.NoFast, OSError, ValueError, KeyError, TypeError):
        return None
    except quick.Refused as e:
        sys.stderr.write(f"guardian {words[0]}: error: {e}\n")
        return e.exit_code
    return None


def _store(args: Any, path: str) -> str | None:
    """``--store``, ``$GUARDIAN_STORE`` or the store covering ``path``; NoFast when only
    platformdirs knows where stores are."""
    explicit = args.store or os.environ.get("GUARDIAN_STORE")
    if explicit:
        return os.path.abspath(explicit)
    stores = quick.stores_dir()
    if stores is None:
        raise quick.NoFast
    return quick.find(stores, path)


def _absolute(p: str) -> str:
    """:func:`guardian.paths.absolute` on strings: ``..`` folded, the parent resolved."""
    a = os.path.abspath(p)
    parent, name = os.path.split(a)
    return os.path.join(os.path.realpath(parent), name) if name else os.path.realpath(a)


def snapshot(args: Any) -> int | None:
    """A snapshot a running daemon records; None when none runs (the full path records it
    itself) or the paths need the full path's checks. No paths: every root of the store
    that covers the current directory (a re-scan, which the daemon answers from its
    watcher)."""
    paths = [_absolute(p) for p in args.paths]
    store = _store(args, paths[0] if paths else _absolute(os.getcwd()))
    if store is None:
        return None
    roots = quick.store_roots(store)
    if not roots:
        return None  # a new store: the full path makes it
    for p in paths:  # outside every root: the full path's one-line error
        if not any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots):
            return None
    session = args.session or os.environ.get("GUARDIAN_SESSION") or None
    try:
        out = quick.call(store, "snapshot", {"paths": paths, "session": session,
                                             "full": args.full}, SNAPSHOT_TIMEOUT_S)
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # no daemon: the full path takes the writer lock itself
    if args.json:
        import json

        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    shown = 20
    lines = [f"{v['kind']:<9} {v['path']}" for v in out["versions"][:shown]]
    if len(out["versions"]) > shown:
        lines.append(f"… and {len(out['versions']) - shown} more (guardian log lists them)")
    for w in out["warnings"]:
        sys.stderr.write(f"warning: {w['path']}: {w['message']}\n")
    labelled = len(out.get("labelled", []))
    also = f" ({labelled} labelled with session {session})" if labelled else ""
    lines.append(result_line(out, also))
    _print(lines)
    return 0


def result_line(out: dict[str, Any], also: str = "") -> str:
    """The last line of ``guardian snapshot``. A daemon that answered from its watcher
    (``method`` ``events``) scanned nothing, so "0 unchanged" would say nothing true: it says
    instead that every other change was already recorded."""
    if out.get("method") == "events" and not out.get("unchanged"):
        return (f"{out['recorded']} recorded; the daemon watching had already recorded every "
                f"other change{also}")
    return f"{out['recorded']} recorded, {out['unchanged']} unchanged{also}"


def status(args: Any) -> int | None:
    """``guardian status`` (text): the daemon's answer, or the store read directly."""
    store = _store(args, os.getcwd())
    if store is None:
        return None  # "(none covers …)": the full path says it
    try:
        info = quick.call(store, "status", {}, STATUS_TIMEOUT_S)
    except (FileNotFoundError, ConnectionRefusedError):
        info = _read_status(store)
        if info is None:
            return None
    state = f"running (pid {info.get('pid')})" if info["running"] else "not running"
    lines = [f"daemon:     {state}", f"store:      {info.get('store')}"]
    lines += [f"root:       {r}" for r in info.get("roots", [])]
    if "files" in info:
        lines += [f"files:      {info['files']}", f"versions:   {info['versions']}",
                  f"store size: {human_size(info['store_bytes'])}",
                  f"last event: {info.get('last_event') or '-'}",
                  f"reconciles: {info.get('reconcile_count', 0)}"]
    _print(lines)
    return 0


def _read_status(store: str) -> dict[str, Any] | None:
    """What ``status`` shows of a store no daemon writes; None when it is not a store this
    reader can read (the full path says why)."""
    import sqlite3

    from guardian.store.lean import sqlite_uri, store_size

    db_path = os.path.join(store, "guardian.db")
    if not os.path.isfile(db_path):
        return None
    try:
        db = sqlite3.connect(sqlite_uri(db_path, "mode=ro"), uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        q = db.execute
        q("PRAGMA busy_timeout=30000")
        if q("SELECT 1 FROM meta WHERE key='created_ns'").fetchone() is None:
            return None
        roots = [os.fsdecode(bytes(p)) for (p,) in
                 q("SELECT path FROM roots ORDER BY id").fetchall()]
        files = q("SELECT COUNT(*) FROM files WHERE live=1").fetchone()[0]
        versions, last = q("SELECT COUNT(*), MAX(time_ns) FROM versions").fetchone()
        row = q("SELECT value FROM meta WHERE key='reconcile_count'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    from datetime import UTC, datetime  # sqlite3 imported datetime already

    return {"running": False, "store": store, "roots": roots, "files": files,
            "versions": versions, "store_bytes": store_size(store),
            "last_event": datetime.fromtimestamp(last / 1e9, tz=UTC).astimezone().isoformat()
            if last else None,
            "reconcile_count": int(row[0]) if row else 0}


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(n)


def _print(lines: list[str]) -> None:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    sys.stdout.write("\n".join(lines) + "\n")
