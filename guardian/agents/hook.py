"""``guardian hook claude|gemini|codex``: one hook payload on stdin, one decision out.

Started once per agent tool call, so it imports next to nothing: the payload goes as is to
the daemon over its socket (which parses, records and validates it in its store thread);
only when no daemon runs does this process open the store itself (and pay for it).

Never blocks by accident: a payload it cannot read, a daemon that errs or does not answer in
time, any bug — the call is let through (exit 0, a line on stderr, an alert in the store),
unless the rules for the path say ``fail = "closed"``. A refusal is the agent's own
protocol: Claude Code's and Codex's ``hookSpecificOutput.permissionDecision: "deny"`` with
the reason, Gemini CLI's ``decision: "deny"``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TYPE_CHECKING = False  # keeps `typing` off the hook's start-up path
if TYPE_CHECKING:
    from typing import Any

    from guardian.writer import Writer

AGENTS = ("claude", "gemini", "codex")
#: How long a hook waits for the daemon (or the store) before it lets the call through.
TIMEOUT_ENV = "GUARDIAN_HOOK_TIMEOUT"
DEFAULT_TIMEOUT_S = 20.0
#: Payloads bigger than this go to the daemon through a private file, not the socket line.
INLINE_LIMIT = 8 * 1024 * 1024
MAX_PAYLOAD = 256 * 1024 * 1024


def _say(message: str) -> None:
    sys.stderr.write(f"guardian hook: {message}\n")


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _target(d: dict[str, Any]) -> Path:
    """Where the call writes (a write tool's path), else the agent's directory."""
    cwd = d["cwd"] if isinstance(d.get("cwd"), str) else os.getcwd()
    ti = d.get("tool_input")
    if isinstance(ti, dict):
        for key in ("file_path", "notebook_path", "absolute_path", "path"):
            v = ti.get(key)
            if isinstance(v, str) and v and "\0" not in v:
                return Path(os.path.normpath(os.path.join(cwd, os.path.expanduser(v))))
    return Path(os.path.abspath(cwd))


def store_for(d: dict[str, Any]) -> Path | None:
    from guardian.locations import STORE_ENV, find_store_for

    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return Path(explicit)
    target = _target(d)
    found = find_store_for(target)
    if found is None and isinstance(d.get("cwd"), str):
        found = find_store_for(Path(os.path.abspath(d["cwd"])))
    return found


def run(agent: str) -> int:
    """The hook; its exit status (always 0: a refusal is said in JSON on stdout)."""
    raw = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
    if len(raw) > MAX_PAYLOAD:
        _say(f"payload over {MAX_PAYLOAD:,} bytes; letting the call through unchecked")
        return 0
    try:
        d = json.loads(raw)
    except ValueError as e:
        _say(f"malformed JSON on stdin ({e}); letting the call through")
        return 0
    if not isinstance(d, dict):
        _say("expected a JSON object on stdin; letting the call through")
        return 0
    try:
        store = store_for(d)
    except Exception as e:
        _say(f"cannot find the store ({type(e).__name__}: {e}); letting the call through")
        return 0
    if store is None:
        return 0  # not a watched tree
    try:
        reply = ask(store, agent, d, raw)
    except Exception as e:
        reply = failed(store, agent, d, e)
    return answer(agent, d, reply)


def ask(store: Path, agent: str, d: dict[str, Any], raw: bytes) -> Any:
    """The daemon's reply to this payload, or the store's when no daemon runs."""
    from guardian.client import as_writer, daemon

    timeout = _timeout()
    params: dict[str, Any] = {"agent": agent}
    conn = daemon(store, timeout=timeout)
    if conn is not None:
        with conn:
            if len(raw) > INLINE_LIMIT:
                params["payload_file"] = _spill(conn, raw)
            else:
                params["payload"] = d
            return conn.call("agent.hook", params)

    def direct(writer: Writer) -> Any:
        from guardian.agents.handler import Handler
        from guardian.agents.payloads import parse

        return Handler(writer).handle(parse(agent, raw), daemon=False)

    return as_writer(store, "agent.hook", {"agent": agent, "payload": d}, direct,
                     wait=timeout, timeout=timeout)


def _spill(conn: Any, raw: bytes) -> str:
    """A big payload, in a private file beside the daemon's socket (0700 directory)."""
    import tempfile

    where = os.path.dirname(conn.sock.getpeername()) or None
    fd, path = tempfile.mkstemp(prefix="hook-", suffix=".json", dir=where)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return path


def failed(store: Path, agent: str, d: dict[str, Any], e: BaseException) -> dict[str, Any]:
    """Guardian could not act on this call: let it through (say so, and alert), or refuse
    it when the path's rules say ``fail = "closed"``."""
    what = f"{type(e).__name__}: {e}" if not isinstance(e, TimeoutError) else \
        f"no answer within {_timeout():g}s"
    message = f"could not check {d.get('tool_name') or d.get('hook_event_name')} ({what})"
    closed = False
    if d.get("hook_event_name") in ("PreToolUse", "BeforeTool"):
        import contextlib

        with contextlib.suppress(Exception):  # a broken rule file: fail open
            closed = _fail_closed(store, _target(d))
    _say(message + ("; refusing it (fail = \"closed\")" if closed else
                    "; letting the call through"))
    _alert(store, message)
    if closed:
        return {"decision": "deny", "reason": f"Guardian {message}, and the rules for this "
                                              'path say fail = "closed"; try again'}
    return {"decision": "allow", "reason": None}


def _fail_closed(store: Path, path: Path) -> bool:
    from guardian.locations import read_store_roots
    from guardian.paths import Root, locate
    from guardian.rules.policy import Policy

    roots = [Root(i, r) for i, r in enumerate(read_store_roots(store))]
    root, rel = locate(path, roots)
    return bool(Policy({r.id: r for r in roots}).effective(root.id, rel).get("fail") == "closed")


def _alert(store: Path, message: str) -> None:
    """Best effort: an alert in the store that a hook let a call through unchecked."""
    try:
        from guardian.client import daemon

        conn = daemon(store, timeout=1.0)
        if conn is not None:
            with conn:
                conn.call("agent.alert", {"message": message})
            return
        from guardian.store.db import Store

        with Store.open(store, write=True) as s, s.transaction():
            s.raise_alert("agent-hook-failed", "warning", "agent-hook", message, None)
    except Exception:  # noqa: S110 (the call is let through anyway)
        pass


def answer(agent: str, d: dict[str, Any], reply: Any) -> int:
    if not isinstance(reply, dict) or reply.get("decision") != "deny":
        return 0
    reason = str(reply.get("reason") or "refused by Guardian")
    if agent == "gemini":
        out: dict[str, Any] = {"decision": "deny", "reason": reason}
    else:
        out = {"hookSpecificOutput": {"hookEventName": d.get("hook_event_name", "PreToolUse"),
                                      "permissionDecision": "deny",
                                      "permissionDecisionReason": reason}}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0
