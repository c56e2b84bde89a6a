"""The real client (optional tier): the ``claude`` CLI, offline against a stand-in of the
Messages API on 127.0.0.1, loads ``guardian mcp`` from the project's ``.mcp.json``, sees its
tools (as ``mcp__guardian__…`` in its requests' ``tools``) and runs a scripted
``write_files`` that is refused (its reason reaches the model) and then one that lands.

Skipped, saying why, when ``claude`` (npm ``@anthropic-ai/claude-code``) is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CLAUDE = shutil.which("claude")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CLAUDE is None, reason="the claude CLI is not installed "
                                 "(npm install -g @anthropic-ai/claude-code)")]

BAD = [{"op": "write", "path": "ok.json", "content": '{"ok": true}\n'},
       {"op": "write", "path": "bad.json", "content": '{\n  "a": [1,\n}\n'}]
GOOD = [{"op": "write", "path": "ok.json", "content": '{"ok": true}\n'},
        {"op": "write", "path": "bad.json", "content": '{"a": [1]}\n'}]


def _sse(blocks: list[dict[str, Any]], stop: str) -> bytes:
    """A streamed Messages API reply with ``blocks`` (text or tool_use)."""
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {
        "type": "message_start", "message": {
            "id": "msg_stand_in", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": b["text"]}
        else:
            start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
        events += [("content_block_start", {"type": "content_block_start", "index": i,
                                            "content_block": start}),
                   ("content_block_delta", {"type": "content_block_delta", "index": i,
                                            "delta": delta}),
                   ("content_block_stop", {"type": "content_block_stop", "index": i})]
    events += [("message_delta", {"type": "message_delta", "delta": {
                   "stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 5}}),
               ("message_stop", {"type": "message_stop"})]
    return b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events)


class StandIn:
    """Scripted replies: write_files(BAD), then write_files(GOOD), then a last word."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []  # every request, for the failure message
        self.lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> tuple[bytes, str]:
        tools = [t.get("name") for t in body.get("tools", [])]
        self.seen.append(body)
        done = {c.get("tool_use_id") for m in body.get("messages", [])
                if isinstance(m.get("content"), list)
                for c in m["content"] if c.get("type") == "tool_result"}
        blocks: list[dict[str, Any]]
        if "mcp__guardian__write_files" in tools:
            with self.lock:
                self.requests.append(body)
            if "toolu_bad" not in done:
                blocks = [{"type": "tool_use", "id": "toolu_bad",
                           "name": "mcp__guardian__write_files", "input": {"operations": BAD}}]
            elif "toolu_good" not in done:
                blocks = [{"type": "tool_use", "id": "toolu_good",
                           "name": "mcp__guardian__write_files", "input": {"operations": GOOD}}]
            else:
                blocks = [{"type": "text", "text": "Both files are written."}]
        elif "WaitForMcpServers" in tools and len(done) < 5:
            # The servers connect in the background: the model asks to wait for ours.
            blocks = [{"type": "tool_use", "id": f"toolu_wait{len(done)}",
                       "name": "WaitForMcpServers", "input": {"servers": ["guardian"]}}]
        else:  # a side request (a title, a check), or guardian never connected
            blocks = [{"type": "text", "text": "ok"}]
        stop = "tool_use" if blocks[0]["type"] == "tool_use" else "end_turn"
        if body.get("stream"):
            return _sse(blocks, stop), "text/event-stream"
        return json.dumps({"id": "msg_stand_in", "type": "message", "role": "assistant",
                           "model": "claude-sonnet-4-5", "stop_reason": stop,
                           "stop_sequence": None, "usage": {"input_tokens": 1,
                                                            "output_tokens": 1},
                           "content": [{"type": "text", "text": "ok"}]}).encode(), \
            "application/json"


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, int]]:
    script = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            if "count_tokens" in self.path:
                data, kind = b'{"input_tokens": 10}', "application/json"
            else:
                data, kind = script.reply(body)
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield script, server.server_address[1]
    server.shutdown()
    server.server_close()


def test_claude_sees_the_tools_and_its_write_files_is_refused_then_lands(
        env: dict[str, str], root: Path, store: Path, cli: Any, tmp_path: Path,
        stand_in: tuple[StandIn, int]) -> None:
    script, port = stand_in
    (root / ".mcp.json").write_text(json.dumps({"mcpServers": {"guardian": {
        "command": sys.executable,
        "args": ["-m", "guardian", "mcp", "--root", str(root), "--store", str(store)],
        "env": {k: env[k] for k in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR")}}}}))
    home = tmp_path / "home"
    home.mkdir()
    run_env = {**env, "HOME": str(home), "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
               "ANTHROPIC_API_KEY": "stand-in", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
               "DISABLE_AUTOUPDATER": "1"}
    assert CLAUDE is not None
    p = subprocess.run([CLAUDE, "-p", "Write ok.json and bad.json.", "--output-format", "json",
                        "--mcp-config", str(root / ".mcp.json"), "--strict-mcp-config",
                        "--permission-mode", "acceptEdits",
                        "--allowedTools", "mcp__guardian__write_files,WaitForMcpServers"],
                       cwd=root, env=run_env, capture_output=True, timeout=240, check=False)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    assert len(script.requests) == 3, (p.stdout[-1500:], [
        (sorted(t.get("name", "?") for t in r.get("tools", [])), len(r.get("messages", [])))
        for r in script.seen])
    tools = {t["name"] for t in script.requests[0]["tools"]}
    assert {"mcp__guardian__write_files", "mcp__guardian__edit_file",
            "mcp__guardian__file_history", "mcp__guardian__restore",
            "mcp__guardian__validate"} <= tools
    # The refusal reached the model as an error tool result naming file, line and column.
    [refusal] = [c for m in script.requests[1]["messages"] if isinstance(m["content"], list)
                 for c in m["content"] if c.get("tool_use_id") == "toolu_bad"]
    assert refusal.get("is_error") is True
    assert "bad.json:3:1" in json.dumps(refusal["content"])
    assert json.loads(p.stdout)["result"] == "Both files are written."
    assert json.loads((root / "bad.json").read_text()) == {"a": [1]}
    [v] = cli.log(root / "bad.json")
    assert v["origin"] == "batch" and v["session"].startswith("mcp-")
