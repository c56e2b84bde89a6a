"""The hook without a daemon, for its common cases, within its start-up budget.

:func:`handle` does what :class:`guardian.agents.handler.Handler` does with a payload, with
the same rows in the store (:mod:`guardian.store.lean_write`), but only where it can be
exactly the same without the rules engine, the recorder or the object store:

- session and prompt boundaries (SessionStart, UserPromptSubmit, Stop, SessionEnd, tools
  Guardian ignores);
- a write tool's Pre/Post/Failure (Write, Edit, MultiEdit, NotebookEdit) whose target the
  store already holds as it is on disk (the "before" copy is the head, durable since it was
  recorded: its scan cache is confirmed in a durable commit, as capture does, unless it
  already says exactly that) or that is absent and not live;
- Bash's windows when every root is as the scan cache says (a reconcile would record
  nothing);

and only when the rules in force are the shipped default alone (no ``.guardian.toml`` from
the root down to the path, the shipped ``default.toml`` the one this module knows by its
digest): those never refuse a write, so validating it would change nothing. No ignore file
with a pattern (``.gitignore``, ``.git/info/exclude``) may apply (working out what
gitignore's rules match costs pathspec's ~30 ms import), no name Guardian ignores, no store
inside a root, no fault injection. Everything else raises :class:`~guardian.store.lean_write.
Unusual` before anything is written, and the caller takes the full path: new content to
store (a delta, compression), a deletion, a symlink, rule files, ignore files, Codex's
``apply_patch``, a payload that is not understood (the full path says why).
"""

from __future__ import annotations

import os
import time

from guardian import faults
from guardian.agents import edits, wire
from guardian.store.lean_write import LeanStore, Unusual, open_store, signature

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    from _sha256 import sha256  # type: ignore[import-not-found]  # hashlib costs ~5 ms
except ImportError:  # pragma: no cover
    from hashlib import sha256

#: SHA-256 of the shipped ``rules/default.toml`` whose rules this module applies: validators
#: "auto", on_invalid "record", nothing protected, no ``fail``, no ``ignore``, max_file_size
#: 50MiB (tests/test_hook_lean.py checks both the digest and those rules).
DEFAULT_RULES_SHA256 = "6059c6766c3a5ef1a773ce62e6f0a532673dcef687de574453267969a2dd7cc8"
MAX_FILE_SIZE = 50 * 1024 * 1024
RULE_FILE = ".guardian.toml"          # guardian.rules.rulefiles.RULE_FILE
GITIGNORE = ".gitignore"              # guardian.rules.ignore.GITIGNORE
TEMP_PREFIX = ".~guardian."           # guardian.paths.TEMP_PREFIX
MAX_WINDOW_NS = 15 * 60 * 1_000_000_000  # guardian.agents.handler.MAX_WINDOW_NS
WRITES = ("write", "edit", "multiedit", "notebook")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def allow(**extra: Any) -> dict[str, Any]:
    return {"decision": "allow", "reason": None, **extra}


def _default_rules() -> None:
    """Unusual unless the shipped default rules are the ones this module applies (found
    where guardian.rules.settings.presets_dir looks)."""
    pkg = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    for d in (os.path.join(pkg, "_rules"), os.path.join(os.path.dirname(pkg), "rules")):
        path = os.path.join(d, "default.toml")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if sha256(f.read()).hexdigest() != DEFAULT_RULES_SHA256:
                    raise Unusual("the shipped default rules changed")
            return
    raise Unusual("no shipped rules")


def handle(store_dir: str, agent: str, d: Any, keep: list[Any]) -> dict[str, Any]:
    """The reply to one payload (the store is left with ``keep`` holding its connection, see
    Store.leave); Unusual before any write when the full path must decide, Busy when the
    writer lock is held."""
    fault = os.environ.get("GUARDIAN_FAULT")
    if fault and not fault.startswith("agent.lean."):
        raise Unusual("fault injection")  # at a point of the full path: it runs there
    try:
        p = wire.fields(agent, d)
    except wire.PayloadError:
        raise Unusual("the full path reports it") from None
    event, tool = p["event"], p["tool"]
    records = event in ("pre", "post", "failed") and tool not in (None, "other")
    if records and tool != "bash" and tool not in WRITES:
        raise Unusual(f"tool {tool}")
    if records:
        _default_rules()
    store = open_store(store_dir)
    try:
        faults.point("agent.lean.open")
        reply = _handle(store, p, records)
    except Unusual:  # raised before any write: leave the WAL as it is for the full path
        keep.append(store.leave())
        raise
    except BaseException:
        store.close()
        raise
    keep.append(store.leave())
    return reply


def _handle(store: LeanStore, p: dict[str, Any], records: bool) -> dict[str, Any]:
    now = time.time_ns()
    if not records:
        return _bookkeeping(store, p, now)
    roots = store.roots()
    real_store = os.path.realpath(store.path)
    for _rid, rpath in roots:
        if real_store == rpath or real_store.startswith(rpath.rstrip("/") + "/"):
            raise Unusual("the store is inside a root")
    if p["tool"] == "bash":
        return _window(store, p, now, roots)
    if p["event"] == "pre":
        return _pre_write(store, p, now, roots)
    return _post_write(store, p, now, roots)


def _session_seen(store: LeanStore, p: dict[str, Any], now: int) -> None:
    """handler.bookkeeping's first step, for every event."""
    store.transaction(lambda: store.session_seen(
        p["session"], p["agent"], now, cwd=p["cwd"], transcript=p["transcript"],
        detail=p["detail"] if p["event"] == "session_start" else None), durable=False)


def _bookkeeping(store: LeanStore, p: dict[str, Any], now: int) -> dict[str, Any]:
    """guardian.agents.handler.bookkeeping, for an event that records no file."""
    _session_seen(store, p, now)
    session, event = p["session"], p["event"]
    if event == "prompt":
        store.transaction(lambda: store.prompt_start(session, p["prompt_id"], p["prompt"], now),
                          durable=False)
    elif event == "stop":
        store.transaction(lambda: store.prompt_end(session, now), durable=False)
    elif event == "session_end":
        def end() -> None:
            store.prompt_end(session, now)
            store.session_seen(session, p["agent"], now, detail=p["detail"], ended=True)
            for w in store.open_windows(0):
                if w["session"] == session:
                    store.call_finish(w["id"], now, "failed", "the session ended")

        store.transaction(end, durable=False)
    return allow()


# ----------------------------------------------------------------------------- write tools
def _paths(p: dict[str, Any]) -> list[str]:
    path = wire.path_of(p["cwd"], p["input"].get("notebook_path" if p["tool"] == "notebook"
                                                 else "file_path"))
    return [path] if path else []


def _where(path: str, roots: list[tuple[int, str]]) -> tuple[int, str, bytes] | None:
    """guardian.paths.locate (the parent resolved, the name not), and no rule file, ignore
    file or ignored name on the way (Unusual): (root id, root path, relpath), None when
    outside every root or the root itself."""
    parent, name = os.path.split(os.path.abspath(path))
    full = os.path.join(os.path.realpath(parent), name) if name else os.path.realpath(parent)
    best: tuple[int, str, str] | None = None
    for rid, rpath in roots:
        if full == rpath:
            rel = ""
        elif full.startswith(rpath.rstrip("/") + "/"):
            rel = full[len(rpath.rstrip("/")) + 1:]
        else:
            continue
        # The deepest root (len(Path.parts), as locate compares them).
        if best is None or len(rpath.rstrip("/").split("/")) > \
                len(best[1].rstrip("/").split("/")):
            best = (rid, rpath, rel)
    if best is None or not best[2]:
        return None
    rid, rpath, rel = best
    parts = rel.split("/")
    if any(part == ".git" or part.startswith(TEMP_PREFIX) or part in ("", ".", "..")
           for part in parts):
        raise Unusual("a name Guardian ignores")
    _no_patterns(os.path.join(rpath, ".git", "info", "exclude"))
    d = rpath
    for part in ["", *parts[:-1]]:
        d = os.path.join(d, part) if part else d
        if os.path.lexists(os.path.join(d, RULE_FILE)):
            raise Unusual("a rule file applies")
        _no_patterns(os.path.join(d, GITIGNORE))
    return rid, rpath, os.fsencode(rel)


def _no_patterns(path: str | bytes) -> None:
    """Unusual unless the ignore file at ``path`` ignores nothing: absent or unreadable
    (IgnoreMatcher skips it), or holding only blank lines and comments (its ``_compile``
    makes no matcher of those; ``git init`` writes such a ``.git/info/exclude``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # open() follows links
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) == 0o040000:
            return  # open() of a directory fails: skipped
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size > 1024 * 1024:
            raise Unusual("an odd ignore file")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", "surrogateescape")
    if any(line.strip() and not line.startswith("#") for line in text.splitlines()):
        raise Unusual("an ignore file with patterns applies")


def _observe(rpath: str, rel: bytes) -> tuple[os.stat_result, bytes, bytes] | None:
    """Recorder._observe of one path, where it sees a regular file (its stat, bytes and
    hash) or nothing (None); Unusual for anything else (a symlink, a directory, a file
    over the size cap, one that changed while read, an error)."""
    parent, _, name = rel.rpartition(b"/")
    fd = -1
    try:
        try:
            fd = os.open(rpath, _DIR_FLAGS)
            for part in parent.split(b"/") if parent else ():
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            raise Unusual("a parent cannot be opened") from None
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            raise Unusual("cannot stat") from None
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size > MAX_FILE_SIZE:
            raise Unusual("not a regular file under the size cap")
        try:
            ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=fd)
        except OSError:
            raise Unusual("cannot open") from None
        try:
            before = os.fstat(ffd)
            if (before.st_mode & 0o170000) != 0o100000:
                raise Unusual("changed while read")
            chunks = []
            while True:
                chunk = os.read(ffd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
            after = os.fstat(ffd)
        except OSError:
            raise Unusual("cannot read") from None
        finally:
            os.close(ffd)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) \
                or len(data) != after.st_size:
            raise Unusual("changed while read")
        return after, data, sha256(data).digest()
    finally:
        if fd >= 0:
            os.close(fd)


def _plan_capture(store: LeanStore, watched: dict[str, tuple[int, str, bytes]]
                  ) -> list[tuple[str, int | None, tuple[Any, ...] | None, os.stat_result | None]]:
    """What Recorder.capture(confirm_missing=True) would do with each watched path, where
    it records no new version: (path, file id, head, stat to confirm or None to drop the
    cache); Unusual where it would record one."""
    plan: list[tuple[str, int | None, tuple[Any, ...] | None, os.stat_result | None]] = []
    for path, (rid, rpath, rel) in watched.items():
        seen = _observe(rpath, rel)
        fid, head = store.file_and_head(rid, rel)
        live = head is not None and head[3]
        if seen is None:
            if live:
                raise Unusual("a deletion to record")
            plan.append((path, fid, head, None))
            continue
        st, _data, h = seen
        if not live or head is None or head[2] != h or head[4] != st.st_mode:
            raise Unusual("new content to record")
        if store.is_damaged(h):
            raise Unusual("the stored copy is damaged")
        plan.append((path, fid, head, st))
    return plan


def _capture(store: LeanStore, plan: list[tuple[str, int | None, tuple[Any, ...] | None,
                                                os.stat_result | None]]) -> None:
    """The capture's one durable commit (the scan cache confirmed, or dropped). When the
    cache already holds exactly what it would write, there is nothing to commit: the rows
    are the same without it, and the "before" copy (the head) was durable when recorded."""
    now = time.time_ns()
    todo = []
    for _path, fid, _head, st in plan:
        if fid is None:
            continue
        want = (None,) * 6 if st is None else signature(st, now)
        if store.cache_of(fid) != want:
            todo.append((fid, st))
    if not todo:
        return

    def record() -> None:
        for fid, st in todo:
            if st is not None:
                store.cache_put(fid, st, now)
            else:
                store.cache_drop(fid)

    store.transaction(record)


def _watched(p: dict[str, Any], paths: list[str], roots: list[tuple[int, str]]
             ) -> dict[str, tuple[int, str, bytes]]:
    return {path: w for path in paths if (w := _where(path, roots)) is not None}


def _pre_write(store: LeanStore, p: dict[str, Any], now: int,
               roots: list[tuple[int, str]]) -> dict[str, Any]:
    """Handler.pre_write under the default rules (which never refuse)."""
    paths = _paths(p)
    watched = _watched(p, paths, roots)
    plan = _plan_capture(store, watched)
    notes: list[str] = []
    try:
        results = edits.would_write(p["tool"] or "", p["input"], paths[0] if paths else None,
                                    p["cwd"], edits.read_file, gemini=p["agent"] == "gemini")
    except edits.EditFailed as e:
        notes.append(f"the tool will refuse this call: {str(e).splitlines()[0]}")
        results = []
    except edits.TooBig as e:
        notes.append(f"not validated before the write: {e}")
        results = []
    # Every write below; nothing above wrote anything.
    _session_seen(store, p, now)
    prompt = store.prompt_of(p["session"], p["prompt_id"])
    if watched:
        _capture(store, plan)
    faults.point("agent.lean.pre-write")
    before = {path: (head[0] if head is not None else None) for path, _f, head, _s in plan}
    expect: dict[str, Any] = {}
    for path, content in results:
        expect[path] = [None if content is None else sha256(content).hexdigest(),
                        before.get(path)]
    store.transaction(lambda: store.call_add(
        p["session"], prompt, p["tool_use_id"], p["tool_name"] or "", "write", now,
        paths=list(expect) or paths, outcome="allowed", reason="; ".join(notes) or None,
        expect=expect, agent_id=p["agent_id"]), durable=False)
    return allow(notes=notes, fail_closed=False)


def _post_write(store: LeanStore, p: dict[str, Any], now: int,
                roots: list[tuple[int, str]]) -> dict[str, Any]:
    """Handler.post_write, where the file on disk is one the store holds already."""
    session = p["session"]
    call = store.call(session, p["tool_use_id"]) if p["tool_use_id"] else None
    new_call = call is None
    if call is None:
        call = {"id": None, "prompt": None, "paths": _paths(p), "expect": {},
                "started_ns": now, "outcome": "allowed"}
    paths = list(call["expect"]) or list(call["paths"])
    watched = _watched(p, paths, roots)
    plan = _plan_capture(store, watched)
    # Every write below; nothing above wrote anything.
    _session_seen(store, p, now)
    if new_call:  # no PreToolUse came (not installed for it, or it failed)
        call["prompt"] = store.prompt_of(session, p["prompt_id"])
        call["id"] = store.transaction(lambda: store.call_add(
            session, call["prompt"], p["tool_use_id"], p["tool_name"] or "", "write", now,
            paths=call["paths"], outcome="allowed", agent_id=p["agent_id"]), durable=False)
    if watched:
        _capture(store, plan)
    rows: list[tuple[int, int, str, int | None, str, bool]] = []
    differs: list[str] = []
    for path, fid, head, _st in plan:
        if fid is None:
            continue
        want = call["expect"].get(path) or [None, None]
        after = want[1] if want[1] is not None else \
            (store.version_at(fid, int(call["started_ns"]) - 1) or 0)
        rows += [(vid, call["id"], session, call["prompt"], "tool", False)
                 for vid in store.versions_after(fid, after or 0)]
        sha = None if head is None or head[2] is None or head[1] is None else head[2].hex()
        if p["event"] == "post" and want[0] is not None and head is not None \
                and sha != want[0]:
            differs.append(path)
    reason = None
    if differs:
        reason = ("on disk is not what the tool reported (recorded what is): "
                  + ", ".join(differs))
    error = p["error"]

    def finish() -> None:
        store.label(rows)
        store.call_finish(call["id"], now, "done" if p["event"] == "post" else "failed",
                          reason or (error[:500] if error else None))

    store.transaction(finish, durable=False)
    return allow(labelled=len(rows), recorded=0)


# ----------------------------------------------------------------------------- Bash windows
def _unchanged(store: LeanStore, rid: int, rpath: str) -> None:
    """Unusual unless a reconcile of the root would record nothing: every regular file and
    symlink as the scan cache says, none gone, no ignore or rule file anywhere (their
    effect is the full path's to work out)."""
    _no_patterns(os.path.join(rpath, ".git", "info", "exclude"))
    state = store.scan_state(rid)
    stack = [b""]
    base = os.fsencode(rpath)
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(base + b"/" + d if d else base)
        except OSError:
            raise Unusual("a directory cannot be read") from None
        with it:
            for entry in it:
                name = entry.name
                if name == b".guardian.toml":
                    raise Unusual("a rule file")
                if name == b".git" or name.startswith(b".~guardian."):
                    continue
                rel = d + b"/" + name if d else name
                if name == b".gitignore":
                    _no_patterns(base + b"/" + rel)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(rel)
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    raise Unusual("cannot stat") from None
                kind = st.st_mode & 0o170000
                if kind not in (0o100000, 0o120000):
                    continue  # fifos, sockets, devices: not content (scan.walk skips them)
                sig = state.pop(rel, None)
                if sig is None or tuple(sig) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                                 st.st_ino, st.st_dev, st.st_mode):
                    raise Unusual("a change to record")
    if state:
        raise Unusual("a file is gone")


def _window(store: LeanStore, p: dict[str, Any], now: int,
            roots: list[tuple[int, str]]) -> dict[str, Any]:
    """Handler.pre_window / close_window without a daemon, when no root changed."""
    session = p["session"]
    call = store.call(session, p["tool_use_id"]) if p["event"] != "pre" and p["tool_use_id"] \
        else None
    for rid, rpath in roots:
        _unchanged(store, rid, rpath)
    # Every write below; nothing above wrote anything.
    _session_seen(store, p, now)
    if p["event"] == "pre":
        command = p["input"].get("command")

        def open_window() -> None:
            store.call_add(session, store.prompt_of(session, p["prompt_id"]), p["tool_use_id"],
                           p["tool_name"] or "", "window", time.time_ns(),
                           command=command if isinstance(command, str) else None,
                           outcome="open", agent_id=p["agent_id"])

        store.transaction(open_window, durable=False)
        return allow()
    if call is None:
        return allow(window=None)
    error = p["error"]
    store.transaction(lambda: store.call_finish(
        call["id"], time.time_ns(), "done" if p["event"] == "post" else "failed",
        error[:500] if error else None), durable=False)
    others = store.windows_overlapping(call["id"], call["started_ns"], now)
    return allow(window=call["id"], ambiguous=bool(others))
