"""The times users type (``--at``, ``--from``, ``--to``), value by value (issue 9 point 22:
an ISO date read as "latest" and wrong unit values survived every test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.errors import UsageError
from guardian.timespec import MAX_NS, MIN_NS, iso, parse_time, short

from .conftest import Cli, wait_until

NOW = 1_800_000_000 * 10**9
S = 10**9


@pytest.fixture
def tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time two hours east of UTC, with no daylight saving (naive times use it)."""
    monkeypatch.setenv("TZ", "XST-2")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("1sec", 1), ("2secs", 2),
    ("15m", 900), ("1min", 60), ("3mins", 180),
    ("2h", 7200), ("1hr", 3600), ("2hrs", 7200),
    ("3d", 3 * 86400), ("1day", 86400), ("2days", 2 * 86400),
    ("1w", 604800), ("1wk", 604800), ("1week", 604800), ("2weeks", 2 * 604800),
    ("0s", 0), ("1.5h", 5400), ("0.25d", 21600),
    ("15m ago", 900), ("  2 h  AGO ", 7200), ("3D", 3 * 86400), ("10Min", 600),
])
def test_ages(text: str, seconds: int) -> None:
    assert parse_time(text, now_ns=NOW) == NOW - seconds * S


@pytest.mark.parametrize(("text", "ns"), [
    ("@0", 0), ("@1", S), ("@1700000000", 1_700_000_000 * S), ("@1.5", 3 * S // 2),
    ("@-1", -S), ("@1700000000.123456789", 1_700_000_000_123_456_789), (" @5 ", 5 * S),
    ("@-9223372036.854775808", MIN_NS), ("@9223372036.854775807", MAX_NS),
])
def test_epoch_seconds(text: str, ns: int) -> None:
    assert parse_time(text, now_ns=NOW) == ns


@pytest.mark.parametrize(("text", "ns"), [
    ("2026-11-24T09:30:00+00:00", int(datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
                                      .timestamp()) * S),
    ("2026-11-24T09:30:00Z", int(datetime(2026, 11, 24, 9, 30, tzinfo=UTC).timestamp()) * S),
    ("2026-11-24 09:30:05+01:00", int(datetime(2026, 11, 24, 8, 30, 5, tzinfo=UTC)
                                      .timestamp()) * S),
    ("2026-11-24T07:21:39.123456+00:00",
     int(datetime(2026, 11, 24, 7, 21, 39, tzinfo=UTC).timestamp()) * S + 123_456_000),
    ("1969-12-31T23:59:59+00:00", -S),
    ("1970-01-01T00:00:00+00:00", 0),
])
def test_iso_times_with_a_zone(text: str, ns: int) -> None:
    assert parse_time(text, now_ns=NOW) == ns


def test_naive_times_and_dates_are_local(tz: None) -> None:
    assert parse_time("2026-11-24T09:30") == int(
        datetime(2026, 11, 24, 7, 30, tzinfo=UTC).timestamp()) * S
    assert parse_time("2026-11-24") == int(
        datetime(2026, 11, 23, 22, 0, tzinfo=UTC).timestamp()) * S
    assert parse_time("1970-01-01T02:00:00") == 0


@pytest.mark.parametrize(("text", "message"), [
    ("", "not a time"), ("yesterday-ish", "not a time"), ("@", "not a time"),
    ("@abc", "not a time"), ("@inf", "not a time"), ("@nan", "not a time"),
    ("15 parsecs", "not a time"), ("2026-13-01", "not a time"), ("-5m", "not a time"),
    ("@1e20", "out of range"), ("99999999999d", "out of range"), ("@-1e20", "out of range"),
    ("@9223372036.854775808", "out of range"), ("@-9223372036.854775809", "out of range"),
    ("@1e5000", "out of range"), ("1e5000s", "not a time"),
    ("0001-01-01T00:00:00", "out of range"), ("9999-12-31T23:59:59+00:00", "out of range"),
    ("2262-04-12T00:00:00+00:00", "out of range"), ("1677-09-20T00:00:00+00:00",
                                                      "out of range"),
])
def test_errors_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as e:
        parse_time(text, now_ns=NOW)
    assert str(e.value).startswith(repr(text) + ": ")
    if message == "not a time":
        assert str(e.value) == (f"{text!r}: not a time; use ISO 8601 (2026-11-24T09:30), "
                                "@EPOCH, or an age like 15m, 2h, 3d")
    else:
        assert str(e.value) == f"{text!r}: out of range (a time from 1677-09-21 to 2262-04-11)"


def test_an_age_past_the_start_of_time_is_out_of_range() -> None:
    with pytest.raises(UsageError, match="out of range"):
        parse_time("300000w", now_ns=0)
    assert parse_time("1s", now_ns=MIN_NS + S) == MIN_NS


def test_long_input_is_cut_in_the_message() -> None:
    text = "x" * 41
    with pytest.raises(UsageError) as e:
        parse_time(text)
    assert str(e.value).startswith(repr("x" * 40 + "…") + ": not a time")
    with pytest.raises(UsageError) as e:
        parse_time("y" * 40)
    assert str(e.value).startswith(repr("y" * 40) + ": not a time")


def test_now_defaults_to_the_clock() -> None:
    before = time.time_ns()
    got = parse_time("0s")
    assert before <= got <= time.time_ns()
    assert abs(parse_time("1h") - (time.time_ns() - 3600 * S)) < 60 * S


def test_iso_and_short_print_local_time(tz: None) -> None:
    ns = int(datetime(2026, 11, 24, 7, 21, 39, tzinfo=UTC).timestamp()) * S + 123_456_000
    assert iso(ns) == "2026-11-24T09:21:39.123456+02:00"
    assert short(ns) == "2026-11-24 09:21:39"


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_iso_round_trips_to_the_microsecond(ns: int) -> None:
    """What ``log`` prints, typed back, is that very instant (to its microsecond)."""
    micro = ns // 1000 * 1000
    assert parse_time(iso(micro)) == micro
    assert parse_time(f"@{Decimal(ns) / S}") == ns


def test_show_at_an_iso_time_gives_the_version_then(cli: Cli, root: Path) -> None:
    """``--at <ISO date>`` is honoured, not read as "latest"."""
    f = root / "f.txt"
    f.write_text("one")
    cli.json("snapshot", cwd=root)
    between = datetime.now(UTC)
    wait_until(lambda: datetime.now(UTC) > between, what="the clock to move on")
    f.write_text("two")
    cli.json("snapshot", cwd=root)
    at = between.isoformat()
    assert cli.run("show", str(f), "--at", at, check=True).stdout == b"one"
    assert cli.run("show", str(f), "--at", at[:10] + "T23:59:59.999999-12:00",
                   check=True).stdout == b"two"
