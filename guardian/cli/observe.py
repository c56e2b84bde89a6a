"""Observability: ``guardian metrics | alerts | health | report | suggest`` (their arguments
are parsed in :mod:`guardian.cli.parser`; the numbers come from :mod:`guardian.observe`).

Reading is done on a read-only connection, so each works while a daemon writes. What has to
write (acknowledging alerts, saving a report, remembering a filed suggestion, rolling up a
long backlog) goes through the daemon when one runs, else takes the store's writer lock, like
every other writing command.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardian.cli.common import find_store
from guardian.errors import GuardianError, NotFoundError, UsageError
from guardian.exitcodes import ExitCode

if TYPE_CHECKING:
    import argparse

    from guardian.observe.calibrate import Baseline
    from guardian.store.db import Store


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _reader(store_path: Path) -> Store:
    from guardian.store.db import Store

    return Store.open(store_path, write=False)


def _writer(store_path: Path, method: str, params: dict[str, Any], direct: Any) -> Any:
    from guardian.client import as_writer

    return as_writer(store_path, f"observe.{method}", params, lambda w: direct(w.store))


def _baseline(args: argparse.Namespace) -> Baseline | None:
    from guardian.observe import calibrate

    value = getattr(args, "baseline_s", None)
    if value is None:
        return None
    if value <= 0:
        raise UsageError("--baseline-s must be a number of seconds above 0")
    return calibrate.given(float(value))


def _window(args: argparse.Namespace, default: str) -> tuple[int, int]:
    import time

    from guardian.timespec import parse_time

    until = parse_time(args.until) if getattr(args, "until", None) else time.time_ns()
    since = parse_time(args.since or default)
    if since >= until:
        raise UsageError(f"--since {args.since or default} is not before the end of the window")
    return since, until


def _catch_up(store_path: Path) -> None:
    """Roll up a long backlog first (no daemon does it), and measure the baseline of time
    saved if it never was, while holding the writer lock; skipped if the lock is taken."""
    from guardian.client import daemon
    from guardian.errors import StoreBusyError, StoreError
    from guardian.observe import calibrate, rollup
    from guardian.store.db import Store

    with _reader(store_path) as r:
        pending = r.rollup_pending(rollup.cutoff()) if r.observe_ready() else 1
        needs = pending > rollup.CLI_THRESHOLD or not r.observe_ready()
        uncalibrated = calibrate.stored(r) is None
    if not needs and not uncalibrated:
        return
    conn = daemon(store_path, timeout=5)
    if conn is not None:
        with conn:
            if needs:
                conn.call("observe.rollup")
        return
    try:
        w = Store.open(store_path, write=True)
    except (StoreBusyError, StoreError):
        return
    with w:
        rollup.run(w)
        if uncalibrated:
            calibrate.ensure(w)


# ----------------------------------------------------------------------------- metrics
def metrics(args: argparse.Namespace, store_path: Path) -> int:
    from guardian.observe import metrics as m

    since, until = _window(args, "24h")
    _catch_up(store_path)
    with _reader(store_path) as store:
        out = m.compute(store, since_ns=since, until_ns=until, baseline=_baseline(args))
    if args.json:
        _print_json(out)
    else:
        print(m.render(out))
    return ExitCode.OK


# ----------------------------------------------------------------------------- alerts
def alerts(args: argparse.Namespace, store_path: Path) -> int:
    from guardian.observe import alerts as a

    words = list(args.action or [])
    if words or args.all:
        if not words or words[0] != "ack":
            raise UsageError(f"unknown alerts action {words[0]!r}; use `guardian alerts ack "
                             "ID...` or `guardian alerts ack --all`" if words else
                             "--all goes with ack: `guardian alerts ack --all`")
        return _ack(args, store_path, words[1:])
    _evaluate_first(store_path)
    with _reader(store_path) as store:
        found = store.alert_list(unresolved=args.open, limit=args.limit or -1)  # 0: all
    if args.json:
        _print_json({"alerts": [a.to_json(x) for x in found]})
    else:
        print(a.render(found) if found or not args.open else "no open alerts")
    return ExitCode.OK


def _evaluate_first(store_path: Path) -> None:
    """With a daemon running, have it evaluate the alert rules now (a fresh answer)."""
    from guardian.client import daemon

    conn = daemon(store_path, timeout=10)
    if conn is None:
        return
    with conn, contextlib.suppress(GuardianError, OSError, ValueError):
        conn.call("observe.evaluate")


def _ack(args: argparse.Namespace, store_path: Path, words: list[str]) -> int:
    ids: list[int] = []
    for w in words:
        try:
            ids.append(int(w))
        except ValueError:
            raise UsageError(f"alerts ack: {w!r} is not an alert id (a number from "
                             "`guardian alerts`)") from None
    if args.all and ids:
        raise UsageError("alerts ack: give alert ids or --all, not both")
    if not args.all and not ids:
        raise UsageError("alerts ack: which alerts? give their ids, or --all")

    def direct(store: Any) -> Any:
        with store.transaction():
            return store.ack_alerts(None if args.all else ids)

    out = _writer(store_path, "ack", {"ids": ids, "all": bool(args.all)}, direct)
    if args.json:
        _print_json(out)
    else:
        if out["acknowledged"]:
            print("acknowledged " + ", ".join(map(str, out["acknowledged"])))
        if out["already"]:
            print("already acknowledged or resolved: " + ", ".join(map(str, out["already"])))
        if not out["acknowledged"] and not out["already"] and not out["missing"]:
            print("no open alerts")
    if out["missing"]:
        raise NotFoundError("no alert " + ", ".join(map(str, out["missing"])))
    return ExitCode.OK


# ----------------------------------------------------------------------------- health
def health(args: argparse.Namespace, store_path: Path) -> int:
    from guardian.observe import health as h

    if args.sample < 1:
        raise UsageError("--sample must be at least 1")
    result = h.run(store_path, full=args.full, sample=args.sample)
    if args.json:
        _print_json(result)
    else:
        print(h.render(result))
    return int(result["exit_code"])


# ----------------------------------------------------------------------------- report
def report(args: argparse.Namespace, store_path: Path) -> int:
    import guardian.observe.report as r

    if args.list:
        with _reader(store_path) as store:
            saved = store.reports(max(1, args.limit))
        if args.json:
            _print_json({"reports": [r.listing_json(x) for x in saved]})
        else:
            print(r.render_list(saved))
        return ExitCode.OK
    since, until = _window(args, "24h")
    _catch_up(store_path)
    with _reader(store_path) as store:
        rep = r.build(store, since_ns=since, until_ns=until, baseline=_baseline(args))

    def direct(store: Any) -> Any:
        with store.transaction():
            return {"id": store.save_report(since, until, rep)}

    saved = _writer(store_path, "save_report", {"since_ns": since, "until_ns": until,
                                                 "report": rep}, direct)
    rep["id"] = saved["id"]
    note = None
    if args.discoveries:
        note = r.append_discoveries(Path(args.discoveries), rep)
    if args.json:
        _print_json({**rep, "discoveries": note})
    else:
        print(r.render_markdown(rep) if args.markdown else r.render_text(rep))
    if note is not None:
        print(note["message"], file=sys.stderr)
    return ExitCode.OK


# ----------------------------------------------------------------------------- suggest
def suggest(args: argparse.Namespace, store_path: Path) -> int:
    import guardian.observe.suggest as s

    since, until = _window(args, "7d")
    _catch_up(store_path)
    with _reader(store_path) as store:
        found = s.find(store, since_ns=since, until_ns=until, baseline=_baseline(args))
        filed = store.filed_suggestions()
    from guardian.timespec import iso

    out: dict[str, Any] = {"since": iso(since), "until": iso(until),
                           "suggestions": [x.to_json(filed.get(x.key)) for x in found]}
    code = ExitCode.OK
    if args.file_issues:
        def mark(key: str, url: str | None, title: str) -> bool:
            def direct(store: Any) -> Any:
                with store.transaction():
                    return {"new": store.mark_filed(key, url, title)}

            return bool(_writer(store_path, "mark_filed", {"key": key, "url": url,
                                                           "title": title}, direct)["new"])

        result = s.file_issues(found, filed, mark)
        out["filed"] = result["filed"]
        out["skipped"] = result["skipped"]
        if result["failed"]:
            out["failed"] = result["failed"]
            code = ExitCode.FAILURE
    if args.json:
        _print_json(out)
    else:
        print(s.render(found, filed))
        for f in out.get("filed", []):
            print(f"filed: {f['url'] or '(no URL printed)'}  {f['title']}")
        for f in out.get("skipped", []):
            print(f"not filed: {f['title']}: {f['why']}")
        for f in out.get("failed", []):
            print(f"gh failed for {f['title']}: {f['error']}", file=sys.stderr)
    return int(code)


def metrics_summary(store: Any) -> Any:
    from guardian.observe.metrics import summary

    try:
        return summary(store)
    except Exception:  # a store this release cannot summarise still has a status
        return None


def cmd_alerts(args: argparse.Namespace) -> int:
    return alerts(args, find_store(args, None))


def cmd_metrics(args: argparse.Namespace) -> int:
    return metrics(args, find_store(args, None))


def cmd_health(args: argparse.Namespace) -> int:
    return health(args, find_store(args, None))


def cmd_report(args: argparse.Namespace) -> int:
    return report(args, find_store(args, None))


def cmd_suggest(args: argparse.Namespace) -> int:
    return suggest(args, find_store(args, None))
