"""``guardian watch``: the daemon that keeps every version of every watched file.

Start-up: take the store's writer lock (done by the caller), open the control socket, put the
watches in place, then reconcile each root against the stat cache (the baseline on a new store;
on a restart, what changed while Guardian was down), then report ``ready``.

Running: watchdog events cross the bridge, settle per path, and are captured in group commits by
one store thread. Lost events (queue overflow, watch limit, a full bridge) and a slow timer
trigger reconciles. Nothing here lets one bad file, request or disk error stop the daemon: the
affected paths are retried with a back-off and the error is reported.

Stop (SIGINT/SIGTERM): stop watching, capture everything still pending, commit, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio

from guardian import faults, startsignals
from guardian.agents.handler import label_windows
from guardian.capture.recorder import CaptureResult, Recorder
from guardian.daemon import pauses
from guardian.daemon.notify import Notifier
from guardian.daemon.reader_process import Read
from guardian.daemon.revert import Reverter
from guardian.daemon.server import ControlServer
from guardian.daemon.settle import Settler
from guardian.daemon.watcher import Bridge, FsEvent, Watcher
from guardian.errors import GuardianError
from guardian.events import (
    Alert,
    ErrorEvent,
    Event,
    Health,
    Ready,
    Reconciled,
    RulesReloaded,
    Stopped,
    Stopping,
    Validation,
    VersionRecorded,
    WarningEvent,
)
from guardian.kinds import CAPTURE, CONFIRM_GONE, RESCAN, Origin, SettleKey
from guardian.observe.monitor import Monitor
from guardian.paths import TEMP_PREFIX, Root
from guardian.rules.policy import Policy
from guardian.rules.rulefiles import Effective
from guardian.service import Service
from guardian.store.db import DamagedStoreError, Store, Version, store_size
from guardian.timespec import iso
from guardian.validation import pool as validatepool
from guardian.validation.check import Check, check
from guardian.writer import Writer

T = TypeVar("T")
P = ParamSpec("P")
Key = SettleKey

DELETE_GRACE_S = 0.25
MAX_BACKOFF_S = 60.0
#: Causes of "not every write is being recorded" that polling rescans stand in for.
POLLING_CAUSES = ("watcher", "watch-limit")
#: Paths whose settle window is remembered at most.
SETTLE_CACHE = 100_000
#: Paths recorded in one capture commit at most; the others due stay due for the next. A
#: capture holds its paths' contents, versions and events until it commits: behind a slow
#: one, all 100,000 files of a burst fell due at once and were one commit (444 MB peak RSS).
CAPTURE_MAX = 2048
#: Versions validated in one thread hop, their verdicts recorded in one commit.
VALIDATE_BATCH = 256
#: Versions, and bytes of their contents, held in memory for the validators; past either, a
#: version waits by its id alone and is read back from the store when its turn comes. In a
#: burst of 100,000 new files capture outran validation, and the queue held every version
#: with its content and its rules: ~3.5 KB each, 444 MB of peak RSS.
VALIDATE_HELD = 4096
VALIDATE_HELD_BYTES = 16 * 1024 * 1024
#: Sets VALIDATE_HELD (0: every version waits by its id; how the tests drive the read-back).
VALIDATE_HELD_ENV = "GUARDIAN_VALIDATE_HELD"
#: Commits of verdicts at most this often: under a burst, the versions of the next ones
#: gather meanwhile (a commit of verdicts after every capture delayed the next capture).
VERDICTS_EVERY_S = 0.05
#: Writes must have paused this long before the WAL is checkpointed.
IDLE_CHECKPOINT_S = 1.0


#: A version waiting for its validators, with its rules and content, or its id alone.
Queued = tuple[Version, Effective, bytes] | int
#: A version to validate, with its rules and content or why it could not be read back.
ToCheck = tuple[Version, Effective, bytes | BaseException]


def _validated(eff: Effective) -> bool:
    """Whether a new version under these rules goes to the validators (a protected path is
    judged as protected instead)."""
    return bool(eff.validators) and not eff.protected


class Daemon:
    """``guardian watch``'s engine over one :class:`~guardian.writer.Writer` (see the module
    docstring); ``run()`` until a signal or :meth:`request_stop`."""

    def __init__(self, writer: Writer, *, emit: Callable[[Event], None],
                 reconcile_interval: float = 600.0, poll_interval: float = 30.0,
                 notifier: Notifier | None = None,
                 emit_many: Callable[[Sequence[Event]], None] | None = None,
                 owns_process: bool = False) -> None:
        self.writer = writer
        #: The process is the daemon's own (``guardian watch``): its collector is tuned too.
        self.owns_process = owns_process
        self.store = writer.store
        self.settings = settings = writer.settings
        self.policy = writer.policy
        # Running, an edit that breaks a rule file keeps the last good rules (and alerts).
        self.policy.strict = False
        self.recorder = writer.recorder
        self.roots = self.recorder.roots
        roots = list(self.roots.values())
        self.recorder.keep_content = self._wants_validation
        self.early = self.recorder.read_early()
        self.reverter = Reverter(writer)
        self.service = Service(writer)
        self.server = ControlServer(self)
        self.bridge = Bridge()
        skip = {r.id: _skip_matcher(self.recorder, r) for r in roots}
        self.watcher = Watcher([r.bpath for r in roots], self.bridge,
                               lambda p: any(f(p) for f in skip.values()), self._closed)
        self.settler: Settler[Key] = Settler(settings.settle_ms / 1000,
                                             settings.settle_cap_ms / 1000)
        self.reconcile_interval = reconcile_interval
        self.poll_interval = poll_interval
        #: Why not every write is being recorded right now (cause -> message); see `degraded`.
        self._degraded: dict[str, str] = {}
        #: Causes that end once every root has been reconciled since (cause -> monotonic time).
        self._until_reconciled: dict[str, float] = {}
        self._reconciled_since: dict[str, set[int]] = {}
        self._health_changed = anyio.Event()
        self._failed_keys: set[Key] = set()  # deferred after a store error, not yet recorded
        self._restarting = False
        self.started = time.time()
        self._emit_sink = emit
        #: A batch's events in one go (the headless log: one write for all of them, not a
        #: write, and a wait for the GIL after it, per event).
        self._emit_many_sink = emit_many
        self._reasons: dict[tuple[int, bytes], str] = {}
        self._wake = anyio.Event()
        self._stop = anyio.Event()
        self._stop_reason = ""
        self._cancel_baseline = threading.Event()
        self._cookies: dict[bytes, anyio.Event] = {}
        self._cookie_seq = 0
        self.task_group: anyio.abc.TaskGroup | None = None
        self._judging = 0
        self._judged = anyio.Event()
        self._validate_limiter = anyio.CapacityLimiter(2)
        self._to_validate: list[Queued] = []
        self._held = (0, 0)  # versions and bytes of content held in _to_validate
        held = os.environ.get(VALIDATE_HELD_ENV, "")
        self._held_max = int(held) if held.isdigit() else VALIDATE_HELD
        self._settles: dict[tuple[int, bytes], tuple[float | None, float | None]] = {}
        self._validating = False
        self._verdicts_at = 0.0  # monotonic time of the last commit of verdicts
        self._untrusted_alerted: set[str] = set()
        self._backoff = 0.0
        self._limiter: anyio.CapacityLimiter | None = None
        self.read_limiter: anyio.CapacityLimiter | None = None
        self.reader: Store | None = None
        self._store_busy_until = 0.0  # monotonic time the last store job ended
        self._store_used = anyio.Event()  # set by each store job: a checkpoint may be due
        self.ready = False
        self.monitor = Monitor(self)  # metrics, alert rules, sinks (guardian.observe)
        #: systemd's Type=notify (READY=1, STOPPING=1, WATCHDOG=1); inert outside systemd.
        self.notifier = notifier or Notifier()

    # ----------------------------------------------------------------- plumbing
    def emit(self, event: Event) -> None:
        self._emit_sink(event)
        self.server.publish(event)
        self.notifier.on_event(event)

    def emit_all(self, events: Sequence[Event]) -> None:
        """:meth:`emit` of each event, in order."""
        if self._emit_many_sink is None:
            for event in events:
                self.emit(event)
            return
        self._emit_many_sink(events)
        for event in events:
            self.server.publish(event)
            self.notifier.on_event(event)

    @property
    def socket(self) -> Path | None:
        """The control socket, once it listens."""
        return self.server.socket

    async def in_store(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        assert self._limiter is not None
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                                  limiter=self._limiter)
        finally:
            self._store_busy_until = time.monotonic()
            self._store_used.set()

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._cancel_baseline.set()
            self.watcher.cancel()
            self._stop.set()

    # ----------------------------------------------------------------- health
    @property
    def degraded(self) -> bool:
        """True while some write may not be recorded (at once, or at all): the watcher is
        down or blind somewhere, events were lost and the reconcile is not done, or the store
        cannot record."""
        return bool(self._degraded)

    def _set_degraded(self, cause: str, message: str) -> None:
        new = cause not in self._degraded
        self._degraded[cause] = message
        if new:
            self._health_report()

    def _clear_degraded(self, cause: str) -> None:
        if self._degraded.pop(cause, None) is not None:
            self._health_report()

    def _health_report(self) -> None:
        self.emit(Health(degraded=self.degraded, causes=self._causes()))
        self._health_changed.set()

    def _causes(self) -> list[dict[str, str]]:
        items = list(self._degraded.items())  # one C call: status() runs in a worker thread
        return [{"cause": c, "message": m} for c, m in items]

    def _degraded_until_reconciled(self, cause: str, message: str) -> None:
        """``cause`` lasts until every root has had a full reconcile that started from now."""
        self._until_reconciled[cause] = time.monotonic()
        self._reconciled_since[cause] = set()
        self._set_degraded(cause, message)

    def _root_reconciled(self, root_id: int, started: float) -> None:
        for cause, since in list(self._until_reconciled.items()):
            if started < since:
                continue
            done = self._reconciled_since[cause]
            done.add(root_id)
            if done >= set(self.roots) and (cause != "watcher" or self.watcher.alive()):
                del self._until_reconciled[cause], self._reconciled_since[cause]
                self._clear_degraded(cause)

    # ----------------------------------------------------------------- main
    async def run(self) -> None:
        faults.point("daemon.start")
        # The inotify reader and the early reads wait for the GIL behind the store and event
        # loop threads, and for the collector: neither may hold them past a version's life.
        pauses.tune(collector=self.owns_process)
        self._limiter = anyio.CapacityLimiter(1)
        self.read_limiter = anyio.CapacityLimiter(1)
        validatepool.keep_warm()  # costly checks, and batch after batch, in worker processes
        # Status and other reads use their own connection: WAL readers never wait for the
        # writer, so `guardian status` answers even during a long baseline.
        self.reader = Store.open(self.store.path, write=False)
        try:
            await self._run()
        except BaseExceptionGroup as group:
            # A fatal error (a damaged store at baseline) reaches the CLI as itself: one line.
            if len(group.exceptions) == 1 and not isinstance(group.exceptions[0],
                                                             BaseExceptionGroup):
                raise group.exceptions[0] from None
            raise
        finally:
            # However the task group ended, nothing may keep the process alive: the pump's
            # worker thread (not a daemon thread) waits on the bridge until it is closed.
            self.bridge.close()
            with contextlib.suppress(Exception):
                self.watcher.stop()
            self.reader.close()
            self.notifier.close()

    async def _run(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            early = startsignals.requested()  # one that came before the loop took them over
            if early is not None:
                self.request_stop(early)
            async with anyio.create_task_group() as tg:
                self.task_group = tg
                tg.start_soon(self._signals, signals)
                await tg.start(self.server.serve)
                tg.start_soon(self.notifier.keepalive)
                await self._start_watching()
                tg.start_soon(self._pump)
                if not self._stop.is_set():
                    await self._baseline()
                tg.start_soon(self._process_loop)
                tg.start_soon(self._periodic)
                tg.start_soon(self._checkpoint_when_idle)
                tg.start_soon(self.monitor.run)
                await self._stop.wait()
                await self._shutdown()
                tg.cancel_scope.cancel()
        startsignals.reinstall()  # the loop gave SIGINT/SIGTERM back to their defaults

    async def _signals(self, signals: Any) -> None:
        async for signum in signals:
            self.request_stop(signal.Signals(signum).name)

    async def _start_watching(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.watcher.start)
        except Exception as e:  # e.g. no inotify instance left: run, degraded, and retry
            self.watcher.failed(f"cannot start: {type(e).__name__}: {e}")
        for err in self.watcher.errors:
            self.emit(WarningEvent(message=err, source="watcher"))

    async def _restart_watcher(self) -> None:
        """One of watchdog's threads died (or a root could not be watched): say so, start a
        new observer, reconcile every root. Retried with a back-off while it keeps failing;
        meanwhile rescans every ``poll_interval`` stand in for the watcher."""
        if self._restarting:
            return
        self._restarting = True
        delay = 0.0
        alerted = False
        try:
            while not self._stop.is_set():
                what = "; ".join(self.watcher.take_failures()) or "its threads stopped"
                message = f"the file watcher failed ({what})"
                degraded = (f"{message}; restarting it, rescanning every "
                            f"{self.poll_interval:g}s meanwhile")
                self._until_reconciled.pop("watcher", None)  # no reconcile counts until then
                self._set_degraded("watcher", degraded)
                self.emit(WarningEvent(message=f"{message}; restarting it and reconciling",
                                  source="watcher"))
                if not alerted:
                    alerted = True
                    await self._alert("critical", "watcher",
                                      f"{message}; Guardian restarts it and reconciles every "
                                      "root, so changes meanwhile are still recorded", None, [])
                if delay:
                    with anyio.move_on_after(delay):
                        await self._stop.wait()
                    if self._stop.is_set():
                        return
                try:
                    ok = await anyio.to_thread.run_sync(self.watcher.restart)
                except Exception as e:
                    self.watcher.failed(f"cannot restart: {type(e).__name__}: {e}")
                    ok = False
                for err in self.watcher.errors:
                    self.emit(WarningEvent(message=err, source="watcher"))
                healthy = ok and self.watcher.alive() and not self.watcher.failures_pending()
                if healthy:  # reconciles from now on see every change the dead one missed
                    self._degraded_until_reconciled("watcher", degraded)
                self.request_reconcile("watcher-restart")
                if healthy:
                    return
                delay = min(MAX_BACKOFF_S, max(1.0, delay * 2))
        finally:
            self._restarting = False

    async def _baseline(self) -> None:
        from guardian.batch import recovery

        try:
            for r in await self.in_store(recovery.recover, self.writer):
                self.emit(WarningEvent(message=f"recovered batch {r.batch_id} ({r.state_before}): "
                                          f"{r.outcome.replace('_', ' ')}, {r.files} files",
                                  source="journal"))
        except DamagedStoreError:
            raise  # nothing can be recorded: `guardian watch` exits 2 saying so
        except Exception as e:  # the journal stays for `guardian recover`; watching goes on
            self.emit(ErrorEvent(message=f"cannot recover interrupted batches: {e}; run `guardian "
                                    "recover` once the cause is fixed"))
        t0 = time.monotonic()
        recorded = 0
        first = self.store.meta_get("baseline_done") is None
        complete = True
        for root in self.roots.values():
            res = await self.in_store(self.recorder.reconcile, root.id, b"", origin="scan",
                                       confirm_missing=True, baseline=first,
                                       cancel=self._cancel_baseline)
            recorded += len(res.recorded)
            complete = complete and res.complete
            self._report(res, quiet_kinds={"baseline"})
            self._judge_all(res)  # what changed while Guardian was down obeys the rules too
        if not complete:
            return  # stopping: the next start carries on from the stat cache
        await self.in_store(self._mark_baseline)
        if self.owns_process:
            pauses.freeze_start()
        self.ready = True
        counts = await self.in_store(self.store.counts)
        self.emit(Ready(store=str(self.store.path),
                        roots=[str(r.path) for r in self.roots.values()],
                        pid=os.getpid(), files=counts["files"], versions=counts["versions"],
                        recorded=recorded, elapsed_ms=int((time.monotonic() - t0) * 1000),
                        socket=str(self.socket) if self.socket else None))

    def _mark_baseline(self) -> None:
        with self.store.transaction():
            self.store.meta_set("baseline_done", str(time.time_ns()))

    async def _shutdown(self) -> None:
        self.emit(Stopping(reason=self._stop_reason, pending=len(self.settler)))
        # Events still in the kernel or in watchdog's threads are work in flight: let them
        # through before the watches go. If the barrier fails (or the watcher is down, so no
        # cookie can come back), reconcile instead.
        if self.ready and not (self.watcher.alive() and await self.sync()):
            self.request_reconcile("shutdown")
        await anyio.to_thread.run_sync(self.watcher.stop)
        self.bridge.close()
        # Whatever the bridge still holds, then everything pending, processed now.
        items, lost = self.bridge.get_batch()
        self._route_all(items, lost, time.monotonic())
        pending = self.settler.pop_all()
        if pending:
            with contextlib.suppress(Exception):
                await self._process(pending, final=True)
        if self._judging:
            with anyio.move_on_after(30):
                await self._judged.wait()
        counts = await self.in_store(self.store.counts)
        self.emit(Stopped(versions=counts["versions"]))

    # ----------------------------------------------------------------- events in
    async def _pump(self) -> None:
        """Route what the bridge holds; sleep until the watcher's thread says there is more
        (no worker thread in between: see :meth:`Bridge.take`)."""
        loop = asyncio.get_running_loop()
        while True:
            arrived = asyncio.Event()

            def wake(ev: asyncio.Event = arrived) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(ev.set)

            items, lost = self.bridge.take(wake)
            if items or lost:
                self._route_all(items, lost, time.monotonic())
                self._wake.set()
                await anyio.lowlevel.checkpoint()  # let the loop's other tasks run between
            elif self.bridge.closed:
                return
            else:
                await arrived.wait()

    def _route_all(self, items: list[FsEvent], lost: set[str], now: float) -> None:
        if lost:  # a close's read may no longer be the last word on its path
            self.early.heard_nothing()
        for ev in items:
            self._route(ev, now)
        for reason in sorted(lost):
            if reason == "watcher-failed":
                if not self._stop.is_set():
                    assert self.task_group is not None
                    self.task_group.start_soon(self._restart_watcher)
                continue  # the restart reconciles once the new watches are in place
            if reason == "watch-limit" and "watch-limit" not in self._degraded:
                message = ("inotify watch limit reached: some directories are not watched; "
                           f"rescanning every {self.poll_interval:g}s instead. Raise the limit "
                           "with `sysctl fs.inotify.max_user_watches=524288`")
                self.emit(WarningEvent(message=message, source="watcher"))
                self._set_degraded("watch-limit", message)
            elif reason == "overflow":
                self.emit(WarningEvent(
                    message="inotify queue overflowed: events were lost; reconciling",
                    source="watcher"))
                self._degraded_until_reconciled(
                    "events-lost", "inotify queue overflowed; reconciling every root")
            elif reason == "bridge-full":
                self.emit(WarningEvent(message="event backlog full: events dropped; reconciling",
                                  source="watcher"))
                self._degraded_until_reconciled(
                    "events-lost", "event backlog full, events dropped; reconciling every root")
            self.request_reconcile(reason, now)

    def _route(self, ev: FsEvent, now: float) -> None:
        rec = self.recorder
        ends = [ev.src] if ev.dest is None else [ev.src, ev.dest]
        for path in ends:
            if path.rpartition(b"/")[2].startswith(TEMP_PREFIX):
                cookie = self._cookies.get(path)
                if cookie is not None:
                    cookie.set()
                continue  # Guardian's own temp files and cookies are never content
            key = rec.locate_key(path)
            if key is None:
                continue
            rid, rel = key
            if ev.is_dir or not rel:
                self._reasons.setdefault((rid, rel), "directory")
                self.settler.touch((RESCAN, rid, rel), now)
            else:
                window, cap = self._settle_of(rid, rel)
                # Last heard of, a close read early: that read is the path's state now.
                self.early.heard(key, last_read=ev.early)
                self.settler.touch((CAPTURE, rid, rel), now, done=ev.kind == "closed",
                                   window=window, cap=cap)

    def _closed(self, path: bytes, read: Read | None = None) -> bool:
        """A file was closed after a write (called from the inotify reader thread, as the
        event is read): read it now, so that what it holds is recorded even if it is rewritten
        before the settle window ends (:mod:`guardian.capture.early`); or take ``read``, what
        the reader process read of it (:mod:`guardian.daemon.reader_process`). True if it is
        read."""
        if path.rpartition(b"/")[2].startswith(TEMP_PREFIX):
            return False
        key = self.recorder.locate_key(path)
        if key is None or not key[1]:
            return False
        try:
            own_window = self._settle_of(*key)[0] is not None
        except Exception:  # e.g. a rule that cannot be read: the settle path records it
            return False
        if own_window:  # a rule's own window folds closed writes too
            return False
        return self.early.read_soon(key, inline=not self.watcher.reader_behind, read=read)

    async def sync(self, timeout: float = 5.0) -> bool:
        """A barrier: every event that happened before this call has been routed.

        Like watchman's sync cookies: create a file in each root and wait for its event;
        inotify delivers a watch's events in order, so everything before it has arrived.
        False if a cookie could not be written or did not come back in time.
        """
        self._cookie_seq += 1
        made: list[bytes] = []
        waits: list[anyio.Event] = []
        ok = True
        for root in self.roots.values():
            path = root.join(TEMP_PREFIX + f"cookie.{os.getpid()}.{self._cookie_seq}".encode())
            ev = anyio.Event()
            self._cookies[path] = ev
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o600))
            except OSError:
                ok = False
                self._cookies.pop(path, None)
                continue
            made.append(path)
            waits.append(ev)
        try:
            with anyio.move_on_after(timeout) as scope:
                for ev in waits:
                    await ev.wait()
            ok = ok and not scope.cancelled_caught
        finally:
            for path in made:
                self._cookies.pop(path, None)
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return ok

    async def flush(self) -> CaptureResult:
        """Everything observed so far, recorded now (no settling)."""
        return await self._process(self.settler.pop_all(self.monitor.firsts), final=True)

    def _settle_of(self, root_id: int, relpath: bytes) -> tuple[float | None, float | None]:
        """A rule's own settle window for this path, if it has one (seconds); cached, as it
        is asked for every event (the cache is dropped when a rule file changes)."""
        key = (root_id, relpath)
        got = self._settles.get(key)
        if got is None:
            eff = self.policy.effective(root_id, relpath)
            window, cap = eff.get("settle_ms"), eff.get("settle_cap_ms")
            got = (None if window is None or window == self.settings.settle_ms
                   else window / 1000,
                   None if cap is None or cap == self.settings.settle_cap_ms else cap / 1000)
            if len(self._settles) >= SETTLE_CACHE:
                self._settles.clear()
            self._settles[key] = got
        return got

    def request_reconcile(self, reason: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for rid in self.roots:
            self._reasons[(rid, b"")] = reason
            self.settler.touch((RESCAN, rid, b""), now)
        self._wake.set()

    # ----------------------------------------------------------------- processing
    async def _process_loop(self) -> None:
        while True:
            now = time.monotonic()
            due = self.settler.pop_due(now, self.monitor.firsts, limit=CAPTURE_MAX)
            if not due:
                nxt = self.settler.next_due()
                if self._wake.is_set():
                    self._wake = anyio.Event()
                with anyio.move_on_after(None if nxt is None else max(0.0, nxt - now)):
                    await self._wake.wait()
                continue
            with contextlib.suppress(Exception):  # reported and rescheduled by _process
                await self._process(due)

    async def _process(self, due: list[Key], *, final: bool = False) -> CaptureResult:
        try:
            result, trees = await self.in_store(self.monitor.observed(self._capture_batch),
                                                 due, final)
        except (sqlite3.Error, OSError, GuardianError) as e:
            self._retry_later(due, f"cannot record: {e}")
            raise
        except Exception as e:  # a bug must not kill the daemon; report it and retry later
            self._retry_later(due, f"internal error while recording: {type(e).__name__}: {e}")
            raise
        self._backoff = 0.0
        if self._failed_keys:
            self._failed_keys.difference_update(due)
            if not self._failed_keys:
                self._clear_degraded("store")
        now = time.monotonic()
        for rid, rel in result.missing:
            self.settler.defer((CONFIRM_GONE, rid, rel), now + DELETE_GRACE_S)
        for rid, rel in result.retry:
            self.settler.touch((CAPTURE, rid, rel), now)
        for rid, rel in result.subtrees:
            self.settler.touch((RESCAN, rid, rel), now)
        self._report(result)
        self._judge_all(result)
        for (rid, rel), reason, res, ms, started in trees:
            if not rel and res.complete:
                self._root_reconciled(rid, started)
            if reason != "directory":
                self.emit(Reconciled(reason=reason, path=self.roots[rid].display(rel),
                                     scanned=res.scanned, recorded=len(res.recorded),
                                     unchanged=res.unchanged, elapsed_ms=ms))
        return result

    def _capture_batch(self, due: list[Key], final: bool) -> tuple[
            CaptureResult, list[tuple[tuple[int, bytes], str, CaptureResult, int, float]]]:
        rec = self.recorder
        paths = [(r, p) for a, r, p in due if a == CAPTURE]
        confirm = [(r, p) for a, r, p in due if a == CONFIRM_GONE]
        trees = [(r, p) for a, r, p in due if a == RESCAN]
        result = CaptureResult()
        if paths:
            result.merge(rec.capture(paths, origin="watcher", confirm_missing=final,
                                     early=True))
        # Trees that exist first: a moved directory's new side claims its files as moves.
        trees.sort(key=lambda k: not os.path.isdir(self.roots[k[0]].join(k[1])))
        done = []
        for key in trees:
            reason = self._reasons.pop(key, "directory")
            t0 = time.monotonic()
            origin: Origin = "watcher" if reason == "directory" else "scan"
            res = rec.reconcile(key[0], key[1], origin=origin, confirm_missing=final)
            if not key[1]:
                with self.store.transaction():
                    self.store.meta_incr("reconcile_count")
            done.append((key, reason, res, int((time.monotonic() - t0) * 1000), t0))
            result.merge(res)
        if confirm:
            result.merge(rec.capture(confirm, origin="watcher", confirm_missing=True))
        if result.recorded:  # an agent's Bash command may be running: credit its window
            label_windows(self.store, result.recorded)
        return result, done

    def _retry_later(self, due: list[Key], message: str) -> None:
        self._backoff = min(MAX_BACKOFF_S, max(1.0, self._backoff * 2))
        self.emit(ErrorEvent(message=f"{message}; retrying in {self._backoff:g}s"))
        # Until these are recorded, writes are not: degraded (cleared when they are).
        self._failed_keys.update(due)
        self._set_degraded("store", f"{message}; retrying")
        until = time.monotonic() + self._backoff
        for key in due:
            self.settler.defer(key, until)

    def _report(self, res: CaptureResult,
                quiet_kinds: frozenset[str] | set[str] = frozenset()) -> None:
        events: list[Event] = [VersionRecorded.of(r, self.roots) for r in res.recorded
                               if r.kind not in quiet_kinds]
        events += [WarningEvent(message=w.message, path=self.roots[w.root_id].display(w.relpath))
                   for w in res.warnings]
        self.emit_all(events)

    # ----------------------------------------------------------------- rules and validation
    def _wants_validation(self, root_id: int, relpath: bytes) -> bool:
        """Called by capture (store thread): keep this content for the validators?"""
        return _validated(self.policy.effective(root_id, relpath))

    def _judge_all(self, result: CaptureResult) -> None:
        """Hand every new version to the rules: protected paths, validators, rule files."""
        for r in result.recorded:
            if r.origin in ("restore", "guardian") or r.kind in ("baseline", "reverted",
                                                                 "restored"):
                continue
            if Policy.is_rule_file(r.relpath):
                self._rules_changed(r.root_id, r.relpath)
            eff = self.policy.effective(r.root_id, r.relpath)
            if eff.protected:
                self._spawn(self._judge(r, eff, None, "protected"))
            elif r.present and r.id in result.contents:
                content = result.contents[r.id]
                n, size = self._held
                if n < self._held_max and size + len(content) <= VALIDATE_HELD_BYTES:
                    self._held = (n + 1, size + len(content))
                    self._to_validate.append((r, eff, content))
                else:  # in the store already: read back when its turn comes
                    self._to_validate.append(r.id)
        if self._to_validate and not self._validating:
            self._validating = True
            self._spawn(self._validate_pending())

    async def _validate_pending(self) -> None:
        """Validate new versions in batches off the store thread, then record the verdicts
        that call for nothing more in one commit per batch; an invalid one goes its own way
        (:meth:`_validate`: alert, revert). One task drains the queue: at 1,000 versions/s, a
        task, a thread hop and a commit per version could not keep up."""
        try:
            while self._to_validate:
                wait = self._verdicts_at + VERDICTS_EVERY_S - time.monotonic()
                if wait > 0 and len(self._to_validate) < VALIDATE_BATCH:
                    await anyio.sleep(wait)
                queued = self._to_validate[:VALIDATE_BATCH]
                del self._to_validate[:VALIDATE_BATCH]
                held = [q for q in queued if not isinstance(q, int)]
                n, size = self._held
                self._held = (n - len(held), size - sum(len(q[2]) for q in held))
                batch: list[ToCheck] = list(held)
                if len(held) < len(queued):
                    batch += await anyio.to_thread.run_sync(
                        self._read_back, [q for q in queued if isinstance(q, int)],
                        limiter=self.read_limiter)
                verdicts = await anyio.to_thread.run_sync(self._check_batch, batch,
                                                          limiter=self._validate_limiter)
                plain: list[tuple[Version, Check]] = []
                for (r, eff, data), verdict in zip(batch, verdicts, strict=True):
                    if isinstance(verdict, BaseException):
                        path = self.roots[r.root_id].display(r.relpath)
                        self.emit(ErrorEvent(message=f"cannot validate version {r.id}: "
                                             f"{type(verdict).__name__}: {verdict}", path=path))
                    elif verdict.valid is False and isinstance(data, bytes):  # (it is: checked)
                        self._spawn(self._validate(r, eff, data, verdict))
                    else:
                        plain.append((r, verdict))
                if plain:
                    await self._record_verdicts(plain)
        finally:
            self._validating = False

    def _read_back(self, version_ids: list[int]) -> list[ToCheck]:
        """The versions queued by id, read back from the store with their rules (as they
        are now) and contents; a content that cannot be read is reported for that version
        alone. A version gone meanwhile (a gc) or no longer validated is left out."""
        from guardian.store.objects import Objects

        reader = self.reader or self.store
        objects = Objects(reader)
        out: list[ToCheck] = []
        for r in sorted(reader.versions(version_ids), key=lambda v: v.id):
            eff = self.policy.effective(r.root_id, r.relpath)
            if not r.present or not _validated(eff):
                continue
            try:
                if r.object_id is None:
                    raise LookupError("its content is not in the store")
                out.append((r, eff, objects.get(r.object_id)))
            except Exception as e:
                out.append((r, eff, e))
        return out

    def _check_batch(self, batch: list[ToCheck]) -> list[Check | BaseException]:
        timed = self.monitor.timed(check)
        out: list[Check | BaseException] = []
        for r, eff, data in batch:
            if isinstance(data, BaseException):
                out.append(data)
                continue
            try:
                out.append(timed(eff, data, self.roots[r.root_id].display(r.relpath)))
            except Exception as e:  # one bad check must not drop the others' verdicts
                out.append(e)
        return out

    async def _record_verdicts(self, items: list[tuple[Version, Check]]) -> None:
        self._verdicts_at = time.monotonic()
        try:
            await self.in_store(self.reverter.record_verdicts,
                                [(r.id, verdict) for r, verdict in items])
        except Exception as e:
            self.emit(ErrorEvent(message=f"cannot record {len(items)} verdicts: "
                                 f"{type(e).__name__}: {e}"))
            return
        events = []
        untrusted = []
        for r, verdict in items:
            path = self.roots[r.root_id].display(r.relpath)
            problems = [{"validator": name, "line": p.line, "column": p.column,
                         "severity": p.severity, "message": p.message}
                        for name, p in verdict.problems()]
            events.append(self._validation(r, path, verdict, problems))
            if verdict.untrusted:
                untrusted.append((r, path, verdict))
        self.emit_all(events)
        for r, path, verdict in untrusted:
            await self._untrusted(r, path, verdict)

    def _spawn(self, coro: Any) -> None:
        assert self.task_group is not None
        self._judging += 1
        if self._judged.is_set():
            self._judged = anyio.Event()

        async def run() -> None:
            try:
                await coro
            finally:
                self._judging -= 1
                if not self._judging:
                    self._judged.set()

        self.task_group.start_soon(run)

    async def _validate(self, r: Version, eff: Effective, data: bytes,
                        verdict: Check | None = None) -> None:
        """Validate a new version off the store thread (a costly check runs in a worker
        process: ``validatepool``), and before a revert, the earlier versions it could put
        back that were never validated (a baseline): the store thread only records verdicts,
        so no capture ever waits for a validator."""
        path = self.roots[r.root_id].display(r.relpath)
        if verdict is None:
            verdict = await anyio.to_thread.run_sync(self.monitor.timed(check), eff, data,
                                                     path, limiter=self._validate_limiter)
        earlier: dict[int, Check] = {}
        if verdict.valid is False and eff.on_invalid == "revert":
            with contextlib.suppress(Exception):  # unread, it counts as not validated
                while (older := await anyio.to_thread.run_sync(
                        self._unchecked_earlier, r.id, earlier,
                        limiter=self.read_limiter)) is not None:
                    earlier[older[0]] = await anyio.to_thread.run_sync(
                        check, eff, older[1], path, limiter=self._validate_limiter)
        await self._judge(r, eff, verdict, "invalid", earlier)

    def _unchecked_earlier(self, version_id: int,
                           known: dict[int, Check]) -> tuple[int, bytes] | None:
        """The next earlier version (id, content) the reverter would consider that has no
        verdict yet, or None when the one it would put back is known (as Reverter._target
        walks them: newest first, skipping absent, metadata-only and invalid ones)."""
        from guardian.store.objects import Objects

        reader = self.reader or self.store
        v = reader.version(version_id)
        if v is None:
            return None
        for x in reader.versions_of(v.file_id):
            if x.id >= v.id or not x.present or x.object_id is None or x.valid is False:
                continue
            if x.valid is None and x.id not in known:
                return x.id, Objects(reader).get(x.object_id)
            if x.valid is None and known[x.id].valid is False:
                continue
            return None
        return None

    async def _judge(self, r: Version, eff: Effective, verdict: Check | None,
                     reason: str, earlier: dict[int, Check] | None = None) -> None:
        path = self.roots[r.root_id].display(r.relpath)
        try:
            j = await self.in_store(self.reverter.judge, r.id, eff, verdict, reason,
                                     earlier)
        except Exception as e:  # a bad file or a bug must not kill the daemon
            self.emit(ErrorEvent(message=f"cannot judge version {r.id}: "
                                    f"{type(e).__name__}: {e}", path=path))
            return
        if verdict is not None:
            await self._validated(r, path, verdict, j.problems)
        done = [j.reverted_version] if j.action == "reverted" and j.reverted_version else []
        for vid in [*j.recorded, *done]:  # recorded: what stood in the way, and its removal
            v = await self.in_store(self.store.version, vid)
            if v is not None:
                self.emit(VersionRecorded(id=v.id, path=self.roots[v.root_id].display(v.relpath),
                                          kind=v.kind, origin=v.origin, sha256=v.sha256,
                                          size=v.size, note=v.note))
        severity, kind = {
            "alert": ("warning", "invalid"), "reverted": ("warning", "reverted"),
            "kept": ("warning", "kept"), "gave-up": ("critical", "gave-up"),
            "failed": ("critical", "revert-failed"),
        }.get(j.action, (None, None))
        if severity and kind:
            ids = [x for x in (j.version_id, j.restored_from, j.reverted_version) if x]
            await self._alert(severity, kind, j.message, path, ids)

    async def _validated(self, r: Version, path: str, verdict: Check,
                         problems: list[dict[str, Any]]) -> None:
        """The Validation event of ``r``, and an alert the first time in this run that an
        untrusted command validator is skipped."""
        self.emit(self._validation(r, path, verdict, problems))
        await self._untrusted(r, path, verdict)

    @staticmethod
    def _validation(r: Version, path: str, verdict: Check,
                    problems: list[dict[str, Any]]) -> Validation:
        return Validation(id=r.id, path=path, valid=verdict.valid, problems=problems,
                          skipped=[*verdict.not_validated(), *verdict.untrusted])

    async def _untrusted(self, r: Version, path: str, verdict: Check) -> None:
        for why in verdict.untrusted:
            if why not in self._untrusted_alerted:
                self._untrusted_alerted.add(why)
                await self._alert("warning", "untrusted",
                                  f"skipped untrusted command validator: {why}", path, [r.id])

    async def _alert(self, severity: str, kind: str, message: str, path: str | None,
                     versions: list[int]) -> None:
        try:
            stored, new = await self.in_store(self._store_alert, severity, kind, message,
                                               path, versions)
        except Exception:  # an alert that cannot be stored is still shown
            self.emit(Alert(severity=severity, kind=kind, message=message, path=path,
                            versions=versions))
            return
        self.monitor.announce(stored, new)  # with its id, state and count; sinks if new

    def _store_alert(self, severity: str, kind: str, message: str, path: str | None,
                     versions: list[int]) -> tuple[dict[str, Any], bool]:
        return self.monitor.store_alert(severity, kind, message, path, versions)

    def _rules_changed(self, root_id: int, relpath: bytes) -> None:
        path = self.roots[root_id].display(relpath)
        error = self.policy.rule_file_changed(root_id, relpath)
        self._settles = {}  # (a new dict: the inotify thread may be reading the old one)
        self.recorder.ignore[root_id].invalidate()
        if error:
            self.emit(RulesReloaded(path=path, ok=False, error=error))
            assert self.task_group is not None
            self.task_group.start_soon(self._alert, "critical", "rules",
                                f"{error} (the last good rules stay in force)", path, [])
        else:
            self.emit(RulesReloaded(path=path, ok=True))
            self.monitor.resolve_key(f"rules:{path}")
            # Ignore globs may have changed: look at the directory again.
            d = relpath.rpartition(b"/")[0]
            self._reasons.setdefault((root_id, d), "rules")
            self.settler.touch((RESCAN, root_id, d), time.monotonic())
            self._wake.set()

    async def _checkpoint_when_idle(self) -> None:
        """Checkpoint the store's WAL once writes have paused for a second (see
        ``store.WAL_INLINE_CHECKPOINT``): no capture or batch waits for one."""
        while True:
            await self._store_used.wait()  # asleep while nothing is written
            self._store_used = anyio.Event()
            while (wait := self._store_busy_until + IDLE_CHECKPOINT_S - time.monotonic()) > 0:
                await anyio.sleep(wait)
            if self.store.commits_since_checkpoint:
                with contextlib.suppress(Exception):  # the next pause tries again
                    await self.in_store(self.store.checkpoint)
                self._store_used = anyio.Event()  # (the checkpoint itself used the store)

    async def _periodic(self) -> None:
        """A slow reconcile anyway; rescans every ``poll_interval`` while the watcher is down
        or blind somewhere (woken when that changes)."""
        last = time.monotonic()
        while True:
            polling = any(c in self._degraded for c in POLLING_CAUSES)
            changed = self._health_changed = anyio.Event()
            wait = last + (self.poll_interval if polling else self.reconcile_interval) \
                - time.monotonic()
            if wait > 0:
                with anyio.move_on_after(wait):
                    await changed.wait()
                continue
            last = time.monotonic()
            self.request_reconcile("periodic-poll" if polling else "periodic")

    def status(self) -> dict[str, Any]:
        reader = self.reader or self.store
        counts = reader.counts()
        causes = self._causes()
        if self.ready and not self.watcher.alive() and not self._stop.is_set() \
                and not any(c["cause"] == "watcher" for c in causes):
            # Its death is reported through the bridge at once; this is the cheap check that
            # would catch a way of dying that is not.
            causes.append({"cause": "watcher", "message": "the file watcher is not running"})
        return {
            "running": True,
            "ready": self.ready,
            "pid": os.getpid(),
            "store": str(self.store.path),
            "socket": str(self.socket) if self.socket else None,
            "roots": [str(r.path) for r in self.roots.values()],
            "files": counts["files"],
            "versions": counts["versions"],
            "objects": counts["objects"],
            "store_bytes": store_size(self.store.path),
            "last_event": iso(counts["last_version_ns"]) if counts["last_version_ns"] else None,
            "reconcile_count": int(reader.meta_get("reconcile_count") or 0),
            "pending": len(self.settler),
            "degraded": bool(causes),
            "degraded_causes": causes,
            "uptime_s": round(time.time() - self.started, 3),
            "metrics": self.monitor.summary(),
            "metrics_addr": self.monitor.exporter.address if self.monitor.exporter else None,
        }


def _skip_matcher(recorder: Recorder, root: Root) -> Callable[[bytes], bool]:
    """For the watcher: is this directory ignored (so not worth an inotify watch)?"""
    from guardian.rules.ignore import IgnoreMatcher

    base = recorder.ignore[root.id]
    own = IgnoreMatcher(root.bpath, extra_ignored=base.extra)
    prefix = root.bpath + b"/"

    def skip(path: bytes) -> bool:
        if not path.startswith(prefix):
            return False
        return own.dir_ignored(path[len(prefix):])

    return skip


def emit_json_line(event: Event) -> None:
    """The headless log: one JSON object per line on stderr."""
    emit_json_lines((event,))


#: One writer at a time: the loop, the watcher's threads and the logging handler all emit,
#: and ``sys.stderr``'s text layer is not thread-safe (two writes interleaved mid-line).
_EMIT_LOCK = threading.RLock()  # reentrant: a signal handler may emit mid-write


def emit_json_lines(events: Sequence[Event]) -> None:
    """:func:`emit_json_line` of each event, in one write, never interleaved with another."""
    if not events:
        return
    text = "".join(json.dumps(e.to_dict()) + "\n" for e in events)
    with _EMIT_LOCK:
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
