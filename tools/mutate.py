"""Mutation testing of Guardian's small core modules, on demand (never in CI).

    python -m tools.mutate [MODULE ...] [--jobs 2] [--timeout S] [--list]

A MODULE is a key of :data:`TARGETS` (``retention``, ``timespec``, ``json``...) or a path
under ``guardian/`` with ``--tests FILE...``. Each mutant is one small change found with
:mod:`ast` (a comparison negated, a condition negated, an integer ±1, a boolean flipped,
``and``/``or`` swapped, a return made to return None, a statement replaced by ``pass``),
written into a private copy of the tree (the worktree is never touched), then only that
module's test files run (``-x -q -p no:cacheprovider``) with a timeout. A mutant is killed
when the tests fail, survives when they pass. Prints killed/survived/timeout per module and
lists every survivor as file:line and the change; the survivors argued equivalent are in
tests/mutation/SURVIVORS.md.

Why a script and not mutmut: it mutates in place and runs the whole suite by default;
here each module names the few fast test files that pin it, so a module takes minutes.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _validator_tests(name: str) -> tuple[str, ...]:
    """A validator's value tests, then its tests in test_validators.py but the slow scans of
    every real file of the standard library."""
    return ("tests/test_validator_values.py", "tests/test_validators.py", "-k",
            f"{name} and not real_files and not standard_library")


#: Module -> (source file, the test files that pin it). Keep these fast: they run per mutant.
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "retention": ("guardian/store/retention.py", ("tests/test_retention.py",)),
    "timespec": ("guardian/timespec.py", ("tests/test_timespec.py",)),
    "templates": ("guardian/batch/templates.py", ("tests/test_templates.py",)),
    "patch": ("guardian/batch/patch.py", ("tests/test_patch.py",)),
    "globs": ("guardian/rules/globs.py", ("tests/test_rule_limits.py::test_glob_semantics",
                                          "tests/test_rule_limits.py::test_glob_errors_say_"
                                          "what_and_where", "tests/test_globs.py")),
    "json": ("guardian/validation/validators/json_.py", _validator_tests("json")),
    "ini": ("guardian/validation/validators/ini.py", _validator_tests("ini")),
    "toml": ("guardian/validation/validators/toml_.py", _validator_tests("toml")),
    "markdown": ("guardian/validation/validators/markdown.py", _validator_tests("markdown")),
    "text": ("guardian/validation/validators/text.py", _validator_tests("text")),
}

_NEGATED = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt,
            ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In,
            ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_SYMBOL = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">",
           ast.LtE: "<=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


@dataclass(frozen=True)
class Mutant:
    line: int
    what: str
    source: str  # the whole mutated module


def _spans(text: str) -> list[int]:
    """Offset of the start of each line (1-based lines: index line - 1)."""
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


class _Finder(ast.NodeVisitor):
    """Collects (node, replacement text, description) for every mutation site."""

    def __init__(self) -> None:
        self.sites: list[tuple[ast.AST, str, str]] = []
        self._skip_depth = 0

    # Code that does not run, or is not behaviour: skipped.
    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        self._negate(node.test, "if")
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._negate(node.test, "while")
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node.test, "if-expression")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:  # the annotation is not behaviour
            self._remove(node)
            self.visit(node.value)

    def visit_arguments(self, node: ast.arguments) -> None:
        for d in [*node.defaults, *node.kw_defaults]:
            if d is not None:
                self.visit(d)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._body(node.body)
        self.visit(node.args)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._body(node.body)
        self.visit(node.args)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._body(node.body)

    def visit_Module(self, node: ast.Module) -> None:
        self._body(node.body)

    def _body(self, body: list[ast.stmt]) -> None:
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue  # docstring
            if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id in ("__slots__", "TYPE_CHECKING")
                    for t in stmt.targets):
                continue
            self.visit(stmt)

    def generic_visit(self, node: ast.AST) -> None:
        for field, value in ast.iter_fields(node):
            if field in ("body", "orelse", "finalbody") and isinstance(value, list) and value \
                    and isinstance(value[0], ast.stmt):
                self._body(value)
                continue
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.Pass | ast.Global | ast.Nonlocal):
            return
        if isinstance(node, ast.stmt) and not isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.If | ast.For
                | ast.While | ast.With | ast.Try | ast.AnnAssign | ast.Match):
            self._remove(node)
        super().visit(node)

    # Operators.
    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            new = copy.deepcopy(node)
            new.ops[i] = _NEGATED[type(op)]()
            self.sites.append((node, f"({ast.unparse(new)})",
                               f"{_SYMBOL[type(op)]} -> {_SYMBOL[_NEGATED[type(op)]]}"))
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        new = copy.deepcopy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        old, swapped = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        self.sites.append((node, f"({ast.unparse(new)})", f"{old} -> {swapped}"))
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self.sites.append((node, f"({ast.unparse(node.operand)})", "not X -> X"))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool):
            self.sites.append((node, repr(not v), f"{v} -> {not v}"))
        elif isinstance(v, int):
            self.sites.append((node, f"({v + 1})", f"{v} -> {v + 1}"))
            self.sites.append((node, f"({v - 1})", f"{v} -> {v - 1}"))

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (isinstance(node.value, ast.Constant)
                                           and node.value.value is None):
            self.sites.append((node, "return None", "return X -> return None"))
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return  # message text: pinned by tests that compare messages, not mutated

    def _negate(self, test: ast.expr, where: str) -> None:
        self.sites.append((test, f"(not ({ast.unparse(test)}))", f"{where} condition negated"))

    def _remove(self, node: ast.stmt) -> None:
        first = ast.unparse(node).splitlines()[0]
        self.sites.append((node, "pass", f"removed: {first[:60]}"))


def mutants(path: Path) -> Iterator[Mutant]:
    """Every mutant of the module at ``path``, each a whole module that still compiles."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    starts = _spans(text)
    finder = _Finder()
    finder.visit(tree)
    seen: set[str] = set()
    for node, replacement, what in finder.sites:
        a = starts[node.lineno - 1] + _col(text, starts, node.lineno, node.col_offset)
        end_line, end_col = node.end_lineno or node.lineno, node.end_col_offset or 0
        b = starts[end_line - 1] + _col(text, starts, end_line, end_col)
        source = text[:a] + replacement + text[b:]
        if source in seen:
            continue
        seen.add(source)
        try:
            compile(source, str(path), "exec")
        except SyntaxError:
            continue
        yield Mutant(node.lineno, what, source)


def _col(text: str, starts: list[int], line: int, byte_col: int) -> int:
    """ast's columns count UTF-8 bytes; turn one into a character offset in its line."""
    end = starts[line] if line < len(starts) else len(text)
    return len(text[starts[line - 1]:end].encode("utf-8")[:byte_col].decode("utf-8"))


# ----------------------------------------------------------------------------- running
def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", ".mypy_cache",
                                    ".ruff_cache", ".pytest_cache", "*.egg-info")
    for name in ("guardian", "tests", "rules", "tui", "bench", "tools"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


class _Server:
    """A worker process (``--serve COPY``) that has imported pytest once and forks a child
    per mutant: the child imports the mutated module fresh and runs the tests in-process,
    which costs a fraction of a new interpreter's start-up."""

    def __init__(self, copy_root: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(copy_root), PYTHONHASHSEED="0")
        self.proc = subprocess.Popen(
            ["nice", "-n", "10", sys.executable, "-m", "tools.mutate", "--serve",
             str(copy_root)], cwd=copy_root, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)

    def run(self, tests: tuple[str, ...], timeout: float) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"tests": tests, "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip() or "killed"

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def _serve(copy_root: Path) -> int:
    """The ``--serve`` loop: one JSON request a line, one outcome a line."""
    import pytest

    with contextlib.suppress(ImportError):
        import hypothesis  # noqa: F401
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1) if os.environ.get("MUTATE_DEBUG") else (0, 1, 2):
                os.dup2(devnull, fd)
            sys.path.insert(0, str(copy_root))
            os.chdir(copy_root)
            rc = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "--no-header",
                              # hypothesis was imported above, before pytest could rewrite it
                              "-W", "ignore::pytest.PytestAssertRewriteWarning",
                              f"--basetemp={copy_root}.bt", "--rootdir", str(copy_root),
                              *req["tests"]])
            os._exit(int(rc))
        deadline = time.monotonic() + req["timeout"]
        status = None
        while status is None:
            got, st = os.waitpid(pid, os.WNOHANG)
            if got:
                status = st
            elif time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -1
            else:
                time.sleep(0.01)
        outcome = ("timeout" if status == -1 else
                   "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # whatever the tests left running
        print(outcome, flush=True)
    return 0


def _install(copy_root: Path, rel: str, source: str) -> None:
    """Write one module's source into a copy atomically, and drop its stale bytecode (a
    .pyc is validated by mtime and size, which two mutants can share)."""
    target = copy_root / rel
    tmp = target.with_suffix(".mutant-tmp")
    tmp.write_text(source, encoding="utf-8")
    os.replace(tmp, target)
    cache = target.parent / "__pycache__"
    if cache.is_dir():
        for pyc in cache.glob(target.stem + ".*.pyc"):
            pyc.unlink()


def run_module(name: str, rel: str, tests: tuple[str, ...], jobs: int, timeout: float | None,
               work: Path, every: int = 1) -> dict[str, list[Mutant]]:
    original = (ROOT / rel).read_text(encoding="utf-8")
    found = list(mutants(ROOT / rel))[::every]
    copies = []
    for k in range(jobs):
        dest = work / f"{name}-{k}"
        _copy_tree(dest)
        copies.append(dest)
    servers = [_Server(c) for c in copies]
    started = time.monotonic()
    if servers[0].run(tests, 600) != "survived":
        raise SystemExit(f"{name}: the tests fail on the unmutated code: {' '.join(tests)}")
    baseline = time.monotonic() - started
    limit = timeout if timeout is not None else max(15.0, 4 * baseline + 10)
    outcome: dict[str, list[Mutant]] = {"killed": [], "survived": [], "timeout": []}
    todo: queue.Queue[Mutant] = queue.Queue()
    for m in found:
        todo.put(m)
    lock = threading.Lock()
    done = [0]

    def worker(copy_root: Path, server: _Server) -> None:
        while True:
            try:
                m = todo.get_nowait()
            except queue.Empty:
                break
            _install(copy_root, rel, m.source)
            result = server.run(tests, limit)
            with lock:
                outcome[result].append(m)
                done[0] += 1
                if sys.stderr.isatty():
                    print(f"\r{name}: {done[0]}/{len(found)}", end="", file=sys.stderr)
                elif done[0] % 50 == 0:
                    print(f"{name}: {done[0]}/{len(found)}", file=sys.stderr, flush=True)
        _install(copy_root, rel, original)
        server.close()

    threads = [threading.Thread(target=worker, args=cs) for cs in zip(copies, servers, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return outcome


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.mutate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", help=f"of {', '.join(TARGETS)} (default: all), "
                   "or a path under guardian/ with --tests")
    p.add_argument("--tests", help="pytest arguments instead of the module's own test files "
                   "(one string: 'tests/test_cli.py -k gc')")
    p.add_argument("--jobs", type=int, default=2, help="parallel test runs (default 2)")
    p.add_argument("--timeout", type=float, help="seconds per mutant (default: from the "
                   "unmutated run)")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="run every Nth mutant only (a quicker, sampled score; say so)")
    p.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    p.add_argument("--serve", metavar="COPY", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return _serve(Path(args.serve))
    chosen: list[tuple[str, str, tuple[str, ...]]] = []
    for m in args.modules or list(TARGETS):
        if m in TARGETS:
            rel, tests = TARGETS[m]
            chosen.append((m, rel, tuple(shlex.split(args.tests)) if args.tests else tests))
        elif Path(m).suffix == ".py" and args.tests:
            chosen.append((Path(m).stem, m, tuple(shlex.split(args.tests))))
        else:
            p.error(f"unknown module {m!r} (one of {', '.join(TARGETS)}, or a path with "
                    "--tests)")
    if args.list:
        for _name, rel, _tests in chosen:
            for mu in list(mutants(ROOT / rel))[::max(1, args.every)]:
                print(f"{rel}:{mu.line}: {mu.what}")
        return 0
    rows = []
    survivors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="guardian-mutate-") as tmp:
        for name, rel, tests in chosen:
            t0 = time.monotonic()
            out = run_module(name, rel, tests, max(1, min(args.jobs, 2)), args.timeout,
                             Path(tmp), max(1, args.every))
            k, s, to = (len(out[x]) for x in ("killed", "survived", "timeout"))
            total = k + s + to
            rows.append((name, total, k, s, to, 100 * (k + to) / total if total else 100.0,
                         time.monotonic() - t0))
            for mu in sorted(out["survived"], key=lambda m: m.line):
                survivors.append(f"{rel}:{mu.line}: {mu.what}")
            # Each module's result as soon as it is known: a long run stopped early keeps it.
            print(f"{name}: {k} killed, {s} survived, {to} timeout of {total}", file=sys.stderr,
                  flush=True)
            for mu in sorted(out["survived"], key=lambda m: m.line):
                print(f"  survived {rel}:{mu.line}: {mu.what}", file=sys.stderr, flush=True)
    if args.every > 1:
        print(f"(every {args.every}th mutant only)")
    print(f"{'module':<10} {'mutants':>7} {'killed':>7} {'survived':>8} {'timeout':>7} "
          f"{'score':>6} {'time':>6}")
    for name, total, k, s, to, score, secs in rows:
        print(f"{name:<10} {total:>7} {k:>7} {s:>8} {to:>7} {score:>5.0f}% {secs:>5.0f}s")
    if survivors:
        print("\nsurvivors:")
        print("\n".join(survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
