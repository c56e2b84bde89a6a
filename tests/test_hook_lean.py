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

from guardian.agents import lean, lean_rules
from guardian.rules import leanform
from guardian.rules.rulefiles import load_preset
from guardian.rules.settings import load_defaults, presets_dir
from guardian.store import db as store_db
from guardian.store import lean_write
from guardian.store.db import Store
from guardian.validation import validators
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


#: Trees the lean path must handle as the full path does: ignore files with patterns (and
#: ignored files and directories in them, which a Bash window's walk must skip), rule files
#: (a rule that reverts invalid JSON, which the session's edits keep valid; ignore globs; a
#: preset extended; a size limit).
DECORATIONS = {
    "plain": {},
    "ignore-files": {".gitignore": "*.log\nbuild/\n/dist\n", ".git/info/exclude": "*.tmp\n",
                     "src/.gitignore": "# caches\ncache/\n", "build/out.txt": "x\n",
                     "dist/a.js": "x\n", "src/cache/c.txt": "c\n", "app.log": "l\n",
                     "src/deep/x.tmp": "t\n"},
    "rule-files": {".guardian.toml": '[[rule]]\npaths = ["**/*.json"]\nvalidators = ["json"]\n'
                                     'on_invalid = "revert"\n',
                   "src/.guardian.toml": 'extends = "default"\nignore = ["*.tmp", "gen"]\n'
                                         '[[rule]]\npaths = ["*.txt"]\nmax_file_size = "1MiB"\n',
                   "src/x.tmp": "t\n", "src/gen/g.txt": "g\n"},
}


@pytest.mark.parametrize("decoration", sorted(DECORATIONS))
def test_lean_path_writes_what_the_full_path_writes(tmp_path: Path, env: dict[str, str],
                                                     cli: Cli, decoration: str) -> None:
    roots = {}
    paths = {}
    for name, extra in (("lean", {}), ("full", FULL)):
        root, store = _setup(tmp_path, env, cli, name, DECORATIONS[decoration])
        a = Agent(env, store, root, extra=extra)
        _session(a, root)
        g = Agent(env, store, root, extra=extra, agent="gemini", session="G")
        _gemini(g, root)
        roots[name] = (root, store)
        paths[name] = a.paths + g.paths
    assert set(paths["full"]) == {"full"}
    # Every call took the lean path: the Posts of the Write and of the Edit that landed, and
    # Bash's Post after a command that made a file, store their small new content there.
    assert paths["lean"] == ["lean"] * 30
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
    assert a.paths[-1] == "lean"  # new content: stored by the lean path too
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


def test_rule_files_keep_the_lean_path_where_they_allow(tmp_path: Path, env: dict[str, str],
                                                        cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "rules")
    rules = root / "src" / ".guardian.toml"
    rules.write_text('[[rule]]\npaths = ["*.json"]\non_invalid = "revert"\n')
    a = Agent(env, store, root)
    m1 = root / "src" / "m1.json"
    # A rule file the full path has not read yet: it decides (and saves the rules' form).
    a.tool("PreToolUse", "Edit", "t1", file_path=str(m1), old_string='"n": 1', new_string='"n": 2')
    assert a.paths == ["full"]
    # Valid JSON under a rule that reverts: the lean path judges it clean and allows it.
    assert a.tool("PreToolUse", "Edit", "t2", file_path=str(m1), old_string='"n": 1',
                  new_string='"n": 3') is None
    assert a.paths[-1] == "lean"
    # Invalid JSON: the full path words the refusal.
    reply = a.tool("PreToolUse", "Edit", "t3", file_path=str(m1), old_string='"n": 1}',
                   new_string='"n": }')
    assert a.paths[-1] == "full"
    out = reply["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny" and "m1.json:1:" in \
        out["permissionDecisionReason"]
    # A duplicate key is valid (a warning), but it is the full path's to locate.
    assert a.tool("PreToolUse", "Write", "t4", file_path=str(m1),
                  content='{"n": 1, "n": 2}') is None
    assert a.paths[-1] == "full"
    # The rule file edited: its new content is a miss, then lean again.
    rules.write_text('[[rule]]\npaths = ["*.json"]\non_invalid = "revert"\nprotect = true\n')
    reply = a.tool("PreToolUse", "Edit", "t5", file_path=str(m1), old_string='"n": 1',
                   new_string='"n": 4')
    assert "protected" in reply["hookSpecificOutput"]["permissionDecisionReason"]
    a.tool("PreToolUse", "Edit", "t6", file_path=str(root / "notes.txt"), old_string="hello",
           new_string="bye")
    a.tool("PreToolUse", "Bash", "b1", command="true")
    assert a.paths[-3:] == ["full", "lean", "lean"]
    # A protected path is refused by the full path, form or not.
    a.tool("PreToolUse", "Edit", "t7", file_path=str(m1), old_string='"n": 1',
           new_string='"n": 5')
    assert a.paths[-1] == "full"
    (sess,) = Cli(env, store, root).json("sessions")
    assert sess["rejected"] == 3


GIT_EXCLUDE = ("# git ls-files --others --exclude-from=.git/info/exclude\n"
               "# Lines that start with '#' are comments.\n"
               "# For a project mostly in C, the following would be a good set of\n"
               "# exclude patterns (uncomment them if you want to use them):\n"
               "# *.[oa]\n# *~\n")


def test_ignore_files_keep_the_lean_path_unless_their_patterns_are_not_plain(
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
    # Plain patterns: the lean path works out what they ignore.
    (root / "src" / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "src" / "build").mkdir()
    (root / "src" / "build" / "out.bin").write_bytes(b"\0" * 100)
    a.tool("PreToolUse", "Bash", "b2", command="make")
    a.tool("PostToolUse", "Bash", "b2", command="make")
    assert a.paths[-2:] == ["lean", "lean"]
    c = Cli(env, store, root)
    assert c.run("log", str(root / "src" / "build" / "out.bin")).returncode != 0  # ignored
    assert c.run("log", str(root / "src" / ".gitignore"), check=True).stdout  # recorded
    # A path the capture ignores: the full path's (it records nothing of it).
    a.tool("PreToolUse", "Write", "t2", file_path=str(root / "src" / "x.log"), content="x")
    assert a.paths[-1] == "full"
    # A pattern that is not plain (a re-include): the full path works it out.
    (root / "src" / ".gitignore").write_text("*.log\n!keep.log\n")
    a.tool("PreToolUse", "Edit", "t3", file_path=str(m1), old_string="1", new_string="2")
    a.tool("PreToolUse", "Edit", "t4", file_path=str(root / "notes.txt"), old_string="hello",
           new_string="bye")  # src/.gitignore is not on its way
    assert a.paths[-2:] == ["full", "lean"]
    (root / ".git" / "info" / "exclude").write_text("*.tmp\n!keep.tmp\n")
    a.tool("PreToolUse", "Edit", "t5", file_path=str(root / "notes.txt"), old_string="hello",
           new_string="bye")
    a.tool("PreToolUse", "Bash", "b3", command="true")
    assert a.paths[-2:] == ["full", "full"]
    (sess,) = Cli(env, store, root).json("sessions")
    assert sess["write_calls"] == 5 and sess["bash_calls"] == 3


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
    preset = load_preset("default")
    assert preset.ignore == ()
    settings: dict[str, Any] = {}
    for rule in preset.rules:  # what lean relies on: nothing refuses, nothing protected
        assert rule.always
        settings.update({k: v for k, (v, _o) in rule.settings.items()})
    (form,) = leanform.form_of(preset)["rules"]  # type: ignore[index]
    assert form["set"] == lean_rules.DEFAULT_SETTINGS
    assert settings["max_file_size"] == load_defaults().max_file_size
    assert settings["on_invalid"] == "record"
    assert "protect" not in settings and "fail" not in settings
    assert preset.glob_count == lean_rules.DEFAULT_GLOBS
    # The one extension the lean path maps "auto" to by itself.
    assert validators.for_path("x.JSON") == ["json"]


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


def _text(n: int, tag: str) -> str:
    """A file big enough to be compressed (and, by the full path, stored as a delta)."""
    return "".join(f"line {i}: {tag if i == n else 'same'} {'x' * 40}\n" for i in range(60))


def _objects_as_lean_stores_them(rows: dict[str, list[tuple[Any, ...]]]
                                 ) -> dict[str, list[tuple[Any, ...]]]:
    """The rows with each object's encoding left out (id, hash, size, loose kept): the lean
    path stores a whole copy where the full path may store a delta of the same bytes."""
    return {**rows, "objects": [r[:3] + r[5:6] for r in rows["objects"]]}


def _bigger_session(a: Agent, root: Path) -> None:
    """New content of files over the compression threshold, by write tools and by Bash."""
    big = root / "src" / "big.txt"
    a("SessionStart", source="startup")
    a("UserPromptSubmit", prompt="p", prompt_id="p1")
    for i, use_id in enumerate(("e1", "e2")):
        a.tool("PreToolUse", "Write", use_id, file_path=str(big), content=_text(i, "new"))
        big.write_text(_text(i, "new"))
        a.tool("PostToolUse", "Write", use_id, file_path=str(big), content=_text(i, "new"))
    # A Post whose file on disk is not what the tool said (recorded as it is, and said so).
    a.tool("PreToolUse", "Edit", "e3", file_path=str(big), old_string="line 5: same",
           new_string="line 5: edited")
    big.write_text(_text(7, "someone else"))
    a.tool("PostToolUse", "Edit", "e3", file_path=str(big), old_string="line 5: same",
           new_string="line 5: edited")
    # Bash: two files changed, one made, one back to content stored before (no new object).
    a.tool("PreToolUse", "Bash", "b1", command="./edit.sh")
    (root / "src" / "m2.json").write_text(_text(3, "by bash"))
    (root / "notes.txt").write_text("bye\n")
    (root / "src" / "made.txt").write_text(_text(4, "made"))
    big.write_text(_text(0, "new"))
    a.tool("PostToolUse", "Bash", "b1", command="./edit.sh")
    # A Bash window over a touched file (same bytes, a new stat: the cache updated only).
    a.tool("PreToolUse", "Bash", "b2", command="touch notes.txt")
    os.utime(root / "notes.txt", ns=(1_000_000_000, 1_000_000_000))
    a.tool("PostToolUse", "Bash", "b2", command="touch notes.txt")
    # Deletions: two files removed by Bash, one made and removed again (never recorded:
    # nothing to record), and the target of a write tool removed before its Post.
    a.tool("PreToolUse", "Bash", "b3", command="rm src/m3.json src/m4.json")
    (root / "src" / "m3.json").unlink()
    (root / "src" / "m4.json").unlink()
    (root / "src" / "tmp.txt").write_text("brief\n")
    (root / "src" / "tmp.txt").unlink()
    a.tool("PostToolUse", "Bash", "b3", command="rm src/m3.json src/m4.json")
    a.tool("PreToolUse", "Write", "w9", file_path=str(root / "src" / "m1.json"), content="x")
    (root / "src" / "m1.json").unlink()
    a.tool("PostToolUse", "Write", "w9", file_path=str(root / "src" / "m1.json"), content="x")
    a("Stop")


def test_lean_path_stores_new_content_as_the_full_path_does(
        tmp_path: Path, env: dict[str, str], cli: Cli) -> None:
    got = {}
    for name, extra in (("lean", {}), ("full", FULL)):
        root, store = _setup(tmp_path, env, cli, name)
        a = Agent(env, store, root, extra=extra)
        _bigger_session(a, root)
        assert set(a.paths) == {name}
        got[name] = (root, store, _rows(store, root))
    lean_rows, full_rows = got["lean"][2], got["full"][2]
    assert _objects_as_lean_stores_them(lean_rows) == _objects_as_lean_stores_them(full_rows)
    # The encodings: the full path made deltas, the lean path whole copies of the same bytes.
    assert any(r[4] == "zstd-delta" for r in full_rows["objects"])
    new = [r for r in lean_rows["objects"] if r[0] > len(lean_rows["objects"]) - 4]
    assert new and all(r[4] in ("raw", "zstd") and r[7] is None for r in new)
    assert any(r[4] == "zstd" for r in new)
    # What the lean path stored is what every reader reads, version by version.
    root, store = got["lean"][0], got["lean"][1]
    c = Cli(env, store, root)
    for rel in ("src/big.txt", "src/m2.json", "src/made.txt", "notes.txt"):
        versions = c.json("log", str(root / rel))["versions"]
        for v in versions:
            body = c.run("show", "--version", str(v["id"]), str(root / rel), check=True).stdout
            assert sha256(body) == v["sha256"], (rel, v["id"])
    assert (root / "src" / "big.txt").read_bytes() == _text(0, "new").encode()
    calls = {r[3]: r for r in lean_rows["calls"]}
    assert "on disk is not what the tool reported" in (calls["e3"][11] or "")
    (sess,) = c.json("sessions")
    assert {f["path"] for f in sess["files"]} >= {
        str(root / p) for p in ("src/big.txt", "src/m2.json", "src/made.txt", "notes.txt")}
    assert c.json("verify", "--full")["ok"] is True
    # Undone by the session: every file back as it was, the one Bash made removed.
    c.run("undo", "--session", "S", check=True)
    assert not (root / "src" / "made.txt").exists()
    assert (root / "notes.txt").read_text() == "hello\n"
    assert (root / "src" / "m2.json").read_text() == json.dumps({"n": 2}) + "\n"
    assert not (root / "src" / "big.txt").exists()
    for i in (1, 3, 4):  # the deleted ones back
        assert (root / "src" / f"m{i}.json").read_text() == json.dumps({"n": i}) + "\n"


def test_a_whole_copy_after_a_delta_chain_is_read_restored_and_collected(
        tmp_path: Path, env: dict[str, str], cli: Cli) -> None:
    """Deltas by the full path, a whole copy by the lean path, deltas on top of it again:
    show, restore, gc (which re-encodes what a dropped base held up) and verify --full."""
    root, store = _setup(tmp_path, env, cli, "chain")
    f = root / "src" / "chain.txt"
    c = Cli(env, store, root)
    texts = []
    for i in range(7):
        a = Agent(env, store, root, extra=None if i == 3 else FULL)
        texts.append(_text(i, f"v{i}"))
        f.write_text(texts[-1])
        a.tool("PostToolUse", "Write", f"w{i}", file_path=str(f), content=texts[-1])
        assert a.paths == ["lean" if i == 3 else "full"]
    db = sqlite3.connect(f"file:{store / 'guardian.db'}?mode=ro", uri=True)
    codecs = [r[0] for r in db.execute(
        "SELECT o.codec FROM versions v JOIN objects o ON o.id = v.object_id JOIN files f"
        " ON f.id = v.file_id WHERE f.relpath = ? ORDER BY v.id", (b"src/chain.txt",))]
    db.close()
    assert codecs == ["zstd", "zstd-delta", "zstd-delta", "zstd", "zstd-delta", "zstd-delta",
                      "zstd-delta"]
    versions = [v["id"] for v in reversed(c.json("log", str(f))["versions"])]
    for vid, text in zip(versions, texts, strict=True):
        assert c.run("show", "--version", str(vid), str(f), check=True).stdout == text.encode()
    assert c.json("verify", "--full")["ok"] is True
    # keep 5: the first whole copy goes, its kept delta (v2) is re-encoded; keep 3: the lean
    # whole copy (v3) goes, and so must the two deltas on it (v4, v5) be.
    for keep in (5, 3):
        c.run("gc", "--keep-versions", str(keep), "--keep-days", "0", check=True)
        assert c.json("verify", "--full")["ok"] is True
        kept = c.json("log", str(f))["versions"]
        assert [v["id"] for v in reversed(kept)] == versions[-keep:]
        for v, text in zip(reversed(kept), texts[-keep:], strict=True):
            body = c.run("show", "--version", str(v["id"]), str(f), check=True).stdout
            assert body == text.encode()
    db = sqlite3.connect(f"file:{store / 'guardian.db'}?mode=ro", uri=True)
    rebased = [r[0] for r in db.execute(
        "SELECT o.codec FROM versions v JOIN objects o ON o.id = v.object_id JOIN files f"
        " ON f.id = v.file_id WHERE f.relpath = ? ORDER BY v.id", (b"src/chain.txt",))]
    db.close()
    assert rebased == ["zstd", "zstd-delta", "zstd-delta"]  # v4 made whole: its base is gone
    c.run("restore", "--version", str(versions[4]), str(f), check=True)
    assert f.read_text() == texts[4]
    assert c.json("verify", "--full")["ok"] is True


def test_a_lean_hook_killed_before_its_record_commits_loses_nothing(
        tmp_path: Path, env: dict[str, str], cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "killrec")
    m1 = root / "src" / "m1.json"
    m1.write_text(_text(1, "landed"))
    payload = {"session_id": "S", "cwd": str(root), "hook_event_name": "PostToolUse",
               "tool_name": "Write", "tool_use_id": "t1", "tool_response": {},
               "tool_input": {"file_path": str(m1), "content": _text(1, "landed")}}
    p = subprocess.run(_plain_argv(), input=json.dumps(payload).encode(), capture_output=True,
                       env={**env, "GUARDIAN_STORE": str(store),
                            "GUARDIAN_FAULT": "agent.lean.record:kill"},
                       cwd=root, timeout=60, check=False)
    assert p.returncode == -9  # killed with the object inserted, the commit not made
    c = Cli(env, store, root)
    assert c.json("verify", "--full")["ok"] is True
    assert [v["sha256"] for v in c.json("log", str(m1))["versions"]] == \
        [sha256(b'{"n": 1}\n')]  # nothing of the uncommitted record is there
    assert m1.read_text() == _text(1, "landed")  # the file itself untouched
    a = Agent(env, store, root)
    a.tool("PostToolUse", "Write", "t1", file_path=str(m1), content=_text(1, "landed"))
    assert a.paths == ["lean"]
    assert c.run("show", str(m1), check=True).stdout == _text(1, "landed").encode()
    assert c.json("verify", "--full")["ok"] is True
    (sess,) = c.json("sessions")
    assert sess["write_calls"] == 1


def test_more_changes_than_the_lean_path_records_take_the_full_path(
        tmp_path: Path, env: dict[str, str], cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "limits")
    a = Agent(env, store, root)
    big = root / "src" / "big.bin"
    big.write_bytes(os.urandom(lean.LEAN_MAX_NEW_BYTES + 1))
    a.tool("PostToolUse", "Write", "w1", file_path=str(big), content="?")
    assert a.paths == ["full"]
    a.tool("PreToolUse", "Bash", "b1", command="many")
    for i in range(lean.LEAN_MAX_NEW_FILES + 1):
        (root / "src" / f"m{i}.json").write_text(_text(i, "many"))
    a.tool("PostToolUse", "Bash", "b1", command="many")
    a.tool("PreToolUse", "Bash", "b2", command="rm notes.txt")
    (root / "notes.txt").unlink()
    a.tool("PostToolUse", "Bash", "b2", command="rm notes.txt")
    a.tool("PreToolUse", "Bash", "b3", command="mv")
    os.rename(root / "src" / "m0.json", root / "src" / "moved.json")
    a.tool("PostToolUse", "Bash", "b3", command="mv")
    assert a.paths == ["full", "lean", "full", "lean", "lean", "lean", "full"]
    c = Cli(env, store, root)
    log = c.json("log", str(root / "src" / "moved.json"))["versions"]
    assert log[0]["kind"] == "moved"
    assert c.json("log", str(root / "notes.txt"))["versions"][0]["kind"] == "deleted"
    assert c.json("verify", "--full")["ok"] is True


def test_rule_forms_are_private_and_a_damaged_one_is_a_miss(tmp_path: Path, env: dict[str, str],
                                                            cli: Cli) -> None:
    root, store = _setup(tmp_path, env, cli, "forms", {
        ".guardian.toml": '[[rule]]\npaths = ["**/*.json"]\non_invalid = "revert"\n'})
    cache = store / leanform.CACHE_DIR
    (form,) = cache.iterdir()  # saved by the snapshot that read the rule file
    assert cache.stat().st_mode & 0o777 == 0o700 and form.stat().st_mode & 0o777 == 0o600
    a = Agent(env, store, root)
    m1 = root / "src" / "m1.json"
    a.tool("PreToolUse", "Edit", "t1", file_path=str(m1), old_string='"n": 1', new_string='"n": 2')
    assert a.paths == ["lean"]
    # A form that is not whole (a crash before the rename cannot leave one, a bad disk can).
    form.write_bytes(form.read_bytes()[:20])
    reply = a.tool("PreToolUse", "Edit", "t2", file_path=str(m1), old_string='"n": 1}',
                   new_string='"n": }')
    assert a.paths[-1] == "full" and reply["hookSpecificOutput"]["permissionDecision"] == "deny"
    # An edit of the rule file to the same size and time is a new digest all the same.
    text = (root / ".guardian.toml").read_bytes()
    st = (root / ".guardian.toml").stat()
    (root / ".guardian.toml").write_bytes(text.replace(b"*.json", b"*.jsox"))
    os.utime(root / ".guardian.toml", ns=(st.st_atime_ns, st.st_mtime_ns))
    a.tool("PreToolUse", "Edit", "t3", file_path=str(m1), old_string='"n": 1', new_string='"n": 3')
    assert a.paths[-1] == "full"
