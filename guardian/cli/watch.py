"""``guardian watch``: the daemon in the foreground (on a terminal, with the TUI attached);
``guardian tui``: the TUI on a store.
"""

from __future__ import annotations

import contextlib
import sys

from guardian.cli.common import explicit_store, find_store
from guardian.errors import UsageError
from guardian.exitcodes import ExitCode

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any




def cmd_watch(args: argparse.Namespace) -> int:
    from guardian import faults, startsignals

    startsignals.install()  # before anything slow: SIGINT/SIGTERM are recorded from here on
    faults.point("watch.start")
    import anyio

    from guardian.daemon.loop import Daemon, emit_json_line, emit_json_lines
    from guardian.daemon.notify import Notifier
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
    store_path = explicit_store(args) or store_dir_for_roots(roots)
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
            daemon = Daemon(writer, emit=emit_json_line, emit_many=emit_json_lines,
                            reconcile_interval=args.reconcile_interval,
                            poll_interval=args.poll_interval,
                            notifier=Notifier.from_environment(), owns_process=True)
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


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.command import run_tui  # lazy: the core never imports the UI

    return run_tui(find_store(args, None))
