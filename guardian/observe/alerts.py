"""Alert rules over the metrics: the seed's thresholds (or a rule file's), and which alerts
each evaluation opens or resolves.

A metric alert is a condition over a window; its key names it (``high-error-rate``,
``error-rate:recovery``, ``performance-degradation:validate``), so it is open once however long
the condition lasts, and resolved by the first evaluation that finds it cleared. The other
alerts (invalid writes, reverts, flapping writers, broken rule files, untrusted commands, lost
events) are raised by the daemon when they happen, under a key of their kind and path; they
resolve when what they report is over (a valid version of the path, the rule file fixed, the
file trusted, the reconcile done).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardian.rules.thresholds import Thresholds

#: Kinds of the alerts evaluated from metrics (all resolve themselves).
METRIC_KINDS = ("performance-degradation", "high-error-rate", "low-success-rate", "error-rate")
#: Kinds raised by events, and the kinds a valid version of their path resolves.
PATH_KINDS = ("invalid", "reverted", "kept", "gave-up", "revert-failed")


@dataclass(frozen=True)
class Condition:
    key: str
    kind: str
    severity: str
    message: str
    value: float
    threshold: float

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "severity": self.severity,
                "message": self.message, "value": self.value, "threshold": self.threshold}


def key_of(kind: str, path: str | None, message: str) -> str:
    """The dedupe key of an event alert: its kind and what it is about."""
    return f"{kind}:{path if path else message}"


def evaluate(window: dict[str, Any], errors: dict[str, Any], th: Thresholds) -> list[Condition]:
    """The conditions that hold: ``window`` is :func:`metrics.compute` over ``th.window_s``,
    ``errors`` over ``th.error_window_s``."""
    if not th.enabled:
        return []
    out: list[Condition] = []
    for name, t in window.get("types", {}).items():
        avg = t["duration_s"]["average"]
        if t["count"] and avg is not None and avg > th.average_operation_time:
            out.append(Condition(
                f"performance-degradation:{name}", "performance-degradation", "warning",
                f"average {name} operation time {avg:.2f}s exceeds threshold "
                f"{th.average_operation_time:g}s ({t['count']} operations in the last "
                f"{_span(th.window_s)})", avg, th.average_operation_time))
    total = window.get("totals", {})
    n = int(total.get("count", 0))
    if n >= th.min_operations and n > 0:
        err = total.get("error_rate") or 0.0
        if err > th.error_rate:
            out.append(Condition("high-error-rate", "high-error-rate", "critical",
                                 f"Error rate {err:.1%} exceeds threshold {th.error_rate:.0%} "
                                 f"({total['outcomes'].get('error', 0)} of {n} operations in "
                                 f"the last {_span(th.window_s)})", err, th.error_rate))
        ok = total.get("success_rate", {}).get("overall")
        if ok is not None and ok < th.success_rate:
            out.append(Condition("low-success-rate", "low-success-rate", "warning",
                                 f"Success rate {ok:.1%} below threshold {th.success_rate:.0%} "
                                 f"({total['outcomes'].get('ok', 0)} of {n} operations in "
                                 f"the last {_span(th.window_s)})", ok, th.success_rate))
    for cat, c in errors.get("errors", {}).get("categories", {}).items():
        limit = th.error_rates.get(cat)
        rate = c.get("rate_per_hour")
        if limit is not None and rate is not None and c["count"] and rate > limit:
            out.append(Condition(
                f"error-rate:{cat}", "error-rate", "critical",
                f"{cat} errors: {rate:.3g} per hour over the last {_span(th.error_window_s)} "
                f"({c['count']}) exceed {limit:g} per hour", rate, limit))
    return out


def _span(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def render(alerts: list[dict[str, Any]]) -> str:
    """The text form of ``guardian alerts``."""
    from guardian.timespec import short

    if not alerts:
        return "no alerts"
    lines = []
    for a in alerts:
        count = f" x{a['count']}" if a.get("count", 1) > 1 else ""
        lines.append(f"{a['id']:>5}  {short(a['last_ns'])}  {a['state']:<12} "
                     f"{a['severity']:<8} {a['kind']:<23} {a['message']}{count}")
    return "\n".join(lines)


def to_json(a: dict[str, Any]) -> dict[str, Any]:
    """An alert as ``guardian alerts --json`` and the TUI see it (times as ISO 8601 too)."""
    from guardian.timespec import iso

    out = dict(a)
    for k in ("first", "last", "ack", "resolved"):
        ns = a.get(f"{k}_ns")
        out[{"first": "first_seen", "last": "last_seen", "ack": "acknowledged",
             "resolved": "resolved"}[k]] = iso(ns) if ns else None
    out["time"] = iso(a["time_ns"])
    return out
