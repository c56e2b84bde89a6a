"""Group "hooks": one agent hook round trip (`guardian-hook claude`, a payload on stdin, the
decision on stdout), against a bare `python3 -c pass` of the same interpreter in the same run.

The agent waits for it on every tool call: the goal is 2.5x the bare interpreter, with a
daemon running and without one. Measured: a write tool's PreToolUse (store the target,
work out the Edit's result, validate it as JSON, allow), its PostToolUse (record and label),
a Bash PreToolUse (an attribution window), an event outside any watched tree. The target is
stored as it is and the tree unchanged, so without a daemon these take the lean path
(guardian.agents.lean). Without a daemon also: a PostToolUse whose file holds new content,
and a Bash PostToolUse after a command that changed two files (the lean path stores small
new content itself). Without a goal: the floor of the no-daemon path (the imports it cannot
do without).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Config,
    Goal,
    Row,
    Table,
    Workspace,
    guardian_argv,
    guardian_watch,
    is_ready,
    median,
    progress,
    run,
)

GOAL = 2.5
#: The patterns of GitHub's Python.gitignore that most projects keep (github/gitignore).
PYTHON_GITIGNORE = """# Byte-compiled / optimized / DLL files
__pycache__/
*.py[cod]
*$py.class
*.so
.Python
build/
develop-eggs/
dist/
downloads/
eggs/
.eggs/
lib/
lib64/
parts/
sdist/
var/
wheels/
*.egg-info/
.installed.cfg
*.egg
MANIFEST
pip-log.txt
htmlcov/
.tox/
.nox/
.coverage
.coverage.*
.cache
nosetests.xml
coverage.xml
*.cover
.hypothesis/
.pytest_cache/
*.mo
*.pot
*.log
docs/_build/
.ipynb_checkpoints
.env
.venv
env/
venv/
ENV/
.mypy_cache/
.ruff_cache/
/site
"""


def _timed_input(argv: list[str], data: bytes, env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, input=data, env=env, cwd=cwd, capture_output=True, timeout=120,
                       check=False)
    dt = time.perf_counter() - t0
    if p.returncode != 0 or p.stderr:
        raise BenchError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.decode()[-400:]}")
    return dt


def round_trip(ws: Workspace, cfg: Config) -> Table:
    table = Table("hooks.round-trip",
                  "`guardian-hook claude` round trip (spawn, payload in, decision out)",
                  "`python3 -c pass` (the same interpreter, same run)")
    tree = ws.dir("hooks", "tree")
    store = ws.root / "hooks" / "store"
    (tree / "src").mkdir()
    for i in range(200):
        (tree / "src" / f"m{i}.json").write_text(json.dumps({"n": i, "items": list(range(50))}))
    target = tree / "src" / "m7.json"
    env = {**ws.env(), "GUARDIAN_STORE": str(store)}
    run([*guardian_argv(), "snapshot", "--store", str(store), str(tree)], env=env)
    # What `guardian hook install` writes (this interpreter, the package's launcher), and
    # pip's `guardian-hook` console script beside it, which earlier installs wrote.
    from guardian.agents.install import hook_command

    hook = shlex.split(hook_command("claude"))
    script = Path(sys.executable).with_name("guardian-hook")
    bare = [sys.executable, "-c", "pass"]
    n = max(5, cfg.repeats * 4)
    seq = [0]

    def payload(event: str, tool: str | None, tool_input: dict[str, Any] | None) -> bytes:
        seq[0] += 1
        d: dict[str, Any] = {"session_id": "bench", "cwd": str(tree), "hook_event_name": event,
                             "transcript_path": "/dev/null", "permission_mode": "acceptEdits"}
        if tool is not None:
            d.update(tool_name=tool, tool_use_id=f"toolu_{seq[0]}", tool_input=tool_input)
        return json.dumps(d).encode()

    # Not applied between calls: every PreToolUse works out the same edit of the same file.
    edit = {"file_path": str(target), "old_string": '"n": 7', "new_string": '"n": 8'}
    cases: list[tuple[str, Callable[[], bytes], dict[str, str]]] = [
        ("Edit PreToolUse (store, compute, validate, allow)",
         lambda: payload("PreToolUse", "Edit", edit), env),
        ("Edit PostToolUse (record, label)",
         lambda: payload("PostToolUse", "Edit", edit), env),
        ("Bash PreToolUse (open a window)",
         lambda: payload("PreToolUse", "Bash", {"command": "true"}), env),
        ("outside any watched tree",
         lambda: payload("UserPromptSubmit", None, None),
         {k: v for k, v in env.items() if k != "GUARDIAN_STORE"}),
    ]

    def measure(label: str) -> None:
        progress(f"hooks: {label}, {n}x each, interleaved with the baseline")
        for name, make, case_env in cases:
            ours: list[float] = []
            base: list[float] = []
            cwd = tree if "outside" not in name else ws.root
            for _ in range(n):
                base.append(_timed_input(bare, b"", env, cwd))
                ours.append(_timed_input(hook, make(), case_env, cwd))
            table.rows.append(Row(f"{name}, {label} (median of {n})", median(ours) * 1000,
                                  "ms", median(base) * 1000, Goal("<=", GOAL, "ratio")))

    measure("no daemon")
    if script.exists():  # the console script: the same hook, after pip's wrapper imports re
        progress(f"hooks: Edit PreToolUse through pip's guardian-hook script, {n}x")
        ours, base = [], []
        for _ in range(n):
            base.append(_timed_input(bare, b"", env, tree))
            ours.append(_timed_input([str(script), "claude"],
                                     payload("PreToolUse", "Edit", edit), env, tree))
        table.rows.append(Row("Edit PreToolUse through pip's `guardian-hook` console script "
                              f"(what earlier installs wrote), no daemon (median of {n})",
                              median(ours) * 1000, "ms", median(base) * 1000,
                              Goal("<=", GOAL, "ratio")))
    # A PostToolUse after the edit landed: the file holds content the store does not have
    # yet, stored by the hook (the lean path: a whole zstd copy of a small file).
    progress(f"hooks: Edit PostToolUse of new content, no daemon, {n}x")
    ours, base = [], []
    for i in range(n):
        target.write_text(json.dumps({"n": 1000 + i, "items": list(range(50))}))
        base.append(_timed_input(bare, b"", env, tree))
        ours.append(_timed_input(hook, payload("PostToolUse", "Edit", edit), env, tree))
    table.rows.append(Row("Edit PostToolUse of a file the edit changed (stores new content), "
                          f"no daemon (median of {n})", median(ours) * 1000, "ms",
                          median(base) * 1000, Goal("<=", GOAL, "ratio")))
    target.write_text(json.dumps({"n": 7, "items": list(range(50))}))
    # A Bash PostToolUse after a command that changed two files (the tree reconciled, both
    # stored, labelled with the window).
    progress(f"hooks: Bash PostToolUse after a command changed two files, no daemon, {n}x")
    other = tree / "src" / "m8.json"
    ours, base = [], []
    for i in range(n):
        bash = {"command": f"./change.sh {i}"}
        _timed_input(hook, payload("PreToolUse", "Bash", bash), env, tree)
        use_id = f"toolu_{seq[0]}"
        target.write_text(json.dumps({"n": 2000 + i, "items": list(range(50))}))
        other.write_text(json.dumps({"n": 3000 + i, "items": list(range(50))}))
        post = json.loads(payload("PostToolUse", "Bash", bash))
        post["tool_use_id"] = use_id
        base.append(_timed_input(bare, b"", env, tree))
        ours.append(_timed_input(hook, json.dumps(post).encode(), env, tree))
    table.rows.append(Row("Bash PostToolUse after a command changed two files (reconcile, "
                          f"store, label), no daemon (median of {n})", median(ours) * 1000,
                          "ms", median(base) * 1000, Goal("<=", GOAL, "ratio")))
    target.write_text(json.dumps({"n": 7, "items": list(range(50))}))
    other.write_text(json.dumps({"n": 8, "items": list(range(50))}))
    # Most repositories hold a .gitignore with patterns, many a rule file. The lean path
    # reads plain ignore patterns itself (guardian.rules.plainignore) and rule files from the
    # form the full path saved of them (guardian.rules.leanform); a rule that reverts
    # invalid JSON makes it judge the edit's result (clean JSON). Same goal: the budget is
    # for every tree. The first call after a rule file changed takes the full path (it
    # parses the file and saves its form): shown, without a goal.
    build = tree / "build"
    for what, name, text in (
            ("a Python project's .gitignore (and 100 ignored build files)", ".gitignore",
             PYTHON_GITIGNORE),
            ("a rule file (JSON validated, invalid reverted)", ".guardian.toml",
             '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\n'
             'on_invalid = "revert"\n')):
        (tree / name).write_text(text)
        if name == ".gitignore":
            build.mkdir()
            for i in range(100):
                (build / f"o{i}.bin").write_bytes(b"\0" * 512)
        progress(f"hooks: in a tree with {what}, no daemon, {n}x each")
        first = _timed_input(hook, payload("PreToolUse", "Edit", edit), env, tree)
        base0 = _timed_input(bare, b"", env, tree)
        if name == ".guardian.toml":
            table.rows.append(Row(f"Edit PreToolUse, the first after {what} was written (the "
                                  "full path parses it, saves its form; one run)",
                                  first * 1000, "ms", base0 * 1000))
        for label, make in (
                ("Edit PreToolUse", lambda: payload("PreToolUse", "Edit", edit)),
                ("Edit PostToolUse", lambda: payload("PostToolUse", "Edit", edit)),
                ("Bash PreToolUse", lambda: payload("PreToolUse", "Bash", {"command": "true"}))):
            ours, base = [], []
            for _ in range(n):
                base.append(_timed_input(bare, b"", env, tree))
                ours.append(_timed_input(hook, make(), env, tree))
            table.rows.append(Row(f"{label} in a tree with {what}, no daemon (median of {n})",
                                  median(ours) * 1000, "ms", median(base) * 1000,
                                  Goal("<=", GOAL, "ratio")))
        (tree / name).unlink()
        if name == ".gitignore":
            shutil.rmtree(build)
        run([*guardian_argv(), "snapshot", "--store", str(store), str(tree)], env=env)
    # What no no-daemon hook can go below: the imports alone of what it must use (no goal;
    # the ratio shows how much of the 2.5x budget the floor leaves).
    floors = [("floor: `python3 -c 'import re'` (pip's console scripts import it)", "import re"),
              ("floor: `python3 -c 'import json, sqlite3'`", "import json, sqlite3"),
              ("floor: `import _json, _sqlite3, _sha256, fcntl` (the lean no-daemon path: no "
               "re, no json package)", "import _json, _sqlite3, _sha256, fcntl"),
              ("floor: the lean path's imports and zstd's C backend (storing new content)",
               "import _json, _sqlite3, _sha256, fcntl; from guardian.store import codec;"
               " codec.zstd()"),
              ("floor: `import re, json, zstandard` (the zstandard package)",
               "import re, json, zstandard"),
              ("floor: `python3 -c 'import dataclasses'` (every core module uses it)",
               "import dataclasses"),
              ("floor: `python3 -c 'import guardian.store.db'` (the Store)",
               "import guardian.store.db")]
    for name, code in floors:
        ours, base = [], []
        for _ in range(n):
            base.append(_timed_input(bare, b"", env, tree))
            ours.append(_timed_input([sys.executable, "-c", code], b"", env, tree))
        table.rows.append(Row(f"{name} (median of {n})", median(ours) * 1000, "ms",
                              median(base) * 1000))
    with guardian_watch(tree, store, env) as proc:
        proc.wait_for(is_ready, 300, "the daemon's ready event")
        measure("daemon running")
    table.notes.append(f"interpreter: {sys.executable}; hook command: {' '.join(hook)} (as "
                       "`guardian hook install` writes it)")
    return table


BENCHMARKS = {"hooks.round-trip": round_trip}
