"""`guardian-hook` with no daemon: it opens the store itself and ends without closing it (the
WAL's checkpoint is left to the next writer, see Store.leave). What it recorded must be there
for every command after it, and for a daemon that starts later."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Cli, sha256
from tests.test_agents_cli import Hook


def _hook_script() -> list[str]:
    beside = Path(sys.executable).with_name("guardian-hook")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "guardian", "hook"]


def test_before_copies_outlive_the_hook_process(env: dict[str, str], root: Path, store: Path,
                                                cli: Cli, watch) -> None:
    f = root / "data.json"
    f.write_text('{"n": 1}\n')
    cli.run("snapshot", str(root), check=True)
    f.write_text('{"n": 2}\n')  # not recorded yet: the hook's "before" copy must keep it
    hook = Hook(env, store, root)
    payload = {"session_id": "S", "cwd": str(root), "hook_event_name": "PreToolUse",
               "tool_name": "Edit", "tool_use_id": "t1",
               "tool_input": {"file_path": str(f), "old_string": '"n": 2',
                              "new_string": '"n": 3'}}
    argv = [*_hook_script(), "claude"]
    p = subprocess.run(argv, input=json.dumps(payload).encode(), capture_output=True,
                       env=hook.env, cwd=root, timeout=60, check=False)
    assert p.returncode == 0 and p.stdout == b"" and p.stderr == b"", p.stderr
    # The process is gone; a reader sees its commit at once.
    shas = [v["sha256"] for v in cli.json("log", str(f))["versions"]]
    assert shas[0] == sha256(b'{"n": 2}\n') and sha256(b'{"n": 1}\n') in shas
    assert cli.run("show", str(f), check=True).stdout == b'{"n": 2}\n'
    for i in range(4):  # more calls, each leaving its pages in the WAL
        assert hook.tool("PreToolUse", "Bash", f"b{i}", command="true") is None
        assert hook.tool("PostToolUse", "Bash", f"b{i}", command="true") is None
    assert {s["id"] for s in cli.json("sessions")} == {"S", "S1"}
    assert cli.json("verify")["ok"] is True
    w = watch(root)  # the next writer takes the store over, WAL and all
    f.write_text('{"n": 4}\n')
    w.version(f, "modified")
    shas = [v["sha256"] for v in cli.json("log", str(f))["versions"]]
    assert shas[:2] == [sha256(b'{"n": 4}\n'), sha256(b'{"n": 2}\n')]
