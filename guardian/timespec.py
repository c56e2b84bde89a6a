"""Parsing the times users give (``--at``, ``--from``, ``--to``) and printing ours.

Accepted: ISO 8601 (``2026-11-24T09:30``, ``2026-11-24 09:30:05+01:00``; no zone = local time),
a plain date (its start, local time), ``@EPOCH`` seconds, and ages such as ``90s``, ``15m``,
``2h``, ``3d``, ``1w`` (optionally followed by ``ago``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from guardian.errors import UsageError

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|weeks?)"
                  r"\s*(ago)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600,
         "hrs": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800, "wk": 604800,
         "week": 604800, "weeks": 604800}


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """A point in time as ns since the epoch, or a UsageError saying what was expected."""
    now = time.time_ns() if now_ns is None else now_ns
    t = text.strip()
    m = _AGE.match(t)
    if m:
        return now - int(float(m.group(1)) * _UNIT[m.group(2).lower()] * 1e9)
    if t.startswith("@"):
        try:
            return int(float(t[1:]) * 1e9)
        except ValueError:
            pass
    else:
        try:
            dt = datetime.fromisoformat(t)
        except ValueError:
            pass
        else:
            if dt.tzinfo is None:
                dt = dt.astimezone()  # naive means local time
            return int(dt.timestamp() * 1e9)
    raise UsageError(
        f"{text!r}: not a time; use ISO 8601 (2026-11-24T09:30), @EPOCH, or an age like 15m, 2h, 3d"
    )


def iso(ns: int) -> str:
    """ISO 8601 with the local offset and microseconds, e.g. 2026-11-24T07:21:39.123456+00:00."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).astimezone().isoformat()


def short(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
