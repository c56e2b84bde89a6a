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
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, NoReturn, TypeAlias

    #: ``add_argument``'s positional and keyword arguments.
    Opt: TypeAlias = tuple[tuple[str, ...], dict[str, Any]]
    #: An option of a command's row: a name in SHARED, an :func:`opt`, a :class:`OneOf`.
    Option: TypeAlias = "str | Opt | OneOf"




EPILOG = """\
Every version of every file under the watched roots is kept in a store outside the tree
(default: one per set of roots under $XDG_STATE_HOME/guardian/stores; --store or
$GUARDIAN_STORE to choose). Exit codes: 0 ok, 1 the command found a problem, 2 usage or input
error.
"""


COMMANDS = ("watch", "snapshot", "log", "show", "diff", "restore", "status", "verify", "gc",
            "rules", "validate", "trust", "apply", "recover", "bench", "alerts", "metrics",
            "health", "report", "suggest", "mcp", "store", "hook", "sessions", "undo", "tui")


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


#: The options several commands take, by the name their rows in :func:`_commands` give.
SHARED: dict[str, Opt] = {
    "json": (("--json",), {"action": "store_true", "help": "print machine-readable JSON"}),
    "store": (("--store",), {
        "metavar": "DIR", "help": f"the store directory (default: ${STORE_ENV}, else the store "
        "whose roots contain the path or the current directory)"}),
    "session": (("--session",), {"help": "label the versions with an agent session id"}),
    "path": (("path",), {"metavar": "PATH"}),
    "baseline": (("--baseline-s",), {
        "type": float, "metavar": "SECONDS", "help": "the naive safe write of one file takes "
        "SECONDS, an fsync a third of it (default: as measured on this store's disk)"}),
}


def opt(*flags: str, **kw: Any) -> Opt:
    """One option: ``add_argument``'s arguments."""
    return flags, kw


class OneOf:
    """Options of which a command takes at most one (exactly one when ``required``)."""

    def __init__(self, *options: Option, required: bool = False) -> None:
        self.options, self.required = options, required


class Command:
    """A row of the command table: the command's name, its function (``module:function``,
    imported only when it runs), its one-line help and description, its options in the
    order ``--help`` lists them; ``extra`` goes to ``add_parser``."""

    def __init__(self, name: str, func: str, help: str, description: str | None = None,
                 options: Sequence[Option] = (), **extra: Any) -> None:
        self.name, self.func, self.help, self.description = name, func, help, description
        self.options, self.extra = options, extra

    def add(self, sub: Any, only: str | None) -> None:
        p = sub.add_parser(self.name, help=self.help, description=self.description,
                           **self.extra)
        if only in (None, self.name):  # another command's options are never built
            add_options(p, self.options)
            p.set_defaults(func=self.func)


def add_options(p: Any, options: Iterable[Option]) -> None:
    """Add ``options`` to a parser (or a group): names from :data:`SHARED`, :func:`opt`
    rows, :class:`OneOf` groups."""
    for o in options:
        if isinstance(o, OneOf):
            add_options(p.add_mutually_exclusive_group(required=o.required), o.options)
        else:
            flags, kw = SHARED[o] if isinstance(o, str) else o
            p.add_argument(*flags, **kw)


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
    for row in _commands():
        if isinstance(row, Command):
            row.add(sub, only)
        else:  # a family module's own parsers (subcommands)
            row(sub, only)
    return parser


def _commands() -> list[Command | Callable[[Any, str | None], None]]:
    """Every command, in the order ``guardian --help`` lists them."""
    from guardian.cli.agents import add_parsers as agent_parsers  # hook, sessions, undo
    from guardian.cli.mcp import add_parsers as mcp_parsers
    from guardian.cli.store import add_parsers as store_parsers

    seconds = _number(0, 86400 * 365, positive=True)
    version_or_time = OneOf(
        opt("--version", dest="version_id", type=_whole(1), metavar="ID"),
        opt("--at", metavar="TIME", help="ISO 8601, @EPOCH, or an age like 15m, 2h, 3d"))
    return [
        Command("watch", "guardian.cli.watch:cmd_watch",
                "watch roots and record every version (the daemon)",
                "Record a baseline of every file under ROOTs, then every change, until "
                "SIGINT/SIGTERM. Logs one JSON object per line on stderr.", [
                    opt("roots", nargs="*", metavar="ROOT",
                        help="directories to watch (default: .)"),
                    opt("--headless", action="store_true",
                        help="no TUI; JSON lines on stderr (the default when stdout or stderr "
                        "is not a terminal)"),
                    opt("--reconcile-interval", type=seconds, default=600.0, metavar="SECONDS",
                        help="full rescan period, a safety net for lost events (default: 600)"),
                    opt("--poll-interval", type=seconds, default=30.0, metavar="SECONDS",
                        help="rescan period when the inotify watch limit is reached "
                        "(default: 30)"),
                    opt("--metrics-addr", metavar="HOST:PORT",
                        help="serve Prometheus metrics there (e.g. 127.0.0.1:9464; a bare "
                        ":PORT listens on 127.0.0.1 only)"),
                    "store"]),
        Command("snapshot", "guardian.cli.history:cmd_snapshot",
                "record the current state of files or trees now",
                "Record the current state of PATHs (default: every root) and exit. Goes "
                "through the daemon when one runs.", [
                    opt("paths", nargs="*", metavar="PATH"),
                    opt("--full", action="store_true", help="stat every file even when a "
                        "running daemon has watched them all along"),
                    "session", "json", "store"]),
        Command("log", "guardian.cli.history:cmd_log",
                "list versions of a file, a directory or the whole store",
                "Newest first. With no PATH: the latest versions across the store.", [
                    opt("path", nargs="?", metavar="PATH"),
                    opt("-n", "--limit", type=_whole(0), default=None, metavar="N",
                        help=f"at most N versions ({LIMIT_HELP}; default: all for a file, 50 "
                        "otherwise)"),
                    "json", "store"]),
        Command("show", "guardian.cli.history:cmd_show", "print the bytes of a version",
                "Write the content of a version of PATH to stdout (default: the newest "
                "version with content).", ["path", version_or_time, "store"]),
        Command("diff", "guardian.cli.history:cmd_diff",
                "unified diff between versions, or a version and the disk",
                "Default: the newest stored version against the file on disk.", [
                    "path",
                    opt("--from", dest="from_", metavar="ID|TIME",
                        help="old side (default: newest)"),
                    opt("--to", metavar="ID|TIME", help="new side (default: the file on disk)"),
                    opt("--exit-code", action="store_true",
                        help="exit 1 when there are differences"),
                    "store"]),
        Command("restore", "guardian.cli.history:cmd_restore",
                "restore a file, or a directory as it was at a time",
                "The current contents are stored first. A directory restored --at TIME gets "
                "back files deleted since and loses files created since (their bytes stay in "
                "the store); files Guardian found at its start are left alone. One batch: all "
                "or nothing, even across a crash; a file another program changes meanwhile "
                "is never overwritten (the restore is refused, exit 1). Writes never leave "
                "the root.", [
                    "path", version_or_time,
                    opt("--dry-run", action="store_true",
                        help="list what would change, change nothing"),
                    "session", "json", "store"]),
        Command("status", "guardian.cli.maintenance:cmd_status",
                "is a daemon running, and what the store holds", None, ["json", "store"]),
        Command("verify", "guardian.cli.maintenance:cmd_verify",
                "re-hash every stored object; exit 1 if any is damaged",
                "Check the store's database (SQLite quick_check; --full: integrity_check) and "
                "re-hash every object; exit 1 naming each damaged object and the versions "
                "that use it. Damaged objects are marked: the next intact copy of their bytes "
                "Guardian reads rewrites them.", [
                    opt("--full", action="store_true", help="SQLite's integrity_check (every "
                        "index against its table) instead of quick_check"),
                    opt("--repair", action="store_true", help="re-read the paths that held "
                        "each damaged object and rewrite it from the first whose bytes still "
                        "hash right"),
                    "json", "store"]),
        Command("gc", "guardian.cli.maintenance:cmd_gc",
                "apply retention (keep_versions, keep_days)",
                "Drop versions beyond the retention of rules/default.toml; the newest version "
                "of a file that exists is never dropped.", [
                    opt("--dry-run", action="store_true",
                        help="count what would go, drop nothing"),
                    opt("--keep-versions", type=_whole(1), metavar="N",
                        help="override keep_versions (at least 1)"),
                    opt("--keep-days", type=_number(0, 36500), metavar="D",
                        help="override keep_days (0 to 36500)"),
                    "json", "store"]),
        Command("apply", "guardian.cli.batch:cmd_apply",
                "write many files at once, all or nothing (a manifest)",
                "Apply a JSON, TOML or YAML manifest of operations (write, edit, delete, "
                "render, mkdir) atomically: every file gets its new content or none does, "
                "even across a crash. Every new content is validated first. Exit 0 applied, "
                "1 refused or rolled back, 2 usage error.", [
                    opt("manifest", metavar="MANIFEST", help="a .json, .toml, .yaml or .yml "
                        "file, or - for standard input"),
                    opt("--root", metavar="DIR", default=".",
                        help="paths in the manifest are relative to DIR (default: .)"),
                    opt("--dry-run", action="store_true", help="check everything and print the "
                        "diff of every file; write nothing"),
                    "session", "json", "store"]),
        Command("recover", "guardian.cli.maintenance:cmd_recover",
                "finish or undo batches a crash interrupted",
                "A batch interrupted before its commit point is undone; after it, completed. "
                "The daemon and `guardian apply` do this at start.", [
                    opt("--sweep", action="store_true", help="also remove Guardian temp "
                        "files left anywhere under the roots"),
                    "json", "store"]),
        Command("bench", "guardian.cli.batch:cmd_bench",
                "the seed's acceptance scenarios: optimised vs naive",
                "Batch, template and incremental writes, each done the naive way (per file: "
                "backup, write, fsync, verify) and as one Guardian batch, in a scratch "
                "directory; prints ratios, success rates and PASS/FAIL against the seed's "
                "ACCEPTANCE_CRITERIA and PERFORMANCE_TARGETS. Exit 1 if an acceptance check "
                "fails.", [
                    opt("--files", type=_whole(1, 100_000), default=200,
                        help="files per scenario (200)"),
                    opt("--size", type=_whole(1, 64 * 2**20), default=4096,
                        help="bytes per file (4096; at most 64 MiB)"),
                    opt("--repeats", type=_whole(1, 1000), default=5,
                        help="rounds per scenario (5)"),
                    opt("--large", type=_whole(0, 100_000), default=1000,
                        help="files in the large-batch run (1000; 0 to skip)"),
                    opt("--dir", metavar="DIR", help="scratch directory (default: $TMPDIR)"),
                    "json"]),
        Command("alerts", "guardian.cli.observe:cmd_alerts",
                "the alerts raised; `alerts ack ID...` acknowledges",
                "Newest activity first: invalid writes, reverts, writers left alone after "
                "flapping, broken rule files, untrusted commands, lost events, and metric "
                "alerts (slow operations, error and success rates, per-category error rates; "
                "thresholds in a root's [alerts] table). An alert is open, then acknowledged "
                "(`guardian alerts ack ID...` or `--all`), then resolved: metric alerts "
                "resolve themselves when their condition clears; a repeat of an unresolved "
                "alert counts on it.", [
                    opt("action", nargs="*", metavar="ack ID", help="ack and the alert ids"),
                    opt("--open", action="store_true", help="only alerts not resolved"),
                    opt("--all", action="store_true", help="with ack: every open alert"),
                    opt("-n", "--limit", type=_whole(0), default=20, metavar="N",
                        help=f"at most N ({LIMIT_HELP}; default 20)"),
                    "json", "store"]),
        Command("tui", "guardian.cli.watch:cmd_tui",
                "the dashboard, alerts and restore browser (Textual)",
                "Attach to the daemon of the store, or open the store read-only when none "
                "runs (restores still work, as `guardian restore`).", ["store"]),
        *_observe_commands(),
        store_parsers,
        mcp_parsers,
        agent_parsers,
        Command("rules", "guardian.cli.rules:cmd_rules",
                "which rules apply to a path, and where each came from",
                "The settings in force for PATH (default: .) after the presets and every "
                ".guardian.toml from the root down, each with the file:line it came from. "
                "Exit 2 if a rule file on the way is broken.", [
                    opt("path", nargs="?", default=".", metavar="PATH"), "json", "store"]),
        Command("validate", "guardian.cli.rules:cmd_validate",
                "check files with the validators their rules name",
                "Exit 0 if every file is valid, 1 if one is not (each error as "
                "path:line:col: message), 2 on a usage error. Directories are walked "
                "(ignored paths skipped).", [
                    opt("paths", nargs="+", metavar="PATH"), "json", "store"]),
        Command("trust", "guardian.cli.rules:cmd_trust",
                "allow the commands of a rule file to run",
                "Pin the current SHA-256 of a .guardian.toml: its command validators run from "
                "now on. Any change to the file revokes it.", [
                    opt("file", metavar="FILE"),
                    opt("--revoke", action="store_true", help="remove the trust instead"),
                    # --store: accepted everywhere; trust itself is per user, not per store
                    "json", "store"]),
    ]


def _observe_commands() -> list[Command]:
    """metrics, health, report, suggest (guardian.observe)."""
    import argparse

    return [
        Command("metrics", "guardian.cli.observe:cmd_metrics",
                "operations, durations, error rates, time saved, capture",
                "Per operation type (capture, reconcile, validate, revert, restore, snapshot, "
                "batch) over a window: operations per minute, average/p50/p95/max duration, "
                "success rates (overall, optimised, standard), optimisation usage, time "
                "saved, throughput; error rates by the seed's five categories; templates; "
                "capture latency, versions by kind and origin, reconciles, lost events, store "
                "size and dedupe. " + TIME_SAVED_HELP, [
                    opt("--since", metavar="TIME", help="start of the window (default: 24h ago)"),
                    opt("--until", metavar="TIME", help="end of the window (default: now)"),
                    "baseline", "json", "store"],
                formatter_class=argparse.RawDescriptionHelpFormatter),
        Command("health", "guardian.cli.observe:cmd_health",
                "backup, recovery, validation, optimisation, watcher, store",
                "Six checks, each healthy, degraded or unhealthy: a sample of objects "
                "re-hashed (all with --full), a sample of versions restored into a temporary "
                "directory and compared, each validator on known-good and known-bad samples, "
                "the seed's optimisation criteria, the daemon and a sync cookie through "
                "inotify and the watch limit, the store's free space, WAL and integrity. Exit "
                "0 healthy, 1 degraded, 3 unhealthy (a container HEALTHCHECK). The "
                "optimisation check's improvement is time saved over the naive time. "
                + TIME_SAVED_HELP, [
                    opt("--full", action="store_true",
                        help="verify every object and run SQLite's quick_check on any size"),
                    opt("--sample", type=int, default=50, metavar="N",
                        help="objects to verify without --full (default 50)"),
                    "json", "store"]),
        Command("report", "guardian.cli.observe:cmd_report",
                "the seed's daily performance report (saved in the store)",
                "Summary (total operations, optimisation rate, average time savings, error "
                "rate, significant improvements, trend against the previous period), "
                "performance metrics, optimisation effectiveness, error analysis, "
                "recommendations. Saved in the store. " + TIME_SAVED_HELP, [
                    opt("--since", metavar="TIME",
                        help="start of the period (default: 24h ago; a date is its midnight)"),
                    opt("--until", metavar="TIME", help="end of the period (default: now)"),
                    OneOf("json", opt("--markdown", action="store_true",
                                      help="print the report as Markdown")),
                    opt("--discoveries", metavar="FILE",
                        help="append the seed's dated section to FILE (a DISCOVERIES.md) when "
                        "the average time savings are above 2 s per operation"),
                    opt("--list", action="store_true", help="list the saved reports instead"),
                    opt("-n", "--limit", type=int, default=20, help="with --list: at most N"),
                    "baseline", "store"]),
        Command("suggest", "guardian.cli.observe:cmd_suggest",
                "improvements the recorded operations point to",
                "Files reverted again and again, slow validators, runs of small batches one "
                "batch would do, rules that never match, protected paths written often, "
                "store growth dominated by a few paths: each occurring more than 3 times, "
                "with its estimated benefit in seconds and how it is estimated. "
                "--file-issues files a GitHub issue (gh) for each worth more than 1 s, once. "
                + TIME_SAVED_HELP, [
                    opt("--since", metavar="TIME", help="operations since (default: 7d ago)"),
                    opt("--until", metavar="TIME", help="until (default: now)"),
                    opt("--file-issues", action="store_true",
                        help="create one issue per suggestion with benefit > 1 s (gh issue "
                        "create; labels write-optimization,performance,ai-suggested)"),
                    "baseline", "json", "store"]),
    ]
