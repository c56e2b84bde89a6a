"""``guardian hook claude|gemini|codex``: one hook payload on stdin, one decision out.

Started once per agent tool call, so it imports next to nothing: the payload goes as is to
the daemon over its socket (which parses, records and validates it in its store thread);
only when no daemon runs does this process open the store itself (and pay for it).
``guardian-hook AGENT`` (what ``guardian hook install`` writes) is the same command without
the CLI's imports. Its fast path (:mod:`guardian.quick`) finds the store and the daemon's
socket with json, os and the C socket module only, making the same checks as
:mod:`guardian.client` (a runtime directory that is ours alone, the daemon's uid by
SO_PEERCRED); anything unusual takes the full path through :mod:`guardian.client`. When it
finds no daemon (no socket, or none listening) it opens the store itself without
:mod:`guardian.client` (:func:`_without_daemon`); the writer lock still decides: held by
someone (a daemon starting), the full path waits for it.

Never blocks by accident: a payload it cannot read, a daemon that errs or does not answer in
time, any bug — the call is let through (exit 0, a line on stderr, an alert in the store),
unless the rules for the path say ``fail = "closed"``. A refusal is the agent's own
protocol: Claude Code's and Codex's ``hookSpecificOutput.permissionDecision: "deny"`` with
the reason, Gemini CLI's ``decision: "deny"``.
"""

from __future__ import annotations

import os
import sys

from guardian import quick, wirejson
from guardian.exiting import exit_now

TYPE_CHECKING = False  # keeps `typing` off the hook's start-up path
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from guardian.agents.payloads import Payload
    from guardian.store.db import Store
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


def _target(d: dict[str, Any]) -> str:
    """Where the call writes (a write tool's path), else the agent's directory."""
    cwd = d["cwd"] if isinstance(d.get("cwd"), str) else os.getcwd()
    ti = d.get("tool_input")
    if isinstance(ti, dict):
        for key in ("file_path", "notebook_path", "absolute_path", "path"):
            v = ti.get(key)
            if isinstance(v, str) and v and "\0" not in v:
                return os.path.normpath(os.path.join(cwd, os.path.expanduser(v)))
    return os.path.abspath(cwd)


def store_for(d: dict[str, Any]) -> str | None:
    explicit = os.environ.get("GUARDIAN_STORE")
    if explicit:
        return os.path.abspath(explicit)
    target = _target(d)
    cwd = os.path.abspath(d["cwd"]) if isinstance(d.get("cwd"), str) else None
    stores = quick.stores_dir()
    if stores is not None:
        return quick.find(stores, target) or (quick.find(stores, cwd) if cwd else None)
    from pathlib import Path

    from guardian.locations import find_store_for

    found = find_store_for(Path(target))
    if found is None and cwd:
        found = find_store_for(Path(cwd))
    return None if found is None else str(found)


def main() -> NoReturn:
    """``guardian-hook AGENT``: ``guardian hook AGENT`` without the CLI's imports."""
    if len(sys.argv) != 2 or sys.argv[1] not in AGENTS:
        sys.stderr.write(f"usage: guardian-hook {{{','.join(AGENTS)}}} (a hook payload on "
                         "stdin; see `guardian hook --help`)\n")
        exit_now(2)
    exit_now(run(sys.argv[1]))


def run(agent: str) -> int:
    """The hook; its exit status (always 0: a refusal is said in JSON on stdout)."""
    if sys.stdin.isatty():
        sys.stderr.write(f"guardian hook {agent}: reads one hook payload on stdin (the agent "
                         "runs it); see `guardian hook --help` and `guardian hook install`\n")
        return 2
    raw = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
    if len(raw) > MAX_PAYLOAD:
        _say(f"payload over {MAX_PAYLOAD:,} bytes; letting the call through unchecked")
        return 0
    try:
        d = wirejson.loads(raw)
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
    try:
        return answer(agent, d, reply)
    except OSError:  # stdout gone (the agent gave up waiting): nothing to say it to
        return 0


def ask(store_dir: str, agent: str, d: dict[str, Any], raw: bytes) -> Any:
    """The daemon's reply to this payload, or the store's when no daemon runs."""
    timeout = _timeout()
    if len(raw) <= INLINE_LIMIT:
        try:
            return quick.call(store_dir, "agent.hook", {"agent": agent, "payload": d}, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            reply = _without_daemon(store_dir, agent, raw, d)  # no daemon: the store directly
            if reply is not _BUSY:
                return reply
        except (quick.NoFast, PermissionError):
            pass  # unusual: the full path
    from pathlib import Path

    from guardian.client import as_writer, daemon

    store = Path(store_dir)
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


_BUSY = object()


def _without_daemon(store_dir: str, agent: str, raw: bytes, d: dict[str, Any]) -> Any:
    """The payload handled here, holding the store's writer lock: no socket answered, so
    :mod:`guardian.client` (and its imports) has nothing to add. The common cases take
    :mod:`guardian.agents.lean` (sqlite alone, the same rows); what it cannot do exactly it
    says before writing anything, and :class:`~guardian.store.db.Store` and the handler do
    it. _BUSY when the lock is held (a daemon starting, another hook): the full path waits
    for it."""
    from guardian.agents import lean
    from guardian.store.lean_write import Busy, Unusual

    try:
        return lean.handle(store_dir, agent, d, _LEFT)
    except Busy:
        return _BUSY
    except Unusual:
        pass  # the full path decides
    from pathlib import Path

    from guardian.agents.payloads import parse
    from guardian.errors import StoreBusyError
    from guardian.store.db import Store

    p = parse(agent, raw)
    try:
        store = Store.open(Path(store_dir), write=True)
    except StoreBusyError:
        return _BUSY
    try:
        reply = _handle(store, p)
    except BaseException:
        store.close()
        raise
    # Committed; the WAL's checkpoint is the next writer's (see Store.leave): exit_now ends
    # the process without closing the database.
    _LEFT.append(store.leave())
    return reply


def _handle(store: Store, p: Payload) -> Any:
    from guardian.agents import handler

    if not handler.needs_writer(p):  # a session or prompt boundary: the store alone
        import time

        return handler.bookkeeping(store, p, time.time_ns())
    from guardian.writer import writer_of  # recorder, rules: only to record files

    with writer_of(store) as writer:
        return handler.Handler(writer).handle(p, daemon=False)


#: Databases left open until the hook's process exits (see Store.leave).
_LEFT: list[Any] = []


def _spill(conn: Any, raw: bytes) -> str:
    """A big payload, in a private file beside the daemon's socket (0700 directory)."""
    import tempfile

    where = os.path.dirname(conn.sock.getpeername()) or None
    fd, path = tempfile.mkstemp(prefix="hook-", suffix=".json", dir=where)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return path


def failed(store: str, agent: str, d: dict[str, Any], e: BaseException) -> dict[str, Any]:
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


def _fail_closed(store: str, path: str) -> bool:
    from pathlib import Path

    from guardian.locations import read_store_roots
    from guardian.paths import Root, locate
    from guardian.rules.policy import Policy

    roots = [Root(i, r) for i, r in enumerate(read_store_roots(Path(store)))]
    root, rel = locate(path, roots)
    return bool(Policy({r.id: r for r in roots}).effective(root.id, rel).get("fail") == "closed")


def _alert(store_dir: str, message: str) -> None:
    """Best effort: an alert in the store that a hook let a call through unchecked."""
    try:
        from pathlib import Path

        from guardian.client import daemon

        store = Path(store_dir)
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
    sys.stdout.write(wirejson.dumps(out) + "\n")
    sys.stdout.flush()
    return 0
