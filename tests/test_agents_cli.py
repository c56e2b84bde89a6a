"""`guardian hook`, `guardian sessions` and `guardian undo` as an agent and a user run them:
real hook subprocesses fed documented payloads, real writes and real Bash commands (sed -i,
mv, rm, a formatter) between them, a real daemon, undo compared byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Cli, sha256

RULES = """
[[rule]]
paths = ["**/*.json", "**/*.py"]
validators = ["auto"]
on_invalid = "revert"

[[rule]]
paths = ["locked.txt"]
protect = true
"""


class Hook:
    """Runs `guardian hook AGENT` with one payload, as the agent does."""

    def __init__(self, env: dict[str, str], store: Path, cwd: Path, session: str = "S1",
                 agent: str = "claude") -> None:
        self.env = {**env, "GUARDIAN_STORE": str(store)}
        self.cwd = cwd
        self.session = session
        self.agent = agent

    def raw(self, data: bytes, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "guardian", "hook", self.agent], input=data,
                              capture_output=True, env={**self.env, **(env or {})},
                              cwd=self.cwd, timeout=60, check=False)

    def __call__(self, event: str, env: dict[str, str] | None = None,
                 **fields: Any) -> dict[str, Any] | None:
        payload = {"session_id": self.session, "transcript_path": "/tmp/t.jsonl",
                   "cwd": str(self.cwd), "permission_mode": "acceptEdits",
                   "hook_event_name": event, **fields}
        p = self.raw(json.dumps(payload).encode(), env)
        assert p.returncode == 0, p.stderr.decode()
        return json.loads(p.stdout) if p.stdout.strip() else None

    def tool(self, event: str, name: str, use_id: str, **tool_input: Any) -> dict[str, Any] | None:
        extra: dict[str, Any] = {"tool_response": {}} if event == "PostToolUse" else {}
        return self(event, tool_name=name, tool_use_id=use_id,
                    tool_input={k: str(v) if isinstance(v, Path) else v
                                for k, v in tool_input.items()}, **extra)

    def bash(self, use_id: str, command: str) -> None:
        assert self.tool("PreToolUse", "Bash", use_id, command=command) is None
        subprocess.run(command, shell=True, cwd=self.cwd, check=True, env=self.env)
        assert self.tool("PostToolUse", "Bash", use_id, command=command) is None


def denied(reply: dict[str, Any] | None) -> str:
    assert reply is not None, "the write was allowed"
    out = reply["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse" and out["permissionDecision"] == "deny"
    return str(out["permissionDecisionReason"])


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".~guardian.")}


def seed(root: Path) -> None:
    (root / ".guardian.toml").write_text(RULES)
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("def f( x ):\n    return [x,x ]\n")
    (root / "data.json").write_text('{"a": 1}\n')
    (root / "notes.txt").write_text("hello world\nsecond line\n")
    (root / "old.txt").write_text("old\n")
    (root / "locked.txt").write_text("do not touch\n")


# ----------------------------------------------------------------------------- no daemon
def test_refuses_invalid_and_protected_writes_allows_valid(env: dict[str, str], root: Path,
                                                           store: Path, cli: Cli) -> None:
    seed(root)
    cli.run("snapshot", str(root), check=True)
    h = Hook(env, store, root)
    reason = denied(h.tool("PreToolUse", "Write", "t1", file_path=root / "data.json",
                           content='{"a": 1,\n "b": }\n'))
    assert f"{root}/data.json:2:" in reason and "Fix these problems" in reason
    assert (root / "data.json").read_text() == '{"a": 1}\n'  # a refusal writes nothing
    reason = denied(h.tool("PreToolUse", "Edit", "t2", file_path=root / "src" / "app.py",
                           old_string="return [x,x ]", new_string="return [x,"))
    assert f"{root}/src/app.py:" in reason
    assert "is protected" in denied(h.tool("PreToolUse", "Write", "t3",
                                           file_path=root / "locked.txt", content="x"))
    # Valid, or not validated by the rules, or failing as the tool would: allowed, silently.
    assert h.tool("PreToolUse", "Write", "t4", file_path=root / "data.json",
                  content='{"a": 2}\n') is None
    assert h.tool("PreToolUse", "Edit", "t5", file_path=root / "notes.txt", old_string="zzz",
                  new_string="y") is None
    assert h.tool("PreToolUse", "MultiEdit", "t6", file_path=root / "src" / "app.py",
                  edits=[{"old_string": "x ):", "new_string": "x):"},
                         {"old_string": "[x,x ]", "new_string": "[x, x]"}]) is None
    assert h.tool("PreToolUse", "WebFetch", "t7", url="https://example.com") is None
    s = cli.json("sessions", "S1")
    assert s["rejected"] == 3 and s["write_calls"] == 6
    outcomes = [c["outcome"] for c in s["calls"]]
    assert outcomes == ["denied", "denied", "denied", "allowed", "allowed", "allowed"]
    assert "the tool will refuse this call: String to replace not found" in s["calls"][4]["reason"]


def test_bad_payloads_and_internal_errors_let_the_call_through(
        env: dict[str, str], root: Path, store: Path, cli: Cli) -> None:
    seed(root)
    cli.run("snapshot", str(root), check=True)
    h = Hook(env, store, root)
    for raw in (b"", b"{oops", b"[]", json.dumps({"hook_event_name": "PreToolUse"}).encode()):
        p = h.raw(raw)
        assert p.returncode == 0 and p.stdout == b"", (raw, p)
        assert b"letting the call through" in p.stderr
    bad = {"file_path": str(root / "data.json"), "content": "{"}
    fault = {"GUARDIAN_FAULT": "agent.hook:EIO"}
    assert h("PreToolUse", env=fault, tool_name="Write", tool_use_id="t",
             tool_input=bad) is None  # fail-open: an internal error lets even this through
    alerts = cli.json("alerts")["alerts"]
    assert any(a["kind"] == "agent-hook" and "could not check Write" in a["message"]
               for a in alerts)
    (root / ".guardian.toml").write_text(RULES + '\n[[rule]]\npaths = ["*.json", "*.py"]\n'
                                         'fail = "closed"\n')
    reason = denied(h("PreToolUse", env=fault, tool_name="Write", tool_use_id="t",
                      tool_input=bad))
    assert 'fail = "closed"' in reason
    # Fail closed also when a validator cannot run (over its size budget).
    big = {"file_path": str(root / "big.py"), "content": "x = 1\n" * 900_000}  # > 4 MiB
    assert "could not validate" in denied(h("PreToolUse", tool_name="Write", tool_use_id="b",
                                            tool_input=big))


def test_conflicts_are_listed_and_skipped_unless_forced(env: dict[str, str], root: Path,
                                                        store: Path, cli: Cli) -> None:
    seed(root)
    cli.run("snapshot", str(root), check=True)
    h = Hook(env, store, root)
    for use_id, name, text in (("t1", "notes.txt", "agent\n"), ("t2", "new.txt", "made\n")):
        assert h.tool("PreToolUse", "Write", use_id, file_path=root / name, content=text) is None
        (root / name).write_text(text)
        h.tool("PostToolUse", "Write", use_id, file_path=root / name, content=text)
    (root / "notes.txt").write_text("the user's own edit, after the agent\n")
    p = cli.run("undo", "--session", "S1")
    assert p.returncode == 1, p.stderr
    out = p.stdout.decode()
    assert f"! {root}/notes.txt" in out and "conflict: changed after session S1" in out
    assert "--force" in out and f"D {root}/new.txt" in out
    assert (root / "notes.txt").read_text() == "the user's own edit, after the agent\n"
    assert not (root / "new.txt").exists()
    forced = cli.json("undo", "--session", "S1", "--force")
    assert [f["path"] for f in forced["files"] if f["action"] == "write"] == [
        str(root / "notes.txt")]
    assert (root / "notes.txt").read_text() == "hello world\nsecond line\n"
    # The user's edit was stored before the forced undo replaced it.
    assert any(v["sha256"] and v["origin"] != "agent" for v in cli.log(root / "notes.txt"))


# ----------------------------------------------------------------------------- a daemon
def test_scripted_session_under_a_daemon_undone_byte_for_byte(
        env: dict[str, str], root: Path, store: Path, cli: Cli, watch: Any) -> None:
    seed(root)
    before = tree(root)
    watch(root)
    h = Hook(env, store, root)
    h("SessionStart", source="startup")
    h("UserPromptSubmit", prompt="add docs, fix data")
    assert h.tool("PreToolUse", "Write", "w1", file_path=root / "docs.md",
                  content="# Docs\n") is None
    (root / "docs.md").write_text("# Docs\n")
    h.tool("PostToolUse", "Write", "w1", file_path=root / "docs.md", content="# Docs\n")
    assert f"{root}/data.json:1:" in denied(h.tool("PreToolUse", "Write", "w2",
                                                   file_path=root / "data.json",
                                                   content='{"a": }'))
    edit = {"file_path": root / "notes.txt", "old_string": "second", "new_string": "2nd"}
    assert h.tool("PreToolUse", "Edit", "e1", **edit) is None
    (root / "notes.txt").write_text("hello world\n2nd line\n")
    h.tool("PostToolUse", "Edit", "e1", **edit)
    big = "x" * (9 * 1024 * 1024)  # over the socket's inline limit: sent through a file
    assert h.tool("PreToolUse", "Write", "w3", file_path=root / "big.txt", content=big) is None
    (root / "big.txt").write_text(big)
    h.tool("PostToolUse", "Write", "w3", file_path=root / "big.txt", content=big)
    h("Stop", stop_hook_active=False)
    h("UserPromptSubmit", prompt="clean up")
    h.bash("b1", "sed -i 's/hello/HELLO/' notes.txt")
    h.bash("b2", "mv old.txt moved.txt")
    h.bash("b3", "rm data.json")
    h.bash("b4", f"{sys.executable} -m ruff format --no-cache -q src/app.py")
    h("Stop", stop_hook_active=False)
    h("SessionEnd", reason="exit")
    after = tree(root)
    assert after["src/app.py"] != before["src/app.py"]  # the formatter did run
    s = cli.json("sessions", "S1")
    assert (s["prompts"], s["write_calls"], s["bash_calls"], s["rejected"]) == (2, 4, 4, 1)
    # sed -i writes a temp file and renames it over the target: the window saw that too.
    by = {os.path.relpath(f["path"], root): sorted(set(f["by"])) for f in s["files"]
          if not os.path.basename(f["path"]).startswith("sed")}
    assert by == {"docs.md": ["tool"], "notes.txt": ["tool", "window"], "big.txt": ["tool"],
                  "old.txt": ["window"], "moved.txt": ["window"], "data.json": ["window"],
                  "src/app.py": ["window"]}
    assert not any(f["ambiguous"] for f in s["files"])
    second = str(s["prompt_list"][1]["id"])
    plan = cli.run("undo", "--prompt", second, "--dry-run", check=True).stdout.decode()
    assert f"M {root}/notes.txt" in plan and f"A {root}/data.json" in plan
    assert f"D {root}/moved.txt" in plan and "files changed" in plan
    assert "docs.md" not in plan  # the first prompt's file is not the second's
    assert tree(root) == after  # a dry run changes nothing
    out = cli.json("undo", "--session", "S1")
    assert out["conflicts"] == 0 and out["session"].startswith("undo-")
    assert tree(root) == before
    again = cli.json("undo", "--session", out["session"])  # the undo is undoable
    assert again["conflicts"] == 0
    assert tree(root) == after


def dirs(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def test_undo_removes_the_directories_the_session_made(env: dict[str, str], root: Path,
                                                        store: Path, cli: Cli,
                                                        watch: Any) -> None:
    seed(root)
    (root / "empty-before").mkdir()
    before, before_dirs = tree(root), dirs(root)
    watch(root)
    h = Hook(env, store, root, session="D1")
    h("SessionStart", source="startup")
    h("UserPromptSubmit", prompt="generate")
    h.bash("b1", "mkdir -p gen/deep/er && echo out > gen/deep/er/out.txt && echo top > gen/a.txt")
    target = root / "new" / "dir" / "file.txt"  # the Write tool makes its directories
    assert h.tool("PreToolUse", "Write", "w1", file_path=target, content="hi\n") is None
    target.parent.mkdir(parents=True)
    target.write_text("hi\n")
    h.tool("PostToolUse", "Write", "w1", file_path=target, content="hi\n")
    h.bash("b2", "echo more > src/extra.py && echo x > empty-before/x.txt")
    h("Stop", stop_hook_active=False)
    after, after_dirs = tree(root), dirs(root)
    plan = cli.run("undo", "--session", "D1", "--dry-run", check=True).stdout.decode()
    for d in ("gen", "gen/deep", "gen/deep/er", "new", "new/dir"):
        assert f" - {root}/{d}/ (made by it: would remove, now empty)" in plan, plan
    assert f" - {root}/src/ " not in plan  # it held files before the session
    out = cli.json("undo", "--session", "D1")
    assert out["conflicts"] == 0
    assert sorted(out["removed_dirs"]) == sorted(
        f"{root}/{d}" for d in ("empty-before", "gen", "gen/deep", "gen/deep/er", "new",
                                "new/dir"))
    assert tree(root) == before
    # Nothing Guardian recorded was ever in empty-before/ before the session: it looks made
    # by it, and goes too (the plan said so). Every other directory is as it was.
    assert dirs(root) == before_dirs - {"empty-before"}
    again = cli.json("undo", "--session", out["session"])  # the undo is undoable
    assert again["conflicts"] == 0
    assert tree(root) == after and dirs(root) == after_dirs


def test_windows_ambiguity_disk_truth_last_and_since(env: dict[str, str], root: Path,
                                                     store: Path, cli: Cli) -> None:
    seed(root)
    cli.run("snapshot", str(root), check=True)
    a, b = Hook(env, store, root, session="A"), Hook(env, store, root, session="B")
    # Two agents' commands at once: whatever changes meanwhile is credited to both, and
    # marked ambiguous (a window is a span of time, not proof).
    assert a.tool("PreToolUse", "Bash", "a1", command="make") is None
    assert b.tool("PreToolUse", "Bash", "b1", command="make test") is None
    (root / "notes.txt").write_text("changed while both ran\n")
    assert a.tool("PostToolUse", "Bash", "a1", command="make") is None
    assert b.tool("PostToolUse", "Bash", "b1", command="make test") is None
    files = {f["path"]: f for f in cli.json("sessions", "A")["files"]}
    assert files[str(root / "notes.txt")]["ambiguous"]
    plan = cli.run("undo", "--session", "B", "--dry-run", check=True).stdout.decode()
    assert "(ambiguous window)" in plan
    # The tool said one thing, the disk holds another: what is on disk is recorded.
    assert a.tool("PreToolUse", "Write", "w1", file_path=root / "old.txt", content="said\n") is None
    (root / "old.txt").write_text("what really landed\n")
    a.tool("PostToolUse", "Write", "w1", file_path=root / "old.txt", content="said\n")
    call = cli.json("sessions", "A")["calls"][-1]
    assert call["outcome"] == "done" and "on disk is not what the tool reported" in call["reason"]
    assert cli.log(root / "old.txt")[0]["sha256"] == sha256(b"what really landed\n")
    # --last 1: only the newest change (old.txt); --since: everything of both sessions.
    last = cli.json("undo", "--last", "1", "--dry-run")
    assert [f["path"] for f in last["files"]] == [str(root / "old.txt")]
    since = cli.json("undo", "--since", "1h", "--dry-run")
    assert {f["path"] for f in since["files"]} == {str(root / "old.txt"), str(root / "notes.txt")}
    assert cli.run("undo", "--session", "nope").returncode == 2


def test_gemini_and_codex_get_the_same_behaviour(env: dict[str, str], root: Path, store: Path,
                                                 cli: Cli) -> None:
    seed(root)
    cli.run("snapshot", str(root), check=True)
    g = Hook(env, store, root, session="G", agent="gemini")
    reply = g("BeforeTool", tool_name="write_file", timestamp="2026-01-01T00:00:00Z",
              tool_input={"file_path": str(root / "data.json"), "content": "{,}"})
    assert reply is not None and reply["decision"] == "deny"
    assert f"{root}/data.json:1:" in reply["reason"]
    assert g("BeforeTool", tool_name="replace", tool_input={
        "file_path": str(root / "notes.txt"), "old_string": "hello", "new_string": "hi",
        "expected_replacements": 1}) is None
    c = Hook(env, store, root, session="C", agent="codex")
    patch = ("*** Begin Patch\n*** Update File: src/app.py\n@@\n-    return [x,x ]\n"
             "+    return [x,\n*** End Patch\n")
    reason = denied(c.tool("PreToolUse", "apply_patch", "p1", command=patch))
    assert f"{root}/src/app.py:" in reason
    assert [s["agent"] for s in cli.json("sessions")] == ["codex", "gemini"]


def test_a_failing_or_stuck_daemon_lets_calls_through(env: dict[str, str], root: Path,
                                                      store: Path, cli: Cli, watch: Any) -> None:
    import signal
    import time

    seed(root)
    w = watch(root, env={**env, "GUARDIAN_FAULT": "agent.hook:EIO"})
    h = Hook(env, store, root)
    bad = {"file_path": str(root / "data.json"), "content": "{"}
    p = h.raw(json.dumps({"session_id": "S1", "cwd": str(root), "hook_event_name": "PreToolUse",
                          "tool_name": "Write", "tool_use_id": "t1", "tool_input": bad}).encode())
    assert p.returncode == 0 and p.stdout == b"", p  # the daemon erred: let through
    assert b"could not check Write" in p.stderr and b"letting the call through" in p.stderr
    assert any(a["kind"] == "agent-hook" for a in cli.json("alerts")["alerts"])
    w.proc.send_signal(signal.SIGSTOP)  # a daemon that does not answer at all
    try:
        t0 = time.monotonic()
        p = h.raw(json.dumps({"session_id": "S1", "cwd": str(root),
                              "hook_event_name": "PreToolUse", "tool_name": "Write",
                              "tool_use_id": "t2", "tool_input": bad}).encode(),
                  env={"GUARDIAN_HOOK_TIMEOUT": "1"})
        assert p.returncode == 0 and p.stdout == b"", p
        assert b"no answer within 1s" in p.stderr
        assert time.monotonic() - t0 < 30
    finally:
        w.proc.send_signal(signal.SIGCONT)
