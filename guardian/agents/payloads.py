"""One shape for every agent's hook payload: Claude Code's, Gemini CLI's and Codex's.

Claude Code sends ``hook_event_name`` (PreToolUse, PostToolUse, PostToolUseFailure,
SessionStart, UserPromptSubmit, Stop, SessionEnd, …), ``session_id``, ``cwd``, and per event
``tool_name`` / ``tool_input`` / ``tool_use_id`` / ``tool_response`` / ``error`` / ``prompt``.
Codex sends the same shape (its ``apply_patch`` text in ``tool_input.command``). Gemini CLI
names its events BeforeTool / AfterTool / BeforeAgent / AfterAgent and its tools
``write_file``, ``replace`` and ``run_shell_command``, and sends no tool call id (one is made
from the call's input, which its Before and After events share).

Anything else is a :class:`PayloadError`: the hook lets the call through (fail-open) and says
why on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

#: The largest payload read (a Write of a huge file carries it whole): beyond it the hook
#: lets the call through unvalidated, and says so.
MAX_PAYLOAD = 256 * 1024 * 1024

AGENTS = ("claude", "gemini", "codex")

#: Event names -> what Guardian does with them.
EVENTS = {
    "PreToolUse": "pre", "BeforeTool": "pre",
    "PostToolUse": "post", "AfterTool": "post",
    "PostToolUseFailure": "failed",
    "SessionStart": "session_start", "SessionEnd": "session_end",
    "UserPromptSubmit": "prompt", "BeforeAgent": "prompt",
    "Stop": "stop", "AfterAgent": "stop",
}

#: Tool names -> the edit they make ("bash" opens an attribution window).
TOOLS = {
    "Write": "write", "write_file": "write",
    "Edit": "edit", "replace": "edit",
    "MultiEdit": "multiedit",
    "NotebookEdit": "notebook",
    "Bash": "bash", "run_shell_command": "bash", "shell": "bash", "exec_command": "bash",
    "local_shell": "bash",
    "apply_patch": "patch",
}
#: Tools whose result Guardian can compute (and so validate) before they run.
WRITE_TOOLS = ("write", "edit", "multiedit", "notebook", "patch")


class PayloadError(ValueError):
    """The payload is not one Guardian understands (malformed JSON, a missing field)."""


@dataclass(frozen=True)
class Payload:
    agent: str
    event: str                 # pre | post | failed | session_start | session_end | prompt
    #                            | stop | other
    event_name: str            # as the agent sent it
    session: str
    cwd: str
    prompt_id: str | None = None
    agent_id: str | None = None
    transcript: str | None = None
    tool_name: str | None = None
    tool: str | None = None    # write | edit | multiedit | notebook | patch | bash | other
    tool_use_id: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    response: Any = None
    error: str | None = None
    prompt: str | None = None
    detail: str | None = None  # SessionStart's source, SessionEnd's reason

    @property
    def writes(self) -> bool:
        return self.tool in WRITE_TOOLS

    def path(self, key: str = "file_path") -> str | None:
        """An absolute path from ``tool_input`` (relative ones are the agent's cwd's)."""
        value = self.input.get(key)
        if not isinstance(value, str) or not value or "\0" in value:
            return None
        return os.path.normpath(os.path.join(self.cwd, os.path.expanduser(value)))


def _text(d: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise PayloadError(f"missing field {key!r}")
        return None
    if not isinstance(v, str):
        raise PayloadError(f"field {key!r}: expected a string, got {type(v).__name__}")
    return v


def parse(agent: str, raw: bytes) -> Payload:
    """The payload ``agent`` sent on stdin, in Guardian's shape."""
    if len(raw) > MAX_PAYLOAD:
        raise PayloadError(f"payload of {len(raw):,} bytes is over the {MAX_PAYLOAD:,}-byte "
                           "limit")
    try:
        d = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise PayloadError(f"malformed JSON on stdin: {e}") from None
    return from_obj(agent, d)


def from_obj(agent: str, d: Any) -> Payload:
    """:func:`parse` of a payload already decoded (the daemon gets it so)."""
    if not isinstance(d, dict):
        raise PayloadError(f"expected a JSON object on stdin, got {type(d).__name__}")
    name = _text(d, "hook_event_name", required=True) or ""
    session = _text(d, "session_id", required=True) or ""
    if not session:
        raise PayloadError("field 'session_id' is empty")
    cwd = _text(d, "cwd") or os.getcwd()
    event = EVENTS.get(name, "other")
    tool_name = _text(d, "tool_name")
    tool_input = d.get("tool_input")
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise PayloadError(f"field 'tool_input': expected an object, got "
                           f"{type(tool_input).__name__}")
    tool = None if tool_name is None else TOOLS.get(tool_name, "other")
    if event in ("pre", "post", "failed") and tool_name is None:
        raise PayloadError(f"{name}: missing field 'tool_name'")
    use_id = _text(d, "tool_use_id")
    if use_id is None and tool_name is not None:
        # Gemini sends none: its Before and After events carry the same input.
        blob = json.dumps([tool_name, tool_input], sort_keys=True, default=str).encode()
        use_id = "input-" + hashlib.sha256(blob).hexdigest()[:20]
    error = d.get("error")
    detail = d.get("source") if event == "session_start" else d.get("reason")
    prompt = d.get("prompt")
    return Payload(
        agent=agent, event=event, event_name=name, session=session, cwd=cwd,
        prompt_id=_text(d, "prompt_id"), agent_id=_text(d, "agent_id"),
        transcript=_text(d, "transcript_path"), tool_name=tool_name, tool=tool,
        tool_use_id=use_id, input=tool_input, response=d.get("tool_response"),
        error=error if isinstance(error, str) or error is None else json.dumps(error),
        prompt=prompt[:4000] if isinstance(prompt, str) else None,
        detail=detail if isinstance(detail, str) else None)
