"""``guardian report``: the seed's daily report, its numbers checked against the operations
recorded, saved and listed, and the DISCOVERIES.md section only when the seed's condition
holds."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .conftest import Cli


def _apply(cli: Cli, root: Path, tmp_path: Path, ops: list[dict], name: str,
           *extra: str) -> int:
    m = tmp_path / f"{name}.json"
    m.write_text(json.dumps({"operations": ops}))
    return cli.run("apply", str(m), "--root", str(root), *extra).returncode


def _ops(store: Path) -> list[tuple]:
    with sqlite3.connect(store / "guardian.db") as db:
        return db.execute("SELECT op, outcome, error_category, optimisation, duration_ns"
                          " FROM operations").fetchall()


def test_report_numbers_match_the_operations(cli: Cli, root: Path, tmp_path: Path,
                                             store: Path) -> None:
    writes = [{"op": "write", "path": f"f{i}.txt", "content": f"{i}\n"} for i in range(5)]
    assert _apply(cli, root, tmp_path, writes, "good") == 0
    assert _apply(cli, root, tmp_path, [{"op": "write", "path": "x.json", "content": "{"},
                                        {"op": "write", "path": "y.txt", "content": "y"}],
                  "bad") == 1
    assert _apply(cli, root, tmp_path, [{"op": "edit", "path": "f0.txt", "old": "nope",
                                         "new": "x"}], "bad2") == 1
    rows = _ops(store)
    rep = cli.json("report")
    s = rep["summary"]
    assert s["total_operations"] == len(rows) == 8
    ok = sum(1 for r in rows if r[1] == "ok")
    errors = sum(1 for r in rows if r[1] == "error")
    assert s["success_rate"] == round(ok / len(rows), 6)
    assert s["error_rate"] == round(errors / len(rows), 6)
    assert s["optimization_rate"] == round(sum(1 for r in rows if r[3]) / len(rows), 6)
    e = rep["error_analysis"]
    # The seed's categories: the refused JSON write and its batch mate are validation, the
    # edit whose text is not there a usage error (validation too).
    assert e["categories"]["validation"]["count"] == sum(1 for r in rows if r[1] != "ok")
    assert e["by_type"]["batch"] == {"ok": ok, "rejected": len(rows) - ok}
    assert any("invalid" in t["message"] for t in e["top_errors"])
    perf = rep["performance_metrics"]["types"]["batch"]
    assert perf["count"] == len(rows)
    assert abs(perf["duration_s"]["total"] - sum(r[4] for r in rows) / 1e9) < 1e-5
    assert s["significant_improvements"] is False
    assert {"report_date", "summary", "performance_metrics", "optimization_effectiveness",
            "error_analysis", "recommendations"} <= set(rep)
    # Saved in the store and listed.
    listed = cli.json("report", "--list")["reports"]
    assert [r["id"] for r in listed] == [rep["id"]]
    assert listed[0]["summary"]["total_operations"] == 8
    md = cli.run("report", "--markdown", check=True).stdout.decode()
    assert md.startswith("# Write Optimization Performance Report - ")
    assert "## Error Analysis" in md and "## Recommendations" in md
    assert len(cli.json("report", "--list")["reports"]) == 2


def test_trend_against_the_previous_period(cli: Cli, root: Path, tmp_path: Path) -> None:
    import time

    t0 = time.time()
    assert _apply(cli, root, tmp_path, [{"op": "write", "path": "a", "content": "a"}], "a") == 0
    mid = time.time()
    assert _apply(cli, root, tmp_path, [{"op": "write", "path": "b", "content": "b"},
                                        {"op": "write", "path": "c", "content": "c"}], "b") == 0
    length = max(time.time() - mid, mid - t0) + 0.01
    # The period [mid, mid + length) holds the second batch; the previous one, as long and
    # just before, holds the first.
    rep = cli.json("report", "--since", f"@{mid}", "--until", f"@{mid + length}")
    assert rep["summary"]["total_operations"] == 2
    trend = rep["summary"]["trend"]
    assert trend["previous_operations"] == 1
    assert trend["direction"] in ("improving", "stable", "degrading")
    assert rep["summary"]["performance_trend"].startswith(trend["direction"])


def test_discoveries_only_when_the_seeds_condition_holds(cli: Cli, root: Path,
                                                         tmp_path: Path) -> None:
    d = tmp_path / "DISCOVERIES.md"
    d.write_text("# Discoveries\n")
    writes = [{"op": "write", "path": f"f{i}.txt", "content": f"{i}\n"} for i in range(3)]
    assert _apply(cli, root, tmp_path, writes, "w") == 0
    p = cli.run("report", "--discoveries", str(d), check=True)
    assert b"not appended" in p.stderr and b"not above 2 s" in p.stderr
    assert d.read_text() == "# Discoveries\n"
    # Against a naive write of 3 s a file, each optimised write saved more than 2 s.
    p = cli.run("report", "--discoveries", str(d), "--baseline-s", "3", "--json", check=True)
    out = json.loads(p.stdout)
    assert out["summary"]["significant_improvements"] is True
    assert out["discoveries"]["appended"] is True
    text = d.read_text()
    assert text.startswith("# Discoveries\n")
    assert f"## Write Optimization Performance Report - {out['report_date']}" in text
    assert "**Significant Performance Gains Detected**" in text
    assert "- **Total Operations**: 3" in text and "seconds per operation" in text
    assert "**Key Optimizations**:" in text and "**Next Steps**:" in text
    assert not list(tmp_path.glob(".DISCOVERIES.md.*"))  # the temp file is gone
