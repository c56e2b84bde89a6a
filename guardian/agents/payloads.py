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

import json
from dataclasses import dataclass, field
from typing import Any

from guardian.agents.wire import (
    AGENTS,
    EVENTS,
    MAX_PAYLOAD,
    TOOLS,
    WRITE_TOOLS,
    PayloadError,
    fields,
    path_of,
)

__all__ = ["AGENTS", "EVENTS", "MAX_PAYLOAD", "TOOLS", "WRITE_TOOLS", "Payload", "PayloadError",
           "from_obj", "parse"]


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
        return path_of(self.cwd, self.input.get(key))


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
    return Payload(**fields(agent, d))
