"""``guardian suggest``: the seed's Continuous Improvement loop over the recorded operations.

Patterns, each listed when it occurred more than 3 times (the seed's frequency), with an
estimated benefit in seconds and how that was estimated:

- **reverted-often**: a file Guardian reverted again and again (its writer keeps writing
  invalid content); benefit: the time its validations and reverts took;
- **protected-written-often**: a protected path written again and again (each write
  reverted); benefit: the time those reverts took;
- **slow-validator**: a validator averaging more than 0.5 s a file; benefit: its time above
  a 0.1 s budget per file;
- **small-sequential-writes**: runs of batches of one or two files, each within 5 s of the
  last, that one batch would do; benefit: the run's time less its longest batch (one batch of
  all the files costs about as much as the largest part: one sync, one commit);
- **rule-never-matches**: a ``[[rule]]`` whose globs match none of the files recorded under
  its rule file's directory; benefit: none in seconds (a typo in a glob, usually);
- **store-growth**: a path whose versions hold 20 % or more of what the store recorded in the
  window (1 MiB at least); benefit: the capture time those bytes cost at the capture
  throughput measured in the window.

``--file-issues`` files one GitHub issue per suggestion whose benefit is above 1 s with the
``gh`` CLI (labels ``write-optimization,performance,ai-suggested``), and remembers each in the
store so it is never filed twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardian.errors import UsageError
from guardian.observe.calibrate import Baseline
from guardian.observe.record import BATCH_OPS
from guardian.store.db import Store

MIN_FREQUENCY = 3          # the seed's: listed when it occurred more than this
FILE_BENEFIT_S = 1.0       # the seed's: issues only for benefits above a second
SLOW_VALIDATOR_S = 0.5
VALIDATOR_BUDGET_S = 0.1
RUN_GAP_S = 5.0
SMALL_BATCH_FILES = 2
GROWTH_SHARE = 0.2
GROWTH_MIN_BYTES = 1024 * 1024
LABELS = "write-optimization,performance,ai-suggested"


@dataclass(frozen=True)
class Suggestion:
    type: str
    subject: str
    description: str
    frequency: int
    benefit_s: float
    basis: str
    recommendation: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable across runs: the same pattern on the same subject is the same suggestion."""
        return hashlib.sha256(f"{self.type}\0{self.subject}".encode(
            "utf-8", "surrogateescape")).hexdigest()[:16]

    @property
    def title(self) -> str:
        return f"Write Optimization: {self.description}"

    def body(self) -> str:
        return (f"{self.description}\n\n"
                f"- **Pattern**: `{self.type}` on `{self.subject}`\n"
                f"- **Frequency**: {self.frequency}\n"
                f"- **Estimated benefit**: {self.benefit_s:.2f} s ({self.basis})\n"
                f"- **Recommendation**: {self.recommendation}\n\n"
                "Evidence:\n\n```json\n" + json.dumps(self.evidence, indent=2, default=str)
                + "\n```\n\nFiled by `guardian suggest --file-issues` (suggestion "
                f"{self.key}) from the operations Guardian recorded.\n")

    def to_json(self, filed_url: str | None = None) -> dict[str, Any]:
        return {"key": self.key, "type": self.type, "subject": self.subject,
                "description": self.description, "frequency": self.frequency,
                "estimated_benefit_s": round(self.benefit_s, 6), "benefit_basis": self.basis,
                "recommendation": self.recommendation, "evidence": self.evidence,
                "would_file": self.benefit_s > FILE_BENEFIT_S, "filed": filed_url is not None,
                "issue_url": filed_url}


def find(store: Store, *, since_ns: int, until_ns: int,
         baseline: Baseline | None = None) -> list[Suggestion]:
    rows = store.op_rows(since_ns, until_ns)
    out: list[Suggestion] = []
    out += _reverts(rows)
    out += _slow_validators(rows)
    out += _small_runs(rows)
    out += _never_matching_rules(store)
    out += _growth(store, rows, since_ns, until_ns)
    return sorted(out, key=lambda s: (-s.benefit_s, s.type, s.subject))


def _path(p: Any) -> str:
    return os.fsdecode(bytes(p)) if p is not None else "?"


def _reverts(rows: list[tuple[Any, ...]]) -> list[Suggestion]:
    reverts: dict[tuple[str, str], list[int]] = {}
    validations: dict[str, int] = {}
    for r in rows:
        if r[2] == "revert" and r[5] == "ok":
            reverts.setdefault((_path(r[3]), r[9] or "invalid"), []).append(int(r[4]))
        elif r[2] == "validate":
            validations[_path(r[3])] = validations.get(_path(r[3]), 0) + int(r[4])
    out = []
    for (path, why), durations in sorted(reverts.items()):
        if len(durations) <= MIN_FREQUENCY:
            continue
        spent = sum(durations) / 1e9
        if why == "protected":
            out.append(Suggestion(
                "protected-written-often", path,
                f"protected path {path} was written {len(durations)} times (each reverted)",
                len(durations), spent, "the time Guardian spent reverting those writes",
                "find the writer and stop it touching this path, or drop `protect` for it if "
                "the writes are wanted", {"reverts": len(durations), "revert_s": spent}))
        else:
            total = spent + validations.get(path, 0) / 1e9
            out.append(Suggestion(
                "reverted-often", path,
                f"{path} was reverted {len(durations)} times: its writer keeps writing "
                "invalid content", len(durations), total,
                "the time its validations and reverts took",
                "fix the writer (the validation alerts say what is wrong), or change "
                "on_invalid for this path if the content is valid for its use",
                {"reverts": len(durations), "revert_s": spent, "validate_s": total - spent}))
    return out


def _slow_validators(rows: list[tuple[Any, ...]]) -> list[Suggestion]:
    by: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        if r[2] == "validate" and r[5] != "error":
            by.setdefault(r[9] or "validators", []).append((int(r[4]), _path(r[3])))
    out = []
    for label, items in sorted(by.items()):
        avg = sum(d for d, _ in items) / len(items) / 1e9
        if len(items) <= MIN_FREQUENCY or avg <= SLOW_VALIDATOR_S:
            continue
        over = sum(max(0.0, d / 1e9 - VALIDATOR_BUDGET_S) for d, _ in items)
        slowest = sorted(items, reverse=True)[:3]
        out.append(Suggestion(
            "slow-validator", label,
            f"validator {label} takes {avg:.2f} s a file on average ({len(items)} files)",
            len(items), over, f"its time above a {VALIDATOR_BUDGET_S:g} s budget per file",
            "speed up the command (check only the file given, cache its start-up), narrow "
            "the rule's paths, or move it to a pre-commit hook",
            {"files": len(items), "average_s": round(avg, 6),
             "slowest": [{"path": p, "seconds": round(d / 1e9, 6)} for d, p in slowest]}))
    return out


def _small_runs(rows: list[tuple[Any, ...]]) -> list[Suggestion]:
    batches: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r[2] in BATCH_OPS and r[8] is not None and r[5] == "ok":
            b = batches.setdefault(int(r[8]), {"t": int(r[1]), "files": 0, "ns": 0,
                                               "paths": []})
            b["t"] = min(b["t"], int(r[1]))
            b["files"] += 1
            b["ns"] += int(r[4])
            b["paths"].append(_path(r[3]))
    ordered = sorted(batches.items(), key=lambda kv: kv[1]["t"])
    runs: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    for _bid, b in ordered:
        small = b["files"] <= SMALL_BATCH_FILES
        if small and cur and (b["t"] - cur[-1]["t"]) / 1e9 <= RUN_GAP_S:
            cur.append(b)
            continue
        if len(cur) > MIN_FREQUENCY:
            runs.append(cur)
        cur = [b] if small else []
    if len(cur) > MIN_FREQUENCY:
        runs.append(cur)
    by_dir: dict[str, list[list[dict[str, Any]]]] = {}
    for run in runs:
        paths = [p for b in run for p in b["paths"]]
        by_dir.setdefault(os.path.commonpath(paths) if paths else "?", []).append(run)
    out = []
    for where, found in sorted(by_dir.items()):
        n = sum(len(run) for run in found)
        benefit = sum(sum(b["ns"] for b in run) - max(b["ns"] for b in run)
                      for run in found) / 1e9
        out.append(Suggestion(
            "small-sequential-writes", where,
            f"{n} batches of 1-{SMALL_BATCH_FILES} files under {where} came one after another "
            f"({len(found)} run{'s' if len(found) != 1 else ''}) where one batch would do",
            n, benefit, "each run's time less its longest batch",
            "collect the writes and apply them as one manifest (guardian apply) or one "
            "Batch().commit()",
            {"runs": [{"batches": len(run), "files": sum(b["files"] for b in run),
                       "seconds": round(sum(b["ns"] for b in run) / 1e9, 6)}
                      for run in found[:10]]}))
    return out


def _never_matching_rules(store: Store) -> list[Suggestion]:
    from guardian.errors import GuardianError
    from guardian.rules.rulefiles import RULE_FILE, load_rule_file

    out = []
    for root in store.roots():
        live = store.live_relpaths(root.id, 200_000)
        files = [os.fsdecode(r) for r in live]
        name = RULE_FILE
        for rel in sorted(f for f in files if f == name or f.endswith("/" + name)):
            base = rel.rpartition("/")[0]
            path = os.path.join(str(root.path), rel)
            try:
                rf = load_rule_file(path, base)
            except (GuardianError, OSError):
                continue
            under = [f for f in files if not base or f.startswith(base + "/")]
            if len(under) <= MIN_FREQUENCY:
                continue
            for i, rule in enumerate(rf.rules):
                try:
                    if any(rule.matches(f) for f in under):
                        continue
                except Exception:  # noqa: S112 - a rules API change must not break suggest
                    continue
                lines = [o.line for _v, o in getattr(rule, "settings", {}).values()
                         if getattr(o, "file", None) == path]
                where = f"{path}:{min(lines)}" if lines else f"{path} (rule {i + 1})"
                globs = [g.text for g in rule.globs]
                out.append(Suggestion(
                    "rule-never-matches", f"{where} {globs}",
                    f"rule at {where} (paths = {globs}) matches none of the "
                    f"{len(under)} files recorded under it", len(under), 0.0,
                    "none in seconds: a rule that matches nothing usually has a typo in a glob",
                    "fix its globs (`guardian rules PATH` shows what applies where) or remove it",
                    {"rule_file": path, "globs": globs, "files_checked": len(under)}))
    return out


def _growth(store: Store, rows: list[tuple[Any, ...]], since: int, until: int
            ) -> list[Suggestion]:
    per: dict[tuple[int, bytes], list[int]] = {}
    for rid, rel, _kind, n, b in store.path_versions(since, until):
        acc = per.setdefault((rid, rel), [0, 0])
        acc[0] += n
        acc[1] += b
    total = sum(b for _n, b in per.values())
    if not total:
        return []
    cap_bytes = sum(int(r[11]) for r in rows if r[2] == "capture" and r[5] == "ok")
    cap_s = sum(int(r[4]) for r in rows if r[2] == "capture" and r[5] == "ok") / 1e9
    rate = cap_bytes / cap_s if cap_s > 0 and cap_bytes else 100e6
    roots = {r.id: r for r in store.roots()}
    out = []
    for (rid, rel), (n, b) in sorted(per.items(), key=lambda kv: -kv[1][1])[:3]:
        share = b / total
        if share < GROWTH_SHARE or b < GROWTH_MIN_BYTES or n <= MIN_FREQUENCY:
            continue
        shown = roots[rid].display(rel) if rid in roots else os.fsdecode(rel)
        out.append(Suggestion(
            "store-growth", shown,
            f"{shown} grew the store by {b / 1e6:.1f} MB in {n} versions ({share:.0%} of "
            "everything recorded)", n, b / rate,
            f"capture time at the {rate / 1e6:.1f} MB/s measured in the window",
            "if it is generated or a log, add it to `ignore`; else lower keep_versions or "
            "max_file_size for it", {"versions": n, "bytes": b, "share": round(share, 6)}))
    return out


def render(found: list[Suggestion], filed: dict[str, str | None]) -> str:
    if not found:
        return "no suggestions: no pattern occurred more than 3 times"
    lines = []
    for s in found:
        mark = " [filed]" if s.key in filed else ""
        lines.append(f"{s.benefit_s:8.2f} s  x{s.frequency:<5} {s.type:<24} {s.description}{mark}")
        lines.append(f"{'':17}-> {s.recommendation}")
    return "\n".join(lines)


def file_issues(found: list[Suggestion], filed: dict[str, str | None],
                mark: Callable[[str, str | None, str], bool]) -> dict[str, list[dict[str, Any]]]:
    """File one issue per new suggestion worth more than a second, through ``gh``."""
    out: dict[str, list[dict[str, Any]]] = {"filed": [], "skipped": [], "failed": []}
    todo = []
    for s in found:
        if s.key in filed:
            out["skipped"].append({"key": s.key, "title": s.title,
                                   "why": f"filed before: {filed[s.key] or 'no URL'}"})
        elif s.benefit_s <= FILE_BENEFIT_S:
            out["skipped"].append({"key": s.key, "title": s.title, "why": (
                f"estimated benefit {s.benefit_s:.2f} s is not above {FILE_BENEFIT_S:g} s")})
        else:
            todo.append(s)
    if not todo:
        return out
    gh = shutil.which("gh")
    if gh is None:
        raise UsageError("--file-issues needs the GitHub CLI `gh` on PATH "
                         "(https://cli.github.com); nothing was filed")
    auth = subprocess.run([gh, "auth", "status"], capture_output=True, text=True, timeout=60,
                          check=False)
    if auth.returncode != 0:
        why = (auth.stderr or auth.stdout).strip().splitlines()
        raise UsageError("gh is not authenticated" + (f" ({why[0]})" if why else "")
                         + ": run `gh auth login`; nothing was filed")
    for s in todo:
        p = subprocess.run([gh, "issue", "create", "--title", s.title, "--body", s.body(),
                            "--label", LABELS], capture_output=True, text=True, timeout=120,
                           check=False)
        if p.returncode != 0:
            err = (p.stderr or p.stdout).strip().splitlines()
            out["failed"].append({"key": s.key, "title": s.title,
                                  "error": err[-1] if err else f"gh exited {p.returncode}"})
            continue
        lines = p.stdout.strip().splitlines()
        url = lines[-1].strip() if lines else None
        mark(s.key, url, s.title)
        out["filed"].append({"key": s.key, "title": s.title, "url": url})
    return out
