"""``guardian watch --metrics-addr``: scraped over real HTTP, both exposition formats, parsed
with prometheus-client's own parsers, numbers checked against the store."""

from __future__ import annotations

import sqlite3
import urllib.request
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from guardian.observe.prometheus import parse_addr
from guardian.rules.rulefiles import RULE_FILE

from .conftest import Cli

NAMES = {"guardian_operations", "guardian_operation_duration_seconds",
         "guardian_capture_latency_seconds", "guardian_versions", "guardian_alerts_open",
         "guardian_store_bytes", "guardian_reconciles", "guardian_events_lost", "guardian_up"}


def _scrape(addr: str, accept: str | None = None) -> tuple[str, str]:
    req = urllib.request.Request(f"http://{addr}/metrics",
                                 headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def _samples(families: list) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def test_scrape_both_formats(root: Path, cli: Cli, watch, store: Path) -> None:
    (root / RULE_FILE).write_text('[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\n'
                                  'on_invalid = "revert"\n')
    (root / "a.json").write_text('{"a": 1}\n')
    w = watch(root, extra=["--metrics-addr", ":0"])
    addr = cli.json("status")["metrics_addr"]
    assert addr.startswith("127.0.0.1:"), addr  # localhost unless told otherwise
    m = w.mark()
    (root / "a.json").write_text('{"a": 2,}\n')
    w.wait(lambda e: e["event"] == "alert" and e["kind"] == "reverted", start=m)
    cli.json("snapshot")
    ctype, text = _scrape(addr)
    assert ctype.startswith("text/plain"), ctype
    fams = list(text_string_to_metric_families(text))
    assert {f.name for f in fams} >= NAMES - {"guardian_operations", "guardian_versions",
                                              "guardian_reconciles", "guardian_events_lost"}
    s = _samples(fams)
    assert s[("guardian_up", ())] == 1.0
    assert s[("guardian_operations_total", (("outcome", "ok"), ("type", "revert")))] == 1.0
    assert s[("guardian_operations_total", (("outcome", "rejected"), ("type", "validate")))] \
        == 1.0
    assert s[("guardian_versions_total", (("kind", "reverted"), ("origin", "guardian")))] == 1.0
    assert s[("guardian_capture_latency_seconds_count", ())] >= 1
    with sqlite3.connect(store / "guardian.db") as db:
        ops = db.execute("SELECT COUNT(*) FROM operations").fetchone()[0]
    total = sum(v for (name, _l), v in s.items() if name == "guardian_operations_total")
    assert total == ops
    count = sum(v for (name, _l), v in s.items()
                if name == "guardian_operation_duration_seconds_count")
    assert count == ops
    # The histogram's buckets are cumulative and end at the count.
    b = sorted((float(dict(labels)["le"]), v) for (name, labels), v in s.items()
               if name == "guardian_operation_duration_seconds_bucket"
               and dict(labels)["type"] == "capture")
    assert [v for _, v in b] == sorted(v for _, v in b)
    captures = s[("guardian_operation_duration_seconds_count", (("type", "capture"),))]
    assert b[-1] == (float("inf"), captures) and b[-2] == (60.0, captures)  # all under 60 s
    # OpenMetrics when the scraper asks for it.
    ctype, text = _scrape(addr, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert ctype.startswith("application/openmetrics-text"), ctype
    assert text.rstrip().endswith("# EOF")
    om = {f.name for f in om_parse(text)}
    assert om >= NAMES, NAMES - om
    assert w.stop() == 0


def test_bad_metrics_address_is_a_start_up_error(cli: Cli, root: Path) -> None:
    for bad, needle in (("localhost:notaport", b"expected HOST:PORT"),
                        ("127.0.0.1:70000", b"port must be"),
                        ("192.0.2.1:9464", b"cannot listen")):
        p = cli.run("watch", str(root), "--metrics-addr", bad)
        assert p.returncode == 2, (bad, p.stderr)
        assert p.stderr.count(b"\n") == 1 and needle in p.stderr, p.stderr


def test_parse_addr() -> None:
    assert parse_addr(":9464") == ("127.0.0.1", 9464)
    assert parse_addr("9464") == ("127.0.0.1", 9464)
    assert parse_addr("0.0.0.0:1") == ("0.0.0.0", 1)
    assert parse_addr("[::1]:9464") == ("::1", 9464)


def test_the_shipped_examples_name_real_metrics() -> None:
    import re

    import yaml

    here = Path(__file__).resolve().parent.parent / "examples" / "prometheus"
    config = yaml.safe_load((here / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    assert config["rule_files"] == ["guardian-alerts.yml"]
    rules = yaml.safe_load((here / "guardian-alerts.yml").read_text())["groups"][0]["rules"]
    assert [r["labels"]["severity"] for r in rules] == ["critical", "warning"]
    exported = {"guardian_operations_total", "guardian_operation_duration_seconds_sum",
                "guardian_operation_duration_seconds_count"}
    for r in rules:
        used = set(re.findall(r"guardian_[a-z_]+", r["expr"]))
        assert used and used <= exported, used
    assert "> 0.05" in rules[0]["expr"] and "> 5" in rules[1]["expr"]  # the seed's thresholds
