"""Parsing the times users give (``--at``, ``--from``, ``--to``) and printing ours.

Accepted: ISO 8601 (``2026-11-24T09:30``, ``2026-11-24 09:30:05+01:00``; no zone = local time),
a plain date (its start, local time), ``@EPOCH`` seconds, and ages such as ``90s``, ``15m``,
``2h``, ``3d``, ``1w`` (optionally followed by ``ago``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from guardian.errors import UsageError

TYPE_CHECKING = False  # not typing's: the CLI imports this module
if TYPE_CHECKING:
    from decimal import Decimal

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|weeks?)"
                  r"\s*(ago)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600,
         "hrs": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800, "wk": 604800,
         "week": 604800, "weeks": 604800}


#: Times are nanoseconds in a signed 64-bit integer (SQLite's): 1677-09-21 to 2262-04-11.
MIN_NS, MAX_NS = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """A point in time as ns since the epoch, or a UsageError saying what was expected.

    Computed in exact arithmetic (Decimal, timedelta), so an ISO time printed by ``log``
    means that very instant, and bounded: a time SQLite cannot hold (``@1e20``,
    ``99999999999d``, ``@inf``) is a usage error, not an overflow."""
    from decimal import Decimal, InvalidOperation

    now = time.time_ns() if now_ns is None else now_ns
    t = text.strip()
    shown = repr(text if len(text) <= 40 else text[:40] + "…")
    ns: int | None = None
    try:
        m = _AGE.match(t)
        if m:
            ns = now - _bounded(Decimal(m.group(1)) * _UNIT[m.group(2).lower()] * 10**9)
        elif t.startswith("@"):
            try:
                seconds = Decimal(t[1:])
            except InvalidOperation:
                pass
            else:
                if seconds.is_finite():
                    ns = _bounded(seconds * 10**9)
        else:
            try:
                dt = datetime.fromisoformat(t)
            except ValueError:
                pass
            else:
                if dt.tzinfo is None:
                    dt = dt.astimezone()  # naive means local time
                ns = (dt - _EPOCH) // timedelta(microseconds=1) * 1000
    except (OverflowError, OSError, ValueError):  # astimezone() of year 1, a year-10000 sum
        ns = MAX_NS + 1
    if ns is None:
        raise UsageError(f"{shown}: not a time; use ISO 8601 (2026-11-24T09:30), @EPOCH, or "
                         "an age like 15m, 2h, 3d")
    if not MIN_NS <= ns <= MAX_NS:
        raise UsageError(f"{shown}: out of range (a time from 1677-09-21 to 2262-04-11)")
    return ns


def _bounded(ns: Decimal) -> int:
    """``int(ns)``, or an out-of-range value for anything beyond every representable time
    (converting a 10**5000 Decimal would cost, and mean nothing)."""
    return int(ns) if abs(ns) <= 4 * MAX_NS else 8 * MAX_NS


def iso(ns: int) -> str:
    """ISO 8601 with the local offset and microseconds, e.g. 2026-11-24T07:21:39.123456+00:00."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).astimezone().isoformat()


def short(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
