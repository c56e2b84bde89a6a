"""Group "validation": validator throughput, and how fast an invalid write is undone."""

from __future__ import annotations

import configparser
import json
import sysconfig
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    BenchError,
    Config,
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
    from guardian import validators

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


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "validation.throughput": throughput, "validation.revert_latency": revert_latency}
