"""The argument parser: ``build_parser(only)`` builds only the command being run
(start-up time), and names each command's function as ``module:function`` so that only
its module is imported.
"""

from __future__ import annotations

import sys

from guardian import __version__
from guardian.exitcodes import ExitCode
from guardian.locations import STORE_ENV

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, NoReturn




EPILOG = """\
Every version of every file under the watched roots is kept in a store outside the tree
(default: one per set of roots under $XDG_STATE_HOME/guardian/stores; --store or
$GUARDIAN_STORE to choose). Exit codes: 0 ok, 1 the command found a problem, 2 usage or input
error.
"""


COMMANDS = ("watch", "snapshot", "log", "show", "diff", "restore", "status", "verify", "gc",
            "rules", "validate", "trust", "apply", "recover", "bench", "alerts", "metrics",
            "health", "report", "suggest", "mcp", "store")


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse  # not at module level: `guardian snapshot` from a hook parses without it

    class _Parser(argparse.ArgumentParser):
        """argparse, with usage errors as one line and exit code 2."""

        def error(self, message: str) -> NoReturn:
            sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
            raise SystemExit(ExitCode.USAGE)

    return _Parser


def command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of command ``name`` (so its errors point at `guardian NAME --help`)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            found: argparse.ArgumentParser = action.choices[name]
            return found
    return parser


#: SQLite's integers (and so ids, counts and nanosecond times) stop here.
INT64_MAX = 2**63 - 1


def _whole(minimum: int, maximum: int = INT64_MAX) -> Callable[[str], int]:
    """An argparse type: a whole number in [minimum, maximum] (argparse's ``int`` takes
    10**100, which SQLite cannot hold)."""

    def whole(text: str) -> int:
        import argparse

        digits = text.strip().lstrip("+-")
        try:
            value = int(text) if len(digits) <= 19 else None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value is None or value > maximum:
            if value is None and not digits.isdigit():
                raise argparse.ArgumentTypeError(f"{text[:30]!r} is not a whole number")
            raise argparse.ArgumentTypeError(f"{text[:30]}: too large (at most {maximum:,})")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {minimum}")
        return value

    return whole


def _number(minimum: float, maximum: float, *, positive: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [minimum, maximum] (``float`` takes nan and inf,
    which compare false with every bound)."""

    def number(text: str) -> float:
        import argparse
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not minimum <= value <= maximum or (
                positive and value <= minimum):
            low = "more than" if positive else "at least"
            raise argparse.ArgumentTypeError(f"{text}: expected a number {low} {minimum:g} "
                                             f"and at most {maximum:.0f}")
        return value

    return number


#: A limit of 0 means no limit, for every command that takes -n.
LIMIT_HELP = "0 = all"


TIME_SAVED_HELP = (
    "Time saved is an estimate: for each successful batch operation that used an "
    "optimisation, the seed's naive safe write of one file (back up with metadata, write, "
    "fsync, read back, verify), timed on this store's disk (or --baseline-s), minus what the "
    "operation took; for each capture commit of several versions, one fsync per version "
    "beyond the first. Other operations save nothing.")


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR",
                   help=f"the store directory (default: ${STORE_ENV}, else the store whose roots "
                        "contain the path or the current directory)")


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, only that command's options are built (start-up time)."""
    import argparse

    _Parser = _parser_class()
    parser = _Parser(prog="guardian", description=__doc__.splitlines()[0] if __doc__ else None,
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.description = ("Guardian keeps every version of every watched file, so no write "
                          "(an agent's, a script's, an editor's, git's) can lose data.")
    parser.add_argument("--version", action="version", version=f"guardian {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("watch", help="watch roots and record every version (the daemon)",
                       description="Record a baseline of every file under ROOTs, then every "
                       "change, until SIGINT/SIGTERM. Logs one JSON object per line on stderr.")
    if only in (None, "watch"):
        p.add_argument("roots", nargs="*", metavar="ROOT", help="directories to watch (default: .)")
        p.add_argument("--headless", action="store_true",
                       help="no TUI; JSON lines on stderr (the only mode until the TUI lands)")
        p.add_argument("--reconcile-interval", type=_number(0, 86400 * 365, positive=True),
                       default=600.0, metavar="SECONDS",
                       help="full rescan period, a safety net for lost events (default: 600)")
        p.add_argument("--poll-interval", type=_number(0, 86400 * 365, positive=True),
                       default=30.0, metavar="SECONDS",
                       help="rescan period when the inotify watch limit is reached (default: 30)")
        p.add_argument("--metrics-addr", metavar="HOST:PORT",
                       help="serve Prometheus metrics there (e.g. 127.0.0.1:9464; a bare :PORT "
                            "listens on 127.0.0.1 only)")
        _store_arg(p)
        p.set_defaults(func="guardian.cli.watch:cmd_watch")

    p = sub.add_parser("snapshot", help="record the current state of files or trees now",
                       description="Record the current state of PATHs (default: every root) and "
                       "exit. Goes through the daemon when one runs.")
    if only in (None, "snapshot"):
        p.add_argument("paths", nargs="*", metavar="PATH")
        p.add_argument("--full", action="store_true",
                       help="stat every file even when a running daemon has watched them all along")
        p.add_argument("--session", help="label the versions with an agent session id")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.history:cmd_snapshot")

    p = sub.add_parser("log", help="list versions of a file, a directory or the whole store",
                       description="Newest first. With no PATH: the latest versions across the "
                       "store.")
    if only in (None, "log"):
        p.add_argument("path", nargs="?", metavar="PATH")
        p.add_argument("-n", "--limit", type=_whole(0), default=None, metavar="N",
                       help=f"at most N versions ({LIMIT_HELP}; default: all for a file, 50 "
                            "otherwise)")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.history:cmd_log")

    p = sub.add_parser("show", help="print the bytes of a version",
                       description="Write the content of a version of PATH to stdout (default: "
                       "the newest version with content).")
    if only in (None, "show"):
        p.add_argument("path", metavar="PATH")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--version", dest="version_id", type=_whole(1), metavar="ID")
        g.add_argument("--at", metavar="TIME", help="ISO 8601, @EPOCH, or an age like 15m, 2h, 3d")
        _store_arg(p)
        p.set_defaults(func="guardian.cli.history:cmd_show")

    p = sub.add_parser("diff", help="unified diff between versions, or a version and the disk",
                       description="Default: the newest stored version against the file on disk.")
    if only in (None, "diff"):
        p.add_argument("path", metavar="PATH")
        p.add_argument("--from", dest="from_", metavar="ID|TIME", help="old side (default: newest)")
        p.add_argument("--to", metavar="ID|TIME", help="new side (default: the file on disk)")
        p.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")
        _store_arg(p)
        p.set_defaults(func="guardian.cli.history:cmd_diff")

    p = sub.add_parser("restore", help="restore a file, or a directory as it was at a time",
                       description="The current contents are stored first. A directory restored "
                       "--at TIME gets back files deleted since and loses files created since "
                       "(their bytes stay in the store); files Guardian found at its start are "
                       "left alone. One batch: all or nothing, even across a crash; a file "
                       "another program changes meanwhile is never overwritten (the restore "
                       "is refused, exit 1). Writes never leave the root.")
    if only in (None, "restore"):
        p.add_argument("path", metavar="PATH")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--version", dest="version_id", type=_whole(1), metavar="ID")
        g.add_argument("--at", metavar="TIME", help="ISO 8601, @EPOCH, or an age like 15m, 2h, 3d")
        p.add_argument("--dry-run", action="store_true",
                       help="list what would change, change nothing")
        p.add_argument("--session", help="label the versions with an agent session id")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.history:cmd_restore")

    p = sub.add_parser("status", help="is a daemon running, and what the store holds")
    if only in (None, "status"):
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.maintenance:cmd_status")

    p = sub.add_parser("verify", help="re-hash every stored object; exit 1 if any is damaged",
                       description="Check the store's database (SQLite quick_check; --full: "
                       "integrity_check) and re-hash every object; exit 1 naming each damaged "
                       "object and the versions that use it. Damaged objects are marked: the "
                       "next intact copy of their bytes Guardian reads rewrites them.")
    if only in (None, "verify"):
        p.add_argument("--full", action="store_true",
                       help="SQLite's integrity_check (every index against its table) instead "
                       "of quick_check")
        p.add_argument("--repair", action="store_true",
                       help="re-read the paths that held each damaged object and rewrite it "
                       "from the first whose bytes still hash right")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.maintenance:cmd_verify")

    p = sub.add_parser("gc", help="apply retention (keep_versions, keep_days)",
                       description="Drop versions beyond the retention of rules/default.toml; the "
                       "newest version of a file that exists is never dropped.")
    if only in (None, "gc"):
        p.add_argument("--dry-run", action="store_true", help="count what would go, drop nothing")
        p.add_argument("--keep-versions", type=_whole(1), metavar="N",
                       help="override keep_versions (at least 1)")
        p.add_argument("--keep-days", type=_number(0, 36500), metavar="D",
                       help="override keep_days (0 to 36500)")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.maintenance:cmd_gc")

    p = sub.add_parser("apply", help="write many files at once, all or nothing (a manifest)",
                       description="Apply a JSON, TOML or YAML manifest of operations (write, "
                       "edit, delete, render, mkdir) atomically: every file gets its new content "
                       "or none does, even across a crash. Every new content is validated first. "
                       "Exit 0 applied, 1 refused or rolled back, 2 usage error.")
    if only in (None, "apply"):
        p.add_argument("manifest", metavar="MANIFEST", help="a .json, .toml, .yaml or .yml "
                       "file, or - for standard input")
        p.add_argument("--root", metavar="DIR", default=".",
                       help="paths in the manifest are relative to DIR (default: .)")
        p.add_argument("--dry-run", action="store_true",
                       help="check everything and print the diff of every file; write nothing")
        p.add_argument("--session", help="label the versions with an agent session id")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.batch:cmd_apply")

    p = sub.add_parser("recover", help="finish or undo batches a crash interrupted",
                       description="A batch interrupted before its commit point is undone; "
                       "after it, completed. The daemon and `guardian apply` do this at start.")
    if only in (None, "recover"):
        p.add_argument("--sweep", action="store_true",
                       help="also remove Guardian temp files left anywhere under the roots")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.maintenance:cmd_recover")

    p = sub.add_parser("bench", help="the seed's acceptance scenarios: optimised vs naive",
                       description="Batch, template and incremental writes, each done the "
                       "naive way (per file: backup, write, fsync, verify) and as one Guardian "
                       "batch, in a scratch directory; prints ratios, success rates and "
                       "PASS/FAIL against the seed's ACCEPTANCE_CRITERIA and "
                       "PERFORMANCE_TARGETS. Exit 1 if an acceptance check fails.")
    if only in (None, "bench"):
        p.add_argument("--files", type=_whole(1, 100_000), default=200,
                       help="files per scenario (200)")
        p.add_argument("--size", type=_whole(1, 64 * 2**20), default=4096,
                       help="bytes per file (4096; at most 64 MiB)")
        p.add_argument("--repeats", type=_whole(1, 1000), default=5,
                       help="rounds per scenario (5)")
        p.add_argument("--large", type=_whole(0, 100_000), default=1000,
                       help="files in the large-batch run (1000; 0 to skip)")
        p.add_argument("--dir", metavar="DIR", help="scratch directory (default: $TMPDIR)")
        _json_arg(p)
        p.set_defaults(func="guardian.cli.batch:cmd_bench")

    p = sub.add_parser("alerts", help="the alerts raised; `alerts ack ID...` acknowledges",
                       description="Newest activity first: invalid writes, reverts, writers "
                       "left alone after flapping, broken rule files, untrusted commands, lost "
                       "events, and metric alerts (slow operations, error and success rates, "
                       "per-category error rates; thresholds in a root's [alerts] table). An "
                       "alert is open, then acknowledged (`guardian alerts ack ID...` or "
                       "`--all`), then resolved: metric alerts resolve themselves when their "
                       "condition clears; a repeat of an unresolved alert counts on it.")
    if only in (None, "alerts"):
        p.add_argument("action", nargs="*", metavar="ack ID", help="ack and the alert ids")
        p.add_argument("--open", action="store_true", help="only alerts not resolved")
        p.add_argument("--all", action="store_true", help="with ack: every open alert")
        p.add_argument("-n", "--limit", type=_whole(0), default=20, metavar="N",
                       help=f"at most N ({LIMIT_HELP}; default 20)")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.observe:cmd_alerts")
    _observe_parsers(sub, only)
    from guardian.cli.store import add_parsers as store_parsers

    store_parsers(sub, only)
    from guardian.cli.mcp import add_parsers as mcp_parsers

    mcp_parsers(sub, only)

    p = sub.add_parser("rules", help="which rules apply to a path, and where each came from",
                       description="The settings in force for PATH (default: .) after the "
                       "presets and every .guardian.toml from the root down, each with the "
                       "file:line it came from. Exit 2 if a rule file on the way is broken.")
    if only in (None, "rules"):
        p.add_argument("path", nargs="?", default=".", metavar="PATH")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.rules:cmd_rules")

    p = sub.add_parser("validate", help="check files with the validators their rules name",
                       description="Exit 0 if every file is valid, 1 if one is not (each error "
                       "as path:line:col: message), 2 on a usage error. Directories are "
                       "walked (ignored paths skipped).")
    if only in (None, "validate"):
        p.add_argument("paths", nargs="+", metavar="PATH")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.rules:cmd_validate")

    p = sub.add_parser("trust", help="allow the commands of a rule file to run",
                       description="Pin the current SHA-256 of a .guardian.toml: its command "
                       "validators run from now on. Any change to the file revokes it.")
    if only in (None, "trust"):
        p.add_argument("file", metavar="FILE")
        p.add_argument("--revoke", action="store_true", help="remove the trust instead")
        _json_arg(p)
        _store_arg(p)  # accepted everywhere; trust itself is per user, not per store
        p.set_defaults(func="guardian.cli.rules:cmd_trust")
    return parser


def _observe_parsers(sub: Any, only: str | None) -> None:
    """metrics, health, report, suggest (guardian.observe)."""
    import argparse

    def baseline_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--baseline-s", type=float, metavar="SECONDS",
                       help="the naive safe write of one file takes SECONDS, an fsync a "
                            "third of it (default: as measured on this store's disk)")

    p = sub.add_parser("metrics", help="operations, durations, error rates, time saved, capture",
                       description="Per operation type (capture, reconcile, validate, revert, "
                       "restore, snapshot, batch) over a window: operations per minute, "
                       "average/p50/p95/max duration, success rates (overall, optimised, "
                       "standard), optimisation usage, time saved, throughput; error rates by "
                       "the seed's five categories; templates; capture latency, versions by "
                       "kind and origin, reconciles, lost events, store size and dedupe. "
                       + TIME_SAVED_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    if only in (None, "metrics"):
        p.add_argument("--since", metavar="TIME", help="start of the window (default: 24h ago)")
        p.add_argument("--until", metavar="TIME", help="end of the window (default: now)")
        baseline_arg(p)
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.observe:cmd_metrics")

    p = sub.add_parser("health", help="backup, recovery, validation, optimisation, watcher, store",
                       description="Six checks, each healthy, degraded or unhealthy: a sample of "
                       "objects re-hashed (all with --full), a sample of versions restored into "
                       "a temporary directory and compared, each validator on known-good and "
                       "known-bad samples, the seed's optimisation criteria, the daemon and a "
                       "sync cookie through inotify and the watch limit, the store's free space, "
                       "WAL and integrity. Exit 0 healthy, 1 degraded, 3 unhealthy (a container "
                       "HEALTHCHECK). The optimisation check's improvement is time saved over "
                       "the naive time. " + TIME_SAVED_HELP)
    if only in (None, "health"):
        p.add_argument("--full", action="store_true",
                       help="verify every object and run SQLite's quick_check on any size")
        p.add_argument("--sample", type=int, default=50, metavar="N",
                       help="objects to verify without --full (default 50)")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.observe:cmd_health")

    p = sub.add_parser("report", help="the seed's daily performance report (saved in the store)",
                       description="Summary (total operations, optimisation rate, average time "
                       "savings, error rate, significant improvements, trend against the "
                       "previous period), performance metrics, optimisation effectiveness, "
                       "error analysis, recommendations. Saved in the store. "
                       + TIME_SAVED_HELP)
    if only in (None, "report"):
        p.add_argument("--since", metavar="TIME",
                       help="start of the period (default: 24h ago; a date is its midnight)")
        p.add_argument("--until", metavar="TIME", help="end of the period (default: now)")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--json", action="store_true", help="print machine-readable JSON")
        g.add_argument("--markdown", action="store_true", help="print the report as Markdown")
        p.add_argument("--discoveries", metavar="FILE",
                       help="append the seed's dated section to FILE (a DISCOVERIES.md) when "
                            "the average time savings are above 2 s per operation")
        p.add_argument("--list", action="store_true", help="list the saved reports instead")
        p.add_argument("-n", "--limit", type=int, default=20, help="with --list: at most N")
        baseline_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.observe:cmd_report")

    p = sub.add_parser("suggest", help="improvements the recorded operations point to",
                       description="Files reverted again and again, slow validators, runs of "
                       "small batches one batch would do, rules that never match, protected "
                       "paths written often, store growth dominated by a few paths: each "
                       "occurring more than 3 times, with its estimated benefit in seconds and "
                       "how it is estimated. --file-issues files a GitHub issue (gh) for each "
                       "worth more than 1 s, once. " + TIME_SAVED_HELP)
    if only in (None, "suggest"):
        p.add_argument("--since", metavar="TIME", help="operations since (default: 7d ago)")
        p.add_argument("--until", metavar="TIME", help="until (default: now)")
        p.add_argument("--file-issues", action="store_true",
                       help="create one issue per suggestion with benefit > 1 s (gh issue "
                            "create; labels write-optimization,performance,ai-suggested)")
        baseline_arg(p)
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func="guardian.cli.observe:cmd_suggest")
