"""The daemon's side of guardian.observe: measure what it does, raise and resolve alerts.

One :class:`Monitor` per daemon. It measures capture and reconcile (wrapping the daemon's
store job: one ``capture`` row per group commit, with the write -> committed latency of each
version from the first event the daemon saw for its path; one ``reconcile`` row per tree
scan, labelled with its reason), validation (wrapping the check: one ``validate`` row per
content), reverts (from the judgement's alert) and the requests it serves; it writes those
rows every half second, or with a store job once ``FLUSH_ROWS`` wait, without an fsync of
their own (a commit of them after every capture delayed the capture's version events).
Every few seconds it evaluates the alert rules over the metrics and opens or resolves metric
alerts; every few minutes it rolls old rows up; once, it measures the naive baseline of
"time saved". Sinks are fed from here, off the event loop. Nothing here may stop the daemon:
every failure is reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from guardian.kinds import CAPTURE
from guardian.observe import record
from guardian.observe.alerts import METRIC_KINDS, PATH_KINDS, Condition, evaluate, key_of
from guardian.rules.thresholds import load, signature

if TYPE_CHECKING:
    import anyio.abc

    from guardian.events import Event
    from guardian.observe.evaluator import Evaluator
    from guardian.paths import Root
    from guardian.rules.rulefiles import Effective
    from guardian.store.db import Store
    from guardian.validation.check import Check

#: Seconds between rollup steps and between store-size samples.
ROLLUP_EVERY_S = 300.0
SAMPLE_EVERY_S = 3600.0
#: Measurements waiting from which a store job writes them (else the loop does, every 0.5 s).
FLUSH_ROWS = 512
#: Alert evaluation takes at most about 1/EVAL_SHARE of the daemon's time (see ``_loop``).
EVAL_SHARE = 20
_RECENT = 4096
R = TypeVar("R")
_UNTRUSTED_SOURCE = re.compile(r"\(from (.+?); run `guardian trust")


class Host(Protocol):
    """What the monitor needs of the daemon it runs in (the daemon is above this package:
    it passes itself, typed by this protocol, so the arrow keeps pointing down)."""

    store: Store
    reader: Store | None
    roots: dict[int, Root]
    ready: bool
    task_group: anyio.abc.TaskGroup | None
    read_limiter: anyio.CapacityLimiter | None

    @property
    def degraded(self) -> bool: ...

    def emit(self, event: Event) -> None: ...

    async def in_store(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R: ...

    async def sync(self, timeout: float = ...) -> bool: ...


class Monitor:
    def __init__(self, daemon: Host) -> None:
        self.d = daemon
        #: Filled by the settler when it hands keys over: when each was first seen.
        self.firsts: dict[Any, float] = {}
        self._rows: deque[tuple[Any, ...]] = deque()
        self._resolve: deque[str] = deque()
        self._raise: deque[tuple[str, str, str, str, str | None]] = deque()
        self._verdict_at: OrderedDict[str, float] = OrderedDict()
        self._committed_at: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._dirty = False
        self._roots = [r.path for r in daemon.roots.values()]
        self.thresholds, self.config_errors = load(self._roots)
        self._th_sig = signature(self._roots)
        self._untrusted_sinks: set[str] = set()
        #: In-process counters the Prometheus exporter adds to what the store says.
        self.events_lost = 0
        self.exporter: Any = None
        self.last_evaluation: list[Condition] = []
        self._evaluator: Evaluator | None = None  # started on first evaluation

    # ----------------------------------------------------------------- capture (store thread)
    def observed(self, fn: Callable[[list[Any], bool], tuple[R, list[Any]]]
                 ) -> Callable[[list[Any], bool], tuple[R, list[Any]]]:
        """Wrap the daemon's store job ``(due, final) -> (result, trees)``: measure it, and
        write the measurements waiting (this one's too) in a commit of their own if
        ``FLUSH_ROWS`` are waiting (else the loop writes them within half a second)."""

        def run(due: list[Any], final: bool) -> tuple[R, list[Any]]:
            firsts = {k: self.firsts.pop(k) for k in due if k in self.firsts}
            t0 = time.monotonic()
            wall = time.time_ns()
            try:
                result, trees = fn(due, final)
            except Exception as e:
                self._rows.append(record.row(
                    "capture", int((time.monotonic() - t0) * 1e9), "error",
                    category=record.category_of(e), items=len(due),
                    detail={"message": str(e)[:300]}, time_ns=wall))
                raise
            done = time.monotonic()
            self._measure(due, firsts, result, trees, t0, done, wall)
            if len(self._rows) >= FLUSH_ROWS:
                self.flush()
            return result, trees

        return run

    def _measure(self, due: list[Any], firsts: dict[Any, float], result: Any, trees: list[Any],
                 t0: float, done: float, wall: int) -> None:
        in_trees = {id(r) for t in trees for r in t[2].recorded}
        own = [r for r in result.recorded if id(r) not in in_trees]
        lat = record.Latency()
        paths = {(r.root_id, r.relpath) for r in own}
        for key, first in firsts.items():
            if key[0] == CAPTURE and (key[1], key[2]) in paths:
                lat.add(done - first)
        tree_ms = sum(int(t[3]) for t in trees)
        if own or lat.n:
            opt = ["group_commit"] if len(own) > 1 else None
            self._rows.append(record.row(
                "capture", max(0, int((done - t0) * 1e9) - tree_ms * 1_000_000), "ok",
                optimisation=opt, items=len(own), nbytes=sum(r.size or 0 for r in own),
                latency=lat.to_json(), time_ns=wall))
        now = time.monotonic()
        for r in result.recorded:
            self._remember(self._committed_at, self.d.roots[r.root_id].display(r.relpath), now)
        for t in trees:
            (rid, rel), reason, res, ms = t[0], t[1], t[2], t[3]
            if reason == "directory":
                continue
            if reason in record.LOSS_REASONS:
                self.events_lost += 1
                self._raise.append((
                    f"events-lost:{reason}", "warning", "events-lost",
                    f"events were lost ({reason}): a reconcile of "
                    f"{self.d.roots[rid].display(rel)} recorded {len(res.recorded)} versions "
                    f"in {ms} ms", None))
                if reason != "watch-limit":
                    self._resolve.append(f"events-lost:{reason}")
            self._rows.append(record.row(
                "reconcile", int(ms) * 1_000_000, "ok" if res.complete else "error",
                category=None if res.complete else "system",
                optimisation=["stat_cache"] if res.unchanged else None,
                items=len(res.recorded), nbytes=sum(r.size or 0 for r in res.recorded),
                label=reason, detail={"scanned": res.scanned, "unchanged": res.unchanged},
                time_ns=wall))

    @staticmethod
    def _remember(d: OrderedDict[str, float], key: str, value: float) -> None:
        d[key] = value
        d.move_to_end(key)
        while len(d) > _RECENT:
            d.popitem(last=False)

    def flush(self) -> None:
        """Write the measurements waiting (call in the store thread)."""
        rows = []
        while self._rows:
            rows.append(self._rows.popleft())
        if rows:
            try:
                record.write_rows(self.d.store, rows)
                self._dirty = True
            except Exception:
                if len(self._rows) < 10_000:  # kept for the next commit (a full disk, say)
                    self._rows.extendleft(reversed(rows))

    # ----------------------------------------------------------------- validation (thread)
    def timed(self, check: Callable[..., Check]) -> Callable[..., Check]:
        """:func:`guardian.policy.check`, measured: one ``validate`` row per content."""
        return lambda eff, data, path, **kw: self._check(check, eff, data, path, **kw)

    def _check(self, check: Callable[..., Check], eff: Effective, data: bytes, path: str,
               **kwargs: Any) -> Check:
        from guardian.validation.check import expand

        t0 = time.monotonic()
        wall = time.time_ns()
        try:
            verdict = check(eff, data, path, **kwargs)
        except Exception as e:
            self._rows.append(record.row("validate", int((time.monotonic() - t0) * 1e9),
                                         "error", category="system", path=os.fsencode(path),
                                         detail={"message": str(e)[:300]}, time_ns=wall))
            raise
        took = time.monotonic()
        label = ",".join(s.describe() for s in expand(eff.validators, path))[:200] or None
        outcome = "rejected" if verdict.valid is False else "ok"
        self._rows.append(record.row(
            "validate", int((took - t0) * 1e9), outcome,
            category="validation" if verdict.valid is False else None,
            path=os.fsencode(path), items=1, nbytes=len(data), label=label, time_ns=wall,
            detail={"message": verdict.summary(path)[:300]} if verdict.valid is False else None))
        with self._lock:
            self._remember(self._verdict_at, path, took)
        if verdict.valid is True:
            self._resolve.extend(f"{k}:{path}" for k in PATH_KINDS)
        if not verdict.untrusted:
            sources = {s.source for s in eff.validators if s.name == "command" and s.source}
            self._resolve.extend(f"untrusted:{s}" for s in sources)
        return verdict

    # ----------------------------------------------------------------- alerts (store thread)
    def store_alert(self, severity: str, kind: str, message: str, path: str | None,
                    versions: list[int]) -> tuple[dict[str, Any], bool]:
        """Store one of the daemon's alerts under its dedupe key (and, for a revert's, its
        operation row); (the alert, whether it is new)."""
        key = key_of(kind, path, message)
        if kind == "untrusted":
            m = _UNTRUSTED_SOURCE.search(message)
            key = f"untrusted:{m.group(1)}" if m else key
        if kind in ("reverted", "gave-up", "revert-failed", "kept") and path:
            now = time.monotonic()
            with self._lock:
                since = max(self._verdict_at.pop(path, 0.0), self._committed_at.get(path, 0.0))
            outcome, cat = {"reverted": ("ok", None), "kept": ("rejected", None)}.get(
                kind, ("error", "recovery"))
            self._rows.append(record.row(
                "revert", int((now - since) * 1e9) if since else 0, outcome, category=cat,
                path=os.fsencode(path), items=1,
                label="protected" if "protected path" in message else "invalid",
                detail={"message": message[:300]} if outcome != "ok" else None))
        store = self.d.store
        with store.transaction():
            alert, new = store.raise_alert(key, severity, kind, message,
                                           os.fsencode(path) if path else None, versions)
        self.flush()
        return alert, new

    def resolve_key(self, key: str) -> None:
        """Resolve an event alert when its cause is gone (any thread)."""
        self._resolve.append(key)

    # ----------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Evaluate, roll up, calibrate; until the daemon stops (cancelled with its tasks)."""
        try:
            await self._loop()
        finally:  # what was measured last is written, even while the daemon stops
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.d.in_store(self.flush)
            if self._evaluator is not None:
                self._evaluator.close()

    async def _loop(self) -> None:
        next_eval = next_rollup = last_eval = cost = 0.0
        next_sample = time.monotonic() + 30
        calibrated = False
        while True:
            await anyio.sleep(0.5)
            now = time.monotonic()
            try:
                if self._rows or self._resolve or self._raise:
                    await self._drain()
                if not self.d.ready:
                    continue
                if not calibrated:
                    calibrated = True
                    if self.d.task_group is not None:
                        self.d.task_group.start_soon(self._calibrate)
                every = self.thresholds.evaluate_every_s
                # New measurements are evaluated a second later, unless evaluating costs more
                # than 1/EVAL_SHARE of the time since: it reads every row of the window, and
                # under sustained load (a row per version, 1,000 a second) it grows with the
                # window and took the GIL from capture every second.
                gap = max(1.0, EVAL_SHARE * cost)
                if now >= next_eval or (self._dirty and now >= last_eval + gap):
                    self._dirty = False
                    t = time.monotonic()
                    await self.evaluate()
                    last_eval = time.monotonic()
                    cost = last_eval - t
                    next_eval = last_eval + max(every, EVAL_SHARE * cost)
                if now >= next_rollup:
                    next_rollup = now + ROLLUP_EVERY_S
                    await self.d.in_store(self._rollup_step)
                if now >= next_sample:
                    next_sample = now + SAMPLE_EVERY_S
                    await self._sample()
            except Exception as e:  # observing must never stop the daemon
                from guardian.events import ErrorEvent

                self.d.emit(ErrorEvent(message=f"metrics: {type(e).__name__}: {e}"))
                await anyio.sleep(5)

    async def _drain(self) -> None:
        raises = []
        while self._raise:
            raises.append(self._raise.popleft())
        for key, severity, kind, message, path in raises:
            await self._raise_alert(key, severity, kind, message, path)
        if self._rows:
            await self.d.in_store(self.flush)
        keys = []
        while self._resolve:
            keys.append(self._resolve.popleft())
        if keys:
            await self._resolve_alerts(list(dict.fromkeys(keys)))

    async def _raise_alert(self, key: str, severity: str, kind: str, message: str,
                           path: str | None, versions: Sequence[int] = ()) -> None:
        def store() -> tuple[dict[str, Any], bool]:
            with self.d.store.transaction():
                return self.d.store.raise_alert(key, severity, kind, message,
                                                os.fsencode(path) if path else None,
                                                list(versions))

        alert, new = await self.d.in_store(store)
        self.announce(alert, new)

    async def _resolve_alerts(self, keys: list[str]) -> None:
        def store() -> list[dict[str, Any]]:
            with self.d.store.transaction():
                return self.d.store.resolve_alerts(keys)

        for alert in await self.d.in_store(store):
            self.announce(alert, True)

    def announce(self, alert: dict[str, Any] | None, changed: bool) -> None:
        """Emit an alert's state on the event bus; feed the sinks when it opened or
        resolved (event loop)."""
        if alert is None:
            return
        from guardian.events import Alert

        self.d.emit(Alert(severity=alert["severity"], kind=alert["kind"],
                          message=alert["message"], path=alert["path"],
                          versions=alert["versions"], id=alert["id"], key=alert["key"],
                          state=alert["state"], count=alert["count"]))
        if changed and self.thresholds.sinks and self.d.task_group is not None:
            self.d.task_group.start_soon(self._deliver, dict(alert))

    async def _deliver(self, alert: dict[str, Any]) -> None:
        from guardian.observe import alerts as alerts_mod
        from guardian.observe.sinks import deliver, key_of, trusted

        sinks = self.thresholds.sinks
        problems: list[tuple[str, str, str]] = []
        await anyio.to_thread.run_sync(deliver, sinks, alerts_mod.to_json(alert),
                                       lambda kind, msg, key: problems.append((kind, msg, key)))
        now_trusted = [key_of(s) for s in sinks if key_of(s) in self._untrusted_sinks
                       and await anyio.to_thread.run_sync(trusted, s)]
        if now_trusted:
            self._untrusted_sinks.difference_update(now_trusted)
            await self._resolve_alerts(now_trusted)
        for kind, msg, key in problems:
            if kind == "untrusted":
                if key not in self._untrusted_sinks:
                    self._untrusted_sinks.add(key)
                    await self._raise_alert(key, "warning", "untrusted", msg, None)
            else:
                from guardian.events import WarningEvent

                self.d.emit(WarningEvent(message=msg, source="alerts"))

    # ----------------------------------------------------------------- evaluation
    def _reload_thresholds(self) -> None:
        sig = signature(self._roots)
        if sig != self._th_sig:
            self._th_sig = sig
            th, errors = load(self._roots)
            if not errors:
                self.thresholds = th
            self.config_errors = errors

    def _conditions(self) -> list[Condition]:
        """The alert conditions now; the windows' reads by the helper process
        (:mod:`guardian.observe.evaluator`), or here if it cannot."""
        th = self.thresholds
        reader = self.d.reader or self.d.store
        now = time.time_ns()
        spans = [(now - int(th.window_s * 1e9), now)]
        if th.error_window_s != th.window_s:
            spans.append((now - int(th.error_window_s * 1e9), now))
        if self._evaluator is None:
            from guardian.observe.evaluator import Evaluator

            self._evaluator = Evaluator(reader.path)
        got = self._evaluator.windows(spans)
        if got is None:
            from guardian.observe.metrics import compute

            got = [compute(reader, since_ns=a, until_ns=b, sections=frozenset())
                   for a, b in spans]
        return evaluate(got[0], got[-1], th)

    async def evaluate(self) -> list[Condition]:
        """Evaluate the alert rules now: open what crossed, resolve what cleared."""
        self._reload_thresholds()
        conditions = await anyio.to_thread.run_sync(self._conditions,
                                                    limiter=self.d.read_limiter)
        self.last_evaluation = conditions
        reader = self.d.reader or self.d.store
        unresolved = await anyio.to_thread.run_sync(reader.unresolved_alerts, METRIC_KINDS,
                                                    limiter=self.d.read_limiter)
        active = {c.key for c in conditions}
        for c in conditions:
            if c.key not in unresolved:
                await self._raise_alert(c.key, c.severity, c.kind, c.message, None)
        cleared = [k for k in unresolved if k not in active]
        if not self.d.degraded:
            watch = await anyio.to_thread.run_sync(reader.unresolved_alerts, ("events-lost",),
                                                   limiter=self.d.read_limiter)
            cleared += [k for k in watch if k == "events-lost:watch-limit"]
        if cleared:
            await self._resolve_alerts(cleared)
        return conditions

    def _rollup_step(self) -> None:
        from guardian.observe import rollup

        rollup.step(self.d.store)

    async def _sample(self) -> None:
        from guardian.observe.metrics import disk_bytes

        size = await anyio.to_thread.run_sync(disk_bytes, self.d.store)

        def store() -> None:
            with self.d.store.transaction(durable=False):
                self.d.store.add_size_sample(size)

        await self.d.in_store(store)

    async def _calibrate(self) -> None:
        from guardian.observe import calibrate

        if calibrate.stored(self.d.reader or self.d.store) is not None:
            have = calibrate.stored(self.d.reader or self.d.store)
            if have and have.measured_ns and \
                    time.time_ns() - have.measured_ns < calibrate.MAX_AGE_S * 1e9:
                return
        with contextlib.suppress(Exception):  # no estimate of time saved, nothing worse
            b = await anyio.to_thread.run_sync(calibrate.measure, Path(self.d.store.path))

            def keep() -> None:
                with self.d.store.transaction(durable=False):
                    self.d.store.meta_set("observe.naive_write_s", repr(b.naive_write_s))
                    self.d.store.meta_set("observe.fsync_s", repr(b.fsync_s))
                    self.d.store.meta_set("observe.calibrated_ns", str(b.measured_ns))

            await self.d.in_store(keep)

    # ----------------------------------------------------------------- control requests
    async def dispatch(self, method: str, params: dict[str, Any],
                       inner: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> Any:
        """The daemon's control requests: guardian.observe's own (``observe.*``), and the
        snapshot requests answered from events (no Service call) measured here."""
        if method.startswith("observe."):
            return await self._observe_request(method[len("observe."):], params)
        if method != "snapshot":
            return await inner(method, params)
        t0 = time.monotonic()
        out = await inner(method, params)
        if isinstance(out, dict) and out.get("method") == "events":
            self._rows.append(record.row("snapshot", int((time.monotonic() - t0) * 1e9), "ok",
                                         optimisation=["sync_cookie"],
                                         items=int(out.get("recorded", 0))))
        # What was measured until now is in the store when the snapshot returns (a hook's
        # snapshot is a barrier for the metrics too).
        await self.d.in_store(self.flush)
        return out

    async def _observe_request(self, name: str, params: dict[str, Any]) -> Any:
        store = self.d.store
        if name == "sync":
            t0 = time.monotonic()
            ok = await self.d.sync(timeout=float(params.get("timeout", 5.0)))
            return {"ok": ok, "ms": round((time.monotonic() - t0) * 1000, 3),
                    "ready": self.d.ready, "degraded": self.d.degraded}
        if name == "evaluate":
            return {"conditions": [c.to_json() for c in await self.evaluate()]}
        if name == "ack":
            ids = None if params.get("all") else [int(x) for x in params.get("ids") or []]

            def ack() -> tuple[dict[str, list[int]], list[dict[str, Any]]]:
                with store.transaction():
                    out = store.ack_alerts(ids)
                return out, [a for a in map(store.alert, out["acknowledged"]) if a]

            result, acked = await self.d.in_store(ack)
            for a in acked:
                self.announce(a, False)
            return result
        if name == "save_report":
            def save() -> int:
                with store.transaction():
                    return int(store.save_report(int(params["since_ns"]),
                                                 int(params["until_ns"]), params["report"]))

            return {"id": await self.d.in_store(save)}
        if name == "mark_filed":
            def mark() -> bool:
                with store.transaction():
                    return bool(store.mark_filed(str(params["key"]), params.get("url"),
                                                 str(params.get("title", ""))))

            return {"new": await self.d.in_store(mark)}
        if name == "rollup":
            from guardian.observe import rollup

            return await self.d.in_store(rollup.run, store)
        from guardian.errors import UsageError

        raise UsageError(f"unknown method 'observe.{name}'")

    # ----------------------------------------------------------------- status, Prometheus
    def summary(self) -> dict[str, Any] | None:
        """The metrics ``status --json`` carries (read-thread; None if they cannot be read)."""
        from guardian.observe.metrics import summary

        try:
            return summary(self.d.reader or self.d.store)
        except Exception:
            return None

    def serve_metrics(self, addr: str) -> str:
        """Start the Prometheus exporter (before the daemon runs: a bad address is a
        start-up error); return the address it listens on."""
        from guardian.observe import prometheus

        self.exporter = prometheus.serve(addr, Path(self.d.store.path), self)
        return str(self.exporter.address)

    def stop_metrics(self) -> None:
        if self.exporter is not None:
            self.exporter.close()
            self.exporter = None
