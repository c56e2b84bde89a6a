"""Alert thresholds and sinks: the seed's defaults, and the ``[alerts]`` table of rule files.

Defaults (the seed's Real-time Performance Monitoring and Error Rate Monitoring): average
operation time above 5 s is a warning, an error rate above 5 % critical, a success rate below
95 % a warning (rates judged once the window holds 10 operations: Guardian's guard against
tiny samples, not the seed's), and per hour, over 24 hours, more than 0.1 permission, 0.2
validation, 0.05 optimisation, 0.1 system or 0.01 recovery errors critical. A watched root's own
``.guardian.toml`` may change any of them, and name sinks::

    [alerts]
    average_operation_time = 5.0     # seconds; per operation type, over `window`
    error_rate = 0.05                # above: critical (over `window`)
    success_rate = 0.95              # below: warning (over `window`)
    window = "1h"                    # an age (90s, 15m, 1h, 1d) or seconds
    error_window = "24h"             # the per-category hourly rates are taken over this
    min_operations = 10              # fewer operations in the window: no rate alerts
    error_rates = { permission = 0.1, validation = 0.2, optimisation = 0.05, system = 0.1,
                    recovery = 0.01 }
    sinks = [{ file = "alerts.jsonl" }, { command = ["notify", "{severity}", "{message}"] },
             { desktop = true, min_severity = "critical" }]

Only a root's top rule file may hold ``[alerts]`` (the alerts are the store's, not a
directory's). Errors name the file, the line and the key, like every rule-file error. This
module imports nothing heavy: the rule parser calls :func:`check_table` for every file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from guardian.errors import AlertsError

CATEGORIES = ("permission", "validation", "optimisation", "system", "recovery")
DEFAULT_ERROR_RATES: Mapping[str, float] = MappingProxyType({
    "permission": 0.1, "validation": 0.2, "optimisation": 0.05, "system": 0.1,
    "recovery": 0.01})
SEVERITIES = ("info", "warning", "critical")

KEYS: dict[str, str] = {
    "average_operation_time": "seconds (a number above 0): a warning when an operation type's "
                              "average is above it",
    "error_rate": "a fraction from 0 to 1: critical when the share of failed operations is above",
    "success_rate": "a fraction from 0 to 1: a warning when the share of successful operations "
                    "is below",
    "window": 'the window of the three above: an age such as "1h" or "15m", or seconds',
    "error_window": 'the window of the per-category error rates: an age such as "24h", or '
                    "seconds",
    "min_operations": "a whole number of at least 1: fewer operations in the window raise no "
                      "error-rate or success-rate alert (default 10: a rate of 2 operations "
                      "says little)",
    "evaluate_every": "seconds between two evaluations by the daemon (a number above 0)",
    "error_rates": "a table of errors per hour, critical above: "
                   + ", ".join(f"{c} = {v}" for c, v in DEFAULT_ERROR_RATES.items()),
    "sinks": 'a list of tables, each one of { file = "path" }, { command = ["argv", ...] } or '
             '{ desktop = true }, with optional min_severity (info, warning, critical) and '
             "timeout (seconds, commands)",
    "enabled": "true or false: false raises no metric alerts",
}
SINK_KEYS = ("file", "command", "desktop", "min_severity", "timeout")


@dataclass(frozen=True)
class Sink:
    kind: str                             # file | command | desktop
    target: str | tuple[str, ...] | None  # a path, an argv, or None (desktop)
    min_severity: str = "warning"
    timeout: float = 10.0
    source: str = ""                      # the rule file it came from (files, commands: trust)
    digest: str = ""

    def wants(self, severity: str) -> bool:
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        return rank.get(severity, 1) >= rank.get(self.min_severity, 1)

    def to_json(self) -> dict[str, Any]:
        target = list(self.target) if isinstance(self.target, tuple) else self.target
        return {"kind": self.kind, "target": target, "min_severity": self.min_severity,
                "source": self.source}


@dataclass(frozen=True)
class Thresholds:
    average_operation_time: float = 5.0
    error_rate: float = 0.05
    success_rate: float = 0.95
    window_s: float = 3600.0
    error_window_s: float = 86400.0
    min_operations: int = 10
    evaluate_every_s: float = 10.0
    error_rates: Mapping[str, float] = field(default_factory=lambda: DEFAULT_ERROR_RATES)
    sinks: tuple[Sink, ...] = ()
    enabled: bool = True
    sources: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"average_operation_time": self.average_operation_time,
                "error_rate": self.error_rate, "success_rate": self.success_rate,
                "window_s": self.window_s, "error_window_s": self.error_window_s,
                "min_operations": self.min_operations, "error_rates": dict(self.error_rates),
                "enabled": self.enabled, "sinks": [s.to_json() for s in self.sinks],
                "sources": list(self.sources)}


# ----------------------------------------------------------------------------- checking
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def check_table(value: Any, path: str, text: str, base: str) -> dict[str, Any]:
    """Check a rule file's ``alerts`` value; return it normalised (seconds, tuples).

    Raises :class:`AlertsError` naming ``path``, the line and the key. ``base`` is the rule
    file's directory relative to its root: only a root's own file ("") may have one.
    """
    loc = _Lines(path, text)
    if base:
        raise AlertsError(loc.error("alerts", None, "only a watched root's own .guardian.toml "
                                    "may set alerts (they apply to the whole store)"))
    if not isinstance(value, dict):
        raise AlertsError(loc.error("alerts", None, "expected a table: [alerts]"))
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key not in KEYS:
            import difflib

            close = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AlertsError(loc.error(key, None, f"unknown key {key!r}{hint}; known: "
                                        + ", ".join(KEYS)))
        out[key] = _check_key(loc, key, v, path)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_key(loc: _Lines, key: str, v: Any, path: str) -> Any:
    def bad(expected: str, sub: str | None = None) -> AlertsError:
        return AlertsError(loc.error(key, sub, f"expected {expected}, got {v!r}"))

    if key == "average_operation_time" or key == "evaluate_every":
        if not _number(v) or v <= 0:
            raise bad("a number of seconds above 0")
        return float(v)
    if key in ("error_rate", "success_rate"):
        if not _number(v) or not 0 <= v <= 1:
            raise bad("a fraction from 0 to 1 (0.05 is 5 %)")
        return float(v)
    if key in ("window", "error_window"):
        seconds = parse_age(v)
        if seconds is None:
            raise bad('an age such as "15m", "1h", "24h", or a number of seconds above 0')
        return seconds
    if key == "min_operations":
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad("a whole number of at least 1")
        return v
    if key == "enabled":
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if key == "error_rates":
        if not isinstance(v, dict):
            raise bad("a table such as { recovery = 0.01 }")
        rates = {}
        for cat, rate in v.items():
            if cat not in CATEGORIES:
                raise AlertsError(loc.error(key, cat, f"unknown error category {cat!r}; the "
                                            f"categories are {', '.join(CATEGORIES)}"))
            if not _number(rate) or rate < 0:
                raise AlertsError(loc.error(key, cat, "expected errors per hour (a number of "
                                            f"at least 0), got {rate!r}"))
            rates[cat] = float(rate)
        return rates
    if key == "sinks":
        if not isinstance(v, list):
            raise bad("a list of sink tables")
        return [_check_sink(loc, s, path) for s in v]
    raise AssertionError(key)  # pragma: no cover - KEYS and this function agree


def _check_sink(loc: _Lines, s: Any, path: str) -> dict[str, Any]:
    def bad(message: str) -> AlertsError:
        return AlertsError(loc.error("sinks", None, message))

    if not isinstance(s, dict):
        raise bad(f"each sink is a table such as {{ file = \"alerts.jsonl\" }}, got {s!r}")
    for k in s:
        if k not in SINK_KEYS:
            raise bad(f"unknown sink key {k!r}; known: {', '.join(SINK_KEYS)}")
    kinds = [k for k in ("file", "command", "desktop") if k in s]
    if len(kinds) != 1:
        raise bad("each sink needs exactly one of file, command, desktop")
    kind = kinds[0]
    out: dict[str, Any] = {"kind": kind}
    if kind == "file":
        if not isinstance(s["file"], str) or not s["file"]:
            raise bad("file must be a path")
        out["target"] = os.path.normpath(os.path.join(os.path.dirname(path), s["file"]))
    elif kind == "command":
        cmd = s["command"]
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
            raise bad("command must be a non-empty list of strings")
        out["target"] = tuple(cmd)
    else:
        if s["desktop"] is not True:
            raise bad("desktop must be true (leave the sink out to have none)")
        out["target"] = None
    sev = s.get("min_severity", "warning")
    if sev not in SEVERITIES:
        raise bad(f"min_severity must be one of {', '.join(SEVERITIES)}, got {sev!r}")
    out["min_severity"] = sev
    timeout = s.get("timeout", 10)
    if not _number(timeout) or timeout <= 0:
        raise bad(f"timeout must be a number of seconds above 0, got {timeout!r}")
    out["timeout"] = float(timeout)
    return out


def parse_age(v: Any) -> float | None:
    """Seconds of ``"15m"``/``"1h"``/``"24h"``/``"2d"`` or a number; None if neither."""
    if _number(v):
        return float(v) if v > 0 else None
    if isinstance(v, str):
        m = _AGE.match(v)
        if m:
            seconds = float(m.group(1)) * _UNIT[(m.group(2) or "").lower()]
            return seconds if seconds > 0 else None
    return None


class _Lines:
    """Finds the line of a key of the ``[alerts]`` table (tomllib keeps no positions)."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, key: str, sub: str | None) -> int:
        section = None
        alerts_line = None
        want = re.compile(r"^\s*(?:" + re.escape(key) + r'|"' + re.escape(key) + r'")\s*=')
        want_sub = re.compile(r"^\s*(?:" + re.escape(sub) + r")\s*=") if sub else None
        want_dotted = re.compile(r"^\s*alerts\s*\.\s*" + re.escape(key) + r"\s*=")
        for n, text in enumerate(self.lines, 1):
            m = self._HEADER.match(text)
            if m:
                section = m.group(1).replace(" ", "").replace('"', "")
                if section == "alerts" and alerts_line is None:
                    alerts_line = n
                if sub and section == f"alerts.{key}":
                    alerts_line = alerts_line or n
                continue
            if key == "alerts":
                if section is None and re.match(r"^\s*alerts\s*=", text):
                    return n
                continue
            if section == "alerts" and want.match(text):
                if want_sub is None:
                    return n
                if re.search(r"\b" + re.escape(sub or "") + r"\s*=", text):
                    return n
            if sub and section == f"alerts.{key}" and want_sub is not None and \
                    want_sub.match(text):
                return n
            if section is None and want_dotted.match(text):
                return n
        return alerts_line or 1

    def error(self, key: str, sub: str | None, message: str) -> str:
        shown = "alerts" if key == "alerts" else f"alerts.{key}" + (f".{sub}" if sub else "")
        return f"{self.path}:{self.line(key, sub)}: {shown}: {message}"


# ----------------------------------------------------------------------------- loading
def load(roots: list[Path]) -> tuple[Thresholds, list[str]]:
    """The thresholds in force for a store: the defaults, then each root's ``[alerts]``
    (a key set in two roots' files: the later root's). Errors are returned, not raised (the
    rules engine reports a broken rule file; its alerts keep their last good values)."""
    import hashlib
    import tomllib

    th = Thresholds()
    errors: list[str] = []
    sources: list[str] = []
    sinks: list[Sink] = []
    for root in roots:
        path = root / ".guardian.toml"
        try:
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            text = data.decode("utf-8")
            doc = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            errors.append(f"{path}: {e}")
            continue
        if "alerts" not in doc:
            continue
        try:
            table = check_table(doc["alerts"], str(path), text, "")
        except AlertsError as e:
            errors.append(str(e))
            continue
        digest = hashlib.sha256(data).hexdigest()
        sources.append(str(path))
        changes: dict[str, Any] = {}
        for key, value in table.items():
            if key == "window":
                changes["window_s"] = value
            elif key == "error_window":
                changes["error_window_s"] = value
            elif key == "evaluate_every":
                changes["evaluate_every_s"] = value
            elif key == "error_rates":
                changes["error_rates"] = MappingProxyType({**th.error_rates, **value})
            elif key == "sinks":
                sinks += [Sink(s["kind"], s["target"], s["min_severity"], s["timeout"],
                               str(path), digest) for s in value]
            else:
                changes[key] = value
        th = replace(th, **changes)
    return replace(th, sinks=tuple(sinks), sources=tuple(sources)), errors


def signature(roots: list[Path]) -> tuple[Any, ...]:
    """What changes when a root's rule file does (so the daemon reloads the thresholds)."""
    out: list[tuple[int, int, int] | None] = []
    for root in roots:
        try:
            st = os.stat(root / ".guardian.toml")
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)
