"""The fields of an agent's hook payload, read with json and os only.

:mod:`guardian.agents.payloads` makes its :class:`~guardian.agents.payloads.Payload` of them;
the hook without a daemon (:mod:`guardian.agents.lean`) reads them here without the
dataclasses and typing imports that costs (the hook's start-up is its budget). One reader,
so the two never differ in what a payload means or which one is refused.
"""

from __future__ import annotations

import os

from guardian import wirejson

TYPE_CHECKING = False
if TYPE_CHECKING:
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



def _text(d: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise PayloadError(f"missing field {key!r}")
        return None
    if not isinstance(v, str):
        raise PayloadError(f"field {key!r}: expected a string, got {type(v).__name__}")
    return v


def fields(agent: str, d: Any) -> dict[str, Any]:
    """The payload's fields in Guardian's shape (the keyword arguments of ``Payload``);
    PayloadError for one Guardian does not understand."""
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
        import hashlib

        blob = wirejson.dumps([tool_name, tool_input], sort_keys=True, default=str).encode()
        use_id = "input-" + hashlib.sha256(blob).hexdigest()[:20]
    error = d.get("error")
    detail = d.get("source") if event == "session_start" else d.get("reason")
    prompt = d.get("prompt")
    return {
        "agent": agent, "event": event, "event_name": name, "session": session, "cwd": cwd,
        "prompt_id": _text(d, "prompt_id"), "agent_id": _text(d, "agent_id"),
        "transcript": _text(d, "transcript_path"), "tool_name": tool_name, "tool": tool,
        "tool_use_id": use_id, "input": tool_input, "response": d.get("tool_response"),
        "error": error if isinstance(error, str) or error is None else wirejson.dumps(error),
        "prompt": prompt[:4000] if isinstance(prompt, str) else None,
        "detail": detail if isinstance(detail, str) else None}


def path_of(cwd: str, value: Any) -> str | None:
    """An absolute path from a ``tool_input`` value (relative ones are the agent's cwd's)."""
    if not isinstance(value, str) or not value or "\0" in value:
        return None
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(value)))
