"""Group "validation": validator throughput, and how fast an invalid write is undone."""

from __future__ import annotations

import configparser
import hashlib
import json
import math
import sysconfig
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Config,
    Goal,
    LoggedProcess,
    LogLine,
    Row,
    Table,
    Workspace,
    guardian_watch,
    is_ready,
    median,
    percentile,
    progress,
    write_file,
)

Parse = Callable[[bytes], object]


def _corpus(cfg: Config) -> dict[str, list[tuple[str, bytes]]]:
    """Real files where the interpreter has them; generated ones for the other formats."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    purelib = Path(sysconfig.get_paths()["purelib"])
    limit = 300 if cfg.quick else 2000
    py = []
    for p in sorted(stdlib.glob("*.py"))[:limit]:
        py.append((str(p), p.read_bytes()))
    js = []
    for p in sorted(purelib.rglob("*.json"))[:limit]:
        js.append((str(p), p.read_bytes()))
    if len(js) < 50:
        js += [(f"gen{i}.json", json.dumps({"items": [{"id": j, "name": f"n{j}", "ok": True}
                                                      for j in range(200)]}).encode())
               for i in range(200)]
    md = [(str(p), p.read_bytes()) for p in sorted(purelib.rglob("*.md"))[:limit]]
    if len(md) < 50:
        md += [(f"gen{i}.md", ("# Title\n\n" + "Some *text* here.\n\n```python\nx = 1\n```\n"
                               * 40).encode()) for i in range(200)]
    n = 100 if cfg.quick else 500
    yaml = [(f"gen{i}.yaml", "".join(f"key{j}:\n  name: value {j}\n  list: [1, 2, 3]\n"
                                     for j in range(100)).encode()) for i in range(n)]
    toml = [(f"gen{i}.toml", "".join(f"[section{j}]\nname = \"v{j}\"\nn = {j}\n"
                                     for j in range(100)).encode()) for i in range(n)]
    ini = [(f"gen{i}.ini", "".join(f"[section{j}]\nname = v{j}\nn = {j}\n"
                                   for j in range(100)).encode()) for i in range(n)]
    txt = [(str(p), p.read_bytes()) for p in sorted(stdlib.rglob("*.txt"))[:limit]]
    return {"python": py, "json": js, "yaml": yaml, "toml": toml, "ini": ini,
            "markdown": md, "text": txt}


def _baselines() -> dict[str, Parse]:
    """The plain parser a user would otherwise run: what our stricter checks cost on top."""
    import yaml as pyyaml

    def ini(b: bytes) -> object:
        cp = configparser.ConfigParser(interpolation=None)
        cp.read_string(b.decode())
        return cp

    return {
        "python": lambda b: compile(b, "<bench>", "exec", dont_inherit=True),
        "json": lambda b: json.loads(b),
        "yaml": lambda b: list(pyyaml.load_all(b, Loader=getattr(pyyaml, "CSafeLoader",
                                                                 pyyaml.SafeLoader))),
        "toml": lambda b: tomllib.loads(b.decode()),
        "ini": ini,
        "markdown": lambda b: b.decode().splitlines(),
        "text": lambda b: b.decode("utf-8", "replace"),
    }


def throughput(ws: Workspace, cfg: Config) -> Table:
    from guardian.validation import validators

    table = Table("validation.throughput",
                  "each validator over a corpus (stdlib .py/.txt, site-packages .json/.md, "
                  "generated YAML/TOML/INI), in process, one thread",
                  "the plain parser of the same format on the same files (compile, json.loads, "
                  "yaml CSafeLoader, tomllib, configparser; for markdown/text: decoding)")
    corpus = _corpus(cfg)
    base = _baselines()
    for name, files in corpus.items():
        if not files:
            continue
        size = sum(len(b) for _, b in files)
        for _, b in files[:3]:  # warm imports and caches
            validators.run(name, b, "warm", timeout=None)
        t = time.perf_counter()
        invalid = sum(not validators.run(name, b, p, timeout=None).ok for p, b in files)
        ours = time.perf_counter() - t
        t = time.perf_counter()
        for _, b in files:
            try:
                base[name](b)
            except Exception:  # a file the plain parser refuses still cost its time
                continue
        theirs = time.perf_counter() - t
        table.rows.append(Row(f"{name} ({len(files)} files)", len(files) / ours, "files/s",
                              len(files) / theirs))
        table.rows.append(Row(f"{name} ({size / 1e6:.1f} MB)", size / 1e6 / ours, "MB/s",
                              size / 1e6 / theirs))
        if invalid:
            table.notes.append(f"{name}: {invalid} of {len(files)} corpus files reported "
                               "invalid (real files: e.g. .cfg that is not INI)")
    table.notes.append("ratio below 1: the validator is slower than the bare parser (it also "
                       "checks duplicates, surrogates, locations, imports, fences …)")
    return table


def revert_latency(ws: Workspace, cfg: Config) -> Table:
    n = 20 if cfg.quick else 100
    table = Table("validation.revert_latency",
                  f"an invalid JSON write under on_invalid = \"revert\" -> the last valid content "
                  f"back on disk and recorded, {n} times",
                  "the same daemon, the same file: a valid write -> its version committed")
    root = ws.dir("revert", "tree")
    store = ws.root / "revert" / "store"
    (root / ".guardian.toml").write_text(
        '[[rule]]\npaths = ["*.json"]\nvalidators = ["json"]\non_invalid = "revert"\n'
        "max_reverts_per_minute = 1000\n")
    target = root / "conf.json"
    good = b'{"ok": true}\n'
    write_file(target, good)
    env = ws.env()
    reverts: list[float] = []
    captures: list[float] = []
    with guardian_watch(root, store, env) as g:
        g.wait_for(is_ready, 120, "ready")
        progress(f"validation.revert_latency: {n} invalid and {n} valid writes")

        def write_until(data: bytes, kind: str | None) -> float:
            """Seconds from writing ``data`` to the daemon's version event of ``kind``."""
            cursor = len(g.lines)
            t = time.perf_counter()
            write_file(target, data)
            line = g.wait_for(lambda x: x.event == "version"
                              and (kind is None or x.obj.get("kind") == kind),
                              30, f"a {kind or 'new'} version", cursor)
            return float(line.t - t)

        for i in range(n):
            reverts.append(write_until(f'{{"ok": true, "n": {i},}}\n'.encode(), "reverted"))
            if target.read_bytes() != good:
                raise BenchError("the reverted file does not hold the last valid content")
            captures.append(write_until(f'{{"ok": true, "n": {i}}}\n'.encode(), "modified"))
            write_until(good, None)  # back to the good content for the next round, untimed
        table.notes += g.anomalies()
    table.rows += [
        Row("revert latency median", median(reverts) * 1000, "ms", median(captures) * 1000),
        Row("revert latency p99", percentile(reverts, 99) * 1000, "ms",
            percentile(captures, 99) * 1000),
    ]
    table.notes.append("revert latency: write -> the 'reverted' version event (the good bytes "
                       "are on disk and recorded when it is printed): settle, record, validate, "
                       "mark rejected, write back, record")
    return table


def _generated_module(size: int) -> bytes:
    """``size`` bytes of what a code generator writes: a table, one assignment a line."""
    out: list[bytes] = []
    n = i = 0
    while n < size:
        line = b"value_%d = (%d, 'name_%d')\n" % (i, i, i)
        out.append(line)
        n += len(line)
        i += 1
    return b"".join(out)[:size].rpartition(b"\n")[0] + b"\n"


def _edit_stream(g: LoggedProcess, path: Path, rate: float, done: Callable[[], bool],
                 at_least: int) -> tuple[list[float], int, int]:
    """Write a unique small content to ``path`` ``rate`` times a second until ``done()`` and
    at least ``at_least`` writes: each one's latency, ms (write -> the version event of it or
    of a later write: when the store caught up with it), and how many were never recorded
    (overwritten before Guardian read them), and how many writes there were."""
    start = len(g.lines)
    writes: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    while len(writes) < at_least or not done():
        delay = t0 + len(writes) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        data = f"edit {len(writes)} {time.time_ns()}\n".encode()
        t = time.perf_counter()
        write_file(path, data)
        writes.append((t, hashlib.sha256(data).hexdigest()))
    want = {s for _t, s in writes}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not want <= {
            x.obj.get("sha256") for x in g.lines[start:] if x.event == "version"}:
        g.since(len(g.lines), 0.5)
    seen: dict[str, float] = {}
    for line in g.lines[start:]:
        sha = line.obj.get("sha256")
        if line.event == "version" and isinstance(sha, str):
            seen.setdefault(sha, line.t)
    lat: list[float] = []
    caught_up = math.inf  # the earliest version event of this write or a later one
    for t, s in reversed(writes):
        caught_up = min(caught_up, seen.get(s, math.inf))
        lat.append((caught_up - t) * 1000)
    return ([x for x in reversed(lat) if x != math.inf], sum(s not in seen for _t, s in writes),
            len(writes))


@dataclass
class _Busy:
    quiet: list[float]
    quiet_lost: int
    busy: list[float]
    busy_lost: int
    busy_n: int
    took: float
    verdict: dict[str, Any]
    anomalies: list[str]


def _edits_while_checking(ws: Workspace, tag: str, env: dict[str, str], big: bytes,
                          rate: float, quiet_n: int) -> _Busy:
    root = ws.dir(tag, "tree")
    store = ws.root / tag / "store"
    (root / ".guardian.toml").write_text(
        '[[rule]]\npaths = ["*.py"]\nvalidators = ["python"]\n'
        "options = { python = { max_bytes = 16777216, timeout = 120, "
        'max_memory = "4GiB" } }\n')
    notes, module = root / "notes.txt", root / "generated.py"
    with guardian_watch(root, store, env) as g:
        g.wait_for(is_ready, 120, "ready")
        _edit_stream(g, notes, rate, lambda: True, 10)  # warm-up, untimed
        cursor = len(g.lines)
        write_file(module, big)
        g.wait_for(lambda x: x.event == "version" and x.obj.get("path") == str(module),
                   60, "the big module's version", cursor)
        t_check = time.perf_counter()

        def verdict(x: LogLine) -> bool:
            return x.event == "validation" and x.obj.get("path") == str(module)

        busy, busy_lost, busy_n = _edit_stream(g, notes, rate,
                                       lambda: any(map(verdict, g.lines[cursor:])), 10)
        line = g.wait_for(verdict, 1, "its verdict", cursor)
        took = line.t - t_check
        # The baseline: as many edits again, with nothing being validated.
        quiet, quiet_lost, _ = _edit_stream(g, notes, rate, lambda: True,
                                            max(quiet_n, busy_n))
    return _Busy(quiet, quiet_lost, busy, busy_lost, busy_n, took, line.obj, g.anomalies())


def capture_while_checking(ws: Workspace, cfg: Config) -> Table:
    size = 4_000_000 if cfg.quick else 13_000_000
    rate = 10.0
    quiet_n = 20 if cfg.quick else 50
    table = Table("validation.capture_while_checking",
                  f"small edits to another file, {rate:g}/s: write -> its version event, while "
                  f"a {size / 1e6:g} MB generated .py is validated (a rule raises python's "
                  "budget so that it is: max_bytes 16 MiB, timeout 120 s, max_memory 4 GiB)",
                  "the same daemon and writer right after, nothing being validated (as "
                  f"many edits, at least {quiet_n})")
    big = _generated_module(size)
    env = ws.env()
    modes = [("default", {}), ("GUARDIAN_NO_VALIDATE_POOL=1", {"GUARDIAN_NO_VALIDATE_POOL": "1"})]
    for n, (label, extra) in enumerate(modes):
        progress(f"validation.capture_while_checking: {label}")
        r = _edits_while_checking(ws, f"busy{n}", {**env, **extra}, big, rate, quiet_n)
        worker = not extra
        table.rows += [
            Row(f"{label}: edit recorded, p50", median(r.busy), "ms", median(r.quiet)),
            Row(f"{label}: edit recorded, p99", percentile(r.busy, 99), "ms",
                percentile(r.quiet, 99), Goal("<=", 200) if worker else None),
            Row(f"{label}: edits never recorded", r.busy_lost, "", r.quiet_lost,
                Goal("<=", 0) if worker else None),
        ]
        table.notes += r.anomalies
        table.notes.append(f"{label}: the check took {r.took:.1f} s (valid = "
                           f"{r.verdict.get('valid')}, skipped {r.verdict.get('skipped')}); "
                           f"{r.busy_n} edits meanwhile")
    table.notes.append("edit recorded: write -> the version event of that content or of a "
                       "later write (when the store caught up with it), read by this process")
    table.notes.append("default: the check runs in a worker process (niced); "
                       "GUARDIAN_NO_VALIDATE_POOL=1: in the daemon's process, as every check "
                       "did before: compile holds the GIL, so the watcher, the event loop and "
                       "the store thread stop, and an edit overwritten meanwhile is never "
                       "recorded")
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "validation.throughput": throughput, "validation.revert_latency": revert_latency,
    "validation.capture_while_checking": capture_while_checking}
