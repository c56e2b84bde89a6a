"""Agent hook payloads, the content a write tool would leave, and settings-file installs.

Payloads are built exactly as the agents document them (Claude Code's hooks reference,
Gemini CLI's hooks reference, Codex's apply_patch envelope)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guardian.agents import edits, install
from guardian.agents.payloads import MAX_PAYLOAD, PayloadError, parse
from guardian.errors import UsageError


def claude(event: str, **extra: Any) -> bytes:
    d = {"session_id": "abc123", "transcript_path": "/home/u/.claude/projects/x/abc123.jsonl",
         "cwd": "/work/proj", "permission_mode": "acceptEdits", "hook_event_name": event,
         "prompt_id": "p-1", **extra}
    return json.dumps(d).encode()


# ----------------------------------------------------------------------------- payloads
def test_write_payload() -> None:
    p = parse("claude", claude("PreToolUse", tool_name="Write", tool_use_id="toolu_01",
                               tool_input={"file_path": "/work/proj/a.json", "content": "{}"}))
    assert (p.event, p.tool, p.session, p.tool_use_id, p.prompt_id) == (
        "pre", "write", "abc123", "toolu_01", "p-1")
    assert p.path() == "/work/proj/a.json" and p.writes


def test_edit_multiedit_notebook_bash_payloads() -> None:
    e = parse("claude", claude("PreToolUse", tool_name="Edit", tool_use_id="t",
                               tool_input={"file_path": "src/a.py", "old_string": "a",
                                           "new_string": "b", "replace_all": True}))
    assert e.tool == "edit" and e.path() == "/work/proj/src/a.py"  # relative: the cwd's
    m = parse("claude", claude("PreToolUse", tool_name="MultiEdit", tool_use_id="t",
                               tool_input={"file_path": "/x", "edits": []}))
    assert m.tool == "multiedit"
    n = parse("claude", claude("PreToolUse", tool_name="NotebookEdit", tool_use_id="t",
                               tool_input={"notebook_path": "/n.ipynb", "new_source": "x"}))
    assert n.tool == "notebook" and n.path("notebook_path") == "/n.ipynb"
    b = parse("claude", claude("PostToolUse", tool_name="Bash", tool_use_id="t",
                               tool_input={"command": "rm -rf build", "description": "clean",
                                           "timeout": 120000, "run_in_background": False},
                               tool_response={"stdout": "", "stderr": ""}, duration_ms=12))
    assert (b.event, b.tool) == ("post", "bash") and not b.writes
    f = parse("claude", claude("PostToolUseFailure", tool_name="Bash", tool_use_id="t",
                               tool_input={"command": "false"}, error="exit 1",
                               is_interrupt=False))
    assert (f.event, f.error) == ("failed", "exit 1")


def test_session_and_prompt_events() -> None:
    s = parse("claude", claude("SessionStart", source="startup"))
    assert (s.event, s.detail) == ("session_start", "startup")
    u = parse("claude", claude("UserPromptSubmit", prompt="fix the tests"))
    assert (u.event, u.prompt) == ("prompt", "fix the tests")
    assert parse("claude", claude("Stop", stop_hook_active=False)).event == "stop"
    assert parse("claude", claude("SessionEnd", reason="exit")).detail == "exit"
    assert parse("claude", claude("Notification", message="hi")).event == "other"


def test_unknown_tool_is_other() -> None:
    p = parse("claude", claude("PreToolUse", tool_name="WebFetch", tool_use_id="t",
                               tool_input={"url": "https://example.com"}))
    assert p.tool == "other" and not p.writes


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (json.dumps({"session_id": "s"}).encode(), "missing field 'hook_event_name'"),
    (json.dumps({"hook_event_name": "PreToolUse"}).encode(), "missing field 'session_id'"),
    (json.dumps({"hook_event_name": "PreToolUse", "session_id": "s"}).encode(),
     "missing field 'tool_name'"),
    (json.dumps({"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Write",
                 "tool_input": "x"}).encode(), "'tool_input': expected an object"),
    (json.dumps({"hook_event_name": 3, "session_id": "s"}).encode(), "expected a string"),
])
def test_bad_payloads(raw: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse("claude", raw)


def test_huge_payloads() -> None:
    big = "x" * (20 * 1024 * 1024)
    p = parse("claude", claude("PreToolUse", tool_name="Write", tool_use_id="t",
                               tool_input={"file_path": "/a", "content": big}))
    assert len(edits.write(p.input)) == len(big)
    with pytest.raises(PayloadError, match="over the"):
        parse("claude", b" " * (MAX_PAYLOAD + 1))


def test_gemini_payloads() -> None:
    base = {"session_id": "g1", "transcript_path": "/t", "cwd": "/w",
            "timestamp": "2026-01-01T00:00:00Z"}
    w = parse("gemini", json.dumps({**base, "hook_event_name": "BeforeTool",
                                    "tool_name": "write_file",
                                    "tool_input": {"file_path": "/w/a", "content": "x"}}).encode())
    a = parse("gemini", json.dumps({**base, "hook_event_name": "AfterTool",
                                    "tool_name": "write_file",
                                    "tool_input": {"file_path": "/w/a", "content": "x"},
                                    "tool_response": {}}).encode())
    assert (w.event, w.tool, a.event) == ("pre", "write", "post")
    assert w.tool_use_id == a.tool_use_id  # Before and After are joined by their input
    r = parse("gemini", json.dumps({**base, "hook_event_name": "BeforeTool",
                                    "tool_name": "run_shell_command",
                                    "tool_input": {"command": "ls"}}).encode())
    assert r.tool == "bash"
    assert parse("gemini", json.dumps({**base, "hook_event_name": "BeforeAgent",
                                       "prompt": "hi"}).encode()).event == "prompt"


# ----------------------------------------------------------------------------- edits
def test_edit_as_claude_does() -> None:
    assert edits.edit({"old_string": "a", "new_string": "b"}, b"xay") == b"xby"
    with pytest.raises(edits.EditFailed, match=r"^String to replace not found in file"):
        edits.edit({"old_string": "q", "new_string": "b"}, b"xay")
    with pytest.raises(edits.EditFailed, match=r"^Found 2 matches of the string to replace, "
                                               r"but replace_all is false"):
        edits.edit({"old_string": "a", "new_string": "b"}, b"aa")
    assert edits.edit({"old_string": "a", "new_string": "b", "replace_all": True}, b"aa") == b"bb"
    with pytest.raises(edits.EditFailed, match=r"^No changes to make"):
        edits.edit({"old_string": "a", "new_string": "a"}, b"a")
    with pytest.raises(edits.EditFailed, match=r"^File does not exist"):
        edits.edit({"old_string": "a", "new_string": "b"}, None)
    assert edits.edit({"old_string": "", "new_string": "new"}, None) == b"new"
    with pytest.raises(edits.EditFailed, match="file already exists"):
        edits.edit({"old_string": "", "new_string": "new"}, b"old")
    with pytest.raises(edits.EditFailed, match="old_string is missing"):
        edits.edit({"new_string": "new"}, b"old")


def test_gemini_replace_counts() -> None:
    e = {"old_string": "a", "new_string": "b", "expected_replacements": 2}
    assert edits.edit(e, b"aa", gemini=True) == b"bb"
    with pytest.raises(edits.EditFailed, match="expected 2 occurrence"):
        edits.edit(e, b"a", gemini=True)


def test_multiedit_applies_in_order_all_or_nothing() -> None:
    tool = {"file_path": "/f", "edits": [{"old_string": "a", "new_string": "b"},
                                         {"old_string": "b", "new_string": "c",
                                          "replace_all": True}]}
    assert edits.multiedit(tool, b"ab") == b"cc"
    bad = {"edits": [{"old_string": "a", "new_string": "b"}, {"old_string": "z",
                                                              "new_string": "y"}]}
    with pytest.raises(edits.EditFailed, match="not found"):
        edits.multiedit(bad, b"ab")


def test_notebook_edits() -> None:
    nb = json.dumps({"cells": [{"cell_type": "code", "id": "c1", "source": "1",
                                "metadata": {}, "outputs": [], "execution_count": 3}],
                     "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
    out = json.loads(edits.notebook({"cell_id": "c1", "new_source": "2"}, nb))
    assert out["cells"][0]["source"] == "2" and out["cells"][0]["execution_count"] is None
    ins = json.loads(edits.notebook({"cell_id": "c1", "new_source": "# t", "cell_type": "markdown",
                                     "edit_mode": "insert"}, nb))
    assert [c["cell_type"] for c in ins["cells"]] == ["code", "markdown"]
    assert json.loads(edits.notebook({"cell_id": "c1", "new_source": "", "edit_mode": "delete"},
                                     nb))["cells"] == []
    with pytest.raises(edits.EditFailed, match='Cell with ID "nope" not found'):
        edits.notebook({"cell_id": "nope", "new_source": "x"}, nb)
    with pytest.raises(edits.EditFailed, match="Notebook file does not exist"):
        edits.notebook({"cell_id": "c1", "new_source": "x"}, None)


def test_codex_apply_patch(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    return 1\n")
    (tmp_path / "old.txt").write_text("bye\n")
    text = ("*** Begin Patch\n*** Add File: new.txt\n+hello\n*** Update File: a.py\n@@ def f():\n"
            "-    return 1\n+    return 2\n*** Delete File: old.txt\n*** End Patch\n")

    def read(p: str) -> bytes | None:
        try:
            return Path(p).read_bytes()
        except FileNotFoundError:
            return None

    out = edits.would_write("patch", {"command": ["apply_patch", text]}, None, str(tmp_path),
                            read)
    assert out == [(str(tmp_path / "new.txt"), b"hello\n"),
                   (str(tmp_path / "a.py"), b"def f():\n    return 2\n"),
                   (str(tmp_path / "old.txt"), None)]
    with pytest.raises(edits.EditFailed, match="Failed to find expected lines"):
        edits.patch("*** Begin Patch\n*** Update File: a.py\n-nope\n*** End Patch", str(tmp_path),
                    read)


# ----------------------------------------------------------------------------- install
OTHER = {"model": "opus", "permissions": {"allow": ["Bash(ls:*)"]},
         "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
             {"type": "command", "command": "~/bin/audit.sh", "timeout": 5}]}],
                   "Notification": [{"hooks": [{"type": "command", "command": "notify-send hi"}]}]}}


def test_install_keeps_other_hooks_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps(OTHER, indent=4))
    original = path.read_text()
    out = install.change("claude", "project", tmp_path, install=True, dry_run=False,
                         command="/opt/bin/guardian hook claude")
    assert out["changed"] and out["backup"] == str(path) + ".guardian-backup"
    assert Path(out["backup"]).read_text() == original
    data = json.loads(path.read_text())
    assert data["model"] == "opus" and data["permissions"] == OTHER["permissions"]
    assert data["hooks"]["Notification"] == OTHER["hooks"]["Notification"]
    pre = data["hooks"]["PreToolUse"]
    assert pre[0] == OTHER["hooks"]["PreToolUse"][0]  # theirs first, untouched
    assert pre[1]["matcher"] == "Write|Edit|MultiEdit|NotebookEdit|Bash"
    assert pre[1]["hooks"][0]["command"] == "/opt/bin/guardian hook claude"
    assert set(data["hooks"]) >= {"PostToolUse", "PostToolUseFailure", "SessionStart",
                                  "UserPromptSubmit", "Stop", "SessionEnd"}
    again = install.change("claude", "project", tmp_path, install=True, dry_run=False,
                           command="/opt/bin/guardian hook claude")
    assert not again["changed"]
    gone = install.change("claude", "project", tmp_path, install=False, dry_run=False)
    assert gone["changed"]
    assert json.loads(path.read_text()) == OTHER


def test_install_dry_run_and_new_file(tmp_path: Path) -> None:
    out = install.change("codex", "project", tmp_path, install=True, dry_run=True,
                         command="guardian hook codex")
    assert out["changed"] and "+++" in out["diff"] and not (tmp_path / ".codex").exists()
    install.change("codex", "project", tmp_path, install=True, dry_run=False,
                   command="guardian hook codex")
    data = json.loads((tmp_path / ".codex" / "hooks.json").read_text())
    assert set(data) == {"hooks"}  # Codex refuses other root keys
    assert data["hooks"]["PreToolUse"][0]["matcher"].startswith("Bash|apply_patch")
    install.change("gemini", "project", tmp_path, install=True, dry_run=False,
                   command="guardian hook gemini")
    g = json.loads((tmp_path / ".gemini" / "settings.json").read_text())
    assert g["hooks"]["BeforeTool"][0]["hooks"][0]["timeout"] == 30000  # milliseconds


def test_install_refuses_a_broken_settings_file(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.local.json"
    path.parent.mkdir()
    path.write_text('{\n  "hooks": {,\n}')
    with pytest.raises(UsageError, match=r"settings.local.json:2:13: not valid JSON"):
        install.change("claude", "local", tmp_path, install=True, dry_run=False)
    path.write_text('{"hooks": []}')
    with pytest.raises(UsageError, match="key 'hooks': expected an object"):
        install.change("claude", "local", tmp_path, install=True, dry_run=False)
    with pytest.raises(UsageError, match="--local: codex has no such settings file"):
        install.change("codex", "local", tmp_path, install=True, dry_run=False)


def test_the_installed_command_runs_the_real_hook_from_any_project(tmp_path: Path,
                                                                   env: dict[str, str]) -> None:
    """What `guardian hook install` writes runs this installation's hook, by absolute paths,
    from a project that holds a `guardian` package of its own (the agent runs hooks in the
    project): nothing there stands in for Guardian. It loads neither ``re`` nor the json
    package (pip's console script imports re first)."""
    import shlex
    import subprocess

    project = tmp_path / "project"
    (project / "guardian" / "agents").mkdir(parents=True)
    for init in ("guardian/__init__.py", "guardian/agents/__init__.py"):
        (project / init).write_text("")
    (project / "guardian" / "agents" / "hook.py").write_text(
        "def main():\n    print('IMPOSTOR')\n")
    command = install.hook_command("claude")
    assert install.is_ours({"command": command})
    # A project no store covers: the hook looks, finds none, and lets the call through.
    payload = json.dumps({"session_id": "s", "cwd": str(project), "hook_event_name": "Stop"})
    p = subprocess.run(shlex.split(command), input=payload.encode(), capture_output=True,
                       cwd=project, env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
                       timeout=60, check=False)
    assert p.returncode == 0 and b"IMPOSTOR" not in p.stdout
    loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.decode().splitlines()
              if line.startswith("import time:")}
    assert "guardian.agents.hook" in loaded and not {"re", "json"} & loaded


def test_install_replaces_what_an_earlier_install_wrote(tmp_path: Path) -> None:
    old = "/opt/venv/bin/guardian-hook claude"  # the console script earlier releases wrote
    install.change("claude", "project", tmp_path, install=True, dry_run=False, command=old)
    out = install.change("claude", "project", tmp_path, install=True, dry_run=False)
    assert out["changed"]
    data = json.loads((tmp_path / ".claude" / "settings.json").read_text())
    commands = [h["command"] for groups in data["hooks"].values() for g in groups
                for h in g["hooks"]]
    assert commands and set(commands) == {install.hook_command("claude")}
    assert " -P " in commands[0] and commands[0].endswith("guardian-hook claude")
