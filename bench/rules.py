"""Group "rules": what evaluating the rules for one path costs (the daemon does it on its event
loop for every event), with today's linear-time globs against the ``re``-based matcher they
replaced, run on the same rules in the same process."""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.common import Config, Goal, Row, Table, Workspace, median, progress

PATHOLOGICAL = "**/**/**/**/*a*a*a*a*a*b"


# --------------------------------------------------------------------------------------------
# The baseline: guardian/globs.py before it matched linearly, kept here only (a glob became a
# backtracking regular expression, cached in an LRU of 1,024), and Rule.matches as it used it.


class _OldGlobError(ValueError):
    pass


@lru_cache(maxsize=1024)
def _old_compile(glob: str) -> re.Pattern[str]:
    return re.compile(_old_translate(glob.lstrip("/")) + r"\Z", re.DOTALL)


def _old_translate(g: str) -> str:
    if not g:
        raise _OldGlobError("empty glob")
    out: list[str] = []
    i, n = 0, len(g)
    depth = 0
    while i < n:
        c = g[i]
        if c == "*":
            if g.startswith("**", i):
                before_ok = i == 0 or g[i - 1] == "/"
                after = g[i + 2: i + 3]
                if before_ok and after == "/":
                    out.append(r"(?:[^/]*/)*")
                    i += 3
                    continue
                if before_ok and after == "":
                    out.append(r".*")
                    i += 2
                    continue
                raise _OldGlobError(f"'**' must be a whole path segment (at column {i + 1})")
            out.append(r"[^/]*")
        elif c == "?":
            out.append(r"[^/]")
        elif c == "[":
            j = i + 1
            if j < n and g[j] in "!^":
                j += 1
            if j < n and g[j] == "]":
                j += 1
            while j < n and g[j] != "]":
                j += 1
            if j >= n:
                raise _OldGlobError(f"unclosed '[' (at column {i + 1})")
            body = g[i + 1: j]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\")
            out.append(f"[{'^/' if negate else ''}{body}]")
            i = j
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}":
            if depth == 0:
                raise _OldGlobError(f"unmatched '}}' (at column {i + 1})")
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(g[i]))
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise _OldGlobError("unclosed '{'")
    return "".join(out)


def _old_effective(rules: Sequence[Any], relpath: str) -> dict[str, Any]:
    """RuleSet.effective's loop as it was: per rule, per glob, through the LRU."""
    settings: dict[str, Any] = {}
    for rule in rules:
        rel = relpath
        if rule.base:
            if not relpath.startswith(rule.base + "/"):
                continue
            rel = relpath[len(rule.base) + 1:]
        if any(g.text == "**" or _old_compile(g.text).match(rel) for g in rule.globs):
            settings.update(rule.settings)
    return settings


# --------------------------------------------------------------------------------------------


def _per_call(fn: Callable[[str], object], paths: Sequence[str], rounds: int,
              repeats: int) -> float:
    """Median over ``repeats`` of the mean seconds per call of ``fn`` over ``paths``."""
    for p in paths:  # warm: presets loaded, caches filled as a running daemon has them
        fn(p)
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(rounds):
            for p in paths:
                fn(p)
        samples.append((time.perf_counter() - t) / (rounds * len(paths)))
    return median(samples)


def _tree_paths(n: int) -> list[str]:
    """Relative paths shaped like a project's: sources, tests, docs, configs, deep vendored."""
    shapes = ("src/pkg/mod{}.py", "tests/test_{}.py", "docs/guide/p{}.md", "config/app{}.json",
              ".github/workflows/ci{}.yml", "node_modules/lib{}/dist/index.js",
              "build/out/obj{}.o", "a/b/c/d/e/f/g/h/file{}.txt")
    return [shapes[i % len(shapes)].format(i) for i in range(n)]


def _compare(table: Table, name: str, root: Path, paths: Sequence[str], cfg: Config,
             goal: Goal | None, rounds: int, old_repeats: int | None = None) -> None:
    from guardian.rules.rulefiles import Effective, RuleSet

    rs = RuleSet(str(root))
    rs.discover()
    if rs.errors:
        raise RuntimeError(f"{name}: {next(iter(rs.errors.values()))}")
    by_dir: dict[str, tuple[list[Any], tuple[str, ...]]] = {}

    def old(p: str) -> Effective:  # RuleSet.effective as it was, rules cached per directory
        d = p.rpartition("/")[0]
        cached = by_dir.get(d)
        if cached is None:
            chain = list(rs.chain(p))
            cached = by_dir[d] = ([r for rf in chain for r in rf.rules],
                                  tuple(rf.path for rf in chain))
        return Effective(p, _old_effective(cached[0], p), cached[1])

    for p in paths:  # the same answers, or the comparison means nothing
        new = {k: v for k, (v, _o) in rs.effective(p).settings.items()}
        was = {k: v for k, (v, _o) in old(p).settings.items()}
        if new != was:
            raise RuntimeError(f"{name}: {p}: old and new rules disagree: {was} != {new}")
    progress(f"rules.evaluate: {name}")
    t_new = _per_call(rs.effective, paths, rounds, cfg.repeats)
    t_old = _per_call(old, paths, rounds, old_repeats or cfg.repeats)
    table.rows.append(Row(f"{name}: per path", t_new * 1e6, "µs", t_old * 1e6, goal))


def evaluate(ws: Workspace, cfg: Config) -> Table:
    table = Table("rules.evaluate",
                  "rules in force for one path (RuleSet.effective: every rule's globs), in "
                  "process, caches warm",
                  "the same rules through the re-based matcher it replaced (a copy kept in "
                  "bench/rules.py), same run")
    paths = _tree_paths(400 if cfg.quick else 2000)
    rounds = 2 if cfg.quick else 5

    plain = ws.dir("rules", "default")
    _compare(table, "default rules", plain, paths, cfg, Goal("<=", 1.5, "ratio"), rounds)

    python = ws.dir("rules", "python")
    (python / ".guardian.toml").write_text(
        'extends = "python"\nignore = ["build/**", "node_modules/**"]\n\n[[rule]]\n'
        'paths = ["config/**"]\nprotect = true\n\n[[rule]]\npaths = ["docs/**/*.md"]\n'
        'validators = ["markdown"]\n')
    _compare(table, "python preset + 2 rules", python, paths, cfg, Goal("<=", 2.0, "ratio"),
             rounds)

    many = ws.dir("rules", "many")
    exts = ["py", "md", "json", "yml", "js", "o", "txt"]
    (many / ".guardian.toml").write_text("".join(
        f'[[rule]]\npaths = ["d{i}/**/*.{exts[i % 7]}", "**/x{i}_*.{exts[(i + 3) % 7]}"]\n'
        f"keep_versions = {i % 50 + 1}\n" for i in range(1000)))
    # re recompiles every glob here (its LRU holds 1,024): one timed pass is plenty.
    _compare(table, "2,000 distinct globs", many, paths[:8 if cfg.quick else 40], cfg,
             Goal("<=", 0.5, "ratio"), 1, old_repeats=1)

    from guardian.rules.rulefiles import load_rule_file

    rule_file = many / ".guardian.toml"
    text = rule_file.read_text()
    t_load = _per_call(lambda p: load_rule_file(p, ""), [str(rule_file)], 1, cfg.repeats)
    t_toml = _per_call(tomllib.loads, [text], 1, cfg.repeats)
    table.rows.append(Row("load + compile that file (2,000 globs)", t_load * 1000, "ms",
                          t_toml * 1000))
    table.notes.append("load row: baseline is tomllib.loads of the same file alone")
    table.notes.append("default rules: one rule, paths = [\"**\"], answered without matching "
                       "by both; the figure is the cost of the lookup itself")
    return table


def pathological(ws: Workspace, cfg: Config) -> Table:
    from guardian.rules.rulefiles import RuleSet

    segments = 5 if cfg.quick else 7
    table = Table("rules.pathological",
                  f"paths = [\"{PATHOLOGICAL}\"] evaluated for a path of {segments} segments of "
                  "30 'a' (and for a 4 KB path, new only)",
                  "the re-based matcher it replaced, same rule, same path, same run")
    root = ws.dir("rules", "patho")
    (root / ".guardian.toml").write_text(
        f'[[rule]]\npaths = ["{PATHOLOGICAL}"]\non_invalid = "alert"\n')
    rs = RuleSet(str(root))
    rel = "/".join(["a" * 30] * segments) + "/notes.xb"
    long_rel = "/".join(["a" * 30] * 131) + "/notes.xb"
    rules = [r for rf in rs.chain(rel) for r in rf.rules]
    progress(f"rules.pathological: re on {len(rel)} characters (seconds)")
    t = time.perf_counter()
    was = _old_effective(rules, rel)
    t_old = time.perf_counter() - t
    new = rs.effective(rel)
    if new.on_invalid != "record" or was["on_invalid"][0] != "record":
        raise RuntimeError("the pathological glob must not match its path")
    t_new = _per_call(rs.effective, [rel], 20, cfg.repeats)
    t_long = _per_call(rs.effective, [long_rel], 5, cfg.repeats)
    table.rows.append(Row(f"{len(rel)}-character path", t_new * 1000, "ms", t_old * 1000,
                          Goal("<=", 1.0)))
    table.rows.append(Row(f"{len(long_rel)}-character path", t_long * 1000, "ms", None,
                          Goal("<=", 5.0)))
    table.notes.append("re's time about doubles with each segment here: the 4 KB path is not "
                       "run with it")
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "rules.evaluate": evaluate, "rules.pathological": pathological}
