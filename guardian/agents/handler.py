"""What one hook payload does to the store, with the writer held: the same code whether the
daemon runs it (in its store thread) or ``guardian hook`` runs it directly.

- A write tool's PreToolUse: each target is recorded first (a fresh "before" copy), the
  content the tool would leave is worked out (:mod:`guardian.agents.edits`) and validated
  with the path's rules; a protected path, or a content the rules would revert, is refused
  with the validators' ``path:line:col: message``.
- Its PostToolUse: what is on disk now is recorded, and every version of the target since
  the PreToolUse is labelled with the session, prompt and tool call.
- Bash (and any shell tool): PreToolUse opens an attribution window, PostToolUse closes it;
  versions recorded while a window is open are labelled with it (:func:`label_windows`),
  and marked ambiguous when more than one window was open. It is a window in time: another
  program writing meanwhile is credited to it too, and the data says "window", not "tool".
- Session and prompt boundaries: SessionStart, UserPromptSubmit, Stop, SessionEnd.

The bookkeeping (sessions, prompts, calls, labels) commits without its own fsync: a hook runs
on every tool call, and the next durable commit (any version recorded) makes it durable. The
"before" copies and the versions themselves are recorded durably, as always.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

from guardian import faults
from guardian.agents import edits
from guardian.agents.payloads import Payload
from guardian.errors import OutsideRootError
from guardian.paths import Root, locate

if TYPE_CHECKING:
    from guardian.capture.recorder import CaptureResult
    from guardian.store.db import Store, Version
    from guardian.writer import Writer

#: A window older than this is taken to be one whose PostToolUse never came (Bash's own
#: timeout is at most 10 minutes): it no longer claims versions.
MAX_WINDOW_NS = 15 * 60 * 1_000_000_000
#: Largest file read to work out an edit (a bigger one is not validated before the write).
MAX_READ = edits.MAX_READ
read_file = edits.read_file
TooBig = edits.TooBig


def allow(**extra: Any) -> dict[str, Any]:
    return {"decision": "allow", "reason": None, **extra}


class Handler:
    """The hook events of one :class:`~guardian.writer.Writer`."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.store: Store = writer.store
        self.recorder = writer.recorder
        self.roots = list(writer.recorder.roots.values())

    # ----------------------------------------------------------------- entry
    def handle(self, p: Payload, *, daemon: bool = False) -> dict[str, Any]:
        """Act on one payload; the reply says allow or deny (and why). ``daemon``: the
        watcher records Bash's changes, so windows need no scan of their own."""
        now = time.time_ns()
        done = bookkeeping(self.store, p, now)
        if done is not None:
            return done
        if p.tool == "bash":
            return self.pre_window(p, now, daemon) if p.event == "pre" else \
                self.close_window(p, now, daemon)
        return self.pre_write(p, now) if p.event == "pre" else self.post_write(p, now)

    # ----------------------------------------------------------------- write tools
    def _where(self, path: str) -> tuple[Root, bytes] | None:
        try:
            root, rel = locate(path, self.roots)
        except (OutsideRootError, ValueError):
            return None
        if not rel or self.writer.policy.ignored(root.id, rel):
            return None
        return root, rel

    def _paths(self, p: Payload) -> list[str]:
        if p.tool == "patch":
            cmd = p.input.get("command", p.input.get("input"))
            if isinstance(cmd, list):
                cmd = "\n".join(c for c in cmd if isinstance(c, str))
            return edits.patch_paths(cmd, p.cwd) if isinstance(cmd, str) else []
        path = p.path("notebook_path" if p.tool == "notebook" else "file_path")
        return [path] if path else []

    def pre_write(self, p: Payload, now: int) -> dict[str, Any]:
        store = self.store
        prompt = store.agent_prompt_of(p.session, p.prompt_id)
        watched = {path: w for path in self._paths(p) if (w := self._where(path)) is not None}
        # The "before" copy: what is there now, recorded before anything else is done.
        before: dict[str, int | None] = {}
        if watched:
            self.recorder.capture([(r.id, rel) for r, rel in watched.values()], origin="agent",
                                  confirm_missing=True)
            for path, (root, rel) in watched.items():
                _fid, head = store.file_and_head(root.id, rel)
                before[path] = head.id if head is not None else None
        reason: str | None = None
        outcome = "allowed"
        expect: dict[str, Any] = {}
        notes: list[str] = []
        try:
            results = edits.would_write(p.tool or "", p.input, self._paths(p)[0] if
                                        p.tool != "patch" and self._paths(p) else None, p.cwd,
                                        read_file, gemini=p.agent == "gemini")
        except edits.EditFailed as e:
            notes.append(f"the tool will refuse this call: {str(e).splitlines()[0]}")
            results = []
        except TooBig as e:
            notes.append(f"not validated before the write: {e}")
            results = []
        fail_closed = False
        items: list[tuple[Any, bytes, str]] = []
        for path, (root, rel) in watched.items():  # protected: whatever the call would do
            eff = self.writer.policy.effective(root.id, rel)
            if eff.protected:
                where = f" ({', '.join(eff.files)})" if eff.files else ""
                reason = (f"{path}: is protected by Guardian's rules{where}: no agent write "
                          "may change or delete it; leave this file as it is")
                break
        for path, content in results if reason is None else []:
            expect[path] = [None if content is None else hashlib.sha256(content).hexdigest(),
                            before.get(path)]
            w = watched.get(path) or self._where(path)
            if w is None:
                continue
            root, rel = w
            eff = self.writer.policy.effective(root.id, rel)
            fail_closed = fail_closed or eff.get("fail") == "closed"
            if eff.protected:
                where = f" ({', '.join(eff.files)})" if eff.files else ""
                reason = (f"{path}: is protected by Guardian's rules{where}: no agent write "
                          "may change or delete it; leave this file as it is")
                break
            if content is not None and eff.validators:
                items.append((eff, content, path))
        if reason is None and items:
            from guardian.validation.check import check_many

            for (eff, _content, path), verdict in zip(items, check_many(items), strict=True):
                if verdict.valid is False and eff.on_invalid == "revert":
                    reason = (f"Guardian refused this write: the result would be invalid, and "
                              f"the rules for this path revert invalid writes. "
                              f"{verdict.summary(path, limit=5)}. Fix these problems in the "
                              "content and try again.")
                    break
                if eff.get("fail") == "closed" and verdict.not_validated():
                    reason = (f"Guardian could not validate {path} "
                              f"({'; '.join(verdict.not_validated())}) and its rules say "
                              'fail = "closed"')
                    break
        if reason is not None:
            outcome = "denied"
        with store.transaction(durable=False):
            store.agent_call_add(p.session, prompt, p.tool_use_id, p.tool_name or "", "write",
                                 now, paths=list(expect) or self._paths(p), outcome=outcome,
                                 reason=reason or ("; ".join(notes) or None), expect=expect,
                                 agent_id=p.agent_id)
            if outcome == "denied":
                store.raise_alert(f"agent-denied:{p.session}", "info", "agent-denied",
                                  reason or "", os.fsencode(next(iter(expect), "")) or None)
        if reason is not None:
            return {"decision": "deny", "reason": reason, "fail_closed": fail_closed}
        return allow(notes=notes, fail_closed=fail_closed)

    def post_write(self, p: Payload, now: int) -> dict[str, Any]:
        store = self.store
        call = store.agent_call(p.session, p.tool_use_id) if p.tool_use_id else None
        if call is None:  # no PreToolUse came (not installed for it, or it failed)
            prompt = store.agent_prompt_of(p.session, p.prompt_id)
            with store.transaction(durable=False):
                cid = store.agent_call_add(p.session, prompt, p.tool_use_id, p.tool_name or "",
                                           "write", now, paths=self._paths(p), outcome="allowed",
                                           agent_id=p.agent_id)
            call = {"id": cid, "prompt": prompt, "paths": self._paths(p), "expect": {},
                    "started_ns": now, "outcome": "allowed"}
        paths = list(call["expect"]) or list(call["paths"])
        watched = {path: w for path in paths if (w := self._where(path)) is not None}
        res = self.recorder.capture([(r.id, rel) for r, rel in watched.values()],
                                    origin="agent", confirm_missing=True,
                                    session=p.session) if watched else None
        rows: list[tuple[int, int, str, int | None, str, bool]] = []
        differs: list[str] = []
        for path, (root, rel) in watched.items():
            fid, head = store.file_and_head(root.id, rel)
            if fid is None:
                continue
            want = call["expect"].get(path) or [None, None]
            after = want[1] if want[1] is not None else _last_before(store, fid, call)
            rows += [(v.id, call["id"], p.session, call["prompt"], "tool", False)
                     for v in store.versions_after(fid, after or 0)]
            if p.event == "post" and want[0] is not None and head is not None \
                    and head.sha256 != want[0]:
                differs.append(path)
        reason = None
        if differs:
            reason = ("on disk is not what the tool reported (recorded what is): "
                      + ", ".join(differs))
        with store.transaction(durable=False):
            store.agent_label(rows)
            store.agent_call_finish(call["id"], now, "done" if p.event == "post" else "failed",
                                    reason or (p.error[:500] if p.error else None))
        return allow(labelled=len(rows), recorded=len(res.recorded) if res else 0)

    # ----------------------------------------------------------------- Bash windows
    def _scan_all(self) -> CaptureResult:
        """Without a daemon nobody watches: a reconcile of every root (stat cache) records
        what a command changed, and before it opens, what others did."""
        from guardian.capture.recorder import CaptureResult

        out = CaptureResult()
        for root in self.roots:
            out.merge(self.recorder.reconcile(root.id, b"", origin="agent",
                                              confirm_missing=True))
        return out

    def pre_window(self, p: Payload, now: int, daemon: bool) -> dict[str, Any]:
        if not daemon:
            label_windows(self.store, self._scan_all().recorded)
        store = self.store
        command = p.input.get("command")
        with store.transaction(durable=False):
            store.agent_call_add(p.session, store.agent_prompt_of(p.session, p.prompt_id),
                                 p.tool_use_id, p.tool_name or "", "window", time.time_ns(),
                                 command=command if isinstance(command, str) else None,
                                 outcome="open", agent_id=p.agent_id)
        return allow()

    def close_window(self, p: Payload, now: int, daemon: bool) -> dict[str, Any]:
        store = self.store
        call = store.agent_call(p.session, p.tool_use_id) if p.tool_use_id else None
        if not daemon:
            label_windows(store, self._scan_all().recorded)
        if call is None:
            return allow(window=None)
        with store.transaction(durable=False):
            store.agent_call_finish(call["id"], time.time_ns(),
                                    "done" if p.event == "post" else "failed",
                                    p.error[:500] if p.error else None)
        others = store.agent_windows_overlapping(call["id"], call["started_ns"], now)
        return allow(window=call["id"], ambiguous=bool(others))


def needs_writer(p: Payload) -> bool:
    """Whether this payload records files (a tool call Guardian acts on), or is only
    bookkeeping that the store alone does (:func:`bookkeeping`)."""
    return p.event in ("pre", "post", "failed") and p.tool not in (None, "other")


def bookkeeping(store: Store, p: Payload, now: int) -> dict[str, Any] | None:
    """The session seen, and the whole reply for an event that records no file (session
    and prompt boundaries, tools Guardian ignores); None for one that does."""
    faults.point("agent.hook")
    with store.transaction(durable=False):
        store.agent_session_seen(p.session, p.agent, now, cwd=p.cwd, transcript=p.transcript,
                                 detail=p.detail if p.event == "session_start" else None)
    if p.event == "prompt":
        with store.transaction(durable=False):
            store.agent_prompt_start(p.session, p.prompt_id, p.prompt, now)
        return allow()
    if p.event == "stop":
        with store.transaction(durable=False):
            store.agent_prompt_end(p.session, now)
        return allow()
    if p.event == "session_end":
        with store.transaction(durable=False):
            store.agent_prompt_end(p.session, now)
            store.agent_session_seen(p.session, p.agent, now, detail=p.detail, ended=True)
            for w in store.agent_open_windows(0):
                if w["session"] == p.session:
                    store.agent_call_finish(w["id"], now, "failed", "the session ended")
        return allow()
    if not needs_writer(p):
        return allow()
    return None


def _last_before(store: Store, file_id: int, call: dict[str, Any]) -> int:
    """Without a "before" id: the newest version recorded before the call started."""
    v: Version | None = store.version_at(file_id, int(call["started_ns"]) - 1)
    return v.id if v is not None else 0


def label_windows(store: Store, versions: list[Version], now: int | None = None) -> int:
    """Credit versions just recorded to the attribution windows open now (all of them,
    marked ambiguous, when more than one is). Guardian's own writes are not credited."""
    if not versions:
        return 0
    t = time.time_ns() if now is None else now
    opened = store.agent_open_windows(t - MAX_WINDOW_NS)
    if not opened:
        return 0
    ambiguous = len(opened) > 1
    rows = [(v.id, w["id"], w["session"], w["prompt"], "window", ambiguous)
            for v in versions if v.origin in ("watcher", "scan", "agent")
            for w in opened]
    if rows:
        with store.transaction(durable=False):
            store.agent_label(rows)
    return len(rows)
