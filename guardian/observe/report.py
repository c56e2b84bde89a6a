"""``guardian report``: the seed's daily performance report, from the recorded operations.

Summary (total operations, optimisation rate, average time savings per operation, error rate,
whether the improvements are significant — the seed's "average time savings above 2 s" — and
the trend against the previous period of the same length), the performance metrics (the
``guardian metrics`` JSON of the period), optimisation effectiveness, error analysis, and
recommendations. Each report is saved in the store (``guardian report --list``).
``--discoveries FILE`` appends the seed's dated section to a DISCOVERIES.md-style file, only
when the seed's condition holds, atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from guardian.errors import UsageError
from guardian.observe.calibrate import Baseline
from guardian.observe.record import op_type, seed_category
from guardian.store.db import Store

#: The seed's condition for "significant improvements" (seconds saved per operation).
SIGNIFICANT_SAVINGS_S = 2.0
#: Trend: a change of the average operation time by more than this share, or of the error
#: rate by more than this many points, is a trend; less is "stable".
TREND_DURATION = 0.2
TREND_ERRORS = 0.01


def build(store: Store, *, since_ns: int, until_ns: int,
          baseline: Baseline | None = None) -> dict[str, Any]:
    from guardian.observe import alerts, calibrate, metrics
    from guardian.rules.thresholds import Thresholds
    from guardian.timespec import iso

    baseline = baseline or calibrate.stored(store)
    m = metrics.compute(store, since_ns=since_ns, until_ns=until_ns, baseline=baseline)
    length = until_ns - since_ns
    prev = metrics.compute(store, since_ns=since_ns - length, until_ns=since_ns,
                           baseline=baseline, sections=frozenset())
    t = m["totals"]
    total = t["count"]
    saved = m["time_saved"]["seconds"] or 0.0
    avg_saved = saved / total if total else 0.0
    summary = {
        "total_operations": total,
        "optimization_rate": t["optimisation_usage_rate"] or 0.0,
        "average_time_savings": round(avg_saved, 6),
        "total_time_saved_s": round(saved, 6),
        "error_rate": t["error_rate"] or 0.0,
        "success_rate": t["success_rate"]["overall"],
        "significant_improvements": avg_saved > SIGNIFICANT_SAVINGS_S,
        **_trend(prev["totals"], t),
    }
    effectiveness = {
        "optimization_rate": summary["optimization_rate"],
        "time_saved_s": saved,
        "improvement": m["time_saved"]["improvement"],
        "method": m["time_saved"]["method"],
        "baseline": m["time_saved"]["baseline"],
        "by_optimisation": m["optimisations"],
        "by_type": {name: {"optimisation_usage_rate": v["optimisation_usage_rate"],
                           "success_rate": v["success_rate"], "time_saved_s": v["time_saved_s"],
                           "improvement": v["improvement"]} for name, v in m["types"].items()},
        "templates": m["templates"],
    }
    errors = {
        "error_rate": summary["error_rate"],
        "categories": m["errors"]["categories"],
        "by_error_category": m["errors"]["by_error_category"],
        "by_type": {name: v["outcomes"] for name, v in m["types"].items()},
        "top_errors": _top_errors(store, since_ns, until_ns),
    }
    th = Thresholds()
    recommendations = [c.message for c in alerts.evaluate(m, m, th)]
    recommendations += [f"template {o['template']}: {o['recommendation']}"
                        for o in m["templates"]["opportunities"]]
    if total and summary["optimization_rate"] < 0.2:
        recommendations.append("Investigate why optimization rate is low")
    imp = m["time_saved"]["improvement"]
    if imp is not None and imp <= 0.10 and m["types"].get("batch"):
        recommendations.append("Review optimization strategies for better performance gains")
    if not total:
        recommendations.append("no operations were recorded in this period")
    day = datetime.fromtimestamp(until_ns / 1e9).strftime("%Y-%m-%d")
    return {"report_date": day, "period": {"since": iso(since_ns), "until": iso(until_ns),
                                           "since_ns": since_ns, "until_ns": until_ns},
            "generated": iso(time.time_ns()), "summary": summary, "performance_metrics": m,
            "optimization_effectiveness": effectiveness, "error_analysis": errors,
            "recommendations": recommendations}


def _trend(prev: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    a, b = prev["duration_s"]["average"], now["duration_s"]["average"]
    ea, eb = prev["error_rate"] or 0.0, now["error_rate"] or 0.0
    detail = {"previous_operations": prev["count"], "previous_average_duration_s": a,
              "average_duration_s": b, "previous_error_rate": ea, "error_rate": eb}
    if not prev["count"] or not now["count"] or a is None or b is None:
        return {"performance_trend": "no previous data" if not prev["count"] else
                "no operations in this period", "trend": detail}
    worse = eb - ea > TREND_ERRORS or (a > 0 and (b - a) / a > TREND_DURATION)
    better = ea - eb > TREND_ERRORS or (a > 0 and (a - b) / a > TREND_DURATION)
    trend = "degrading" if worse else "improving" if better else "stable"
    text = (f"{trend} (average operation {b * 1000:.1f} ms, previous period {a * 1000:.1f} ms; "
            f"error rate {eb:.2%}, previously {ea:.2%})")
    return {"performance_trend": text, "trend": {**detail, "direction": trend}}


def _top_errors(store: Store, since: int, until: int, n: int = 10) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str, str], int] = {}
    for row in store.op_rows(since, until):
        outcome, cat, detail = row[5], row[6], row[12]
        if outcome == "ok":
            continue
        try:
            message = str(json.loads(detail).get("message", "")) if detail else ""
        except ValueError:
            message = ""
        key = (op_type(row[2]), seed_category(cat) or outcome, message[:200])
        counts[key] = counts.get(key, 0) + 1
    return [{"type": k[0], "category": k[1], "message": k[2], "count": c}
            for k, c in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]


# ----------------------------------------------------------------------------- rendering
def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x * 100:.{digits}f}%"


def _top_optimisations(rep: dict[str, Any]) -> str:
    rows = sorted(rep["optimization_effectiveness"]["by_optimisation"].items(),
                  key=lambda kv: -(kv[1]["time_saved_s"] or 0))
    if not rows:
        return "- none recorded"
    return "\n".join(f"- {name}: {v['operations']} operations, {v['time_saved_s'] or 0:.2f} s "
                     f"saved, success {_pct(v['success_rate'])}" for name, v in rows[:5])


def _next_steps(rep: dict[str, Any]) -> str:
    recs = rep["recommendations"]
    return "; ".join(recs) if recs else "keep monitoring"


def discovery_entry(rep: dict[str, Any]) -> str:
    """The seed's dated DISCOVERIES.md section."""
    s = rep["summary"]
    return (f"\n## Write Optimization Performance Report - {rep['report_date']}\n\n"
            "**Significant Performance Gains Detected**\n\n"
            f"- **Total Operations**: {s['total_operations']}\n"
            f"- **Optimization Rate**: {s['optimization_rate']:.1%}\n"
            f"- **Average Time Savings**: {s['average_time_savings']:.2f} seconds per "
            "operation\n"
            f"- **Error Rate**: {s['error_rate']:.2%}\n\n"
            f"**Key Optimizations**:\n{_top_optimisations(rep)}\n\n"
            f"**Trend**: {s['performance_trend']}\n\n"
            f"**Next Steps**: {_next_steps(rep)}\n")


def append_discoveries(path: Path, rep: dict[str, Any]) -> dict[str, Any]:
    """Append the seed's section to ``path`` if the report's improvements are significant;
    say what was done either way."""
    s = rep["summary"]
    if not s["significant_improvements"]:
        return {"appended": False, "path": str(path), "message": (
            f"{path}: not appended: average time savings {s['average_time_savings']:.3f} s per "
            f"operation is not above {SIGNIFICANT_SAVINGS_S:g} s (the seed's condition for "
            "significant improvements)")}
    if path.is_symlink():
        raise UsageError(f"{path}: is a symlink; name the file itself")
    try:
        old = path.read_bytes()
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        old, mode = b"", 0o644
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    data = old + discovery_entry(rep).encode()
    tmp = path.with_name(f".{path.name}.guardian-{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        with _quiet():
            tmp.unlink()
        raise UsageError(f"{path}: cannot write: {e.strerror or e}") from None
    return {"appended": True, "path": str(path),
            "message": f"{path}: appended the report of {rep['report_date']}"}


def _quiet() -> Any:
    import contextlib

    return contextlib.suppress(OSError)


def render_markdown(rep: dict[str, Any]) -> str:
    s = rep["summary"]
    m = rep["performance_metrics"]
    e = rep["error_analysis"]
    lines = [f"# Write Optimization Performance Report - {rep['report_date']}", "",
             f"Period: {rep['period']['since']} to {rep['period']['until']}", "",
             "## Summary", "",
             f"- **Total Operations**: {s['total_operations']}",
             f"- **Optimization Rate**: {s['optimization_rate']:.1%}",
             f"- **Average Time Savings**: {s['average_time_savings']:.4f} seconds per operation",
             f"- **Error Rate**: {s['error_rate']:.2%}",
             f"- **Significant Improvements**: {'yes' if s['significant_improvements'] else 'no'}",
             f"- **Trend**: {s['performance_trend']}", "",
             "## Performance Metrics", "",
             "| type | count | avg | p95 | success | optimised | time saved |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in m["types"].items():
        d = v["duration_s"]
        lines.append(f"| {name} | {v['count']} | {_ms(d['average'])} | {_ms(d['p95'])} | "
                     f"{_pct(v['success_rate']['overall'])} | "
                     f"{_pct(v['optimisation_usage_rate'])} | {v['time_saved_s'] or 0:.3f} s |")
    lines += ["", "## Optimization Effectiveness", "", _top_optimisations(rep), ""]
    for tpl in rep["optimization_effectiveness"]["templates"]["templates"][:10]:
        lines.append(f"- template `{tpl['template']}`: {tpl['usage_count']} uses, success "
                     f"{_pct(tpl['success_rate'])}, reuse {_pct(tpl['reuse_rate'])}")
    lines += ["", "## Error Analysis", "",
              "| category | count | per hour |", "|---|---:|---:|"]
    for cat, v in e["categories"].items():
        rate = v["rate_per_hour"]
        lines.append(f"| {cat} | {v['count']} | {'-' if rate is None else f'{rate:.3f}'} |")
    for err in e["top_errors"]:
        lines.append(f"- {err['count']}x {err['type']} ({err['category']}): {err['message']}")
    lines += ["", "## Recommendations", ""]
    lines += [f"- {r}" for r in rep["recommendations"]] or ["- none"]
    return "\n".join(lines)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def render_text(rep: dict[str, Any]) -> str:
    s = rep["summary"]
    lines = [f"report {rep.get('id', '')} for {rep['report_date']} "
             f"({rep['period']['since']} .. {rep['period']['until']})",
             f"operations {s['total_operations']}, optimisation rate "
             f"{s['optimization_rate']:.1%}, time saved {s['average_time_savings']:.4f} s per "
             f"operation, error rate {s['error_rate']:.2%}",
             f"trend: {s['performance_trend']}",
             f"significant improvements: {'yes' if s['significant_improvements'] else 'no'}"]
    for r in rep["recommendations"]:
        lines.append(f"- {r}")
    return "\n".join(lines)


def listing_json(saved: dict[str, Any]) -> dict[str, Any]:
    from guardian.timespec import iso

    return {"id": saved["id"], "created": iso(saved["created_ns"]),
            "since": iso(saved["since_ns"]), "until": iso(saved["until_ns"]),
            "summary": saved["summary"]}


def render_list(saved: list[dict[str, Any]]) -> str:
    from guardian.timespec import short

    if not saved:
        return "no saved reports"
    out = []
    for r in saved:
        s = r["summary"]
        out.append(f"{r['id']:>5}  {short(r['created_ns'])}  {short(r['since_ns'])} .. "
                   f"{short(r['until_ns'])}  {s.get('total_operations', 0)} operations, error "
                   f"rate {s.get('error_rate', 0):.2%}")
    return "\n".join(out)
