"""``guardian metrics``: what the recorded operations say about a window of time.

The seed's Performance Metrics, Throughput, Error Rate Monitoring, Success Rate Tracking and
Pattern Recognition, computed from the store: operation rows not rolled up yet, plus the
per-hour rows older ones were folded into (:mod:`guardian.observe.rollup`), so the cost
depends on the last two hours' operations and the hours in the window, not on the store's
whole history. The JSON :func:`compute` returns is an API (README, *Metrics*): the TUI's
dashboard and ``status --json`` read it.

Time saved is an estimate, and says so in its ``method``: for each batch operation that used
an optimisation, the naive safe write of one file (:mod:`guardian.observe.calibrate`, measured
on this store's disk) minus what the operation took; for each capture commit that recorded
several versions at once, one fsync per version beyond the first. Everything else saves 0.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from guardian.observe.calibrate import Baseline
from guardian.observe.record import CATEGORIES, LOSS_REASONS, TYPES, op_type, seed_category
from guardian.store.db import DURATION_BUCKETS_S, LATENCY_BUCKETS_S, Store

TIME_SAVED_METHOD = (
    "estimate: for each successful batch operation that used an optimisation, the seed's "
    "naive safe "
    "write of one file (back up with metadata, write, fsync, read back, verify; measured on "
    "this store's disk, or --baseline-s) minus the operation's own time, floored at 0 per "
    "group of like operations; for each capture commit of several versions, one fsync per "
    "version beyond the first. Other operations save nothing.")
#: Raw windows up to this many rows get exact percentiles; bigger ones use the histograms.
EXACT_LIMIT = 200_000
HOUR_NS = 3_600_000_000_000


@dataclass
class _Acc:
    """Sums over some operation rows."""

    count: int = 0
    items: int = 0
    bytes: int = 0
    dur_ns: int = 0
    max_ns: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS_S))
    outcomes: dict[str, int] = field(default_factory=dict)
    optimised: int = 0
    optimised_ok: int = 0
    standard_ok: int = 0
    saved_s: float = 0.0
    naive_s: float = 0.0
    durations: list[int] | None = None

    def add(self, g: tuple[Any, ...], optimised: bool, saved: float, naive: float) -> None:
        n = int(g[5])
        self.count += n
        self.items += int(g[6] or 0)
        self.bytes += int(g[7] or 0)
        self.dur_ns += int(g[8] or 0)
        self.max_ns = max(self.max_ns, int(g[9] or 0))
        for i in range(len(self.hist)):
            self.hist[i] += int(g[10 + i] or 0)
        outcome = str(g[1])
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        ok = n if outcome == "ok" else 0
        if optimised:
            self.optimised += n
            self.optimised_ok += ok
        else:
            self.standard_ok += ok
        self.saved_s += saved
        self.naive_s += naive

    def to_json(self, seconds: float) -> dict[str, Any]:
        ok = self.outcomes.get("ok", 0)
        errors = self.outcomes.get("error", 0)
        standard = self.count - self.optimised
        busy = self.dur_ns / 1e9
        return {
            "count": self.count,
            "items": self.items,
            "operations_per_minute": _r(self.count / (seconds / 60)) if seconds > 0 else None,
            "outcomes": dict(sorted(self.outcomes.items())),
            "duration_s": {"average": _r(busy / self.count) if self.count else None,
                           "p50": _r(self.percentile(50)), "p95": _r(self.percentile(95)),
                           "max": _r(self.max_ns / 1e9) if self.count else None,
                           "total": _r(busy)},
            "success_rate": {
                "overall": _ratio(ok, self.count),
                "optimised": _ratio(self.optimised_ok, self.optimised),
                "standard": _ratio(self.standard_ok, standard)},
            "error_rate": _ratio(errors, self.count),
            "optimisation_usage_rate": _ratio(self.optimised, self.count),
            "time_saved_s": _r(self.saved_s),
            "improvement": _ratio(self.saved_s, self.naive_s) if self.naive_s > 0 else None,
            "throughput": {"ops_per_s": _r(ok / busy) if busy > 0 else None,
                           "mb_per_s": _r(self.bytes / busy / 1e6) if busy > 0 else None,
                           "bytes": self.bytes},
        }

    def percentile(self, p: float) -> float | None:
        if not self.count:
            return None
        if self.durations is not None and len(self.durations) == self.count:
            s = sorted(self.durations)
            return s[max(0, math.ceil(p / 100 * len(s)) - 1)] / 1e9
        return hist_percentile(self.hist, self.count, DURATION_BUCKETS_S, p,
                               self.max_ns / 1e9)


def hist_percentile(cum: list[int], count: int, edges: tuple[float, ...], p: float,
                    top: float) -> float | None:
    """A percentile from cumulative bucket counts, interpolated inside its bucket (the
    overflow bucket answers the maximum)."""
    if count <= 0:
        return None
    rank = p / 100 * count
    prev_count, prev_edge = 0, 0.0
    for c, edge in zip(cum, edges, strict=True):
        if c >= rank:
            inside = (rank - prev_count) / (c - prev_count) if c > prev_count else 1.0
            return min(top, prev_edge + (edge - prev_edge) * inside)
        prev_count, prev_edge = c, edge
    return top


def _ratio(a: float, b: float) -> float | None:
    return None if not b else round(a / b, 6)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _saved(kind: str, optimisation: str, count: int, items: int, dur_ns: int,
           baseline: Baseline | None) -> tuple[float, float]:
    """(time saved, naive time) of a group of like operations (see TIME_SAVED_METHOD)."""
    if baseline is None or not optimisation:
        return 0.0, 0.0
    if kind == "batch":
        naive = items * baseline.naive_write_s
        return max(0.0, naive - dur_ns / 1e9), naive
    if kind == "capture" and "group_commit" in optimisation.split(","):
        extra = max(0, items - count) * baseline.fsync_s
        return extra, extra + dur_ns / 1e9
    return 0.0, 0.0


def window(since_ns: int | None, until_ns: int | None, default_s: float = 86400
           ) -> tuple[int, int]:
    until = time.time_ns() if until_ns is None else until_ns
    return (until - int(default_s * 1e9) if since_ns is None else since_ns), until


def compute(store: Store, *, since_ns: int | None = None, until_ns: int | None = None,
            baseline: Baseline | None = None, raw_only: bool = False,
            sections: frozenset[str] | None = None) -> dict[str, Any]:
    """The metrics of ``[since_ns, until_ns)`` (default: the last 24 hours), as JSON."""
    from guardian.observe import calibrate
    from guardian.timespec import iso

    since, until = window(since_ns, until_ns)
    if baseline is None:
        baseline = calibrate.stored(store)
    groups, first = store.op_groups(since, until, raw_only=raw_only)
    start = min(since, first) if first is not None else since
    seconds = max(1e-9, (until - start) / 1e9)
    durations = store.op_durations(since, until, EXACT_LIMIT) if first is None else None
    by_type: dict[str, _Acc] = {}
    by_op: dict[str, _Acc] = {}
    total = _Acc()
    categories: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
    raw_categories: dict[str, int] = {}
    templates: dict[str, _Acc] = {}
    template_reuse: dict[str, int] = {}
    optimisations: dict[str, _Acc] = {}
    reconciles: dict[str, int] = {}
    lat_cum = [0] * len(LATENCY_BUCKETS_S)
    lat_n = lat_sum = lat_max = 0
    base = 10 + len(DURATION_BUCKETS_S)
    for g in groups:
        op, outcome, cat, opt, label = g[0], g[1], g[2], g[3], g[4]
        kind = op_type(op)
        saved, naive = _saved(kind, opt, int(g[5]), int(g[6] or 0), int(g[8] or 0),
                              baseline) if outcome == "ok" else (0.0, 0.0)
        optimised = bool(opt)
        for acc in (by_type.setdefault(kind, _Acc()), total):
            acc.add(g, optimised, saved, naive)
        if kind == "batch":
            by_op.setdefault(op, _Acc()).add(g, optimised, saved, naive)
        if outcome != "ok" and cat:
            sc = seed_category(cat)
            if sc is not None:
                categories[sc] += int(g[5])
            raw_categories[cat] = raw_categories.get(cat, 0) + int(g[5])
        if op == "render" and label:
            templates.setdefault(label, _Acc()).add(g, optimised, saved, naive)
            if "template_cache" in opt.split(","):
                template_reuse[label] = template_reuse.get(label, 0) + int(g[5])
        for name in filter(None, opt.split(",")):
            optimisations.setdefault(name, _Acc()).add(g, True, saved, naive)
        if op == "reconcile":
            reason = label or "unknown"
            reconciles[reason] = reconciles.get(reason, 0) + int(g[5])
        lat_n += int(g[base] or 0)
        lat_sum += int(g[base + 1] or 0)
        lat_max = max(lat_max, int(g[base + 2] or 0))
        for i in range(len(lat_cum)):
            lat_cum[i] += int(g[base + 3 + i] or 0)
    for _op, text in store.op_latencies(since, until):
        h = json.loads(text)
        lat_n += h["n"]
        lat_sum += h["sum"]
        lat_max = max(lat_max, h["max"])
        for i, c in enumerate(h["b"][:len(lat_cum)]):
            lat_cum[i] += c
    if durations is not None:
        for acc in (*by_type.values(), *by_op.values(), total):
            acc.durations = []
        for op, ns in durations:
            kind = op_type(op)
            for a in (by_type.get(kind), by_op.get(op) if kind == "batch" else None, total):
                if a is not None and a.durations is not None:
                    a.durations.append(ns)
    hours = seconds / 3600
    types = {t: by_type[t].to_json(seconds) for t in (*TYPES, *sorted(by_type))
             if t in by_type}
    if "batch" in types:
        types["batch"]["operations"] = {op: a.to_json(seconds) for op, a in sorted(by_op.items())}
    out: dict[str, Any] = {
        "window": {"since": iso(since), "since_ns": since, "until": iso(until),
                   "until_ns": until, "seconds": round(seconds, 3),
                   # Rolled-up hours count whole: the window really starts here.
                   "effective_since": iso(start), "effective_since_ns": start,
                   "percentiles": "exact" if durations is not None else "histogram"},
        "totals": total.to_json(seconds),
        "types": types,
        "time_saved": {"seconds": _r(total.saved_s), "method": TIME_SAVED_METHOD,
                       "baseline": baseline.to_json() if baseline else None,
                       "improvement": _ratio(total.saved_s, total.naive_s)
                       if total.naive_s > 0 else None},
        "errors": {
            "window_hours": round(hours, 6),
            "categories": {c: {"count": n, "rate_per_hour": _r(n / hours) if hours else None}
                           for c, n in categories.items()},
            "by_error_category": dict(sorted(raw_categories.items())),
        },
        "optimisations": {name: {"operations": a.count, "time_saved_s": _r(a.saved_s),
                                 "success_rate": _ratio(a.outcomes.get("ok", 0), a.count)}
                          for name, a in sorted(optimisations.items())},
        "templates": _templates(templates, template_reuse),
    }
    if sections is None or "capture" in sections:
        out["capture"] = _capture(store, since, until, seconds, lat_cum, lat_n, lat_sum,
                                  lat_max, reconciles)
    if sections is None or "alerts" in sections:
        out["alerts"] = {"open": store.open_alert_counts()}
    return out


def _templates(templates: dict[str, _Acc], reuse: dict[str, int]) -> dict[str, Any]:
    """The seed's Pattern Recognition: per template, and its improvement opportunities."""
    rows = []
    opportunities = []
    for label, a in sorted(templates.items(), key=lambda kv: -kv[1].count):
        success = (a.outcomes.get("ok", 0) / a.count) if a.count else 0.0
        avg_saved = a.saved_s / a.count if a.count else 0.0
        rows.append({"template": label, "usage_count": a.count,
                     "success_rate": round(success, 6),
                     "reuse_rate": _ratio(reuse.get(label, 0), a.count),
                     "average_time_saved_s": _r(avg_saved), "total_time_saved_s": _r(a.saved_s)})
        if a.count > 5 and success < 0.8:
            opportunities.append({"type": "template_improvement", "template": label,
                                  "issue": "low_success_rate", "current_rate": round(success, 6),
                                  "recommendation": "Review and refine template structure"})
        elif a.count > 10 and avg_saved < 1.0:
            opportunities.append({"type": "template_optimization", "template": label,
                                  "issue": "low_time_savings",
                                  "current_savings": _r(avg_saved),
                                  "recommendation": "Optimize template generation process"})
    return {"templates": rows, "opportunities": opportunities}


def _capture(store: Store, since: int, until: int, seconds: float, lat_cum: list[int],
             lat_n: int, lat_sum: int, lat_max: int, reconciles: dict[str, int]
             ) -> dict[str, Any]:
    minutes = seconds / 60
    by_kind: dict[str, int] = {}
    by_origin: dict[str, int] = {}
    recorded_bytes = 0
    for kind, origin, n, b in store.version_groups(since, until):
        by_kind[kind] = by_kind.get(kind, 0) + n
        by_origin[origin] = by_origin.get(origin, 0) + n
        recorded_bytes += b
    versions = sum(by_kind.values())
    top = lat_max / 1e9
    latency = {
        "count": lat_n,
        "buckets": [{"le": e, "count": c} for e, c in zip(LATENCY_BUCKETS_S, lat_cum,
                                                         strict=True)] + [
            {"le": "+Inf", "count": lat_n}],
        "average_ms": _r(lat_sum / lat_n / 1e6) if lat_n else None,
        "p50_ms": _ms(hist_percentile(lat_cum, lat_n, LATENCY_BUCKETS_S, 50, top)),
        "p95_ms": _ms(hist_percentile(lat_cum, lat_n, LATENCY_BUCKETS_S, 95, top)),
        "p99_ms": _ms(hist_percentile(lat_cum, lat_n, LATENCY_BUCKETS_S, 99, top)),
        "max_ms": _r(top * 1000) if lat_n else None,
    }
    return {
        "latency": latency,
        "versions": {
            "count": versions, "bytes": recorded_bytes,
            "per_minute": _r(versions / minutes) if minutes else None,
            "by_kind": {k: {"count": n, "per_minute": _r(n / minutes)}
                        for k, n in sorted(by_kind.items())},
            "by_origin": {k: {"count": n, "per_minute": _r(n / minutes)}
                          for k, n in sorted(by_origin.items())},
        },
        "reverts": by_kind.get("reverted", 0),
        "rejected_writes": by_kind.get("rejected", 0),
        "reconciles": {"count": sum(reconciles.values()),
                       "by_reason": dict(sorted(reconciles.items()))},
        "events_lost": sum(n for r, n in reconciles.items() if r in LOSS_REASONS),
        "store": store_figures(store, since, until),
    }


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def disk_bytes(store: Store) -> int:
    """Bytes the store's files take now (its database, WAL and loose objects)."""
    import contextlib
    import os

    total = 0
    for dirpath, _dirs, files in os.walk(store.path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def store_figures(store: Store, since: int, until: int) -> dict[str, Any]:
    """Size now, growth over the window (from the hourly samples), and dedupe ratios."""
    now_bytes = disk_bytes(store)
    samples = store.size_samples(since)
    last = samples[-1] if samples else None
    first = samples[0] if samples else None
    growth = now_bytes - first["disk_bytes"] if first else None
    span = (until - first["time_ns"]) / 86400e9 if first else 0
    out: dict[str, Any] = {
        "bytes": now_bytes,
        "growth_bytes": growth,
        "growth_bytes_per_day": round(growth / span, 1) if growth is not None and span > 0
        else None,
        "growth_since": None,
    }
    if first:
        from guardian.timespec import iso

        out["growth_since"] = iso(first["time_ns"])
    if last:
        stored, raw, versions = (last["stored_bytes"], last["objects_bytes"],
                                 last["versions_bytes"])
        out.update({"stored_bytes": stored, "objects_bytes": raw, "versions_bytes": versions,
                    "objects": last["objects"],
                    # Each version's bytes, against each distinct content once; then zstd.
                    "dedupe_ratio": _ratio(versions, raw),
                    "compression_ratio": _ratio(raw, stored),
                    "stored_vs_raw": _ratio(stored, versions)})
    return out


def summary(store: Store, seconds: float = 3600) -> dict[str, Any]:
    """The compact form ``status --json`` carries: the last hour, per type."""
    m = compute(store, since_ns=time.time_ns() - int(seconds * 1e9), sections=frozenset())
    keep = ("count", "operations_per_minute", "error_rate")
    return {
        "window_s": seconds,
        "operations": m["totals"]["count"],
        "operations_per_minute": m["totals"]["operations_per_minute"],
        "average_duration_s": m["totals"]["duration_s"]["average"],
        "success_rate": m["totals"]["success_rate"]["overall"],
        "error_rate": m["totals"]["error_rate"],
        "optimisation_rate": m["totals"]["optimisation_usage_rate"],
        "time_saved_s": m["time_saved"]["seconds"],
        "types": {t: {**{k: v[k] for k in keep},
                      "average_duration_s": v["duration_s"]["average"],
                      "success_rate": v["success_rate"]["overall"]}
                  for t, v in m["types"].items()},
        "alerts_open": store.open_alert_counts(),
    }


def render(m: dict[str, Any]) -> str:
    """The text form of :func:`compute`'s result."""
    w = m["window"]
    lines = [f"window: {w['effective_since']} .. {w['until']} ({w['seconds'] / 3600:.1f} h)"]
    t = m["totals"]
    lines.append(f"operations: {t['count']} ({_f(t['operations_per_minute'])}/min), success "
                 f"{_pct(t['success_rate']['overall'])}, errors {_pct(t['error_rate'])}, "
                 f"optimised {_pct(t['optimisation_usage_rate'])}, time saved "
                 f"{_f(m['time_saved']['seconds'])} s")
    lines.append("")
    lines.append(f"{'type':<10} {'count':>7} {'/min':>8} {'avg':>9} {'p50':>9} {'p95':>9} "
                 f"{'max':>9} {'success':>8} {'optim.':>7} {'saved s':>8} {'MB/s':>8}")
    for name, v in m["types"].items():
        d = v["duration_s"]
        lines.append(f"{name:<10} {v['count']:>7} {_f(v['operations_per_minute']):>8} "
                     f"{_dur(d['average']):>9} {_dur(d['p50']):>9} {_dur(d['p95']):>9} "
                     f"{_dur(d['max']):>9} {_pct(v['success_rate']['overall']):>8} "
                     f"{_pct(v['optimisation_usage_rate']):>7} {_f(v['time_saved_s']):>8} "
                     f"{_f(v['throughput']['mb_per_s']):>8}")
    e = m["errors"]
    lines.append("")
    lines.append("errors per hour: " + ", ".join(
        f"{c} {v['count']} ({_f(v['rate_per_hour'])}/h)" for c, v in e["categories"].items()))
    for tpl in m["templates"]["templates"][:10]:
        lines.append(f"template {tpl['template']}: {tpl['usage_count']} uses, success "
                     f"{_pct(tpl['success_rate'])}, reuse {_pct(tpl['reuse_rate'])}, "
                     f"saved {_f(tpl['average_time_saved_s'])} s each")
    for o in m["templates"]["opportunities"]:
        lines.append(f"opportunity: template {o['template']}: {o['issue'].replace('_', ' ')}: "
                     f"{o['recommendation']}")
    c = m.get("capture")
    if c:
        lat = c["latency"]
        lines.append("")
        lines.append(f"capture latency (write -> committed): {lat['count']} versions, p50 "
                     f"{_f(lat['p50_ms'])} ms, p95 {_f(lat['p95_ms'])} ms, p99 "
                     f"{_f(lat['p99_ms'])} ms, max {_f(lat['max_ms'])} ms")
        v = c["versions"]
        lines.append(f"versions: {v['count']} ({_f(v['per_minute'])}/min): " + ", ".join(
            f"{k} {x['count']}" for k, x in v["by_kind"].items()))
        lines.append("by origin: " + ", ".join(f"{k} {x['count']}"
                                                for k, x in v["by_origin"].items()))
        lines.append(f"reverts {c['reverts']}, rejected writes {c['rejected_writes']}, "
                     f"reconciles {c['reconciles']['count']} "
                     f"({', '.join(f'{r} {n}' for r, n in c['reconciles']['by_reason'].items())})"
                     f", events lost {c['events_lost']}")
        s = c["store"]
        lines.append(f"store: {s['bytes']:,} bytes, growth {_f(s['growth_bytes'])} bytes, "
                     f"dedupe {_f(s.get('dedupe_ratio'))}x, compression "
                     f"{_f(s.get('compression_ratio'))}x")
    if "alerts" in m:
        open_ = m["alerts"]["open"]
        lines.append(f"open alerts: {sum(open_.values())}" + (
            " (" + ", ".join(f"{k} {n}" for k, n in sorted(open_.items())) + ")" if open_ else ""))
    b = m["time_saved"]["baseline"]
    lines.append("time saved: " + (f"against a naive safe write of {b['naive_write_s'] * 1000:.2f}"
                                   f" ms per file ({b['source']})" if b else
                                   "not estimated (no calibration yet: a daemon measures it)"))
    return "\n".join(lines)


def _f(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _dur(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.1f}ms" if x < 10 else f"{x:.1f}s"
