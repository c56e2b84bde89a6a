"""The ``guardian`` command line.

Every command that reports takes ``--json`` (those shapes are an API, tested); errors are one
line on stderr with an exit code from :class:`guardian.exitcodes.ExitCode`. Imports of heavy
modules happen inside the commands, so ``guardian --version`` and hooks start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from guardian import __version__
from guardian.errors import GuardianError, NotFoundError, UsageError
from guardian.exitcodes import ExitCode
from guardian.locations import STORE_ENV

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    from guardian.writer import Writer

EPILOG = """\
Every version of every file under the watched roots is kept in a store outside the tree
(default: one per set of roots under $XDG_STATE_HOME/guardian/stores; --store or
$GUARDIAN_STORE to choose). Exit codes: 0 ok, 1 the command found a problem, 2 usage or input
error.
"""


COMMANDS = ("watch", "snapshot", "log", "show", "diff", "restore", "status", "verify", "gc",
            "rules", "validate", "trust", "apply", "recover", "bench", "alerts", "metrics",
            "health", "report", "suggest", "tui")


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse  # not at module level: `guardian snapshot` from a hook parses without it

    class _Parser(argparse.ArgumentParser):
        """argparse, with usage errors as one line and exit code 2."""

        def error(self, message: str) -> NoReturn:
            sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
            raise SystemExit(ExitCode.USAGE)

    return _Parser


def _command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
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
                       help="no TUI; JSON lines on stderr (the default when stdout or stderr "
                            "is not a terminal)")
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
        p.set_defaults(func=cmd_watch)

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
        p.set_defaults(func=cmd_snapshot)

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
        p.set_defaults(func=cmd_log)

    p = sub.add_parser("show", help="print the bytes of a version",
                       description="Write the content of a version of PATH to stdout (default: "
                       "the newest version with content).")
    if only in (None, "show"):
        p.add_argument("path", metavar="PATH")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--version", dest="version_id", type=_whole(1), metavar="ID")
        g.add_argument("--at", metavar="TIME", help="ISO 8601, @EPOCH, or an age like 15m, 2h, 3d")
        _store_arg(p)
        p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", help="unified diff between versions, or a version and the disk",
                       description="Default: the newest stored version against the file on disk.")
    if only in (None, "diff"):
        p.add_argument("path", metavar="PATH")
        p.add_argument("--from", dest="from_", metavar="ID|TIME", help="old side (default: newest)")
        p.add_argument("--to", metavar="ID|TIME", help="new side (default: the file on disk)")
        p.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")
        _store_arg(p)
        p.set_defaults(func=cmd_diff)

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
        p.set_defaults(func=cmd_restore)

    p = sub.add_parser("status", help="is a daemon running, and what the store holds")
    if only in (None, "status"):
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_status)

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
        p.set_defaults(func=cmd_verify)

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
        p.set_defaults(func=cmd_gc)

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
        p.set_defaults(func=cmd_apply)

    p = sub.add_parser("recover", help="finish or undo batches a crash interrupted",
                       description="A batch interrupted before its commit point is undone; "
                       "after it, completed. The daemon and `guardian apply` do this at start.")
    if only in (None, "recover"):
        p.add_argument("--sweep", action="store_true",
                       help="also remove Guardian temp files left anywhere under the roots")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_recover)

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
        p.set_defaults(func=cmd_bench)

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
        p.set_defaults(func=cmd_alerts)
    p = sub.add_parser("tui", help="the dashboard, alerts and restore browser (Textual)",
                       description="Attach to the daemon of the store, or open the store "
                       "read-only when none runs (restores still work, as `guardian restore`).")
    if only in (None, "tui"):
        _store_arg(p)
        p.set_defaults(func=cmd_tui)

    _observe_parsers(sub, only)

    p = sub.add_parser("rules", help="which rules apply to a path, and where each came from",
                       description="The settings in force for PATH (default: .) after the "
                       "presets and every .guardian.toml from the root down, each with the "
                       "file:line it came from. Exit 2 if a rule file on the way is broken.")
    if only in (None, "rules"):
        p.add_argument("path", nargs="?", default=".", metavar="PATH")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_rules)

    p = sub.add_parser("validate", help="check files with the validators their rules name",
                       description="Exit 0 if every file is valid, 1 if one is not (each error "
                       "as path:line:col: message), 2 on a usage error. Directories are "
                       "walked (ignored paths skipped).")
    if only in (None, "validate"):
        p.add_argument("paths", nargs="+", metavar="PATH")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_validate)

    p = sub.add_parser("trust", help="allow the commands of a rule file to run",
                       description="Pin the current SHA-256 of a .guardian.toml: its command "
                       "validators run from now on. Any change to the file revokes it.")
    if only in (None, "trust"):
        p.add_argument("file", metavar="FILE")
        p.add_argument("--revoke", action="store_true", help="remove the trust instead")
        _json_arg(p)
        _store_arg(p)  # accepted everywhere; trust itself is per user, not per store
        p.set_defaults(func=cmd_trust)
    return parser


TIME_SAVED_HELP = (
    "Time saved is an estimate: for each successful batch operation that used an "
    "optimisation, the seed's naive safe write of one file (back up with metadata, write, "
    "fsync, read back, verify), timed on this store's disk (or --baseline-s), minus what the "
    "operation took; for each capture commit of several versions, one fsync per version "
    "beyond the first. Other operations save nothing.")


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
        p.set_defaults(func=cmd_metrics)

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
        p.set_defaults(func=cmd_health)

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
        p.set_defaults(func=cmd_report)

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
        p.set_defaults(func=cmd_suggest)


# ----------------------------------------------------------------------------- helpers
def _explicit_store(args: argparse.Namespace) -> Path | None:
    value = getattr(args, "store", None) or os.environ.get(STORE_ENV)
    return Path(os.path.abspath(value)) if value else None


def _find_store(args: argparse.Namespace, path: str | None) -> Path:
    from guardian.locations import find_store_for
    from guardian.paths import absolute

    explicit = _explicit_store(args)
    if explicit is not None:
        return explicit
    target = absolute(path) if path else Path.cwd()
    found = find_store_for(target)
    if found is None:
        raise NotFoundError(f"no Guardian store covers {target}; run `guardian watch` there "
                            "first, or pass --store")
    return found


def _open_reader(args: argparse.Namespace, path: str | None) -> Any:
    from guardian.store.db import Store

    return Store.open(_find_store(args, path), write=False)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(n)


def _session(args: argparse.Namespace) -> str | None:
    return getattr(args, "session", None) or os.environ.get("GUARDIAN_SESSION") or None


# ----------------------------------------------------------------------------- commands
def cmd_watch(args: argparse.Namespace) -> int:
    from guardian import faults, startsignals

    startsignals.install()  # before anything slow: SIGINT/SIGTERM are recorded from here on
    faults.point("watch.start")
    import anyio

    from guardian.daemon.loop import Daemon, emit_json_line
    from guardian.events import Stopped, Stopping
    from guardian.locations import store_dir_for_roots
    from guardian.paths import check_root
    from guardian.store.db import Store
    from guardian.writer import writer_of

    roots = list(dict.fromkeys(check_root(r) for r in (args.roots or ["."])))
    for a in roots:
        for b in roots:
            if a != b and a in b.parents:
                raise UsageError(f"{b} is inside {a}: watch {a} alone")
    if args.reconcile_interval <= 0 or args.poll_interval <= 0:
        raise UsageError("intervals must be positive")
    store_path = _explicit_store(args) or store_dir_for_roots(roots)
    if not args.headless and sys.stdout.isatty() and sys.stderr.isatty():
        from tui.command import watch_with_tui  # lazy: the core never imports the UI

        return watch_with_tui(args, roots, store_path)
    _install_json_logging(emit_json_line)
    store = Store.open(store_path, write=True, create=True)
    daemon = None
    try:
        faults.point("watch.opened")
        writer = None
        with contextlib.ExitStack() as stack:
            try:
                with startsignals.interruptible():  # every rule file: seconds on big trees
                    faults.point("watch.rules")
                    writer = stack.enter_context(writer_of(store, roots, discover=True))
            except startsignals.Interrupted:
                writer = None
            faults.point("watch.run")
            stop = startsignals.requested()
            if stop is not None or writer is None:  # stopped before the daemon's loop ran
                emit_json_line(Stopping(reason=stop or "signal"))
                emit_json_line(Stopped(versions=store.counts()["versions"]))
                return ExitCode.OK
            daemon = Daemon(writer, emit=emit_json_line,
                            reconcile_interval=args.reconcile_interval,
                            poll_interval=args.poll_interval)
            if args.metrics_addr:
                daemon.monitor.serve_metrics(args.metrics_addr)
            anyio.run(daemon.run)  # it honours a signal recorded before its loop took them over
    finally:
        if daemon is not None:
            daemon.monitor.stop_metrics()
        store.close()
    return ExitCode.OK


def _install_json_logging(emit: Callable[[Any], None]) -> None:
    """Library log records and Python warnings become JSON warning lines, like ours."""
    import logging

    from guardian.events import WarningEvent

    # watchdog logs this when its emitter thread loops once more while being stopped: a race
    # inside watchdog's shutdown, harmless, and not something a user can act on.
    benign = ("InotifyEmitter.queue_events() called when the thread is inactive",)

    class JsonHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if not message.startswith(benign):
                emit(WarningEvent(message=message, source=record.name))

    root = logging.getLogger()
    root.handlers[:] = [JsonHandler(level=logging.WARNING)]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


def cmd_snapshot(args: argparse.Namespace) -> int:
    from guardian.client import as_writer
    from guardian.locations import find_store_for, read_store_roots, store_dir_for_roots
    from guardian.paths import Root, absolute, locate

    cwd = Path.cwd()
    targets = [absolute(p) for p in args.paths]
    store_path = _explicit_store(args) or find_store_for(targets[0] if targets else cwd)
    roots = read_store_roots(store_path) if store_path is not None else []
    new_roots: list[Path] = []
    if not roots:
        # A new store: its roots are the paths given (a file's directory), like `watch ROOT`
        # and `apply --root`; with none, the current directory.
        for p, t in zip(args.paths, targets, strict=True):
            if not os.path.lexists(t):
                raise UsageError(f"{p}: no such file or directory")
        new_roots = _roots_for(targets) if targets else [cwd]
        store_path = store_path or store_dir_for_roots(new_roots)
        roots = new_roots
    assert store_path is not None
    fake = [Root(i, r) for i, r in enumerate(roots)]
    paths = []
    for p in args.paths:
        locate(p, fake)  # a one-line error for a path outside the roots, before any work
        paths.append(os.fsdecode(absolute(p)))

    def direct(writer: Writer) -> Any:
        from guardian.progress import Progress
        from guardian.service import Service

        progress = Progress("snapshot")
        try:
            return Service(writer).snapshot(paths, session=_session(args), progress=progress)
        finally:
            progress.close()

    out = as_writer(store_path, "snapshot",
                    {"paths": paths, "session": _session(args), "full": args.full}, direct,
                    create=True, roots=new_roots)
    if args.json:
        _print_json(out)
    else:
        shown = 20
        for v in out["versions"][:shown]:
            print(f"{v['kind']:<9} {v['path']}")
        if len(out["versions"]) > shown:
            print(f"… and {len(out['versions']) - shown} more (guardian log lists them)")
        for w in out["warnings"]:
            print(f"warning: {w['path']}: {w['message']}", file=sys.stderr)
        labelled = len(out.get("labelled", []))
        also = f" ({labelled} labelled with session {_session(args)})" if labelled else ""
        print(f"{out['recorded']} recorded, {out['unchanged']} unchanged{also}")
    return ExitCode.OK


def _roots_for(targets: list[Path]) -> list[Path]:
    """The roots of a new store for these paths: each directory itself, a file's (or a
    symlink's) directory; a root inside another is left to the outer one."""
    from guardian.paths import check_root

    dirs = [t if t.is_dir() and not t.is_symlink() else t.parent for t in targets]
    roots = sorted(dict.fromkeys(check_root(d) for d in dirs), key=lambda r: len(r.parts))
    out: list[Path] = []
    for r in roots:
        if not any(o == r or o in r.parents for o in out):
            out.append(r)
    return out


def cmd_log(args: argparse.Namespace) -> int:
    from guardian.paths import locate, show
    from guardian.store.history import version_json
    from guardian.timespec import short

    with _open_reader(args, args.path) as store:
        roots = store.roots()
        by_id = {r.id: r for r in roots}
        limit = args.limit
        if args.path:
            root, rel = locate(args.path, roots)
            fid = store.file_id(root.id, rel, create=False) if rel else None
            if fid is not None:
                versions = store.versions_of(fid, limit=limit or None)
            else:
                versions = store.versions_under(root.id, rel, limit=50 if limit is None
                                                else (limit or None))
            if not versions:
                shown = show(root.join(rel))
                why = _why_ignored(root.path, os.fsdecode(rel), os.path.isdir(root.join(rel)),
                                   store.path, _rule_set(root.path))
                if why is not None:
                    raise NotFoundError(f"{shown} is ignored {_ignored_text(why)}; Guardian "
                                        "does not record it")
                raise NotFoundError(f"{shown}: no recorded versions")
        else:
            versions = store.versions_under(None, limit=50 if limit is None else (limit or None))
        if args.json:
            _print_json({"versions": [version_json(v, by_id) for v in versions]})
            return ExitCode.OK
        cwd = os.fsencode(os.getcwd()) + b"/"
        for v in versions:
            r = by_id.get(v.root_id)
            full = r.join(v.relpath) if r else v.relpath
            shown = show(full[len(cwd):] if full.startswith(cwd) else full)
            digest = (v.sha256 or "-")[:12]
            note = f"  ({v.note})" if v.note else ""
            print(f"{v.id:>7}  {short(v.time_ns)}  {v.kind:<9} {v.origin:<8} "
                  f"{_human_size(v.size):>7}  {digest:<12}  {shown}{note}")
    return ExitCode.OK


def _resolve_at(args: argparse.Namespace) -> int | None:
    from guardian.timespec import parse_time

    return parse_time(args.at) if getattr(args, "at", None) else None


def cmd_show(args: argparse.Namespace) -> int:
    from guardian.paths import locate, show
    from guardian.store.history import content, resolve

    at_ns = _resolve_at(args)
    with _open_reader(args, args.path) as store:
        root, rel = locate(args.path, store.roots())
        v = resolve(store, root, rel, version=args.version_id, at_ns=at_ns,
                    want_content=args.version_id is None and at_ns is None)
        data = content(store, v, show(root.join(rel)))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return ExitCode.OK


def cmd_diff(args: argparse.Namespace) -> int:
    import stat

    from guardian.paths import locate, show
    from guardian.store.history import content, parse_version_spec, resolve, unified_diff
    from guardian.timespec import short

    with _open_reader(args, args.path) as store:
        root, rel = locate(args.path, store.roots())
        shown = show(root.join(rel))

        def side(spec: str | None) -> tuple[bytes | None, str]:
            vid, at = parse_version_spec(spec) if spec else (None, None)
            v = resolve(store, root, rel, version=vid, at_ns=at, want_content=spec is None)
            data = content(store, v, shown) if v.present else None
            return data, f"{shown}\t(version {v.id}, {short(v.time_ns)})"

        old, old_label = side(args.from_)
        if args.to:
            new, new_label = side(args.to)
        else:
            path = root.join(rel)
            new_label = f"{shown}\t(on disk)"
            try:
                st = os.lstat(path)
                new = os.readlink(path) if stat.S_ISLNK(st.st_mode) else Path(
                    os.fsdecode(path)).read_bytes()
            except FileNotFoundError:
                new = None
            except OSError as e:
                raise GuardianError(f"{shown}: cannot read: {e.strerror or e}") from None
    text = unified_diff(old, new, old_label, new_label)
    sys.stdout.write(text)
    return ExitCode.FAILURE if (args.exit_code and text) else ExitCode.OK


def cmd_restore(args: argparse.Namespace) -> int:
    from guardian.client import as_writer
    from guardian.errors import BatchError, DaemonError
    from guardian.paths import absolute
    from guardian.service import Service

    at_ns = _resolve_at(args)
    store_path = _find_store(args, args.path)
    path = os.fsdecode(absolute(args.path))
    params = {"path": path, "version": args.version_id, "at_ns": at_ns,
              "dry_run": args.dry_run, "session": _session(args)}

    def direct(writer: Writer) -> Any:
        from guardian.batch import protocol as journal

        if not args.dry_run:
            journal.recover(writer)  # a batch a crash interrupted comes first
        return Service(writer).restore(path, version=args.version_id, at_ns=at_ns,
                                       dry_run=args.dry_run, session=_session(args))

    try:
        out = as_writer(store_path, "restore", params, direct)
    except (BatchError, DaemonError) as e:
        # Refused (a conflict, a lock, something in the way) or rolled back: nothing changed.
        data = e.to_json() if isinstance(e, BatchError) else e.data
        if isinstance(e, DaemonError) and not data:
            raise
        if args.json:
            _print_json({"ok": False, "error": data})
            return ExitCode.FAILURE
        raise GuardianError(str(e), exit_code=ExitCode.FAILURE) from None
    if args.json:
        _print_json(out)
        return ExitCode.OK
    verb = "would" if out["dry_run"] else ""
    for c in out["changes"]:
        src = f" (from version {c['from_version']})" if c["from_version"] else ""
        print(f"{verb + ' ' if verb else ''}{c['action']:<6} {c['path']}{src}")
    for d in out.get("removed_dirs", []):
        print(f"{verb + ' ' if verb else ''}rmdir  {d}/")
    skipped = out["skipped"]
    for s in skipped[:_SKIPPED_SHOWN]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if len(skipped) > _SKIPPED_SHOWN:
        print(f"skipped {len(skipped) - _SKIPPED_SHOWN} more (--json lists them all)",
              file=sys.stderr)
    n = len(out["changes"])
    print(f"{n} file{'s' if n != 1 else ''} {'to change' if verb else 'restored'}, "
          f"{out['unchanged']} already as wanted")
    return ExitCode.OK


_SKIPPED_SHOWN = 50


def cmd_status(args: argparse.Namespace) -> int:
    from guardian.client import daemon
    from guardian.locations import find_store_for
    from guardian.store.db import Store

    store_path = _explicit_store(args) or find_store_for(Path.cwd())
    info: dict[str, Any]
    if store_path is None:
        info = {"running": False, "store": None, "roots": []}
    else:
        conn = daemon(store_path, timeout=10)
        if conn is not None:
            with conn:
                info = conn.call("status")
        else:
            from guardian.store.db import store_size
            from guardian.timespec import iso

            with Store.open(store_path, write=False) as store:
                c = store.counts()
                info = {
                    "running": False, "pid": None, "store": str(store_path),
                    "roots": [str(r.path) for r in store.roots()],
                    "files": c["files"], "versions": c["versions"], "objects": c["objects"],
                    "store_bytes": store_size(store_path),
                    "last_event": iso(c["last_version_ns"]) if c["last_version_ns"] else None,
                    "reconcile_count": int(store.meta_get("reconcile_count") or 0),
                    "metrics": _metrics_summary(store),
                }
    if args.json:
        _print_json(info)
        return ExitCode.OK
    state = f"running (pid {info.get('pid')})" if info["running"] else "not running"
    print(f"daemon:     {state}")
    print(f"store:      {info.get('store') or '(none covers ' + os.getcwd() + ')'}")
    for r in info.get("roots", []):
        print(f"root:       {r}")
    if "files" in info:
        print(f"files:      {info['files']}")
        print(f"versions:   {info['versions']}")
        print(f"store size: {_human_size(info['store_bytes'])}")
        print(f"last event: {info.get('last_event') or '-'}")
        print(f"reconciles: {info.get('reconcile_count', 0)}")
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    from guardian.progress import Progress
    from guardian.store.db import DamagedStoreError, Store
    from guardian.store.verify import unopenable, verify

    store_path = _find_store(args, None)
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
        _print_json(report)
    else:
        if not result.database_ok:
            hit = f"; hit: {', '.join(result.database_hit)}" if result.database_hit else ""
            print(f"database: damaged ({result.database_check}: {result.database_message})"
                  f"{hit}")
        for d in result.damaged:
            print(f"corrupt object {d.sha256}: {d.reason}")
            for v in d.versions:
                print(f"  used by version {v['id']} of {v['path']} ({v['time']})")
            o = fixed.get(d.sha256)
            if o and o.get("repaired"):
                print(f"  repaired from {o['from']}")
            elif o and args.repair:
                print(f"  not repaired: {o.get('why')}")
        if problem:
            print(f"guardian verify: {problem}", file=sys.stderr)
        status = "ok" if result.ok else f"{len(result.damaged)} damaged"
        if not result.database_ok:
            status += ", database damaged"
        if args.repair and result.damaged:
            status += f", {len(result.damaged) - len(remaining)} repaired"
        print(f"{result.objects} objects, {_human_size(result.bytes)} checked: {status}")
        if result.damaged and not args.repair and not problem:
            print("the damaged objects are rewritten from the next intact copy of their bytes "
                  "Guardian reads; `guardian verify --repair` looks for one now")
    return ExitCode.OK if ok else ExitCode.FAILURE


def _repair(store_path: Path, result: Any, *, reread: bool) -> Any:
    """Mark the damaged objects in the store's writer (the daemon, if one runs) and, with
    ``reread``, rewrite each from a path that still holds its bytes."""
    from guardian.client import as_writer

    hashes = [d.sha256 for d in result.damaged]
    reasons = {d.sha256: d.reason for d in result.damaged}

    def direct(writer: Writer) -> Any:
        from guardian.store.verify import repair

        return repair(writer, hashes, reasons, reread=reread)

    return as_writer(store_path, "repair", {"objects": hashes, "reasons": reasons,
                                            "reread": reread}, direct, wait=5.0)


def cmd_gc(args: argparse.Namespace) -> int:
    from guardian.client import as_writer

    store_path = _find_store(args, None)
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
        _print_json(out)
    else:
        verb = "would drop" if out["dry_run"] else "dropped"
        print(f"{verb} {out['versions_dropped']} versions of {out['files_affected']} files, "
              f"{out['objects_dropped']} objects ({_human_size(out['bytes_freed'])})")
    return ExitCode.OK


def cmd_apply(args: argparse.Namespace) -> int:
    from guardian.api import apply
    from guardian.batch import manifest as mf
    from guardian.errors import BatchError
    from guardian.paths import absolute

    cap = mf.MAX_MANIFEST_BYTES + 1  # /dev/zero must not fill the memory
    template_dir = None
    if args.manifest == "-":
        raw, source = sys.stdin.buffer.read(cap), "<stdin>"
    else:
        try:  # a FIFO or <(command) is read like stdin: the user named it
            with open(args.manifest, "rb") as f:
                raw, source = f.read(cap), args.manifest
        except OSError as e:
            raise UsageError(f"{args.manifest}: {e.strerror or e}") from None
        template_dir = os.path.dirname(os.path.abspath(args.manifest))
    m = mf.load(raw, source)
    base = absolute(args.root)
    if not base.is_dir():
        raise UsageError(f"{args.root}: not a directory")
    session = _session(args)
    if session is not None:
        mf.check_session(session, "--session")
    try:
        out = apply(m, base, store=_explicit_store(args), dry_run=args.dry_run,
                    session=session, template_dir=template_dir)
    except BatchError as e:
        if args.json:
            _print_json({"ok": False, "error": e.to_json()})
        else:
            what = ("error" if e.category == "recovery" or e.exit_code == ExitCode.USAGE
                    else "rolled back" if e.rolled_back else "refused")
            sys.stderr.write(f"guardian apply: {what}: {e}\n")
        return int(e.exit_code)
    if args.json:
        _print_json(out)
    elif out["dry_run"]:
        sys.stdout.write(out["diff"])
    else:
        counts: dict[str, int] = {}
        for f in out["files"]:
            counts[f["action"]] = counts.get(f["action"], 0) + 1
        done = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        print(f"batch {out['batch']}: {done} in {out['duration_ms']:.1f} ms"
              if out["batch"] else f"nothing to change ({done})")
    return ExitCode.OK


def cmd_recover(args: argparse.Namespace) -> int:
    from guardian.client import as_writer

    store_path = _find_store(args, None)

    def direct(writer: Writer) -> Any:
        from guardian.service import Service

        return Service(writer).recover(sweep=args.sweep)

    out = as_writer(store_path, "recover", {"sweep": args.sweep}, direct)
    if args.json:
        _print_json(out)
        return ExitCode.OK
    for b in out["batches"]:
        print(f"batch {b['batch']} ({b['was']}): {b['outcome'].replace('_', ' ')}, "
              f"{b['files']} files")
    if not out["batches"]:
        print("no interrupted batch")
    if args.sweep:
        print(f"{out['temps_removed']} stray temp files removed")
    return ExitCode.OK


def _metrics_summary(store: Any) -> Any:
    from guardian.observe.metrics import summary

    try:
        return summary(store)
    except Exception:  # a store this release cannot summarise still has a status
        return None


def cmd_alerts(args: argparse.Namespace) -> int:
    from guardian.observe.commands import alerts

    return alerts(args, _find_store(args, None))


def cmd_metrics(args: argparse.Namespace) -> int:
    from guardian.observe.commands import metrics

    return metrics(args, _find_store(args, None))


def cmd_health(args: argparse.Namespace) -> int:
    from guardian.observe.commands import health

    return health(args, _find_store(args, None))


def cmd_report(args: argparse.Namespace) -> int:
    from guardian.observe.commands import report

    return report(args, _find_store(args, None))


def cmd_suggest(args: argparse.Namespace) -> int:
    from guardian.observe.commands import suggest

    return suggest(args, _find_store(args, None))


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.command import run_tui  # lazy: the core never imports the UI

    return run_tui(_find_store(args, None))


def cmd_bench(args: argparse.Namespace) -> int:
    from guardian import benchmark

    if min(args.files, args.size, args.repeats) < 1 or args.large < 0:
        raise UsageError("--files, --size and --repeats must be at least 1")
    progress = None if args.json or not sys.stderr.isatty() else (
        lambda m: print(f"… {m}", file=sys.stderr, flush=True))
    result = benchmark.run(files=args.files, size=args.size, repeats=args.repeats,
                           large=args.large, workdir=Path(args.dir) if args.dir else None,
                           progress=progress)
    if args.json:
        _print_json(result)
    else:
        print(benchmark.render(result))
    return ExitCode.OK if result["passed"] else ExitCode.FAILURE


def _rules_root(args: argparse.Namespace, target: Path) -> Path:
    """The root whose rule files apply to ``target``: a store's root, else the current
    directory (or the target's own directory when it is elsewhere)."""
    from guardian.locations import find_store_for, read_store_roots

    store = _explicit_store(args) or find_store_for(target)
    if store is not None:
        inside = [r for r in read_store_roots(store) if r == target or r in target.parents]
        if inside:
            return max(inside, key=lambda r: len(r.parts))
    cwd = Path.cwd()
    if target == cwd or cwd in target.parents:
        return cwd
    return target if target.is_dir() else target.parent


def cmd_rules(args: argparse.Namespace) -> int:
    from guardian.locations import find_store_for
    from guardian.paths import absolute
    from guardian.rules.rulefiles import RuleSet

    target = absolute(args.path)
    root = _rules_root(args, target)
    rel = "" if target == root else str(target.relative_to(root))
    rs = RuleSet(str(root))
    probe = f"{rel}/x" if target.is_dir() and rel else ("x" if target.is_dir() else rel)
    eff = rs.effective(probe)
    if rs.errors:
        raise UsageError(next(iter(rs.errors.values())))
    ignored = _why_ignored(root, rel, target.is_dir(),
                           _explicit_store(args) or find_store_for(target), rs)
    out = eff.to_json()
    out["path"] = str(target)
    out["root"] = str(root)
    out["ignored"] = ignored
    if args.json:
        _print_json(out)
        return ExitCode.OK
    print(f"{target}  (root {root})")
    if ignored:
        print(f"  ignored {_ignored_text(ignored)}: Guardian does not record it")
    for key, item in out["settings"].items():
        print(f"  {key} = {json.dumps(item['value'])}    # {item['from']}")
    return ExitCode.OK


def _rule_set(root: Path) -> Any:
    from guardian.rules.rulefiles import RuleSet

    return RuleSet(str(root))


def _why_ignored(root: Path, rel: str, is_dir: bool, store: Path | None,
                 rs: Any) -> dict[str, Any] | None:
    """Why capture does not record ROOT/REL (the checks capture makes, with the pattern and
    the file:line behind each), or None if it does."""
    from guardian.rules.ignore import IgnoreMatcher

    extra: list[bytes] = []
    if store is not None:
        real = Path(os.path.realpath(store))
        if root in real.parents:
            extra.append(os.fsencode(real.relative_to(root)))
    matcher = IgnoreMatcher(os.fsencode(root), extra_ignored=extra,
                            rules=lambda r: bool(rs.ignored(os.fsdecode(r))))
    why: dict[str, Any] | None = matcher.explain(os.fsencode(rel), is_dir=is_dir)
    if why is not None and why["by"] == "rules":
        glob = rs.ignored_by(why["path"])
        if glob is not None:
            why["pattern"] = glob.glob.text
            why["from"] = str(glob.origin)
    return why


def _ignored_text(why: dict[str, Any]) -> str:
    """``(by FILE:LINE: PATTERN)`` and the like, for one line of output."""
    by, pattern, where = why["by"], why.get("pattern"), why.get("from")
    if by == "store":
        return f"(the Guardian store is {pattern})"
    if by == "temp":
        return "(a Guardian temp file)"
    if by == "git":
        return "(inside .git/)"
    what = "ignore glob" if by == "rules" else ".gitignore pattern"
    if pattern is None:
        return f"(by a {what})"
    return f"(by {what} {pattern!r} at {where})" if where else f"(by {what} {pattern!r})"


def cmd_validate(args: argparse.Namespace) -> int:
    import stat

    from guardian.capture.scan import WalkReport, walk
    from guardian.paths import absolute
    from guardian.rules.ignore import IgnoreMatcher
    from guardian.rules.rulefiles import RuleSet
    from guardian.validation.check import check

    files: dict[Path, Path] = {}  # file -> root; a file named twice (or in two trees) once
    for arg in args.paths:
        target = absolute(arg)
        if not target.exists():
            raise UsageError(f"{arg}: no such file or directory")
        root = _rules_root(args, target)
        if target.is_dir():
            under = b"" if target == root else os.fsencode(target.relative_to(root))
            report = WalkReport()
            for r, st in walk(os.fsencode(root), under, IgnoreMatcher(os.fsencode(root)),
                              report):
                if stat.S_ISREG(st.st_mode):
                    files.setdefault(root / os.fsdecode(r), root)
        else:
            files.setdefault(target, root)
    rulesets: dict[Path, RuleSet] = {}
    reports = []
    bad = 0
    for f, root in files.items():
        rs = rulesets.setdefault(root, RuleSet(str(root)))
        rel = str(f.relative_to(root)) if f != root else f.name
        eff = rs.effective(rel)
        if rs.errors:
            raise UsageError(next(iter(rs.errors.values())))
        try:
            data = f.read_bytes()
        except OSError as e:
            raise UsageError(f"{f}: cannot read: {e.strerror or e}") from None
        verdict = check(eff, data, str(f))
        bad += verdict.valid is False
        reports.append((f, verdict))
    if args.json:
        _print_json({"ok": bad == 0, "files": [{"path": str(f), **v.to_json()}
                                               for f, v in reports]})
    else:
        for f, v in reports:
            for name, p in v.problems():
                sev = "" if p.severity == "error" else f"{p.severity}: "
                where = f"{f}:{p.line}" if p.line else f"{f}"  # no line: no made-up 0:0
                where += f":{p.column}" if p.line and p.column else ""
                print(f"{where}: {sev}{p.message} [{name}]")
            for res in v.results:  # over a budget: unknown, which is not invalid (exit 0)
                if res.skipped and res.skipped.startswith("not validated: "):
                    print(f"{f}: {res.skipped} [{res.validator}]")
            for why in v.untrusted:
                print(f"{f}: skipped {why}", file=sys.stderr)
        print(f"{len(reports)} file{'s' if len(reports) != 1 else ''} checked, {bad} invalid",
              file=sys.stderr)
    return ExitCode.FAILURE if bad else ExitCode.OK


def cmd_trust(args: argparse.Namespace) -> int:
    from guardian.rules.rulefiles import load_rule_file
    from guardian.rules.trust import trust

    path = Path(args.file)
    if not args.revoke:
        if not path.is_file():
            raise UsageError(f"{args.file}: no such file")
        load_rule_file(path, "")  # refuse to trust a file that does not even parse
    # Revoking what was not trusted is not an error (exit 0: the file is not trusted, as
    # asked), but it is said, so a mistyped path is noticed. A deleted file can be revoked.
    real, digest, changed = trust(path, revoke=args.revoke)
    if args.json:
        _print_json({"path": real, "sha256": digest, "trusted": not args.revoke,
                     "changed": changed})
    elif args.revoke:
        print(f"revoked trust in {real} (sha256 {(digest or '')[:16]}…)" if changed
              else f"{real} was not trusted; nothing to revoke")
    else:
        print(f"{'trusted' if changed else 'already trusted:'} {real} "
              f"(sha256 {(digest or '')[:16]}…)")
    return ExitCode.OK


# ----------------------------------------------------------------------------- entry point
def quick_snapshot_args(words: list[str]) -> Any:
    """``guardian snapshot`` parsed without argparse, for agent hooks that run it on every
    tool call (argparse costs ~10 ms to import and build). Anything unusual (``--help``, an
    unknown flag, a missing value) returns None, and argparse parses and explains it."""
    from types import SimpleNamespace

    if not words or words[0] != "snapshot":
        return None
    ns = SimpleNamespace(command="snapshot", func=cmd_snapshot, paths=[], full=False,
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


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    if command == "watch":  # first: a SIGINT/SIGTERM from now on is recorded, then honoured
        from guardian import startsignals

        startsignals.install()
    args = quick_snapshot_args(words)
    if args is None:
        parser = build_parser(command if command in COMMANDS else None)
        args, extra = parser.parse_known_args(words)
        if extra:  # said by the command's parser, so the hint is its own --help
            _command_parser(parser, getattr(args, "command", None)).error(
                f"unrecognized arguments: {' '.join(extra)}")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except GuardianError as e:
        sys.stderr.write(f"guardian {args.command}: error: {e}\n")
        return int(e.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `guardian log | head`: the reader left; that is not an error.
        import contextlib

        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return int(ExitCode.OK)
    except Exception as e:
        if os.environ.get("GUARDIAN_DEBUG"):
            raise
        sys.stderr.write(f"guardian {args.command}: internal error: {type(e).__name__}: {e} "
                         "(set GUARDIAN_DEBUG=1 for a traceback)\n")
        return int(ExitCode.INTERNAL)

