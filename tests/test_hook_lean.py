"""`guardian-hook` without a daemon takes a lean path (guardian.agents.lean, with the SQL of
guardian.store.lean_write) for its common cases. These tests run the real hook process and
hold it to the full path: the same rows and objects for the same events, the lean path
actually taken where it should be (the Store module never imported), and the full path taken
for everything it cannot do exactly (rule files, a store of another schema, a held lock)."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from guardian.agents import lean
from guardian.rules.rulefiles import load_preset
from guardian.rules.settings import load_defaults, presets_dir
from guardian.store import db as store_db
from guardian.store import lean_write
from guardian.store.db import Store
from tests.conftest import Cli, sha256

#: Set to a point no code has: the lean path steps aside, the full path runs unhindered.
FULL = {"GUARDIAN_FAULT": "test.no-such-point:EIO"}


def _plain_argv() -> list[str]:
    """What `guardian hook install` writes: guardian-hook beside the interpreter."""
    beside = Path(sys.executable).with_name("guardian-hook")
    if beside.exists():
        return [str(beside), "claude"]
    return [sys.executable, "-m", "guardian", "hook", "claude"]


def _hook_argv() -> list[str]:
    """The same, under -X importtime: stderr then says which modules the hook loaded."""
    argv = _plain_argv()
    return [sys.executable, "-X", "importtime", *(argv[1:] if argv[0] == sys.executable
                                                  else argv)]


class Agent:
    """One agent session's hook calls, through the real `guardian-hook` process."""

    def __init__(self, env: dict[str, str], store: Path, root: Path, *,
                 extra: dict[str, str] | None = None, agent: str = "claude",
                 session: str = "S") -> None:
        self.env = {**env, "GUARDIAN_STORE": str(store), **(extra or {})}
        self.session = session
        self.root = root
        self.agent = agent
        self.paths: list[str] = []  # "lean" or "full", per call

    def __call__(self, event: str, **fields: Any) -> dict[str, Any] | None:
        payload = {"session_id": self.session, "transcript_path": "/tmp/t.jsonl",
                   "cwd": str(self.root), "permission_mode": "acceptEdits",
                   "hook_event_name": event, **fields}
        argv = _hook_argv()
        argv[-1] = self.agent
        p = subprocess.run(argv, input=json.dumps(payload).encode(), capture_output=True,
                           env=self.env, cwd=self.root, timeout=60, check=False)
        err = p.stderr.decode()
        assert p.returncode == 0, err
        assert not [line for line in err.splitlines() if not line.startswith("import time:")]
        self.paths.append("full" if " guardian.store.db\n" in err + "\n" else "lean")
        return json.loads(p.stdout) if p.stdout.strip() else None

    def tool(self, event: str, name: str, use_id: str | None, **tool_input: Any) -> Any:
        extra: dict[str, Any] = {"tool_response": {}} if event == "PostToolUse" else {}
        if use_id is not None:
            extra["tool_use_id"] = use_id
        if event == "PostToolUseFailure":
            extra["error"] = "the tool failed"
        return self(event, tool_name=name, tool_input=tool_input, **extra)


def _tree(root: Path) -> None:
    (root / "src").mkdir()
    for i in range(5):
        (root / "src" / f"m{i}.json").write_text(json.dumps({"n": i}) + "\n")
    (root / "notes.txt").write_text("hello\n")
    (root / "nb.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": "code", "id": "c1", "metadata": {}, "source": "x = 1",
         "execution_count": None, "outputs": []}], "metadata": {}, "nbformat": 4,
        "nbformat_minor": 5}, indent=1) + "\n")


def _session(a: Agent, root: Path) -> None:
    """Every event kind: boundaries, write tools (the target as stored, absent, changed by
    the tool), Bash windows over an unchanged tree and over a changed one, a failure."""
    m1, notes = root / "src" / "m1.json", root / "notes.txt"
    a("SessionStart", source="startup")
    a("UserPromptSubmit", prompt="edit things", prompt_id="p1")
    # Edit of a file as stored; the tool then fails (nothing written).
    a.tool("PreToolUse", "Edit", "t1", file_path=str(m1), old_string='"n": 1',
           new_string='"n": 10')
    a.tool("PostToolUseFailure", "Edit", "t1", file_path=str(m1), old_string='"n": 1',
           new_string='"n": 10')
    # An Edit the tool will refuse (old_string absent), and a Post with no Pre before it.
    a.tool("PreToolUse", "Edit", "t2", file_path=str(notes), old_string="absent",
           new_string="x")
    a.tool("PostToolUse", "Edit", "t3", file_path=str(notes), old_string="hello",
           new_string="hello")
    # A Write of a new file: Pre (absent), the write, Post (new content).
    new = root / "src" / "new.txt"
    a.tool("PreToolUse", "Write", "t4", file_path=str(new), content="fresh\n")
    new.write_text("fresh\n")
    a.tool("PostToolUse", "Write", "t4", file_path=str(new), content="fresh\n")
    # An Edit that lands, then its Post, then an Edit of the result (stored by that Post).
    a.tool("PreToolUse", "Edit", "t5", file_path=str(m1), old_string='"n": 1',
           new_string='"n": 11')
    m1.write_text('{"n": 11}\n')
    a.tool("PostToolUse", "Edit", "t5", file_path=str(m1), old_string='"n": 1',
           new_string='"n": 11')
    a.tool("PreToolUse", "MultiEdit", "t6", file_path=str(m1),
           edits=[{"old_string": "11", "new_string": "12"}])
    a.tool("PostToolUse", "MultiEdit", "t6", file_path=str(m1),
           edits=[{"old_string": "11", "new_string": "12"}])
    a.tool("PreToolUse", "NotebookEdit", "t7", notebook_path=str(root / "nb.ipynb"),
           cell_id="c1", new_source="x = 2")
    # A relative path, and one outside every root.
    a.tool("PreToolUse", "Write", "t8", file_path="src/m2.json", content='{"n": 2}\n')
    a.tool("PreToolUse", "Write", "t9", file_path="/tmp/outside-of-roots.txt", content="x")
    # Bash over an unchanged tree, then one that changes it.
    a.tool("PreToolUse", "Bash", "b1", command="true")
    a.tool("PostToolUse", "Bash", "b1", command="true")
    a.tool("PreToolUse", "Bash", "b2", command="echo hi > src/bash.txt")
    (root / "src" / "bash.txt").write_text("hi\n")
    a.tool("PostToolUse", "Bash", "b2", command="echo hi > src/bash.txt")
    a.tool("PreToolUse", "Bash", "b3", command="sleep 1")  # left open: SessionEnd closes it
    a.tool("PreToolUse", "SomeOtherTool", "o1", x=1)
    a("Notification", message="hi")
    a("Stop")
    a("SessionEnd", reason="exit")


def _gemini(g: Agent, root: Path) -> None:
    """Gemini CLI's names, and no tool call id (one is made from the input)."""
    notes = root / "notes.txt"
    g("SessionStart", source="startup")
    g("BeforeAgent", prompt="gemini prompt")
    g.tool("BeforeTool", "replace", None, file_path=str(notes), old_string="hello",
           new_string="hi", expected_replacements=1)
    g.tool("AfterTool", "replace", None, file_path=str(notes), old_string="hello",
           new_string="hi", expected_replacements=1)
    g.tool("BeforeTool", "run_shell_command", None, command="ls")
    g("AfterAgent")


def _rows(store: Path, root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What the store holds, times made comparable (set or not) and the tree's path named
    TREE (the two runs use two trees)."""
    db = sqlite3.connect(f"file:{store / 'guardian.db'}?mode=ro", uri=True)

    def norm(v: Any) -> Any:
        if isinstance(v, str) and v.startswith("input-"):
            return "input-ID"  # Gemini's: made from the input, which names the tree
        if isinstance(v, str):
            return v.replace(str(root), "TREE")
        return v

    def q(sql: str, ns: tuple[int, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            rows = db.execute(sql).fetchall()
        except sqlite3.OperationalError as e:  # a table created when first written, never
            assert str(e).startswith("no such table"), e
            rows = []
        return [tuple(("set" if c is not None else None) if i in ns else norm(c)
                      for i, c in enumerate(r)) for r in rows]

    try:
        return {
            "sessions": q("SELECT id, agent, started_ns, last_ns, ended_ns, cwd, transcript,"
                          " detail FROM agent_sessions ORDER BY id", (2, 3, 4)),
            "prompts": q("SELECT id, session, key, started_ns, ended_ns, text FROM"
                         " agent_prompts ORDER BY id", (3, 4)),
            "calls": q("SELECT id, session, prompt, tool_use_id, tool, kind, paths, command,"
                       " started_ns, ended_ns, outcome, reason, expect, agent_id FROM"
                       " agent_calls ORDER BY id", (8, 9)),
            "changes": q("SELECT * FROM agent_changes ORDER BY version_id, call_id"),
            "versions": q("SELECT id, file_id, object_id, present, kind, origin, mode, size,"
                          " valid, session, note, peer_id FROM versions ORDER BY id"),
            # The scan cache's stat columns differ between two trees; live, head and mode
            # do not. (That the lean path confirms the cache is tested below.)
            "files": q("SELECT id, root_id, relpath, head_id, live, mode IS NOT NULL FROM files"
                       " ORDER BY id"),
            "objects": q("SELECT id, hash, size, stored_size, codec, loose, data, base_id,"
                         " depth, chain_pos FROM objects ORDER BY id"),
            "alerts": q("SELECT kind, message, count, state FROM alerts ORDER BY id"),
        }
    finally:
        db.close()


def _setup(tmp_path: Path, env: dict[str, str], cli: Cli, name: str,
           more: dict[str, str] | None = None) -> tuple[Path, Path]:
    root = (tmp_path / name / "tree")
    root.mkdir(parents=True)
    root = root.resolve()
    store = tmp_path / name / "store"
    _tree(root)
    for rel, text in (more or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    cli.run("snapshot", "--store", str(store), str(root), check=True, store=False)
    return root, store


def test_lean_path_writes_what_the_full_path_writes(tmp_path: Path, env: dict[str, str],
                                                     cli: Cli) -> None:
    roots = {}
    paths = {}
    for name, extra in (("lean", {}), ("full", FULL)):
        root, store = _setup(tmp_path, env, cli, name)
        a = Agent(env, store, root, extra=extra)
        _session(a, root)
        g = Agent(env, store, root, extra=extra, agent="gemini", session="G")
        _gemini(g, root)
        roots[name] = (root, store)
        paths[name] = a.paths + g.paths
    assert set(paths["full"]) == {"full"}
    # The common cases took the lean path; new content, a tree Bash changed, took the full.
    full_at = {7, 9, 18}  # the Posts of the Write and of the Edit that landed, Bash's Post
    assert paths["lean"] == ["full" if i in full_at else "lean" for i in range(30)]
    lean_rows = _rows(roots["lean"][1], roots["lean"][0])
    full_rows = _rows(roots["full"][1], roots["full"][0])
    for table, rows in full_rows.items():
        assert lean_rows[table] == rows, table
    assert len(full_rows["calls"]) == 14 and len(full_rows["changes"]) >= 3


def test_lean_path_is_readable_by_every_command(tmp_path: Path, env: dict[str, str],
                                                cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "cli")
    c = Cli(env, store, root)
    a = Agent(env, store, root)
    m3 = root / "src" / "m3.json"
    m3.write_text('{"n": 33}\n')  # changed since the snapshot: the "before" copy stores it
    a("SessionStart", source="startup")
    a("UserPromptSubmit", prompt="p", prompt_id="p1")
    a.tool("PreToolUse", "Edit", "t1", file_path=str(m3), old_string="33", new_string="34")
    assert a.paths[-1] == "full"  # new content to store: the full path
    a.tool("PreToolUse", "Edit", "t2", file_path=str(m3), old_string="33", new_string="35")
    assert a.paths[-1] == "lean"  # the same file again, now stored as it is
    a.tool("PreToolUse", "Bash", "b1", command="true")
    a.tool("PostToolUse", "Bash", "b1", command="true")
    a("Stop")
    assert a.paths[-3:] == ["lean"] * 3
    (sess,) = c.json("sessions")
    assert sess["id"] == "S" and sess["prompts"] == 1
    assert sess["write_calls"] == 2 and sess["bash_calls"] == 1 and sess["rejected"] == 0
    shas = [v["sha256"] for v in c.json("log", str(m3))["versions"]]
    assert shas[:2] == [sha256(b'{"n": 33}\n'), sha256(b'{"n": 3}\n')]
    assert c.run("show", str(m3), check=True).stdout == b'{"n": 33}\n'
    # The lean Pre confirmed the scan cache: a snapshot now finds nothing to re-read.
    db = sqlite3.connect(f"file:{store / 'guardian.db'}?mode=ro", uri=True)
    ino, size = db.execute("SELECT ino, size FROM files WHERE relpath=?",
                           (b"src/m3.json",)).fetchone()
    db.close()
    assert ino == os.stat(m3).st_ino and size in (-1, m3.stat().st_size)
    assert c.json("verify")["ok"] is True


def test_rule_files_take_the_full_path_and_refuse(tmp_path: Path, env: dict[str, str],
                                                  cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "rules")
    (root / "src" / ".guardian.toml").write_text(
        '[[rule]]\npaths = ["*.json"]\non_invalid = "revert"\n')
    a = Agent(env, store, root)
    reply = a.tool("PreToolUse", "Edit", "t1", file_path=str(root / "src" / "m1.json"),
                   old_string='"n": 1}', new_string='"n": }')
    assert a.paths == ["full"]
    out = reply["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny" and "m1.json:1:" in \
        out["permissionDecisionReason"]
    # A path whose chain has no rule file still takes the lean path.
    a.tool("PreToolUse", "Edit", "t2", file_path=str(root / "notes.txt"), old_string="hello",
           new_string="bye")
    assert a.paths[-1] == "lean"
    # A .gitignore anywhere on the way: the full path (it knows what is ignored).
    (root / ".gitignore").write_text("*.log\n")
    a.tool("PreToolUse", "Edit", "t3", file_path=str(root / "notes.txt"), old_string="hello",
           new_string="bye")
    a.tool("PreToolUse", "Bash", "b1", command="true")
    assert a.paths[-2:] == ["full", "full"]


GIT_EXCLUDE = ("# git ls-files --others --exclude-from=.git/info/exclude\n"
               "# Lines that start with '#' are comments.\n"
               "# For a project mostly in C, the following would be a good set of\n"
               "# exclude patterns (uncomment them if you want to use them):\n"
               "# *.[oa]\n# *~\n")


def test_ignore_files_without_patterns_keep_the_lean_path(
        tmp_path: Path, env: dict[str, str], cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "ign", {
        ".git/info/exclude": GIT_EXCLUDE, ".gitignore": "# nothing ignored yet\n\n",
        "src/.gitignore": "   \n"})
    a = Agent(env, store, root)
    m1 = root / "src" / "m1.json"
    a.tool("PreToolUse", "Edit", "t1", file_path=str(m1), old_string="1", new_string="2")
    a.tool("PreToolUse", "Bash", "b1", command="true")
    a.tool("PostToolUse", "Bash", "b1", command="true")
    assert a.paths == ["lean"] * 3
    # A pattern in any of them: what it ignores is the full path's to work out.
    (root / "src" / ".gitignore").write_text("*.log\n")
    a.tool("PreToolUse", "Edit", "t2", file_path=str(m1), old_string="1", new_string="2")
    a.tool("PreToolUse", "Edit", "t3", file_path=str(root / "notes.txt"), old_string="hello",
           new_string="bye")  # src/.gitignore is not on its way
    assert a.paths[-2:] == ["full", "lean"]
    (root / ".git" / "info" / "exclude").write_text("*.tmp\n")
    a.tool("PreToolUse", "Edit", "t4", file_path=str(root / "notes.txt"), old_string="hello",
           new_string="bye")
    a.tool("PreToolUse", "Bash", "b2", command="true")
    assert a.paths[-2:] == ["full", "full"]
    (sess,) = Cli(env, store, root).json("sessions")
    assert sess["write_calls"] == 4 and sess["bash_calls"] == 2


def test_another_schema_version_is_never_written_by_the_lean_path(
        tmp_path: Path, env: dict[str, str], cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "schema")
    db = sqlite3.connect(store / "guardian.db")
    db.execute("PRAGMA user_version=2")
    db.close()
    before = (store / "guardian.db").read_bytes()
    argv = _plain_argv()
    payload = {"session_id": "S", "cwd": str(root), "hook_event_name": "UserPromptSubmit",
               "prompt": "p"}
    p = subprocess.run(argv, input=json.dumps(payload).encode(), capture_output=True,
                       env={**env, "GUARDIAN_STORE": str(store)}, cwd=root, timeout=60,
                       check=False)
    assert p.returncode == 0 and p.stdout == b""
    assert b"schema version 2 is not supported" in p.stderr  # the full path's word for it
    assert (store / "guardian.db").read_bytes() == before
    wal = store / "guardian.db-wal"
    assert not wal.exists() or b"agent_prompts" not in wal.read_bytes()


def test_a_held_writer_lock_is_waited_for_not_written_past(
        tmp_path: Path, env: dict[str, str], cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "lock")
    fd = os.open(store / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a daemon starting up holds it
    try:
        a = Agent(env, store, root, extra={"GUARDIAN_HOOK_TIMEOUT": "0.5"})
        payload = {"session_id": "S", "cwd": str(root), "hook_event_name": "UserPromptSubmit",
                   "prompt": "p"}
        p = subprocess.run(_plain_argv(), input=json.dumps(payload).encode(),
                           capture_output=True, env=a.env, cwd=root, timeout=60, check=False)
        assert p.returncode == 0 and p.stdout == b""
        assert b"letting the call through" in p.stderr
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert Cli(env, store, root).json("sessions") == []


def test_lean_schema_and_constants_match_the_store(tmp_path: Path) -> None:
    lazy = store_db._LAZY_TABLES
    assert set(lazy) == lean_write.LAZY
    assert tuple(
        stmt for t in ("agent_sessions", "agent_prompts", "agent_calls", "agent_changes")
        for stmt in lazy[t]) == lean_write.AGENT_DDL
    with Store.open(tmp_path / "s", write=True, create=True) as s:
        new = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not new & set(lazy)  # created when first written
        for table in lazy:  # as each is when first written
            for stmt in lazy[table]:
                s.db.execute(stmt)
        have: dict[str, tuple[str, ...]] = {}
        for (table,) in s.db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            have[table] = tuple(r[1] for r in s.db.execute(f"PRAGMA table_info({table})"))
    assert have == lean_write.COLUMNS
    assert lean_write.SCHEMA_VERSION == store_db.SCHEMA_VERSION
    assert lean_write.RACY_NS == store_db.RACY_NS
    assert lean_write.WAL_INLINE_CHECKPOINT == store_db.WAL_INLINE_CHECKPOINT
    assert lean_write.WAL_KEEP_ON_LEAVE == store_db.WAL_KEEP_ON_LEAVE
    st = os.stat(tmp_path / "s" / "guardian.db")
    for seen in (st.st_mtime_ns + 1, st.st_mtime_ns + 10**10):  # racy, and not
        assert lean_write.signature(st, seen) == store_db._signature(st, seen)


def test_lean_default_rules_are_the_shipped_ones() -> None:
    from _sha256 import sha256 as h  # type: ignore[import-not-found]

    assert h((presets_dir() / "default.toml").read_bytes()).hexdigest() == \
        lean.DEFAULT_RULES_SHA256
    assert load_defaults().max_file_size == lean.MAX_FILE_SIZE
    preset = load_preset("default")
    assert preset.ignore == ()
    for rule in preset.rules:  # what lean relies on: nothing refuses, nothing protected
        assert rule.always
        keys = dict(rule.settings)
        assert keys["on_invalid"][0] == "record"
        assert "protect" not in keys and "fail" not in keys


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"session_id": "S"}'])
def test_payloads_not_understood_take_the_full_path(tmp_path: Path, env: dict[str, str],
                                                    cli: Cli, payload: bytes) -> None:
    root, store = _setup(tmp_path, env, cli, "bad")
    p = subprocess.run(_plain_argv(), input=payload, capture_output=True,
                       env={**env, "GUARDIAN_STORE": str(store)}, cwd=root, timeout=60,
                       check=False)
    assert p.returncode == 0 and p.stdout == b""
    assert p.stderr.startswith(b"guardian hook: ") and b"letting the call through" in p.stderr


@pytest.mark.parametrize("point", ["agent.lean.open", "agent.lean.pre-write"])
def test_a_lean_hook_killed_mid_way_leaves_a_store_the_next_one_writes(
        tmp_path: Path, env: dict[str, str], cli: Cli, point: str) -> None:
    root, store = _setup(tmp_path, env, cli, "kill")
    m1 = root / "src" / "m1.json"
    payload = {"session_id": "S", "cwd": str(root), "hook_event_name": "PreToolUse",
               "tool_name": "Edit", "tool_use_id": "t1",
               "tool_input": {"file_path": str(m1), "old_string": "1", "new_string": "2"}}
    p = subprocess.run(_plain_argv(), input=json.dumps(payload).encode(), capture_output=True,
                       env={**env, "GUARDIAN_STORE": str(store), "GUARDIAN_FAULT": f"{point}:kill"},
                       cwd=root, timeout=60, check=False)
    assert p.returncode == -9  # SIGKILL, holding the writer lock
    c = Cli(env, store, root)
    seen = c.json("sessions")
    if point == "agent.lean.open":
        assert seen == []  # killed before any write
    else:  # the session row and the capture committed, the call's row not yet
        assert [(s["id"], s["write_calls"]) for s in seen] == [("S", 0)]
    # The kernel dropped the lock with the process: the next hook writes, by the lean path.
    a = Agent(env, store, root)
    a.tool("PreToolUse", "Edit", "t1", file_path=str(m1), old_string="1", new_string="2")
    assert a.paths == ["lean"]
    (sess,) = c.json("sessions")
    assert sess["write_calls"] == 1
    assert c.json("verify")["ok"] is True
    assert c.run("show", str(m1), check=True).stdout == m1.read_bytes()
