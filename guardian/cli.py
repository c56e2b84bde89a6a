"""The ``guardian`` command line.

Every command that reports takes ``--json`` (those shapes are an API, tested); errors are one
line on stderr with an exit code from :class:`guardian.exitcodes.ExitCode`. Imports of heavy
modules happen inside the commands, so ``guardian --version`` and hooks start fast.
"""

from __future__ import annotations

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

EPILOG = """\
Every version of every file under the watched roots is kept in a store outside the tree
(default: one per set of roots under $XDG_STATE_HOME/guardian/stores; --store or
$GUARDIAN_STORE to choose). Exit codes: 0 ok, 1 the command found a problem, 2 usage or input
error.
"""


COMMANDS = ("watch", "snapshot", "log", "show", "diff", "restore", "status", "verify", "gc",
            "rules", "validate", "trust", "apply", "recover", "bench", "alerts", "metrics",
            "health", "report", "suggest")


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse  # not at module level: `guardian snapshot` from a hook parses without it

    class _Parser(argparse.ArgumentParser):
        """argparse, with usage errors as one line and exit code 2."""

        def error(self, message: str) -> NoReturn:
            sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
            raise SystemExit(ExitCode.USAGE)

    return _Parser


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
        p.add_argument("--reconcile-interval", type=float, default=600.0, metavar="SECONDS",
                       help="full rescan period, a safety net for lost events (default: 600)")
        p.add_argument("--poll-interval", type=float, default=30.0, metavar="SECONDS",
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
        p.add_argument("-n", "--limit", type=int, default=None,
                       help="at most N versions (default: all for a file, 50 otherwise; 0 = all)")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_log)

    p = sub.add_parser("show", help="print the bytes of a version",
                       description="Write the content of a version of PATH to stdout (default: "
                       "the newest version with content).")
    if only in (None, "show"):
        p.add_argument("path", metavar="PATH")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--version", dest="version_id", type=int, metavar="ID")
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
                       "(their bytes stay in the store). Writes are atomic per file and never "
                       "leave the root.")
    if only in (None, "restore"):
        p.add_argument("path", metavar="PATH")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--version", dest="version_id", type=int, metavar="ID")
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

    p = sub.add_parser("verify", help="re-hash every stored object; exit 1 if any is damaged")
    if only in (None, "verify"):
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_verify)

    p = sub.add_parser("gc", help="apply retention (keep_versions, keep_days)",
                       description="Drop versions beyond the retention of rules/default.toml; the "
                       "newest version of a file that exists is never dropped.")
    if only in (None, "gc"):
        p.add_argument("--dry-run", action="store_true", help="count what would go, drop nothing")
        p.add_argument("--keep-versions", type=int, metavar="N",
                       help="override keep_versions (at least 1)")
        p.add_argument("--keep-days", type=float, metavar="D", help="override keep_days")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_gc)

    p = sub.add_parser("apply", help="write many files at once, all or nothing (a manifest)",
                       description="Apply a JSON or TOML manifest of operations (write, edit, "
                       "delete, render, mkdir) atomically: every file gets its new content or "
                       "none does, even across a crash. Every new content is validated first. "
                       "Exit 0 applied, 1 refused or rolled back, 2 usage error.")
    if only in (None, "apply"):
        p.add_argument("manifest", metavar="MANIFEST", help="a .json or .toml file, or - for "
                       "standard input")
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
        p.add_argument("--files", type=int, default=200, help="files per scenario (200)")
        p.add_argument("--size", type=int, default=4096, help="bytes per file (4096)")
        p.add_argument("--repeats", type=int, default=5, help="rounds per scenario (5)")
        p.add_argument("--large", type=int, default=1000,
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
        p.add_argument("-n", "--limit", type=int, default=20, help="at most N (default 20)")
        _json_arg(p)
        _store_arg(p)
        p.set_defaults(func=cmd_alerts)
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
    from guardian.store import Store

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


def _recorder(store: Any, roots: list[Any], settings: Any) -> Any:
    """The store's writer side, with the roots' rules (ignore globs, size caps, retention)."""
    from guardian.capture import Recorder
    from guardian.policy import Policy

    return Recorder(store, roots, settings, policy=Policy({r.id: r for r in roots}))


def _session(args: argparse.Namespace) -> str | None:
    return getattr(args, "session", None) or os.environ.get("GUARDIAN_SESSION") or None


# ----------------------------------------------------------------------------- commands
def cmd_watch(args: argparse.Namespace) -> int:
    import anyio

    from guardian.daemon import Daemon, emit_json_line
    from guardian.locations import store_dir_for_roots
    from guardian.paths import check_root
    from guardian.settings import load_defaults
    from guardian.store import Store

    roots = list(dict.fromkeys(check_root(r) for r in (args.roots or ["."])))
    for a in roots:
        for b in roots:
            if a != b and a in b.parents:
                raise UsageError(f"{b} is inside {a}: watch {a} alone")
    if args.reconcile_interval <= 0 or args.poll_interval <= 0:
        raise UsageError("intervals must be positive")
    settings = load_defaults()
    store_path = _explicit_store(args) or store_dir_for_roots(roots)
    _install_json_logging(emit_json_line)
    store = Store.open(store_path, write=True)
    daemon = None
    try:
        root_objs = store.add_roots(roots)
        policy = _load_policy(root_objs)
        daemon = Daemon(store, root_objs, settings, emit=emit_json_line,
                        reconcile_interval=args.reconcile_interval,
                        poll_interval=args.poll_interval, policy=policy)
        if args.metrics_addr:
            daemon.monitor.serve_metrics(args.metrics_addr)
        anyio.run(daemon.run)
    finally:
        if daemon is not None:
            daemon.monitor.stop_metrics()
            daemon.recorder.close()
        store.close()
    return ExitCode.OK


def _load_policy(roots: list[Any]) -> Any:
    """Every rule file under the roots, checked now: a broken one stops start-up (exit 2)."""
    from guardian.ignore import IgnoreMatcher
    from guardian.policy import Policy

    policy = Policy({r.id: r for r in roots})
    errors: list[str] = []
    for r in roots:
        matcher = IgnoreMatcher(r.bpath)
        errors += policy.rulesets[r.id].discover(
            lambda rel, m=matcher: m.dir_ignored(os.fsencode(rel)))
    if errors:
        more = f" (and {len(errors) - 1} more rule file errors)" if len(errors) > 1 else ""
        raise UsageError(errors[0] + more)
    return policy


def _install_json_logging(emit: Callable[[Any], None]) -> None:
    """Library log records and Python warnings become JSON warning lines, like ours."""
    import logging

    from guardian.events import Warning as WarningEvent

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
    first = absolute(args.paths[0]) if args.paths else cwd
    store_path = _explicit_store(args) or find_store_for(first)
    new_roots: list[Path] = []
    if store_path is None:
        store_path = store_dir_for_roots([cwd])
    roots = read_store_roots(store_path)
    if not roots:
        new_roots = [cwd]
        roots = new_roots
    fake = [Root(i, r) for i, r in enumerate(roots)]
    paths = []
    for p in args.paths:
        locate(p, fake)  # a one-line error for a path outside the roots, before any work
        paths.append(os.fsdecode(absolute(p)))

    def direct(store: Any) -> Any:
        from guardian.progress import Progress
        from guardian.service import Service
        from guardian.settings import load_defaults

        settings = load_defaults()
        progress = Progress("snapshot")
        root_objs = store.add_roots(new_roots) if new_roots else []
        root_objs = root_objs or store.roots()
        rec = _recorder(store, root_objs, settings)
        try:
            return Service(rec, settings).snapshot(paths, session=_session(args),
                                                   progress=progress)
        finally:
            rec.close()
            progress.close()

    out = as_writer(store_path, "snapshot",
                    {"paths": paths, "session": _session(args), "full": args.full}, direct)
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
        print(f"{out['recorded']} recorded, {out['unchanged']} unchanged")
    return ExitCode.OK


def cmd_log(args: argparse.Namespace) -> int:
    from guardian.history import version_json
    from guardian.paths import locate, show
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
                raise NotFoundError(f"{show(root.join(rel))}: no recorded versions")
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
    from guardian.history import content, resolve
    from guardian.paths import locate, show

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

    from guardian.history import content, parse_version_spec, resolve, unified_diff
    from guardian.paths import locate, show
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
    from guardian.paths import absolute
    from guardian.service import Service
    from guardian.settings import load_defaults
    from guardian.store import Store

    at_ns = _resolve_at(args)
    store_path = _find_store(args, args.path)
    path = os.fsdecode(absolute(args.path))
    settings = load_defaults()
    params = {"path": path, "version": args.version_id, "at_ns": at_ns,
              "dry_run": args.dry_run, "session": _session(args)}

    def direct(store: Store) -> Any:
        rec = _recorder(store, store.roots(), settings)
        try:
            return Service(rec, settings).restore(path, version=args.version_id, at_ns=at_ns,
                                                  dry_run=args.dry_run, session=_session(args))
        finally:
            rec.close()

    out = as_writer(store_path, "restore", params, direct)
    if args.json:
        _print_json(out)
        return ExitCode.OK
    verb = "would" if out["dry_run"] else ""
    for c in out["changes"]:
        src = f" (from version {c['from_version']})" if c["from_version"] else ""
        print(f"{verb + ' ' if verb else ''}{c['action']:<6} {c['path']}{src}")
    for s in out["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    n = len(out["changes"])
    print(f"{n} file{'s' if n != 1 else ''} {'to change' if verb else 'restored'}, "
          f"{out['unchanged']} already as wanted")
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    from guardian.client import daemon
    from guardian.locations import find_store_for
    from guardian.store import Store

    store_path = _explicit_store(args) or find_store_for(Path.cwd())
    info: dict[str, Any]
    if store_path is None:
        info = {"running": False, "store": None, "roots": []}
    else:
        conn = daemon(store_path, timeout=10)
        if conn is not None:
            with conn:
                info = conn.call("status")
        elif not (store_path / "guardian.db").exists():
            info = {"running": False, "store": str(store_path), "roots": []}
        else:
            from guardian.daemon import store_size
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
    from guardian.verify import verify

    with _open_reader(args, None) as store:
        progress = Progress("verify")
        try:
            result = verify(store, progress)
        finally:
            progress.close()
    if args.json:
        _print_json(result.to_json())
    else:
        if not result.database_ok:
            print(f"database: {result.database_message}")
        for d in result.damaged:
            print(f"corrupt object {d.sha256}: {d.reason}")
            for v in d.versions:
                print(f"  used by version {v['id']} of {v['path']} ({v['time']})")
        status = "ok" if result.ok else f"{len(result.damaged)} damaged"
        print(f"{result.objects} objects, {_human_size(result.bytes)} checked: {status}")
    return ExitCode.OK if result.ok else ExitCode.FAILURE


def cmd_gc(args: argparse.Namespace) -> int:
    from guardian.client import as_writer
    from guardian.settings import load_defaults
    from guardian.store import Store

    store_path = _find_store(args, None)
    settings = load_defaults()
    if (args.keep_versions is not None and args.keep_versions < 1) or (
            args.keep_days is not None and args.keep_days < 0):
        raise UsageError("--keep-versions must be at least 1 and --keep-days at least 0")

    def direct(store: Store) -> Any:
        from guardian.service import Service

        rec = _recorder(store, store.roots(), settings)
        try:
            return Service(rec, settings).gc(dry_run=args.dry_run,
                                             keep_versions=args.keep_versions,
                                             keep_days=args.keep_days)
        finally:
            rec.close()

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
    from guardian import manifest as mf
    from guardian.batch import apply
    from guardian.journal import BatchError
    from guardian.paths import absolute

    if args.manifest == "-":
        raw, source = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            raw, source = Path(args.manifest).read_bytes(), args.manifest
        except OSError as e:
            raise UsageError(f"{args.manifest}: {e.strerror or e}") from None
    m = mf.load(raw, source)
    base = absolute(args.root)
    if not base.is_dir():
        raise UsageError(f"{args.root}: not a directory")
    try:
        out = apply(m, base, store=_explicit_store(args), dry_run=args.dry_run,
                    session=_session(args))
    except BatchError as e:
        if args.json:
            _print_json({"ok": False, "error": e.to_json()})
        else:
            what = "rolled back" if e.rolled_back else "refused"
            sys.stderr.write(f"guardian apply: {what}: {e}\n")
        return ExitCode.FAILURE
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

    def direct(store: Any) -> Any:
        from guardian.service import Service
        from guardian.settings import load_defaults

        settings = load_defaults()
        rec = _recorder(store, store.roots(), settings)
        try:
            return Service(rec, settings).recover(sweep=args.sweep)
        finally:
            rec.close()

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
    from guardian.paths import absolute
    from guardian.rules import RuleSet

    target = absolute(args.path)
    root = _rules_root(args, target)
    rel = "" if target == root else str(target.relative_to(root))
    rs = RuleSet(str(root))
    probe = f"{rel}/x" if target.is_dir() and rel else ("x" if target.is_dir() else rel)
    eff = rs.effective(probe)
    if rs.errors:
        raise UsageError(next(iter(rs.errors.values())))
    out = eff.to_json()
    out["path"] = str(target)
    out["root"] = str(root)
    if args.json:
        _print_json(out)
        return ExitCode.OK
    print(f"{target}  (root {root})")
    for key, item in out["settings"].items():
        print(f"  {key} = {json.dumps(item['value'])}    # {item['from']}")
    return ExitCode.OK


def cmd_validate(args: argparse.Namespace) -> int:
    import stat

    from guardian.ignore import IgnoreMatcher
    from guardian.paths import absolute
    from guardian.policy import check
    from guardian.rules import RuleSet
    from guardian.scan import WalkReport, walk

    files: list[tuple[Path, Path]] = []  # (root, file)
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
                    files.append((root, root / os.fsdecode(r)))
        else:
            files.append((root, target))
    rulesets: dict[Path, RuleSet] = {}
    reports = []
    bad = 0
    for root, f in files:
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
                print(f"{f}:{p.line or 0}:{p.column or 0}: {sev}{p.message} [{name}]")
            for why in v.untrusted:
                print(f"{f}: skipped {why}", file=sys.stderr)
        print(f"{len(reports)} file{'s' if len(reports) != 1 else ''} checked, {bad} invalid",
              file=sys.stderr)
    return ExitCode.FAILURE if bad else ExitCode.OK


def cmd_trust(args: argparse.Namespace) -> int:
    from guardian.rules import load_rule_file
    from guardian.trust import trust

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{args.file}: no such file")
    if not args.revoke:
        load_rule_file(path, "")  # refuse to trust a file that does not even parse
    real, digest = trust(path, revoke=args.revoke)
    if args.json:
        _print_json({"path": real, "sha256": digest, "trusted": not args.revoke})
    else:
        verb = "revoked trust in" if args.revoke else "trusted"
        print(f"{verb} {real} (sha256 {digest[:16]}…)")
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
    args = quick_snapshot_args(words)
    if args is None:
        command = next((w for w in words if not w.startswith("-")), None)
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(words)
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

