"""Agent sessions: hook protocols (Claude Code, Gemini CLI, Codex), the sessions they make,
and undoing them. Imported lazily: ``guardian hook`` starts a process per tool call."""
