"""``guardian mcp``: its parser and command (the server is :mod:`guardian.mcp`; the SDK is
imported only when it runs)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from guardian.cli.parser import Command, opt
from guardian.exitcodes import ExitCode

if TYPE_CHECKING:
    import argparse


def add_parsers(sub: Any, only: str | None) -> None:
    Command("mcp", "guardian.cli.mcp:cmd_mcp",
            "an MCP server (stdio): Guardian's safe write tools for AI agents",
            "Serve Guardian's tools over the Model Context Protocol on stdin/stdout: "
            "write_files (one validated, all-or-nothing batch), edit_file, file_history, "
            "show_version, diff_versions, restore (dry run first) and validate. Paths are "
            "relative to --root and must be inside the watched roots. Uses the daemon when "
            "one runs, the store when not; every version is labelled with the client's "
            "session. Install: claude mcp add guardian -- guardian mcp", [
                opt("--root", metavar="DIR", default=".", help="the project: paths are "
                    "relative to DIR, and a first write makes a store watching it (default: .)"),
                opt("--session", help="label versions with this session id (default: "
                    "$GUARDIAN_SESSION, else mcp-CLIENT-ID, one id per server run)"),
                opt("--store", metavar="DIR", help="the store directory (default: "
                    "$GUARDIAN_STORE, else the store whose roots contain --root)")]).add(sub, only)


def cmd_mcp(args: argparse.Namespace) -> int:
    from pathlib import Path

    from guardian.batch.manifest import check_session
    from guardian.errors import UsageError
    from guardian.locations import STORE_ENV
    from guardian.mcp.tools import Context
    from guardian.paths import check_root

    base = check_root(args.root)
    store = args.store or os.environ.get(STORE_ENV)
    session = args.session or os.environ.get("GUARDIAN_SESSION") or None
    if session is not None:
        check_session(session, "--session")
    try:
        from guardian.mcp.server import serve
    except ImportError as e:  # the SDK is a dependency; a broken install says so in one line
        raise UsageError(f"the mcp package cannot be imported ({e}); reinstall guardian") \
            from None
    serve(Context(base, Path(os.path.abspath(store)) if store else None, session))
    return ExitCode.OK
