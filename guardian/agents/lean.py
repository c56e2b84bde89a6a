"""The hook without a daemon, for its common cases, within its start-up budget.

:func:`handle` does what :class:`guardian.agents.handler.Handler` does with a payload, with
the same rows in the store (:mod:`guardian.store.lean_write`), but only where it can be
exactly the same without the rules engine, the recorder or the object store:

- session and prompt boundaries (SessionStart, UserPromptSubmit, Stop, SessionEnd, tools
  Guardian ignores);
- a write tool's Pre/Post/Failure (Write, Edit, MultiEdit, NotebookEdit) whose target the
  store already holds as it is on disk (the "before" copy is the head, durable since it was
  recorded: its scan cache is confirmed in a durable commit, as capture does, unless it
  already says exactly that), that is absent and not live, or that holds new content small
  enough to store here (:data:`LEAN_MAX_NEW_BYTES`): a whole copy (guardian.store.codec,
  the encoding the Store writes when it makes no delta), the object, the version and the
  scan cache in one durable commit, as Recorder.capture makes them;
- Bash's windows when every root is as the scan cache says, or a reconcile would record
  only new content of a few small files or their deletion (:data:`LEAN_MAX_NEW_FILES`);

and only where the rules in force are ones it can read exactly: the shipped default (known
by its digest) and rule files whose form the full path saved (:mod:`guardian.agents.
lean_rules`), allowing the call without a verdict it cannot reach itself (see
:func:`_rules_allow`); ignore files whose patterns are plain (:mod:`guardian.rules.
plainignore`). No name Guardian ignores, no store inside a root, no fault injection.
Everything else raises :class:`~guardian.store.lean_write.Unusual` before anything is
written, and the caller takes the full path: more or bigger new content or deletions, a move
(a known inode), a symlink, a store with no files yet, a rule file with no saved form, an
ignore pattern that is not plain, a path the capture ignores, Codex's ``apply_patch``, a
payload that is not understood (the full path says why).
"""

from __future__ import annotations

import os
import time

from guardian import faults
from guardian.agents import edits, wire
from guardian.agents.lean_rules import LeanRules
from guardian.rules.plainignore import NotPlain, PlainIgnore
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
TEMP_PREFIX = ".~guardian."           # guardian.paths.TEMP_PREFIX
MAX_WINDOW_NS = 15 * 60 * 1_000_000_000  # guardian.agents.handler.MAX_WINDOW_NS
WRITES = ("write", "edit", "multiedit", "notebook")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_all(fd: int) -> bytes:
    """Everything left to read from ``fd`` (a regular file the caller has checked)."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


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


class Tree:
    """One root, with what the lean path reads of its ignore files and rule files."""

    def __init__(self, store_dir: str, rid: int, path: str) -> None:
        self.id = rid
        self.path = path
        self.ignore = PlainIgnore(path)
        self.rules = LeanRules(store_dir, path)

    def capture_ignores(self, rel: str) -> bool:
        """Whether the Recorder's IgnoreMatcher ignores ``rel``: a rule file's ``ignore``
        glob matches it or a directory above it, or an ignore file does (names Guardian
        ignores itself are the caller's)."""
        parts = rel.split("/")
        if any(self.rules.ignored("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            return True
        try:
            return self.ignore.ignored(rel)
        except NotPlain:
            raise Unusual("an ignore file the lean path does not read") from None


def _handle(store: LeanStore, p: dict[str, Any], records: bool) -> dict[str, Any]:
    now = time.time_ns()
    if not records:
        return _bookkeeping(store, p, now)
    roots = [Tree(store.path, rid, rpath) for rid, rpath in store.roots()]
    real_store = os.path.realpath(store.path)
    for t in roots:
        if real_store == t.path or real_store.startswith(t.path.rstrip("/") + "/"):
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


#: A watched path: its root, its relpath, the settings its rules give it.
Target = tuple[Tree, bytes, "dict[str, Any]"]


def _where(path: str, roots: list[Tree]) -> Target | None:
    """Handler._where: guardian.paths.locate (the parent resolved, the name not), None when
    outside every root, the root itself or ignored by a rule file's ``ignore`` glob, and
    the rules in force there (Unusual where the lean path cannot tell them, or where the
    capture would ignore the path: a .gitignore or a rule ignoring a directory above it)."""
    parent, name = os.path.split(os.path.abspath(path))
    full = os.path.join(os.path.realpath(parent), name) if name else os.path.realpath(parent)
    best: tuple[Tree, str] | None = None
    for t in roots:
        rpath = t.path
        if full == rpath:
            rel = ""
        elif full.startswith(rpath.rstrip("/") + "/"):
            rel = full[len(rpath.rstrip("/")) + 1:]
        else:
            continue
        # The deepest root (len(Path.parts), as locate compares them).
        if best is None or len(rpath.rstrip("/").split("/")) > \
                len(best[0].path.rstrip("/").split("/")):
            best = (t, rel)
    if best is None or not best[1]:
        return None
    tree, rel = best
    parts = rel.split("/")
    if any(part == ".git" or part.startswith(TEMP_PREFIX) or part in ("", ".", "..")
           for part in parts):
        raise Unusual("a name Guardian ignores")
    if tree.rules.ignored(rel):
        return None
    if tree.capture_ignores(rel):
        raise Unusual("a path the capture ignores")
    return tree, os.fsencode(rel), tree.rules.effective(rel)


def _observe(rpath: str, rel: bytes, limit: int
             ) -> tuple[os.stat_result, bytes, bytes] | None:
    """Recorder._observe of one path, where it sees a regular file (its stat, bytes and
    hash) or nothing (None); Unusual for anything else (a symlink, a directory, a file
    over ``limit``, the rules' max_file_size; one that changed while read, an error)."""
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
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size > limit:
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
            data = _read_all(ffd)
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


#: New content the lean path stores itself: at most this many files, each at most this big
#: (a whole zstd copy; the full path stores a delta against the last version where that is
#: smaller, and ``guardian gc`` repacks whole copies as deltas). More, or bigger: the full
#: path.
LEAN_MAX_NEW_FILES = 4
LEAN_MAX_NEW_BYTES = 64 * 1024
#: A plan entry's "new content" of a file that is gone: a tombstone to record.
DELETED = b"deleted"

def _plan_capture(store: LeanStore, watched: dict[str, Target]) -> list[Any]:
    """What Recorder.capture(confirm_missing=True) would do with each watched path, one
    entry each: [path, root id, relpath, file id, head, stat (None: absent), new content
    (data, hash) or None]: confirm
    or drop the scan cache, or record a new version of a small regular file; Unusual where
    it would do anything else (a move, a symlink, a damaged copy) or more than the lean
    path stores. A file gone that was live is a deletion to record (:data:`DELETED`)."""
    plan: list[Any] = []
    new = 0
    for path, (tree, rel, eff) in watched.items():
        rid = tree.id
        seen = _observe(tree.path, rel, int(eff["max_file_size"]))
        fid, head = store.file_and_head(rid, rel)
        live = head is not None and head[3]
        if seen is None:
            if live:
                new += 1
                if new > LEAN_MAX_NEW_FILES:
                    raise Unusual("more changes than the lean path records")
            plan.append([path, rid, rel, fid, head, None, DELETED if live else None])
            continue
        st, data, h = seen
        if live and head is not None and head[2] == h and head[4] == st.st_mode:
            if store.is_damaged(h):
                raise Unusual("the stored copy is damaged")
            plan.append([path, rid, rel, fid, head, st, None])
            continue
        new += 1
        if new > LEAN_MAX_NEW_FILES or len(data) > LEAN_MAX_NEW_BYTES:
            raise Unusual("more new content than the lean path stores")
        if store.is_damaged(h):
            raise Unusual("the stored copy is damaged")
        if store.inode_elsewhere(st, fid):
            raise Unusual("perhaps a move")
        plan.append([path, rid, rel, fid, head, st, (data, h)])
    return plan


def _capture(store: LeanStore, plan: list[Any], session: str | None) -> list[int]:
    """The capture's one durable commit: the scan cache confirmed or dropped, and each new
    content recorded (Recorder._record_one: its object, a file row if it has none, the
    version, the cache), in place in ``plan`` (file id, head). The new version ids; when
    the cache already holds exactly what it would write and nothing is new, nothing is
    committed: the rows are the same without it, and the "before" copy (the head) was
    durable when recorded."""
    now = time.time_ns()
    todo = []
    packed: dict[bytes, tuple[str, bytes] | int] = {}
    for e in plan:
        fid, st, new = e[3], e[5], e[6]
        if new is DELETED:
            todo.append(e)
        elif new is not None:
            data, h = new
            if h not in packed:
                oid = store.object_of(h)
                if oid is not None:
                    packed[h] = oid
                else:
                    from guardian.store.codec import compress  # zstd: only for new content

                    packed[h] = compress(data)
            todo.append(e)
        elif fid is not None and store.cache_of(fid) != \
                ((None,) * 6 if st is None else signature(st, now)):
            todo.append(e)
    if not todo:
        return []
    recorded: list[int] = []

    def record() -> None:
        for e in todo:
            _path, rid, rel, fid, head, st, new = e
            if new is None:
                if st is not None:
                    store.cache_put(fid, st, now)
                else:
                    store.cache_drop(fid)
                continue
            if new is DELETED:  # Recorder._record_one of a path MISSING, confirmed
                vid = store.add_tombstone(fid, "agent", now, session)
                e[4] = (vid, None, None, False, None, None)
                recorded.append(vid)
                continue
            data, h = new
            got = packed[h]
            if isinstance(got, int):
                oid = got
            else:
                oid = packed[h] = store.object_add(h, len(data), got[0], got[1])
            faults.point("agent.lean.record")  # the object in the transaction, not committed
            if fid is None:
                fid = e[3] = store.new_file(rid, rel)
            kind = "modified" if head is not None and head[3] else "created"
            vid = store.add_version(fid, oid, kind, "agent", now, st, len(data), session)
            e[4] = (vid, oid, h, True, st.st_mode, len(data))
            recorded.append(vid)

    store.transaction(record)
    return recorded


def _watched(p: dict[str, Any], paths: list[str], roots: list[Tree]) -> dict[str, Target]:
    return {path: w for path in paths if (w := _where(path, roots)) is not None}


def _pre_write(store: LeanStore, p: dict[str, Any], now: int,
               roots: list[Tree]) -> dict[str, Any]:
    """Handler.pre_write, where the rules let the call through (:func:`_rules_allow`)."""
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
    _rules_allow(watched, results, roots)
    # Every write below; nothing above wrote anything.
    _session_seen(store, p, now)
    prompt = store.prompt_of(p["session"], p["prompt_id"])
    if watched:
        _capture(store, plan, None)  # Handler.pre_write's capture names no session
    faults.point("agent.lean.pre-write")
    before = {e[0]: (e[4][0] if e[4] is not None else None) for e in plan}
    expect: dict[str, Any] = {}
    for path, content in results:
        expect[path] = [None if content is None else sha256(content).hexdigest(),
                        before.get(path)]
    store.transaction(lambda: store.call_add(
        p["session"], prompt, p["tool_use_id"], p["tool_name"] or "", "write", now,
        paths=list(expect) or paths, outcome="allowed", reason="; ".join(notes) or None,
        expect=expect, agent_id=p["agent_id"]), durable=False)
    return allow(notes=notes, fail_closed=False)


#: Validators a rule file may name that the full path runs in process (not a command, not a
#: schema), and the size up to which it runs them inline (validators.INLINE_MAX).
BUILTIN_VALIDATORS = ("auto", "python", "json", "yaml", "toml", "ini", "markdown", "text")
LEAN_VALIDATE_MAX = 256 * 1024


def _rules_allow(watched: dict[str, Target], results: list[tuple[str, bytes | None]],
                 roots: list[Tree]) -> None:
    """Unusual unless Handler.pre_write's rules let this call through, by a verdict the lean
    path reaches itself: no path protected, no ``fail = "closed"``, only built-in validators,
    and where a rule reverts invalid writes, JSON the JSON validator finds clean (anything
    else it would judge, or refuse, is the full path's: it words the refusal)."""
    for _t, _rel, eff in watched.values():
        if eff.get("protect"):
            raise Unusual("a protected path")
    for path, content in results:
        w = watched.get(path) or _where(path, roots)
        if w is None:
            continue
        eff = w[2]
        if eff.get("protect") or eff.get("fail") == "closed":
            raise Unusual("a protected path, or fail closed")
        specs = eff.get("validators") or []
        if content is None or not specs:
            continue
        if any(name not in BUILTIN_VALIDATORS for name, _o in specs):
            raise Unusual("a command or schema validator")
        if eff.get("on_invalid") != "revert":
            continue  # the verdict changes nothing
        for name, options in specs:
            if name == "auto" and os.path.splitext(path)[1].lower() == ".json":
                name = "json"  # validators.for_path
            if name != "json" or options or (eff.get("options") or {}).get("json"):
                raise Unusual("a verdict the lean path does not reach")
        from guardian.validation import json_fast  # only where a rule reverts

        if len(content) > LEAN_VALIDATE_MAX or not json_fast.clean(content):
            raise Unusual("content the full path must judge")


def _post_write(store: LeanStore, p: dict[str, Any], now: int,
                roots: list[Tree]) -> dict[str, Any]:
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
    recorded = _capture(store, plan, session) if watched else []
    rows: list[tuple[int, int, str, int | None, str, bool]] = []
    differs: list[str] = []
    for path, _rid, _rel, fid, head, _st, _new in plan:
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
    return allow(labelled=len(rows), recorded=len(recorded))


# ----------------------------------------------------------------------------- Bash windows
def _changed(store: LeanStore, tree: Tree) -> tuple[list[bytes], list[bytes]]:
    """What a reconcile of the root would look at again: every regular file and symlink the
    scan cache does not say is as it is, in the order its walk finds them (guardian.capture.
    scan.walk: the same stack, the same directory order, the same names, directories and
    files ignored), and the live files it did not find, in the order of the scan state's
    query (the same SQL). Unusual where it would do more than the lean path records, or
    where the lean path cannot tell what is ignored."""
    state = store.scan_state(tree.id)
    # Each directory to walk, with the directories at or above it whose ignore files hold
    # patterns.
    stack: list[tuple[bytes, tuple[str, ...]]] = [(b"", ())]
    base = os.fsencode(tree.path)
    changed: list[bytes] = []
    while stack:
        d, parents = stack.pop()
        ds = os.fsdecode(d)
        try:
            it = os.scandir(base + b"/" + d if d else base)
        except OSError:
            raise Unusual("a directory cannot be read") from None
        with it:
            entries = list(it)
        try:
            if tree.ignore.any_in(ds):
                parents = (*parents, ds)
        except NotPlain:
            raise Unusual("an ignore file the lean path does not read") from None
        rules = tree.rules.chain(ds)  # Unusual for a rule file it has no form of
        for entry in entries:
            name = entry.name
            if name == b".git" or name.startswith(b".~guardian."):
                continue
            rel = d + b"/" + name if d else name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                raise Unusual("cannot stat") from None
            if parents or rules:
                rs = os.fsdecode(rel)
                if (rules and tree.rules.ignored(rs)) or (parents and tree.ignore.child_ignored(
                        parents, rs, is_dir=is_dir)):
                    continue
            if is_dir:
                stack.append((rel, parents))
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                raise Unusual("cannot stat") from None
            kind = st.st_mode & 0o170000
            if kind not in (0o100000, 0o120000):
                continue  # fifos, sockets, devices: not content (scan.walk skips them)
            sig = state.pop(rel, None)
            if sig is None or tuple(sig) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                             st.st_ino, st.st_dev, st.st_mode):
                changed.append(rel)
                if len(changed) > LEAN_MAX_NEW_FILES:
                    raise Unusual("more changes than the lean path records")
    if len(changed) + len(state) > LEAN_MAX_NEW_FILES:
        raise Unusual("more changes than the lean path records")
    return changed, list(state)


def _scan_all(store: LeanStore, roots: list[Tree]) -> list[list[Any]]:
    """Handler._scan_all's plan, before anything is written: per root with changes, what
    its reconcile would record (:func:`_plan_capture`), commit by commit."""
    plans = []
    for tree in roots:
        rels, gone = _changed(store, tree)
        if rels and not store.has_files():
            raise Unusual("a first scan")  # the Recorder's bulk path
        for rel in gone:  # not found: absent, or now ignored (the full path's to record)
            if tree.capture_ignores(os.fsdecode(rel)):
                raise Unusual("a recorded file now ignored")
        # Reconcile's two commits: what the walk found changed, then what it did not find.
        for part in (rels, gone):
            if part:
                plans.append(_plan_capture(store, {
                    os.path.join(tree.path, os.fsdecode(rel)):
                        (tree, rel, tree.rules.effective(os.fsdecode(rel))) for rel in part}))
    if sum(len(p) for p in plans) > LEAN_MAX_NEW_FILES:  # over every root
        raise Unusual("more changes than the lean path records")
    return plans


def _record_windows(store: LeanStore, plans: list[list[Any]]) -> None:
    """Each root's reconcile commit, then guardian.agents.handler.label_windows of what they
    recorded (origin "agent": every one is credited to the windows open now)."""
    recorded = [vid for plan in plans for vid in _capture(store, plan, None)]
    if not recorded:
        return
    opened = store.open_windows(time.time_ns() - MAX_WINDOW_NS)
    if not opened:
        return
    ambiguous = len(opened) > 1
    rows = [(vid, w["id"], w["session"], w["prompt"], "window", ambiguous)
            for vid in recorded for w in opened]
    store.transaction(lambda: store.label(rows), durable=False)


def _window(store: LeanStore, p: dict[str, Any], now: int,
            roots: list[Tree]) -> dict[str, Any]:
    """Handler.pre_window / close_window without a daemon: the roots reconciled (a few
    small files recorded, or nothing), the window opened or closed."""
    session = p["session"]
    call = store.call(session, p["tool_use_id"]) if p["event"] != "pre" and p["tool_use_id"] \
        else None
    plans = _scan_all(store, roots)
    # Every write below; nothing above wrote anything.
    _session_seen(store, p, now)
    _record_windows(store, plans)
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
