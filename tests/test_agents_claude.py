"""The real Claude Code CLI (`claude -p`) running the hooks `guardian hook install` put in
`.claude/settings.json`, against a stand-in of the Messages API on 127.0.0.1 that scripts
the model: an invalid Write (refused; the hook's reason must reach the model in the next
request's tool_result), a valid Write, a Bash command, then `guardian undo --session` of the
whole run. Optional: skipped when `claude` is not installed (npm i -g @anthropic-ai/claude-code).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.test_agents_cli import RULES, tree

CLAUDE = shutil.which("claude")
pytestmark = [
    pytest.mark.skipif(CLAUDE is None, reason="the real-client tier needs the `claude` CLI "
                       "(npm install -g @anthropic-ai/claude-code); not installed"),
    pytest.mark.stress,
]


def _sse(blocks: list[dict[str, Any]], stop: str) -> bytes:
    """A streamed Messages API reply holding ``blocks`` (text or tool_use)."""
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {
        "type": "message_start", "message": {
            "id": "msg_stand_in", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            events += [("content_block_start", {"type": "content_block_start", "index": i,
                                                "content_block": {"type": "text", "text": ""}}),
                       ("content_block_delta", {"type": "content_block_delta", "index": i,
                                                "delta": {"type": "text_delta",
                                                          "text": b["text"]}})]
        else:
            events += [("content_block_start", {
                "type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"],
                                  "input": {}}}),
                ("content_block_delta", {"type": "content_block_delta", "index": i,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": json.dumps(b["input"])}})]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events += [("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": stop, "stop_sequence": None},
                                  "usage": {"output_tokens": 20}}),
               ("message_stop", {"type": "message_stop"})]
    return b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events)


class Model:
    """The scripted model: one step per request that carries a tool_result."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.steps = [  # Claude Code writes a file only after reading it
            {"type": "tool_use", "id": "toolu_read", "name": "Read",
             "input": {"file_path": str(root / "data.json")}},
            {"type": "tool_use", "id": "toolu_bad", "name": "Write",
             "input": {"file_path": str(root / "data.json"), "content": '{"a": 1, "b": }\n'}},
            {"type": "tool_use", "id": "toolu_good", "name": "Write",
             "input": {"file_path": str(root / "data.json"), "content": '{"a": 1, "b": 2}\n'}},
            {"type": "tool_use", "id": "toolu_bash", "name": "Bash",
             "input": {"command": "sed -i 's/hello/HELLO/' notes.txt && mv old.txt moved.txt "
                                  "&& rm gone.txt", "description": "edit, move, remove"}},
        ]

    def reply(self, body: dict[str, Any]) -> bytes:
        self.requests.append(body)
        if not body.get("tools"):  # a side request (a title, a summary): plain text
            return _sse([{"type": "text", "text": "ok"}], "end_turn")
        last = body["messages"][-1]
        content = last.get("content") if isinstance(last.get("content"), list) else []
        results = [c for c in content if isinstance(c, dict) and c.get("type") == "tool_result"]
        self.results += results
        done = {r.get("tool_use_id") for r in self.results}
        for step in self.steps:
            if step["id"] not in done:
                return _sse([step], "tool_use")
        return _sse([{"type": "text", "text": "All done."}], "end_turn")


@pytest.fixture
def model(root: Path) -> Iterator[tuple[Model, str]]:
    m = Model(root)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
                data = json.dumps({"input_tokens": 10}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
            else:
                data = m.reply(body)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield m, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("daemon", [True, False], ids=["daemon", "no-daemon"])
def test_real_claude_code_session(env: dict[str, str], root: Path, store: Path, cli: Cli,
                                  watch: Any, model: tuple[Model, str], tmp_path: Path,
                                  daemon: bool) -> None:
    m, url = model
    (root / ".guardian.toml").write_text(RULES)
    (root / "data.json").write_text('{"a": 1}\n')
    (root / "notes.txt").write_text("hello world\n")
    (root / "old.txt").write_text("old\n")
    (root / "gone.txt").write_text("to be removed\n")
    if daemon:
        watch(root)
    else:  # the hooks alone: each opens the store itself (the first records the tree)
        cli.run("snapshot", str(root), check=True)
    home = tmp_path / "home"
    home.mkdir()
    cli.run("hook", "install", "--claude", "--project", "--dir", str(root), store=False,
            check=True)
    before = {k: v for k, v in tree(root).items() if not k.startswith(".claude/")}
    claude_env = {**env, "HOME": str(home), "GUARDIAN_STORE": str(store),
                  "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-stand-in",
                  "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
    assert CLAUDE is not None
    p = subprocess.run([CLAUDE, "-p", "Fix data.json, then tidy up the notes.",
                        "--permission-mode", "acceptEdits", "--allowedTools", "Bash",
                        "--output-format", "json"], cwd=root, env=claude_env,
                       capture_output=True, timeout=240, check=False)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    out = json.loads(p.stdout)
    session = out["session_id"]
    # The refusal reached the model, with the validator's place and words.
    bad = next(r for r in m.results if r.get("tool_use_id") == "toolu_bad")
    text = json.dumps(bad.get("content"))
    assert f"{root}/data.json:1:" in text and "Guardian refused this write" in text, text
    denials = out.get("permission_denials") or []
    assert any(d.get("tool_use_id") == "toolu_bad" for d in denials), denials
    assert (root / "data.json").read_text() == '{"a": 1, "b": 2}\n'
    assert (root / "notes.txt").read_text() == "HELLO world\n"
    assert (root / "moved.txt").exists() and not (root / "gone.txt").exists()
    s = cli.json("sessions", session)
    assert s["agent"] == "claude" and s["rejected"] == 1 and s["bash_calls"] == 1
    touched = {os.path.relpath(f["path"], root) for f in s["files"]}
    assert {"data.json", "notes.txt", "old.txt", "moved.txt", "gone.txt"} <= touched
    undone = cli.json("undo", "--session", session)
    assert undone["conflicts"] == 0
    after = {k: v for k, v in tree(root).items() if not k.startswith(".claude/")}
    assert after == before
