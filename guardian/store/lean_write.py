"""The writes of ``guardian-hook`` without a daemon, with the C sqlite module alone.

Why it exists: an agent waits for the hook on every tool call, and the budget is 2.5x a bare
``python3 -c pass``. :mod:`guardian.store.db` costs more than that to import (dataclasses,
typing, pathlib, the sqlite3 package's datetime adapters), before it has done anything. This
module makes the few writes the hook's common cases need (agent sessions, prompts, calls,
labels, the scan cache of a file whose content the store already holds) with ``_sqlite3``,
``os`` and ``fcntl`` only, the same rows :class:`~guardian.store.db.Store` writes (tests/
test_hook_lean.py compares them, row for row, for every event kind).

It writes only to a store that looks exactly like one this Guardian's ``Store`` made or
upgraded: the ``created_ns`` mark, the same ``user_version`` and the same tables with the
same columns (:data:`COLUMNS`, checked against a new store by the tests). Anything else is
:class:`Unusual` and the caller takes the full path (which migrates, or says what is wrong).
It keeps the writer lock protocol of ``Store.open`` / ``Store.leave``: the ``lock`` file's
flock for the whole time, ``writer.pid`` while held, the WAL left for the next writer.
"""

from __future__ import annotations

import fcntl
import os

try:
    import _sqlite3 as sqlite  # the sqlite3 package adds ~3 ms of imports it does not need
except ImportError:  # pragma: no cover - an interpreter without the private module
    import sqlite3 as sqlite  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA_VERSION = 1  # guardian.store.db.SCHEMA_VERSION (a test keeps them equal)
#: guardian.store.db's constants this module applies the same way (a test keeps them equal).
RACY_NS = 50_000_000
WAL_INLINE_CHECKPOINT = 64 * 1024 * 1024
WAL_KEEP_ON_LEAVE = 4 * 1024 * 1024

#: Every table of a store this Guardian writes, and its columns in order (the schema and
#: every migration of guardian.store.db applied). tests/test_hook_lean.py checks it against
#: a new store, so a change there that is not made here fails the suite, not a user's hook.
COLUMNS: dict[str, tuple[str, ...]] = {
    "meta": ("key", "value"),
    "roots": ("id", "path", "added_ns"),
    "objects": ("id", "hash", "size", "stored_size", "codec", "loose", "data", "base_id",
                "depth", "chain_pos"),
    "files": ("id", "root_id", "relpath", "head_id", "live", "size", "mtime_ns", "ctime_ns",
              "ino", "dev", "mode"),
    "versions": ("id", "file_id", "object_id", "present", "kind", "origin", "time_ns", "mode",
                 "size", "valid", "session", "note", "peer_id"),
    "operations": ("id", "time_ns", "op", "path", "duration_ns", "outcome", "error_category",
                   "optimisation", "batch_id", "detail", "items", "bytes", "label", "latency"),
    "problems": ("version_id", "validator", "line", "col", "severity", "message"),
    "batches": ("id", "state", "created_ns", "finished_ns", "session", "files", "error"),
    "batch_entries": ("batch_id", "seq", "root_id", "relpath", "action", "old_present",
                      "old_object_id", "old_mode", "new_object_id", "new_mode", "temp",
                      "created_dirs"),
    "damaged": ("hash", "found_ns", "reason"),
    "alerts": ("id", "time_ns", "severity", "kind", "path", "message", "versions", "key",
               "count", "first_ns", "last_ns", "state", "ack_ns", "resolved_ns"),
    "operation_hours": ("hour", "op", "outcome", "category", "optimisation", "label", "count",
                        "items", "bytes", "dur_sum", "dur_max",
                        *(f"h{i}" for i in range(15)), "lat_count", "lat_sum", "lat_max",
                        *(f"l{i}" for i in range(11))),
    "version_hours": ("hour", "kind", "origin", "count", "bytes"),
    "store_sizes": ("hour", "time_ns", "disk_bytes", "stored_bytes", "objects_bytes",
                    "versions_bytes", "objects"),
    "reports": ("id", "created_ns", "since_ns", "until_ns", "report"),
    "filed_suggestions": ("key", "filed_ns", "url", "title"),
    "agent_sessions": ("id", "agent", "started_ns", "last_ns", "ended_ns", "cwd", "transcript",
                       "detail"),
    "agent_prompts": ("id", "session", "key", "started_ns", "ended_ns", "text"),
    "agent_calls": ("id", "session", "prompt", "tool_use_id", "tool", "kind", "paths",
                    "command", "started_ns", "ended_ns", "outcome", "reason", "expect",
                    "agent_id"),
    "agent_changes": ("version_id", "call_id", "session", "prompt", "how", "ambiguous"),
}

#: Tables guardian.store.db creates only when first written (its ``_LAZY_TABLES``; a test
#: keeps them equal): a store may lack any of them. Present, each must match COLUMNS.
LAZY = frozenset({"problems", "batches", "batch_entries", "damaged", "alerts",
                  "operation_hours", "version_hours", "store_sizes", "reports",
                  "filed_suggestions", "agent_sessions", "agent_prompts", "agent_calls",
                  "agent_changes"})
#: The agent tables' statements as guardian.store.db's ``_LAZY_TABLES`` holds them (a test
#: keeps them equal): the lean path writes these tables, so it creates those a store lacks.
AGENT_DDL = (
    "CREATE TABLE IF NOT EXISTS agent_sessions(\n"
    "    id TEXT PRIMARY KEY,                -- the agent's session_id (or undo-N: an undo)\n"
    "    agent TEXT NOT NULL,                -- claude | gemini | codex | guardian\n"
    "    started_ns INTEGER NOT NULL,\n"
    "    last_ns INTEGER NOT NULL,\n"
    "    ended_ns INTEGER,\n"
    "    cwd TEXT,\n"
    "    transcript TEXT,\n"
    "    detail TEXT                         -- how it started / why it ended\n"
    ") WITHOUT ROWID;",
    "CREATE TABLE IF NOT EXISTS agent_prompts(\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    session TEXT NOT NULL,\n"
    "    key TEXT,                           -- the agent's prompt_id, when it sends one\n"
    "    started_ns INTEGER NOT NULL,\n"
    "    ended_ns INTEGER,\n"
    "    text TEXT\n"
    ");",
    "CREATE INDEX IF NOT EXISTS agent_prompts_by_session ON agent_prompts(session, id);",
    "CREATE TABLE IF NOT EXISTS agent_calls(\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    session TEXT NOT NULL,\n"
    "    prompt INTEGER,\n"
    "    tool_use_id TEXT,\n"
    "    tool TEXT NOT NULL,                 -- the tool's name as the agent sent it\n"
    "    kind TEXT NOT NULL,                 -- write | window | undo\n"
    "    paths TEXT,                         -- JSON list of the paths a write tool names\n"
    "    command TEXT,\n"
    "    started_ns INTEGER NOT NULL,\n"
    "    ended_ns INTEGER,                   -- NULL: still running (an open window)\n"
    "    outcome TEXT NOT NULL,              -- allowed | denied | done | failed | open\n"
    "    reason TEXT,\n"
    "    expect TEXT,                        -- JSON {path: [sha256, version before]} of a"
    " write\n"
    "    agent_id TEXT                       -- the subagent that made the call, if one did\n"
    ");",
    "CREATE INDEX IF NOT EXISTS agent_calls_by_use ON agent_calls(session, tool_use_id);",
    "CREATE INDEX IF NOT EXISTS agent_calls_open ON agent_calls(kind) WHERE ended_ns IS NULL;",
    "CREATE TABLE IF NOT EXISTS agent_changes(\n"
    "    version_id INTEGER NOT NULL,\n"
    "    call_id INTEGER NOT NULL,\n"
    "    session TEXT NOT NULL,\n"
    "    prompt INTEGER,\n"
    "    how TEXT NOT NULL,                  -- tool | window | undo\n"
    "    ambiguous INTEGER NOT NULL DEFAULT 0, -- 1: other windows were open too\n"
    "    PRIMARY KEY(version_id, call_id)\n"
    ") WITHOUT ROWID;",
    "CREATE INDEX IF NOT EXISTS agent_changes_by_session ON agent_changes(session,"
    " version_id);",
    "CREATE INDEX IF NOT EXISTS agent_changes_by_prompt ON agent_changes(prompt);",
)
_AGENT_TABLES = ("agent_sessions", "agent_prompts", "agent_calls", "agent_changes")

#: An agent call's columns, as the Store reads them too (``Store.agent_call`` and the rest).
CALL_COLS = ("id, session, prompt, tool_use_id, tool, kind, paths, command, started_ns,"
             " ended_ns, outcome, reason, expect, agent_id")
_CALL_KEYS = tuple(k.strip() for k in CALL_COLS.split(","))


def call_dict(r: tuple[Any, ...]) -> dict[str, Any]:
    """An ``agent_calls`` row (``CALL_COLS``) as the dict both the Store and this module
    hand out."""
    from guardian import wirejson

    d = dict(zip(_CALL_KEYS, r, strict=True))
    d["paths"] = wirejson.loads(d["paths"] or "[]")
    d["expect"] = wirejson.loads(d["expect"]) if d["expect"] else {}
    return d


class Unusual(Exception):
    """This store is not one the lean path writes exactly as the Store would: take the full
    path (guardian.store.db), which upgrades it or says what is wrong."""


class Busy(Exception):
    """Another process holds the writer lock (a daemon starting, another hook)."""


def _uri(path: str, query: str) -> str:
    """guardian.store.lean.sqlite_uri, inlined (that module is not imported here)."""
    raw = os.fsencode(path)
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-_.~"
    return "file:" + "".join(chr(b) if b in safe else f"%{b:02X}" for b in raw) + "?" + query


class LeanStore:
    """A store opened for writing without guardian.store.db: :func:`open_store`."""

    def __init__(self, path: str, db: Any, lock_fd: int,
                 absent: frozenset[str] = frozenset()) -> None:
        self.path = path
        self.db = db
        self._lock_fd = lock_fd
        self._in_tx = False
        self.absent = absent  # lazy tables this store has not created yet (never agent ones)

    # ----------------------------------------------------------------- lifecycle
    def _release(self) -> None:
        if self._lock_fd >= 0:
            try:  # noqa: SIM105 - contextlib is not on the hook's path
                os.unlink(os.path.join(self.path, "writer.pid"))
            except OSError:
                pass
            try:  # noqa: SIM105 - contextlib is not on the hook's path
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = -1

    def close(self) -> None:
        """Store.close: checkpoint (TRUNCATE), close, give the lock up."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            self.db.close()
        except sqlite.Error:
            pass
        self._release()

    def leave(self) -> Any:
        """Store.leave: give the lock up, leave the WAL for the next writer (checkpointed
        here only past WAL_KEEP_ON_LEAVE); the connection, for the caller to keep."""
        try:
            big = os.stat(os.path.join(self.path, "guardian.db-wal")).st_size > WAL_KEEP_ON_LEAVE
        except OSError:
            big = False
        if big:
            self.close()
        else:
            self._release()
        return self.db

    def transaction(self, fn: Any, *, durable: bool = True) -> Any:
        """``fn()`` in one transaction, as Store.transaction: BEGIN IMMEDIATE, COMMIT with
        synchronous=FULL (``durable``) or NORMAL, ROLLBACK on any exception."""
        db = self.db
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            try:
                out = fn()
            except BaseException:
                self._in_tx = False
                try:  # noqa: SIM105 - contextlib is not on the hook's path
                    db.execute("ROLLBACK")
                except sqlite.Error:
                    pass
                raise
            self._in_tx = False
            db.execute("COMMIT")
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")
        try:
            if os.stat(os.path.join(self.path, "guardian.db-wal")).st_size \
                    > WAL_INLINE_CHECKPOINT:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except OSError:
            pass
        return out

    # ----------------------------------------------------------------- reads
    def roots(self) -> list[tuple[int, str]]:
        return [(int(i), os.fsdecode(bytes(p))) for i, p in
                self.db.execute("SELECT id, path FROM roots ORDER BY id").fetchall()]

    def file_and_head(self, root_id: int, relpath: bytes) -> tuple[int | None, tuple[Any, ...] |
                                                                   None]:
        """(file id, (version id, object id, hash, present, mode, size) of its head)."""
        row = self.db.execute(
            "SELECT f.id, v.id, v.object_id, o.hash, v.present, v.mode, v.size FROM files f"
            " LEFT JOIN versions v ON v.id = f.head_id LEFT JOIN objects o ON o.id = v.object_id"
            " WHERE f.root_id=? AND f.relpath=?", (root_id, relpath)).fetchone()
        if row is None:
            return None, None
        if row[1] is None:
            return int(row[0]), None
        h = row[3]
        return int(row[0]), (int(row[1]), row[2], None if h is None else bytes(h),
                             bool(row[4]), row[5], row[6])

    def is_damaged(self, h: bytes) -> bool:
        if "damaged" in self.absent:  # nothing was ever marked
            return False
        return self.db.execute("SELECT 1 FROM damaged WHERE hash=?", (h,)).fetchone() is not None

    def scan_state(self, root_id: int) -> dict[bytes, tuple[Any, ...] | None]:
        """Store.scan_state of a whole root."""
        rows = self.db.execute("SELECT relpath, size, mtime_ns, ctime_ns, ino, dev, mode"
                               " FROM files WHERE live = 1 AND root_id=?", (root_id,))
        return {bytes(r[0]): (r[1:] if r[1] is not None else None) for r in rows}

    def prompt_of(self, session: str, key: str | None) -> int | None:
        """Store.agent_prompt_of."""
        if key:
            row = self.db.execute("SELECT id FROM agent_prompts WHERE session=? AND key=?"
                                  " ORDER BY id DESC LIMIT 1", (session, key)).fetchone()
            if row:
                return int(row[0])
        row = self.db.execute("SELECT MAX(id) FROM agent_prompts WHERE session=?",
                              (session,)).fetchone()
        return None if row[0] is None else int(row[0])

    def call(self, session: str, tool_use_id: str) -> dict[str, Any] | None:
        """Store.agent_call."""
        row = self.db.execute(f"SELECT {CALL_COLS} FROM agent_calls WHERE session=? AND"
                              " tool_use_id=? ORDER BY id DESC LIMIT 1",
                              (session, tool_use_id)).fetchone()
        return call_dict(row) if row else None

    def open_windows(self, since_ns: int) -> list[dict[str, Any]]:
        """Store.agent_open_windows."""
        return [call_dict(r) for r in self.db.execute(
            f"SELECT {CALL_COLS} FROM agent_calls WHERE kind='window' AND ended_ns IS NULL"
            " AND started_ns >= ? ORDER BY id", (since_ns,))]

    def windows_overlapping(self, call_id: int, start_ns: int, end_ns: int) -> list[int]:
        """Store.agent_windows_overlapping."""
        return [int(r[0]) for r in self.db.execute(
            "SELECT id FROM agent_calls WHERE kind='window' AND id != ? AND started_ns <= ?"
            " AND (ended_ns IS NULL OR ended_ns >= ?)", (call_id, end_ns, start_ns))]

    def versions_after(self, file_id: int, after_id: int) -> list[int]:
        """The ids of Store.versions_after."""
        return [int(r[0]) for r in self.db.execute(
            "SELECT v.id FROM versions v WHERE v.file_id=? AND v.id > ? AND NOT EXISTS"
            " (SELECT 1 FROM agent_changes a WHERE a.version_id = v.id AND a.how = 'tool')"
            " ORDER BY v.id", (file_id, after_id))]

    def version_at(self, file_id: int, time_ns: int) -> int | None:
        """The id of Store.version_at."""
        row = self.db.execute("SELECT v.id FROM versions v WHERE v.file_id=? AND v.time_ns<=?"
                              " ORDER BY v.id DESC LIMIT 1", (file_id, time_ns)).fetchone()
        return None if row is None else int(row[0])

    def cache_of(self, file_id: int) -> tuple[Any, ...] | None:
        """The scan cache's columns of a file (all None: no entry)."""
        row = self.db.execute("SELECT size, mtime_ns, ctime_ns, ino, dev, mode FROM files"
                              " WHERE id=?", (file_id,)).fetchone()
        return None if row is None else tuple(row)

    def object_of(self, h: bytes) -> int | None:
        """Objects.lookup: the id of the object holding bytes with this hash."""
        row = self.db.execute("SELECT id FROM objects WHERE hash=?", (h,)).fetchone()
        return None if row is None else int(row[0])

    def has_files(self) -> bool:
        return self.db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None

    def inode_elsewhere(self, st: os.stat_result, file_id: int | None) -> bool:
        """Whether another file was last seen with this inode (Store.cache_by_inode: what
        the Recorder's move detection looks at; the full path works out a move)."""
        return self.db.execute("SELECT 1 FROM files WHERE ino=? AND dev=? AND id IS NOT ?"
                               " LIMIT 1", (st.st_ino, st.st_dev, file_id)).fetchone() \
            is not None

    # ----------------------------------------------------------------- writes
    def object_add(self, h: bytes, size: int, codec: str, stored: bytes) -> int:
        """Objects.put of a new small object as a whole copy (the row inline: durable with
        the commit that names it)."""
        cur = self.db.execute(
            "INSERT INTO objects(hash, size, stored_size, codec, loose, data, base_id, depth,"
            " chain_pos) VALUES(?,?,?,?,?,?,?,?,?)",
            (h, size, len(stored), codec, 0, stored, None, 0, 0))
        return int(cur.lastrowid or 0)

    def new_file(self, root_id: int, relpath: bytes) -> int:
        """Store.new_file."""
        cur = self.db.execute("INSERT INTO files(root_id, relpath) VALUES(?, ?)",
                              (root_id, relpath))
        return int(cur.lastrowid or 0)

    def add_version(self, file_id: int, object_id: int, kind: str, origin: str, now: int,
                    st: os.stat_result, size: int, session: str | None) -> int:
        """Store.add_version of a present version read with ``st`` (the file's head, its
        scan cache refreshed)."""
        cur = self.db.execute(
            "INSERT INTO versions(file_id, object_id, present, kind, origin, time_ns, mode, size,"
            " valid, session, note, peer_id) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (file_id, object_id, 1, kind, origin, now, st.st_mode, size, None, session, None,
             None))
        vid = int(cur.lastrowid or 0)
        self.db.execute(
            "UPDATE files SET head_id=?, live=?, size=?, mtime_ns=?, ctime_ns=?, ino=?, dev=?,"
            " mode=? WHERE id=?", (vid, 1, *signature(st, now), file_id))
        return vid

    def add_tombstone(self, file_id: int, origin: str, now: int, session: str | None) -> int:
        """Store.add_version of a deletion (no object, no stat: the scan cache cleared)."""
        cur = self.db.execute(
            "INSERT INTO versions(file_id, object_id, present, kind, origin, time_ns, mode, size,"
            " valid, session, note, peer_id) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (file_id, None, 0, "deleted", origin, now, None, None, None, session, None, None))
        vid = int(cur.lastrowid or 0)
        self.db.execute(
            "UPDATE files SET head_id=?, live=?, size=?, mtime_ns=?, ctime_ns=?, ino=?, dev=?,"
            " mode=? WHERE id=?", (vid, 0, None, None, None, None, None, None, file_id))
        return vid

    def cache_put(self, file_id: int, st: os.stat_result, seen_ns: int) -> None:
        """Store.cache_put (a stat within RACY_NS of its change is marked racy: size -1)."""
        self.db.execute(
            "UPDATE files SET size=?, mtime_ns=?, ctime_ns=?, ino=?, dev=?, mode=? WHERE id=?",
            (*signature(st, seen_ns), file_id))

    def cache_drop(self, file_id: int) -> None:
        self.db.execute(
            "UPDATE files SET size=NULL, mtime_ns=NULL, ctime_ns=NULL, ino=NULL, dev=NULL,"
            " mode=NULL WHERE id=?", (file_id,))

    def session_seen(self, session: str, agent: str, now: int, *, cwd: str | None = None,
                     transcript: str | None = None, detail: str | None = None,
                     ended: bool = False) -> None:
        """Store.agent_session_seen."""
        self.db.execute(
            "INSERT INTO agent_sessions(id, agent, started_ns, last_ns, ended_ns, cwd,"
            " transcript, detail) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
            " last_ns=excluded.last_ns, ended_ns=COALESCE(excluded.ended_ns, ended_ns),"
            " cwd=COALESCE(cwd, excluded.cwd), transcript=COALESCE(transcript,"
            " excluded.transcript), detail=COALESCE(excluded.detail, detail)",
            (session, agent, now, now, now if ended else None, cwd, transcript, detail))

    def prompt_start(self, session: str, key: str | None, text: str | None, now: int) -> None:
        """Store.agent_prompt_start."""
        self.prompt_end(session, now)
        self.db.execute("INSERT INTO agent_prompts(session, key, started_ns, text)"
                        " VALUES(?,?,?,?)", (session, key, now, text))

    def prompt_end(self, session: str, now: int) -> None:
        self.db.execute("UPDATE agent_prompts SET ended_ns=? WHERE session=? AND ended_ns IS"
                        " NULL", (now, session))

    def call_add(self, session: str, prompt: int | None, tool_use_id: str | None, tool: str,
                 kind: str, now: int, *, paths: list[str] | tuple[str, ...] = (),
                 command: str | None = None, outcome: str, reason: str | None = None,
                 expect: dict[str, Any] | None = None, agent_id: str | None = None) -> int:
        """Store.agent_call_add."""
        from guardian import wirejson

        cur = self.db.execute(
            "INSERT INTO agent_calls(session, prompt, tool_use_id, tool, kind, paths, command,"
            " started_ns, ended_ns, outcome, reason, expect, agent_id)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (session, prompt, tool_use_id, tool, kind, wirejson.dumps(list(paths)), command, now,
             None, outcome, reason, None if expect is None else wirejson.dumps(expect), agent_id))
        return int(cur.lastrowid or 0)

    def call_finish(self, call_id: int, now: int, outcome: str,
                    reason: str | None = None) -> None:
        """Store.agent_call_finish."""
        self.db.execute("UPDATE agent_calls SET ended_ns=?, outcome=?, reason=COALESCE(?, reason)"
                        " WHERE id=?", (now, outcome, reason, call_id))

    def label(self, rows: list[tuple[int, int, str, int | None, str, bool]]) -> None:
        """Store.agent_label."""
        self.db.executemany("INSERT OR IGNORE INTO agent_changes VALUES(?,?,?,?,?,?)",
                            [(v, c, s, p, h, int(a)) for v, c, s, p, h, a in rows])
        self.db.executemany("UPDATE versions SET session=? WHERE id=? AND session IS NULL",
                            [(s, v) for v, _c, s, _p, _h, a in rows if not a])


def signature(st: os.stat_result, seen_ns: int) -> tuple[int, int, int, int, int, int]:
    """guardian.store.db._signature: what the scan cache keeps of a stat."""
    racy = seen_ns - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS
    return (-1 if racy else st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev,
            st.st_mode)


def open_store(path: str) -> LeanStore:
    """Store.open(path, write=True) of an existing store, for the lean path: Busy when the
    writer lock is held, Unusual when anything is not exactly as expected."""
    uid = os.geteuid()
    try:
        st = os.lstat(path)
        db_st = os.lstat(os.path.join(path, "guardian.db"))
        obj_st = os.lstat(os.path.join(path, "objects"))
    except OSError:
        raise Unusual("no store files") from None
    for s in (st, obj_st):  # ensure_private_dir's conditions, already met
        if (s.st_mode & 0o170000) != 0o040000 or s.st_uid != uid or s.st_mode & 0o077:
            raise Unusual("store directory not private")
    if (db_st.st_mode & 0o170000) != 0o100000 or db_st.st_uid != uid or db_st.st_mode & 0o077:
        raise Unusual("database file not private")
    try:
        fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        raise Unusual("no lock file") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy from None
    except OSError:
        os.close(fd)
        raise Unusual("cannot lock") from None
    try:
        db = sqlite.connect(os.path.join(path, "guardian.db"), isolation_level=None,
                            check_same_thread=False, timeout=30)
        try:
            absent = _check(db)
            # The connection as Store.open configures it.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA cache_size=-16000")
            db.execute("PRAGMA temp_store=MEMORY")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(f"PRAGMA journal_size_limit={WAL_INLINE_CHECKPOINT // 2}")
            # As Store.open: a store that cannot take a write lock is found now, before
            # anything is written (the full path then says why).
            db.execute("BEGIN IMMEDIATE")
            if absent.intersection(_AGENT_TABLES):
                # The tables this path writes, as Store's connection creates them when first
                # written (all four at once: one commit, on a store's first agent hook).
                for stmt in AGENT_DDL:
                    db.execute(stmt)
                db.execute("COMMIT")
                absent = absent.difference(_AGENT_TABLES)
            else:
                db.execute("ROLLBACK")
        except BaseException:
            db.close()
            raise
    except sqlite.Error as e:
        _unlock(fd)
        raise Unusual(f"sqlite: {e}") from None
    except BaseException:
        _unlock(fd)
        raise
    try:  # Store.open's _write_pid
        tmp = os.path.join(path, f"writer.pid.{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(str(os.getpid()).encode())
        os.replace(tmp, os.path.join(path, "writer.pid"))
    except OSError:
        pass
    return LeanStore(path, db, fd, absent)


def _unlock(fd: int) -> None:
    try:  # noqa: SIM105 - contextlib is not on the hook's path
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
    os.close(fd)


def _check(db: Any) -> frozenset[str]:
    """Unusual unless the database is a store of this schema, every migration applied;
    returns the lazy tables it does not have yet."""
    db.execute("PRAGMA busy_timeout=30000")
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        raise Unusual(f"journal mode {mode}")
    if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        raise Unusual("schema version")
    have: dict[str, list[str]] = {}
    for table, col in db.execute(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p"
            " WHERE m.type = 'table' ORDER BY m.name, p.cid"):
        have.setdefault(table, []).append(col)
    absent = frozenset(t for t in COLUMNS if t not in have)
    if (not absent <= LAZY or any(t not in COLUMNS for t in have)
            or any(tuple(have[t]) != cols for t, cols in COLUMNS.items() if t in have)):
        raise Unusual("tables differ")
    if db.execute("SELECT 1 FROM meta WHERE key='created_ns'").fetchone() is None:
        raise Unusual("no created_ns mark")
    return absent
