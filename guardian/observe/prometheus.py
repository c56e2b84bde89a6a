"""``guardian watch --metrics-addr``: the metrics for Prometheus, with the official client.

Served by ``prometheus_client``'s own HTTP server, which answers OpenMetrics to a scraper
that asks for it (``Accept: application/openmetrics-text``) and the classic text format
otherwise. Every scrape reads the store (its own read-only connection: WAL readers never wait
for the writer), so counters are the store's totals since it was made, monotonic across
daemon restarts. Only this module imports ``prometheus_client``, and only the daemon imports
this module, when asked to serve: hooks and other commands never pay for it.

Metrics: ``guardian_operations_total{type,outcome}``, ``guardian_operation_duration_seconds``
(histogram, by type), ``guardian_capture_latency_seconds`` (histogram: write -> committed),
``guardian_versions_total{kind,origin}``, ``guardian_alerts_open{severity}``,
``guardian_store_bytes``, ``guardian_reconciles_total{reason}``,
``guardian_events_lost_total``, ``guardian_up``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guardian.errors import UsageError
from guardian.observe.record import LOSS_REASONS, op_type
from guardian.store.db import DURATION_BUCKETS_S, LATENCY_BUCKETS_S

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1: localhost only
    unless the user names another address)."""
    text = addr.strip()
    host, port = DEFAULT_HOST, text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1:].startswith(":"):
            raise UsageError(f"--metrics-addr {addr!r}: expected [IPv6]:PORT")
        host, port = text[1:end], text[end + 2:]
    elif ":" in text:
        host, _, port = text.rpartition(":")
        host = host or DEFAULT_HOST
    try:
        n = int(port)
    except ValueError:
        raise UsageError(f"--metrics-addr {addr!r}: expected HOST:PORT, e.g. "
                         f"{DEFAULT_HOST}:{DEFAULT_PORT}") from None
    if not 0 <= n <= 65535:
        raise UsageError(f"--metrics-addr {addr!r}: port must be 0-65535")
    return host, n


class Exporter:
    """The running HTTP server; :meth:`close` stops it."""

    def __init__(self, server: Any, thread: Any) -> None:
        self.server = server
        self.thread = thread
        host, port = server.server_address[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(addr: str, store_path: Path, monitor: Any = None) -> Exporter:
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    host, port = parse_addr(addr)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(store_path, monitor))
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as e:
        raise UsageError(f"--metrics-addr {addr}: cannot listen: {e.strerror or e}") from None
    return Exporter(server, thread)


class _Collector:
    """Reads the store at each scrape."""

    def __init__(self, store_path: Path, monitor: Any) -> None:
        self.store_path = store_path
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        up = GaugeMetricFamily("guardian_up", "1 while the Guardian daemon serves this store")
        try:
            data = snapshot(self.store_path)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        ops = CounterMetricFamily("guardian_operations", "Operations recorded, by type and "
                                  "outcome (ok, error, rejected)", labels=["type", "outcome"])
        for (kind, outcome), n in sorted(data["operations"].items()):
            ops.add_metric([kind, outcome], n)
        yield ops
        dur = HistogramMetricFamily("guardian_operation_duration_seconds",
                                    "How long operations took, by type", labels=["type"])
        for kind, (cum, count, total) in sorted(data["durations"].items()):
            dur.add_metric([kind], _buckets(DURATION_BUCKETS_S, cum, count), total)
        yield dur
        lat_cum, lat_n, lat_sum = data["latency"]
        lat = HistogramMetricFamily("guardian_capture_latency_seconds",
                                    "From the first event of a write to its version committed")
        lat.add_metric([], _buckets(LATENCY_BUCKETS_S, lat_cum, lat_n), lat_sum)
        yield lat
        versions = CounterMetricFamily("guardian_versions", "Versions recorded, by kind and "
                                       "origin", labels=["kind", "origin"])
        for (kind, origin), n in sorted(data["versions"].items()):
            versions.add_metric([kind, origin], n)
        yield versions
        alerts = GaugeMetricFamily("guardian_alerts_open", "Alerts not resolved, by severity",
                                   labels=["severity"])
        for sev in ("info", "warning", "critical"):
            alerts.add_metric([sev], data["alerts"].get(sev, 0))
        yield alerts
        yield GaugeMetricFamily("guardian_store_bytes", "Bytes the store takes on disk",
                                value=data["store_bytes"])
        rec = CounterMetricFamily("guardian_reconciles", "Reconcile scans, by reason",
                                  labels=["reason"])
        for reason, n in sorted(data["reconciles"].items()):
            rec.add_metric([reason], n)
        yield rec
        yield CounterMetricFamily("guardian_events_lost", "Times watch events were lost "
                                  "(each followed by a reconcile)", value=data["events_lost"])
        up.add_metric([], 1)
        yield up


def _buckets(edges: tuple[float, ...], cum: list[int], count: int) -> list[tuple[str, float]]:
    return [(repr(float(e)), float(c)) for e, c in zip(edges, cum, strict=True)] + [
        ("+Inf", float(count))]


def snapshot(store_path: Path) -> dict[str, Any]:
    """Totals since the store was made, for one scrape."""
    import json

    from guardian.observe.metrics import disk_bytes
    from guardian.store.db import Store

    with Store.open(store_path, write=False) as store:
        now = time.time_ns()
        groups, _ = store.op_groups(0, now + 1)
        operations: dict[tuple[str, str], int] = {}
        durations: dict[str, tuple[list[int], int, float]] = {}
        reconciles: dict[str, int] = {}
        lat_cum = [0] * len(LATENCY_BUCKETS_S)
        lat_n = 0
        lat_sum = 0.0
        nd = len(DURATION_BUCKETS_S)
        for g in groups:
            kind, outcome, n = op_type(g[0]), g[1], int(g[5])
            operations[(kind, outcome)] = operations.get((kind, outcome), 0) + n
            cum, count, total = durations.get(kind, ([0] * nd, 0, 0.0))
            durations[kind] = ([a + int(b or 0) for a, b in zip(cum, g[10:10 + nd],
                                                                 strict=True)],
                               count + n, total + int(g[8] or 0) / 1e9)
            if g[0] == "reconcile":
                reconciles[g[4] or "unknown"] = reconciles.get(g[4] or "unknown", 0) + n
            base = 10 + nd
            lat_n += int(g[base] or 0)
            lat_sum += int(g[base + 1] or 0) / 1e9
            for i in range(len(lat_cum)):
                lat_cum[i] += int(g[base + 3 + i] or 0)
        for _op, text in store.op_latencies(0, now + 1):
            h = json.loads(text)
            lat_n += h["n"]
            lat_sum += h["sum"] / 1e9
            for i, c in enumerate(h["b"][:len(lat_cum)]):
                lat_cum[i] += c
        versions = {(k, o): n for k, o, n, _b in store.version_groups(0, now + 1)}
        return {"operations": operations, "durations": durations,
                "latency": (lat_cum, lat_n, lat_sum), "versions": versions,
                "alerts": store.open_alert_counts(), "store_bytes": disk_bytes(store),
                "reconciles": reconciles,
                "events_lost": sum(n for r, n in reconciles.items() if r in LOSS_REASONS)}
