"""``guardian hook install|uninstall``: our entries in an agent's settings file, merged in.

Claude Code: ``~/.claude/settings.json`` (--user), ``.claude/settings.json`` (--project, the
default) or ``.claude/settings.local.json`` (--local). Gemini CLI: ``~/.gemini/settings.json``
or ``.gemini/settings.json``. Codex: ``~/.codex/hooks.json`` or ``.codex/hooks.json`` (its
root holds only ``hooks`` and ``description``).

The user's other hooks and settings are kept as they are; an entry is ours when its command
runs ``guardian hook AGENT`` (so installing twice changes nothing, and uninstalling removes
only ours). The file as it was is kept beside it (``NAME.guardian-backup``) before the first
change, and the new one is written atomically.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from guardian.errors import UsageError

AGENT_FILES = {
    "claude": {"user": "~/.claude/settings.json", "project": ".claude/settings.json",
               "local": ".claude/settings.local.json"},
    "gemini": {"user": "~/.gemini/settings.json", "project": ".gemini/settings.json"},
    "codex": {"user": "~/.codex/hooks.json", "project": ".codex/hooks.json"},
}
_CLAUDE_TOOLS = "Write|Edit|MultiEdit|NotebookEdit|Bash"
#: event -> matcher (None: every occurrence) per agent.
EVENTS: dict[str, dict[str, str | None]] = {
    "claude": {"PreToolUse": _CLAUDE_TOOLS, "PostToolUse": _CLAUDE_TOOLS,
               "PostToolUseFailure": _CLAUDE_TOOLS, "SessionStart": None,
               "UserPromptSubmit": None, "Stop": None, "SessionEnd": None},
    "gemini": {"BeforeTool": "write_file|replace|run_shell_command",
               "AfterTool": "write_file|replace|run_shell_command", "SessionStart": None,
               "BeforeAgent": None, "AfterAgent": None, "SessionEnd": None},
    "codex": {"PreToolUse": "Bash|apply_patch|shell|exec_command",
              "PostToolUse": "Bash|apply_patch|shell|exec_command", "SessionStart": None,
              "UserPromptSubmit": None, "Stop": None},
}
#: Seconds (Gemini: milliseconds) an agent waits for our hook; the hook's own budget
#: (GUARDIAN_HOOK_TIMEOUT, 20 s) is well inside it, so it always answers (fail-open).
TIMEOUT_S = 30
BACKUP_SUFFIX = ".guardian-backup"
_OURS = re.compile(r"(^|[/\s'\"])guardian(['\"]?\s+hook\s+|-hook['\"]?\s+)"
                   r"(claude|gemini|codex)\b")


def settings_path(agent: str, scope: str, project: Path) -> Path:
    files = AGENT_FILES[agent]
    if scope not in files:
        raise UsageError(f"--{scope}: {agent} has no such settings file (choose from "
                         f"{', '.join('--' + s for s in files)})")
    rel = files[scope]
    return Path(os.path.expanduser(rel)) if rel.startswith("~") else project / rel


#: The hook's launcher, run by path (see the file): beside the ``guardian`` package.
LAUNCHER = Path(__file__).resolve().parent.parent / "guardian-hook"


def hook_command(agent: str) -> str:
    """How the agent runs us, by absolute paths so the agent's PATH does not matter: this
    interpreter running the package's ``guardian-hook`` launcher with ``-P``; else this
    installation's ``guardian-hook`` console script, ``guardian hook``, or ``python -m
    guardian hook``."""
    if LAUNCHER.is_file():
        return f"{shlex.quote(sys.executable)} -P {shlex.quote(str(LAUNCHER))} {agent}"
    here = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else None
    for name, args in (("guardian-hook", agent), ("guardian", f"hook {agent}")):
        beside = here / name if here is not None else None
        exe = str(beside) if beside is not None and beside.is_file() else shutil.which(name)
        if exe:
            return f"{shlex.quote(exe)} {args}"
    return f"{shlex.quote(sys.executable)} -m guardian hook {agent}"


def is_ours(handler: Any) -> bool:
    return isinstance(handler, dict) and isinstance(handler.get("command"), str) and bool(
        _OURS.search(handler["command"]) or " -m guardian hook " in handler["command"])


def load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); fix it or "
                         "move it away, then install again") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object at the top")
    hooks = data.get("hooks")
    if hooks is not None and not isinstance(hooks, dict):
        raise UsageError(f"{path}: key 'hooks': expected an object, got "
                         f"{type(hooks).__name__}")
    return data


def without_ours(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every handler of ours taken out (and groups left empty by that)."""
    out = dict(data)
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return out
    new_hooks: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            new_hooks[event] = groups
            continue
        kept = []
        for g in groups:
            if isinstance(g, dict) and isinstance(g.get("hooks"), list):
                handlers = [h for h in g["hooks"] if not is_ours(h)]
                if not handlers and len(handlers) != len(g["hooks"]):
                    continue  # a group that held only ours
                g = {**g, "hooks": handlers}
            kept.append(g)
        if kept or not groups:
            new_hooks[event] = kept
    out["hooks"] = new_hooks
    if not new_hooks and "hooks" not in data:
        del out["hooks"]
    return out


def with_ours(data: dict[str, Any], agent: str, command: str) -> dict[str, Any]:
    out = without_ours(data)
    hooks = dict(out.get("hooks") or {})
    timeout = TIMEOUT_S * 1000 if agent == "gemini" else TIMEOUT_S
    for event, matcher in EVENTS[agent].items():
        group: dict[str, Any] = {} if matcher is None else {"matcher": matcher}
        group["hooks"] = [{"type": "command", "command": command, "timeout": timeout}]
        if agent == "gemini":
            group["hooks"][0]["name"] = "guardian"
        groups = hooks.get(event)
        hooks[event] = [*(groups if isinstance(groups, list) else []), group]
    out["hooks"] = hooks
    return out


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _write(path: Path, text: str) -> str | None:
    """Atomically replace ``path``; the backup made of the old file (first change only)."""
    backup = None
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        b = path.with_name(path.name + BACKUP_SUFFIX)
        if not b.exists():
            shutil.copy2(path, b)
        backup = str(b)
    tmp = path.with_name(f".{path.name}.guardian-tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    return backup


def change(agent: str, scope: str, project: Path, *, install: bool, dry_run: bool,
           command: str | None = None) -> dict[str, Any]:
    """Install (or uninstall) our hooks for ``agent``; what changed, as a unified diff."""
    import difflib

    path = settings_path(agent, scope, project)
    before = load(path)
    after = with_ours(before, agent, command or hook_command(agent)) if install else \
        without_ours(before)
    old_text = _dump(before) if path.exists() else ""
    new_text = _dump(after)
    if not install and not path.exists():
        new_text = ""
    changed = before != after
    diff = "".join(difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True),
                                        str(path), str(path)))
    backup = None
    if changed and not dry_run:
        backup = _write(path, new_text)
    return {"agent": agent, "file": str(path), "installed": install, "changed": changed,
            "dry_run": dry_run, "backup": backup, "diff": diff,
            "events": sorted(EVENTS[agent]) if install else []}
