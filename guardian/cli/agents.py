"""The agent commands: ``guardian hook``, ``guardian sessions``, ``guardian undo``.

``guardian hook claude|gemini|codex`` itself is run by the agent on every tool call and
takes the fast path in :func:`guardian.cli.main` (no argparse); its parser here is for
``--help`` and for ``install`` / ``uninstall``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardian.cli.parser import Command, OneOf, add_options, opt
from guardian.errors import NotFoundError, UsageError
from guardian.exitcodes import ExitCode
from guardian.locations import STORE_ENV

if TYPE_CHECKING:
    import argparse

COMMANDS = ("hook", "sessions", "undo")
AGENTS = ("claude", "gemini", "codex")


def add_parsers(sub: Any, only: str | None) -> None:
    p = sub.add_parser(
        "hook", help="agent hooks: refuse invalid writes, label and undo agent sessions",
        description="`guardian hook claude|gemini|codex` reads one hook payload on stdin (the "
        "agent runs it; see `guardian hook install`). Before a write tool runs, the target is "
        "stored and the content it would write is validated with the path's rules: a protected "
        "path, or content the rules would revert, is refused with a reason the model can act "
        "on. Bash commands get an attribution window. Internal errors let the call through.")
    if only in (None, "hook"):
        hs = p.add_subparsers(dest="hook_command", metavar="AGENT|install|uninstall",
                              parser_class=type(p))
        hs.required = True
        for agent in AGENTS:
            a = hs.add_parser(agent, help=f"the hook {agent} runs (a payload on stdin)")
            a.set_defaults(func="guardian.cli.agents:cmd_hook_run", agent=agent)
        for verb in ("install", "uninstall"):
            i = hs.add_parser(verb, help=f"{verb} Guardian's hooks in an agent's settings file",
                              description="Merges (or removes) only Guardian's entries; the "
                              "file's other hooks and keys are kept, the old file is backed up "
                              "beside it (NAME.guardian-backup), installing twice changes "
                              "nothing.")
            g = i.add_mutually_exclusive_group(required=True)
            for agent in AGENTS:
                g.add_argument(f"--{agent}", dest="agent", action="store_const", const=agent)
            s = i.add_mutually_exclusive_group()
            s.add_argument("--project", dest="scope", action="store_const", const="project",
                           help="the project's settings (default; e.g. .claude/settings.json)")
            s.add_argument("--user", dest="scope", action="store_const", const="user",
                           help="your user settings (e.g. ~/.claude/settings.json)")
            s.add_argument("--local", dest="scope", action="store_const", const="local",
                           help="Claude only: .claude/settings.local.json (not committed)")
            i.add_argument("--dir", default=".", metavar="DIR",
                           help="the project directory (default: .)")
            i.add_argument("--dry-run", action="store_true", help="show the change; write nothing")
            add_options(i, ["json"])
            i.set_defaults(func="guardian.cli.agents:cmd_hook_install",
                           install=verb == "install", scope=None)

    store = opt("--store", metavar="DIR", help=f"the store directory (default: ${STORE_ENV}, "
                "else the store whose roots contain the current directory)")
    Command("sessions", "guardian.cli.agents:cmd_sessions", "agent sessions seen by the hooks",
            "Each agent session: agent, time span, prompts, tool calls, files touched (by "
            "write tools and in Bash windows — a window is a span of time, so another "
            "program's write meanwhile counts too; overlapping windows are marked "
            "ambiguous), writes refused. With ID: its prompts, calls and files.", [
                opt("session", nargs="?", metavar="ID", help="show one session in detail"),
                store, "json"]).add(sub, only)
    Command("undo", "guardian.cli.agents:cmd_undo",
            "undo an agent session, a prompt, or the last changes",
            "Put every file the chosen changes touched back as it was before them — files "
            "they created removed, files they deleted restored, Bash-made changes included — "
            "as one all-or-nothing batch (current contents stored first). A file someone "
            "else changed afterwards is a conflict: listed and skipped unless --force. The "
            "undo is recorded as a session of its own (undo-N), so it can be undone. Exit 1 "
            "if a conflict was skipped.", [
                OneOf(opt("--session", metavar="ID",
                          help="a whole session (see guardian sessions)"),
                      opt("--prompt", metavar="ID", help="one prompt of a session"),
                      opt("--last", type=int, metavar="N", help="the last N agent changes"),
                      opt("--since", metavar="TIME", help="every agent change since TIME "
                          "(e.g. 10m, 2026-01-02T10:00)"), required=True),
                opt("--dry-run", action="store_true", help="show the plan (a diffstat)"),
                opt("--force", action="store_true", help="undo conflicting files too (their "
                    "newer contents stay in the store)"),
                store, "json"]).add(sub, only)


def _store(args: argparse.Namespace) -> Path:
    from guardian.locations import find_store_for

    value = getattr(args, "store", None) or os.environ.get(STORE_ENV)
    if value:
        return Path(os.path.abspath(value))
    found = find_store_for(Path.cwd())
    if found is None:
        raise NotFoundError(f"{Path.cwd()}: no Guardian store watches this directory (use "
                            f"--store or ${STORE_ENV})")
    return found


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


# ----------------------------------------------------------------------------- commands
def cmd_hook_run(args: argparse.Namespace) -> int:
    from guardian.agents.hook import run

    return run(args.agent)


def cmd_hook_install(args: argparse.Namespace) -> int:
    from guardian.agents.install import change

    out = change(args.agent, args.scope or "project", Path(os.path.abspath(args.dir)),
                 install=args.install, dry_run=args.dry_run)
    if args.json:
        _print_json(out)
        return int(ExitCode.OK)
    verb = "install" if args.install else "uninstall"
    if not out["changed"]:
        print(f"{out['file']}: already {verb}ed; nothing to change")
    elif args.dry_run:
        sys.stdout.write(out["diff"])
        print(f"(dry run: {out['file']} not changed)")
    else:
        backup = f" (the old file is kept as {out['backup']})" if out["backup"] else ""
        print(f"{out['file']}: Guardian's {args.agent} hooks {verb}ed{backup}")
    return int(ExitCode.OK)


def cmd_sessions(args: argparse.Namespace) -> int:
    from guardian.agents.sessions import render, summaries
    from guardian.store.db import Store

    with Store.open(_store(args), write=False) as store:
        items = summaries(store, args.session)
    if args.session and not items:
        raise NotFoundError(f"no session {args.session!r} recorded")
    if args.json:
        _print_json(items[0] if args.session else items)
    else:
        print(render(items, detail=bool(args.session)))
    return int(ExitCode.OK)


def cmd_undo(args: argparse.Namespace) -> int:
    from guardian.agents.plan import render_plan
    from guardian.agents.undo import request
    from guardian.errors import BatchError, DaemonError, GuardianError

    since_ns = None
    if args.since:
        from guardian.timespec import parse_time

        since_ns = parse_time(args.since)
    if args.last is not None and args.last < 1:
        raise UsageError(f"--last {args.last}: must be at least 1")
    params = {"session": args.session, "prompt": args.prompt, "last": args.last,
              "since_ns": since_ns, "dry_run": args.dry_run, "force": args.force}
    try:
        out = request(_store(args), params)
    except (BatchError, DaemonError) as e:
        data = e.to_json() if isinstance(e, BatchError) else e.data
        if args.json and data:
            _print_json({"ok": False, "error": data})
            return int(ExitCode.FAILURE)
        raise GuardianError(f"{e}; nothing was undone", exit_code=ExitCode.FAILURE) from None
    code = ExitCode.FAILURE if any(f["skipped"] == "conflict" for f in out["files"]) \
        else ExitCode.OK
    if args.json:
        _print_json(out)
        return int(code)
    print(render_plan(out, args.force))
    return int(code)
