"""The store: SQLite (WAL, synchronous=FULL) holding files, versions, objects and the scan cache.

One writer per store (a filelock on ``lock``), many readers: WAL lets ``log``/``show``/``diff``
read while the daemon writes. Content lives in ``guardian.objects``; this module owns the schema
and every query, so the rest of the code never writes SQL.

A version with ``present = 0`` is a tombstone (the file did not exist from then on). A present
version with ``object_id`` NULL kept only metadata (the file was over the size cap).

A damaged database (SQLite's "database disk image is malformed", "file is not a database")
surfaces from any query as :class:`DamagedStoreError`: one line naming the store and what to
do, never a raw ``sqlite3`` error. A directory is a store when its ``guardian.db`` has the
``created_ns`` mark in ``meta`` (written in the transaction that creates the schema); only a
caller that asks (``create=True``: ``watch``, ``snapshot``, ``apply``) makes one, and only in a
new or empty directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from guardian.closing import Closing
from guardian.errors import GuardianError, NotFoundError, StoreBusyError, StoreError
from guardian.kinds import BatchState, Origin, VersionKind
from guardian.locations import ROOTS_FILE, ensure_private_dir
from guardian.paths import Root, prefix_range
from guardian.store import lean_write
from guardian.store.lean import sqlite_uri
from guardian.store.lean import store_size as store_size
from guardian.store.tree import PathTree

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roots(
    id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE, added_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects(
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,          -- SHA-256 of the raw bytes
    size INTEGER NOT NULL,              -- raw size
    stored_size INTEGER NOT NULL,       -- size after compression
    codec TEXT NOT NULL,                -- 'zstd' | 'raw' | 'zstd-delta' (see _DELTA_COLUMNS)
    loose INTEGER NOT NULL DEFAULT 0,   -- 1: bytes live in objects/ab/cdef..., data is NULL
    data BLOB
);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY,
    root_id INTEGER NOT NULL,
    relpath BLOB NOT NULL,
    head_id INTEGER,                    -- newest version
    live INTEGER NOT NULL DEFAULT 0,    -- the newest version is present (not a tombstone)
    -- The scan cache: the stat of the file when its head was last confirmed. NULL: unknown.
    -- size -1 marks a racy entry (re-read on the next scan). ctime is there because content
    -- changes always move it, and utime cannot set it back.
    size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER, dev INTEGER, mode INTEGER,
    UNIQUE(root_id, relpath)
);
CREATE INDEX IF NOT EXISTS files_by_ino ON files(ino) WHERE ino IS NOT NULL;
CREATE TABLE IF NOT EXISTS versions(
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    object_id INTEGER,
    present INTEGER NOT NULL,           -- 0: tombstone
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    mode INTEGER,
    size INTEGER,
    valid INTEGER,                      -- NULL: not validated; 1 valid; 0 invalid
    session TEXT,
    note TEXT,
    peer_id INTEGER                     -- the other path of a move
);
CREATE INDEX IF NOT EXISTS versions_by_file ON versions(file_id, id);
CREATE INDEX IF NOT EXISTS versions_by_object ON versions(object_id);
CREATE TABLE IF NOT EXISTS operations(
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    op TEXT NOT NULL,
    path BLOB,
    duration_ns INTEGER NOT NULL,
    outcome TEXT NOT NULL,              -- ok | error | rejected
    error_category TEXT,
    optimisation TEXT,
    batch_id INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS operations_by_time ON operations(time_ns);
"""

#: Tables a store creates when it first writes to one (see :data:`_LAZY_TABLES`).
_LAZY_SCHEMA = """
CREATE TABLE IF NOT EXISTS problems(
    version_id INTEGER NOT NULL,
    validator TEXT NOT NULL,
    line INTEGER,
    col INTEGER,
    severity TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS problems_by_version ON problems(version_id);
CREATE TABLE IF NOT EXISTS batches(
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,                -- prepared | committed | done | rolled_back
    created_ns INTEGER NOT NULL,
    finished_ns INTEGER,
    session TEXT,
    files INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS batch_entries(             -- the intent log of unfinished batches
    batch_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    root_id INTEGER NOT NULL,
    relpath BLOB NOT NULL,
    action TEXT NOT NULL,               -- write | delete | mkdir
    old_present INTEGER NOT NULL,
    old_object_id INTEGER,
    old_mode INTEGER,
    new_object_id INTEGER,
    new_mode INTEGER,
    temp BLOB,                          -- the temp file's name beside the target
    created_dirs TEXT,                  -- JSON list of directories this batch created
    PRIMARY KEY(batch_id, seq)
);
CREATE TABLE IF NOT EXISTS damaged(                   -- objects found not to match their hash
    hash BLOB PRIMARY KEY,              -- by hash, not id: gc may free an id for reuse
    found_ns INTEGER NOT NULL,
    reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts(
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    severity TEXT NOT NULL,             -- info | warning | critical
    kind TEXT NOT NULL,                 -- invalid | reverted | revert-failed | rules | untrusted …
    path BLOB,
    message TEXT NOT NULL,
    versions TEXT,                      -- JSON list of the version ids involved
    -- guardian.observe's columns (older stores got them by ALTER, in this order)
    key TEXT,                           -- the dedupe key: same key, same alert
    count INTEGER NOT NULL DEFAULT 1,
    first_ns INTEGER,
    last_ns INTEGER,
    state TEXT NOT NULL DEFAULT 'open', -- open | acknowledged | resolved
    ack_ns INTEGER,
    resolved_ns INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_unresolved ON alerts(key) WHERE state != 'resolved';
"""

#: Tables of guardian.observe (metrics rolled up per hour, saved reports, filed suggestions),
#: created when first written like every table of :data:`_LAZY_TABLES`. :func:`_migrate_observe`
#: adds the columns below to the tables older stores already have when a writer opens one;
#: every added column has a default or may be NULL, so a Guardian that knows nothing of them
#: still reads and writes such a store.
_OBSERVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS operation_hours(
    hour INTEGER NOT NULL,              -- time_ns // 3600e9
    op TEXT NOT NULL, outcome TEXT NOT NULL, category TEXT NOT NULL,
    optimisation TEXT NOT NULL, label TEXT NOT NULL,
    count INTEGER NOT NULL, items INTEGER NOT NULL, bytes INTEGER NOT NULL,
    dur_sum INTEGER NOT NULL, dur_max INTEGER NOT NULL,
    {dur_cols},
    lat_count INTEGER NOT NULL DEFAULT 0, lat_sum INTEGER NOT NULL DEFAULT 0,
    lat_max INTEGER NOT NULL DEFAULT 0,
    {lat_cols},
    PRIMARY KEY(hour, op, outcome, category, optimisation, label)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS version_hours(
    hour INTEGER NOT NULL, kind TEXT NOT NULL, origin TEXT NOT NULL,
    count INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY(hour, kind, origin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_sizes(
    hour INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, disk_bytes INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL, objects_bytes INTEGER NOT NULL,
    versions_bytes INTEGER NOT NULL, objects INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reports(
    id INTEGER PRIMARY KEY, created_ns INTEGER NOT NULL, since_ns INTEGER NOT NULL,
    until_ns INTEGER NOT NULL, report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS filed_suggestions(
    key TEXT PRIMARY KEY, filed_ns INTEGER NOT NULL, url TEXT, title TEXT
) WITHOUT ROWID;
"""
#: Columns guardian.observe adds to tables older stores already have: (table, column, type).
_OBSERVE_COLUMNS = (
    ("operations", "items", "INTEGER"),       # files or versions the row covers (NULL: 1)
    ("operations", "bytes", "INTEGER"),       # bytes written or recorded
    ("operations", "label", "TEXT"),          # a template, a reconcile reason, a validator
    ("operations", "latency", "TEXT"),        # capture: JSON histogram of write -> committed
    ("alerts", "key", "TEXT"),                # the dedupe key: same key, same alert
    ("alerts", "count", "INTEGER NOT NULL DEFAULT 1"),
    ("alerts", "first_ns", "INTEGER"),
    ("alerts", "last_ns", "INTEGER"),
    ("alerts", "state", "TEXT NOT NULL DEFAULT 'open'"),  # open | acknowledged | resolved
    ("alerts", "ack_ns", "INTEGER"),
    ("alerts", "resolved_ns", "INTEGER"),
)
#: Upper bounds (seconds) of the operation-duration and capture-latency histograms; a row
#: keeps, per bound, how many values were at most it (cumulative, as Prometheus counts).
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 30.0, 60.0)
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
_DUR_COLS = tuple(f"h{i}" for i in range(len(DURATION_BUCKETS_S)))
_LAT_COLS = tuple(f"l{i}" for i in range(len(LATENCY_BUCKETS_S)))
_HOUR_NS = 3_600_000_000_000


#: Tables of guardian.agents: agent sessions, their prompts, their tool calls (a write tool's,
#: or a Bash command's attribution window) and which versions each call made; created when
#: first written, like every table of :data:`_LAZY_TABLES`.
_AGENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_sessions(
    id TEXT PRIMARY KEY,                -- the agent's session_id (or undo-N: an undo)
    agent TEXT NOT NULL,                -- claude | gemini | codex | guardian
    started_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    cwd TEXT,
    transcript TEXT,
    detail TEXT                         -- how it started / why it ended
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent_prompts(
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    key TEXT,                           -- the agent's prompt_id, when it sends one
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    text TEXT
);
CREATE INDEX IF NOT EXISTS agent_prompts_by_session ON agent_prompts(session, id);
CREATE TABLE IF NOT EXISTS agent_calls(
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    prompt INTEGER,
    tool_use_id TEXT,
    tool TEXT NOT NULL,                 -- the tool's name as the agent sent it
    kind TEXT NOT NULL,                 -- write | window | undo
    paths TEXT,                         -- JSON list of the paths a write tool names
    command TEXT,
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER,                   -- NULL: still running (an open window)
    outcome TEXT NOT NULL,              -- allowed | denied | done | failed | open
    reason TEXT,
    expect TEXT,                        -- JSON {path: [sha256, version before]} of a write
    agent_id TEXT                       -- the subagent that made the call, if one did
);
CREATE INDEX IF NOT EXISTS agent_calls_by_use ON agent_calls(session, tool_use_id);
CREATE INDEX IF NOT EXISTS agent_calls_open ON agent_calls(kind) WHERE ended_ns IS NULL;
CREATE TABLE IF NOT EXISTS agent_changes(
    version_id INTEGER NOT NULL,
    call_id INTEGER NOT NULL,
    session TEXT NOT NULL,
    prompt INTEGER,
    how TEXT NOT NULL,                  -- tool | window | undo
    ambiguous INTEGER NOT NULL DEFAULT 0, -- 1: other windows were open too
    PRIMARY KEY(version_id, call_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS agent_changes_by_session ON agent_changes(session, version_id);
CREATE INDEX IF NOT EXISTS agent_changes_by_prompt ON agent_changes(prompt);
"""


#: Columns of delta-encoded objects (guardian.store.objects), added to a store of any age when
#: a writer opens it: base_id names the object whose raw bytes a 'zstd-delta' frame refers
#: to (NULL: a whole copy), depth how many links a read decodes, chain_pos the position in
#: its skip-delta chain. Readers of a store without them see every object as a whole copy.
_DELTA_COLUMNS = (
    ("base_id", "INTEGER"),
    ("depth", "INTEGER NOT NULL DEFAULT 0"),
    ("chain_pos", "INTEGER NOT NULL DEFAULT 0"),
)


def _migrate_deltas(db: sqlite3.Connection) -> None:
    have = {r[1] for r in db.execute("PRAGMA table_info(objects)")}
    missing = [(c, d) for c, d in _DELTA_COLUMNS if c not in have]
    if not missing:
        return
    script = "".join(f"ALTER TABLE objects ADD COLUMN {c} {d};" for c, d in missing)
    script += ("CREATE INDEX IF NOT EXISTS objects_by_base ON objects(base_id)"
               " WHERE base_id IS NOT NULL;")
    db.executescript(f"BEGIN IMMEDIATE;{script}COMMIT;")


def _migrate_observe(db: sqlite3.Connection) -> None:
    """Add guardian.observe's columns to the tables of this store that lack them (a writer
    opening a store of any earlier release upgrades it in place, in one transaction). A
    table not created yet gets them from its lazy definition."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = []
    for table in ("operations", "alerts"):
        if table in tables:
            have = {r[1] for r in db.execute(f"PRAGMA main.table_info({table})")}
            missing += [(t, c, d) for t, c, d in _OBSERVE_COLUMNS if t == table and c not in have]
    if not missing:
        return
    script = "".join(f"ALTER TABLE {t} ADD COLUMN {c} {d};" for t, c, d in missing)
    if "alerts" in tables:
        script += ("CREATE INDEX IF NOT EXISTS alerts_unresolved ON alerts(key)"
                   " WHERE state != 'resolved';")
    db.executescript(f"BEGIN IMMEDIATE;{script}COMMIT;")


def _split_tables(script: str) -> dict[str, tuple[str, ...]]:
    """table -> its CREATE TABLE and CREATE INDEX statements, from a schema script."""
    out: dict[str, list[str]] = {}
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if not sqlite3.complete_statement(buf):
            continue
        stmt, buf = buf.strip(), ""
        words = stmt.split("(", 1)[0].split()
        if words[:2] == ["CREATE", "TABLE"]:
            out[words[-1]] = [stmt]
        else:  # CREATE INDEX IF NOT EXISTS name ON table(...)
            out[words[words.index("ON") + 1]].append(stmt)
    return {t: tuple(v) for t, v in out.items()}


#: Tables that exist only once something is written to them, each with its indexes. A store
#: pays a page per table and per index (16 KiB each, see PAGE_SIZE) even when empty: these
#: are 22 of the 37 pages a store had before its first version, and most stores never hold
#: a batch, an alert, a damaged mark or an agent session. The store's connection makes them
#: when a statement finds one missing (:meth:`_Connection._provide`): a writer creates it
#: when it first writes to it, and reads before then (a reader's, or a writer's) see an
#: empty temp table of the same shape.
_LAZY_TABLES: dict[str, tuple[str, ...]] = _split_tables(
    _LAZY_SCHEMA + _OBSERVE_SCHEMA.format(
        dur_cols=", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _DUR_COLS),
        lat_cols=", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _LAT_COLS))
    + _AGENTS_SCHEMA)
_LAZY_MARK = "guardian: lazy table "


def _lazy_table_of(e: sqlite3.DatabaseError) -> str | None:
    """The lazy table a statement failed on: missing, or (a write) only shadowed."""
    msg = str(e)
    if msg.startswith("no such table: "):
        name = msg[len("no such table: "):].strip()
        name = name.split(".", 1)[1] if name.startswith(("main.", "temp.")) else name
    elif msg.startswith(_LAZY_MARK):
        name = msg[len(_LAZY_MARK):]
    else:
        return None
    return name if name in _LAZY_TABLES else None


# Columns of a version row joined with its file and object, in this order.
_VERSION_COLS = (
    "v.id, v.file_id, f.root_id, f.relpath, v.object_id, o.hash, v.present, v.kind, v.origin, "
    "v.time_ns, v.mode, v.size, v.valid, v.session, v.note, v.peer_id"
)
_VERSION_FROM = (
    "versions v JOIN files f ON f.id = v.file_id LEFT JOIN objects o ON o.id = v.object_id"
)


class Head(NamedTuple):
    """What a batch needs of a file's newest version (see :meth:`Store.heads`)."""

    object_id: int | None
    hash: bytes | None
    present: bool
    mode: int | None

    @classmethod
    def of(cls, v: Version | None) -> Head | None:
        return None if v is None else cls(v.object_id, v.hash, v.present, v.mode)


@dataclass(frozen=True)
class Version:
    id: int
    file_id: int
    root_id: int
    relpath: bytes
    object_id: int | None
    hash: bytes | None
    present: bool
    kind: VersionKind
    origin: Origin
    time_ns: int
    mode: int | None
    size: int | None
    valid: bool | None
    session: str | None
    note: str | None
    peer_id: int | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Version:
        (vid, fid, rid, rel, oid, h, present, kind, origin, t, mode, size, valid, sess, note,
         peer) = row
        return cls(vid, fid, rid, bytes(rel), oid, bytes(h) if h is not None else None,
                   bool(present), kind, origin, t, mode, size,
                   None if valid is None else bool(valid), sess, note, peer)

    @property
    def sha256(self) -> str | None:
        return self.hash.hex() if self.hash is not None else None


@dataclass(frozen=True)
class CacheEntry:
    """What the last scan saw of a file: if it still looks the same, it was not re-read."""

    file_id: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    mode: int

    def matches(self, st: os.stat_result) -> bool:
        return (
            self.size == st.st_size
            and self.mtime_ns == st.st_mtime_ns
            and self.ctime_ns == st.st_ctime_ns
            and self.ino == st.st_ino
            and self.dev == st.st_dev
            and self.mode == st.st_mode
        )


@dataclass(frozen=True)
class NewVersion:
    """A version about to be written (the store assigns id and time)."""

    file_id: int
    object_id: int | None
    present: bool
    kind: VersionKind
    origin: Origin
    mode: int | None
    size: int | None
    note: str | None = None
    peer_id: int | None = None
    valid: bool | None = None
    session: str | None = None


# A racy stat: mtime within this of the moment we looked. Timestamps are coarse (jiffies), so a
# second write in the same tick with the same size would look unchanged; re-read such files.
RACY_NS = 50_000_000


class DamagedStoreError(StoreError, sqlite3.DatabaseError):
    """The store's database is damaged: SQLite found a malformed page, or the file is not a
    database. Still an ``sqlite3.DatabaseError``, so code that tolerates database errors (a
    rollback, a best-effort alert) keeps tolerating it."""


#: SQLite's primary result codes for damage (the low byte of an extended code).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def is_damage(e: BaseException) -> bool:
    """Whether ``e`` is SQLite reporting a damaged database (not a busy, full or locked one)."""
    if isinstance(e, DamagedStoreError):
        return True
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(e)
    return "malformed" in text or "not a database" in text


def damaged(path: Path, e: BaseException) -> DamagedStoreError:
    """The one line a user sees for a damaged store: which store, what SQLite said, what to do."""
    if isinstance(e, DamagedStoreError):
        return e
    return DamagedStoreError(
        f"store {path}: database is damaged ({e}); run `guardian verify --store {path} "
        "--full` to see what is hit, and keep a copy of the store before anything writes to it")


class _Cursor(sqlite3.Cursor):
    """A cursor whose reads turn SQLite's damage errors into :class:`DamagedStoreError`
    (a SELECT reads its pages while it is being fetched, not only in ``execute``)."""

    connection: _Connection

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as e:
            raise self.connection.translate(e) from None

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as e:
            raise self.connection.translate(e) from None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.DatabaseError as e:
            raise self.connection.translate(e) from None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # Rows a chunk at a time: a generator step per row costs less than a Python
        # __next__, and the scan state of a big tree is read through here.
        fetch = sqlite3.Cursor.fetchmany
        try:
            while rows := fetch(self, 256):
                yield from rows
        except sqlite3.DatabaseError as e:
            raise self.connection.translate(e) from None


class _Connection(sqlite3.Connection):
    """The store's connection: every statement's damage error names the store, and a table
    of :data:`_LAZY_TABLES` that a statement finds missing is provided (:meth:`_provide`)."""

    store_path: Path = Path()
    #: The writer's connection creates a missing lazy table when it writes to it; a reader's
    #: only ever shadows it with an empty temp table.
    creates_tables: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shadows: set[str] = set()  # lazy tables answered by an empty temp table
        self._shadow_schema = -1  # main's schema_version when the shadows were checked

    def translate(self, e: sqlite3.DatabaseError) -> sqlite3.DatabaseError:
        return damaged(self.store_path, e) if is_damage(e) else e

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return self._run(sqlite3.Cursor.execute, sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        if not isinstance(parameters, (list, tuple)):
            parameters = list(parameters)  # a retry (see _run) must see every row again
        return self._run(sqlite3.Cursor.executemany, sql, parameters)

    def executescript(self, script: str, /) -> _Cursor:
        return self._run(sqlite3.Cursor.executescript, script)

    def _run(self, method: Callable[..., object], *args: Any) -> _Cursor:
        """``method`` on a new :class:`_Cursor`, its damage errors naming the store; a
        statement that finds a lazy table missing runs again once it is provided (a missing
        table fails the statement before it changes anything)."""
        if self._shadows and not self.creates_tables:
            self._drop_stale_shadows()
        for _ in range(len(_LAZY_TABLES) + 1):
            cur = self.cursor(_Cursor)
            try:
                method(cur, *args)
                return cur
            except sqlite3.DatabaseError as e:
                table = None if method is sqlite3.Cursor.executescript else _lazy_table_of(e)
                if table is None:
                    raise self.translate(e) from None
                written = str(e).startswith(_LAZY_MARK)
            self._provide(table, str(args[0]), written=written)
        raise StoreError(f"store {self.store_path}: cannot provide the tables of {args[0]!r}")

    def _provide(self, table: str, sql: str, *, written: bool) -> None:
        """Make ``table`` answer: the writer creates it (with its indexes) when the statement
        inserts, in the transaction the statement is in; any other statement (a reader's
        always) gets an empty temp table of the same shape, whose triggers refuse every
        write, so no row can ever land in it (an UPDATE or DELETE of an empty table changes
        nothing, and fires none): on such a refusal the writer drops it, creates the real
        one and runs the statement again."""
        plain = sqlite3.Cursor(self)
        inserts = sql.lstrip()[:7].upper().startswith(("INSERT", "REPLACE"))
        if self.creates_tables and (written or inserts):
            plain.execute(f"DROP TABLE IF EXISTS temp.{table}")
            self._shadows.discard(table)
            for stmt in _LAZY_TABLES[table]:
                plain.execute(stmt)
            return
        if written:  # a reader's write: it could only have failed on a read-only store
            raise sqlite3.OperationalError("attempt to write a readonly database")
        if self.creates_tables or not self._shadows:
            self._shadow_schema = int(
                plain.execute("PRAGMA main.schema_version").fetchone()[0])
        for stmt in _LAZY_TABLES[table]:
            if stmt.startswith("CREATE TABLE "):
                plain.execute("CREATE TEMP TABLE " + stmt[len("CREATE TABLE "):])
            else:
                name = stmt.split()[5]  # CREATE INDEX IF NOT EXISTS name ON ...
                plain.execute(stmt.replace(f" {name} ON ", f" temp.{name} ON ", 1))
        for op in ("INSERT", "UPDATE", "DELETE"):
            plain.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS lazy_{table}_{op.lower()}"
                          f" BEFORE {op} ON {table} BEGIN"
                          f" SELECT RAISE(ABORT, '{_LAZY_MARK}{table}'); END")
        self._shadows.add(table)

    def _drop_stale_shadows(self) -> None:
        """A reader's shadows of tables a writer has created since (the shadow would hide
        them): checked when main's schema changes, dropped when the real table exists."""
        plain = sqlite3.Cursor(self)
        with contextlib.suppress(sqlite3.DatabaseError):  # busy, or a cursor still open
            version = int(plain.execute("PRAGMA main.schema_version").fetchone()[0])
            if version == self._shadow_schema:
                return
            for table in sorted(self._shadows):
                if plain.execute("SELECT 1 FROM main.sqlite_master WHERE type='table' AND"
                                 " name=?", (table,)).fetchone() is not None:
                    plain.execute(f"DROP TABLE IF EXISTS temp.{table}")
                    self._shadows.discard(table)
            self._shadow_schema = version


def _connect(target: str | Path, path: Path, *, uri: bool = False) -> _Connection:
    db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False,
                         timeout=30, factory=_Connection)
    assert isinstance(db, _Connection)
    db.store_path = path
    return db


#: Names a store directory holds; a directory with only these (and no marked guardian.db)
#: is a store whose creation was interrupted, which may be finished.
_STORE_NAMES = frozenset({"guardian.db", "guardian.db-wal", "guardian.db-shm",
                          "guardian.db-journal", "lock", "objects", "writer.pid", ROOTS_FILE,
                          f"{ROOTS_FILE}.tmp"})


def check_new_store_dir(path: Path) -> None:
    """Raise unless ``path`` may become a store: absent, empty, or holding only what an
    interrupted creation left (never a directory of someone's files, never ``/tmp``)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise StoreError(f"{path}: not a directory") from None
    except OSError as e:
        raise StoreError(f"store {path}: cannot read: {e.strerror or e}") from None
    strays = [n for n in names if n not in _STORE_NAMES and not n.startswith("writer.pid.")]
    if "objects" in names and not strays:
        try:
            if os.listdir(path / "objects"):
                strays.append("objects/")
        except OSError:
            strays.append("objects")
    if strays:
        raise StoreError(
            f"no Guardian store at {path}, and it is not empty: refusing to make one there "
            "(name an existing store, or a new or empty directory)")


class Store(PathTree, Closing):
    """A Guardian store directory. Use :meth:`open`."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock: _WriterLock | None) -> None:
        self.path = path
        self.db = db
        self._lock = lock
        self._in_tx = False
        #: Commits since the last checkpoint (the daemon checkpoints when idle if any).
        self.commits_since_checkpoint = 0
        self._damaged: set[bytes] | None = None
        self._marks_in_tx: list[tuple[bytes, str]] = []
        self._object_deltas: bool | None = None

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, path: Path, *, write: bool, lock_timeout: float = 0.0,
             create: bool = False) -> Store:
        """Open the store at ``path``; ``write`` takes the writer lock.

        ``create`` (``watch``, ``snapshot`` and ``apply`` only) makes a new store when ``path``
        is absent, empty or an interrupted creation; a directory holding anything else is
        refused before anything in it is touched (no lock file, no chmod). Without it, a
        directory that is not a store is ``no Guardian store at DIR`` (exit 2).
        """
        path = Path(os.path.abspath(path))
        db_path = path / "guardian.db"
        if not write:
            return cls(path, _open_read_only(path, db_path), None)
        if os.path.lexists(db_path):
            mark = _mark_of_file(path, db_path)
            if mark == "foreign":
                raise NotFoundError(f"no Guardian store at {path} ({db_path.name} is not a "
                                    "Guardian database)")
            if mark == "empty" and not create:
                raise NotFoundError(f"no Guardian store at {path}")
            if mark == "empty":
                check_new_store_dir(path)
        elif not create:
            raise NotFoundError(f"no Guardian store at {path}")
        else:
            check_new_store_dir(path)
        try:
            ensure_private_dir(path)
            (path / "objects").mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise StoreError(f"store {path}: cannot create: {e.strerror or e}") from None
        lock = _acquire_writer_lock(path, lock_timeout)
        try:
            db = _connect(db_path, path)
            db.creates_tables = True
            _configure(db)
            _ensure_schema(db)
            db.execute("PRAGMA wal_autocheckpoint=0")  # see checkpoint()
            # A reset WAL is cut back to this size (so its size tells what it holds).
            db.execute(f"PRAGMA journal_size_limit={WAL_INLINE_CHECKPOINT // 2}")
            os.chmod(db_path, 0o600)
            # Fail now, with a clear message, if the store cannot take a write lock.
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except GuardianError:
            lock.release()
            raise
        except sqlite3.Error as e:
            lock.release()
            raise StoreError(f"store {path}: cannot write: {e}") from None
        except OSError as e:
            lock.release()
            raise StoreError(f"store {path}: cannot write: {e.strerror or e}") from None
        _write_pid(path)
        return cls(path, db, lock)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._lock is not None:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.path / "writer.pid").unlink()
            self._lock.release()
            self._lock = None

    def leave(self, *, checkpoint_later: bool = False) -> sqlite3.Connection:
        """Give the writer lock up but leave the database open, for a process that exits
        with ``os._exit`` right after (``guardian-hook``): closing would checkpoint the WAL
        into the database (two fsyncs, and two more to start the next WAL), while what this
        process committed is in the WAL already, durable where it had to be (a "before" copy
        commits with synchronous=FULL). The next writer reads it from there, as after a
        crash, and checkpoints it; a WAL past ``WAL_KEEP_ON_LEAVE`` is checkpointed here.
        Returns the connection, which the caller keeps referenced until it exits (garbage
        collected, it would close and checkpoint anyway, which is safe, only slower).

        ``checkpoint_later`` (``guardian apply``, whose batch leaves tens of MB in the WAL):
        whatever the WAL's size, its checkpoint is left to the detached process the command
        hands its leftovers to as it ends (``guardian.batch.io.hand_off_releases``), which
        checkpoints the stores in :data:`LEFT_TO_CHECKPOINT` once this process is gone."""
        db = self.db
        if checkpoint_later:
            LEFT_TO_CHECKPOINT.append(self.path / "guardian.db")
        with contextlib.suppress(OSError):
            if not checkpoint_later and os.stat(
                    self.path / "guardian.db-wal").st_size > WAL_KEEP_ON_LEAVE:
                self.close()
                return db
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.path / "writer.pid").unlink()
            self._lock.release()
            self._lock = None
        return db

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """One durable commit (synchronous=FULL) for everything inside: a group commit.

        ``durable=False`` commits without the fsync (synchronous=NORMAL, which in WAL mode
        never corrupts): the caller makes it durable itself, by a ``syncfs`` of the store's
        filesystem or :meth:`sync_wal`, or leaves it to the next durable commit (the WAL is
        append-only: syncing it syncs everything before).
        """
        if self._in_tx:
            yield
            return
        if not durable:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            try:
                yield
            except BaseException:
                self._in_tx = False
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                self._after_rollback()
                raise
            self._in_tx = False
            self.db.execute("COMMIT")
            self._marks_in_tx.clear()
            self.commits_since_checkpoint += 1
        finally:
            if not durable:
                self.db.execute("PRAGMA synchronous=FULL")
        with contextlib.suppress(OSError):
            if os.stat(self.path / "guardian.db-wal").st_size > WAL_INLINE_CHECKPOINT:
                self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL's pages into the database (PASSIVE: readers and their snapshots are
        not waited for), outside any transaction; the next write starts the WAL over."""
        if self._in_tx:
            return
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.commits_since_checkpoint = 0

    def page_size(self) -> int:
        return int(self.db.execute("PRAGMA page_size").fetchone()[0])

    def sync_wal(self) -> None:
        """fsync the write-ahead log: every commit so far is durable."""
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self.path / "guardian.db-wal", os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @property
    def object_deltas(self) -> bool:
        """Whether the objects table has the delta columns (a writer adds them; a reader of
        an older store reads every object as a whole copy). Only a yes is remembered: a
        reader open while a writer upgrades the store sees the columns from then on."""
        if not self._object_deltas:
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(objects)").fetchall()}
            self._object_deltas = "base_id" in cols
        return self._object_deltas

    # ----------------------------------------------------------------- damaged objects
    @property
    def damaged(self) -> set[bytes]:
        """Hashes of objects found not to match their hash and not rewritten since.

        Set by ``guardian verify`` and by any read of an object that fails its check; the
        next intact copy of those bytes that comes in (a capture, a snapshot, a batch's old
        contents, ``verify --repair``) rewrites the object (see ``Objects.put``).
        """
        if self._damaged is None:
            try:
                rows = self.db.execute("SELECT hash FROM damaged").fetchall()
            except sqlite3.OperationalError:  # read-only, and older than the table
                rows = []
            self._damaged = {bytes(r[0]) for r in rows}
        return self._damaged

    def paths_of_object(self, object_id: int, roots: Container[int]) -> list[tuple[int, bytes]]:
        """Every (root, relpath) a version of which used the object, in ``roots``; files
        whose newest version it is first (the likeliest to still hold the bytes)."""
        rows = self.db.execute(
            "SELECT f.root_id, f.relpath, MAX(f.head_id = v.id) FROM versions v"
            " JOIN files f ON f.id = v.file_id WHERE v.object_id=? GROUP BY f.id"
            " ORDER BY 3 DESC, f.id", (object_id,)).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows if int(r[0]) in roots]

    def mark_damaged(self, h: bytes, reason: str) -> None:
        """Remember that object ``h`` is damaged (a writer stores it; a mark made inside a
        transaction that rolls back is stored again after the rollback)."""
        self.damaged.add(h)
        if self._lock is None:
            return
        self.db.execute("INSERT OR REPLACE INTO damaged VALUES(?,?,?)",
                        (h, time.time_ns(), reason[:500]))
        if self._in_tx:
            self._marks_in_tx.append((h, reason))

    def clear_damaged(self, h: bytes) -> None:
        """Object ``h`` was rewritten from bytes that hash right."""
        self.damaged.discard(h)
        self.db.execute("DELETE FROM damaged WHERE hash=?", (h,))

    def damaged_reasons(self) -> dict[bytes, str]:
        try:
            rows = self.db.execute("SELECT hash, reason FROM damaged").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {bytes(h): str(r) for h, r in rows}

    def _after_rollback(self) -> None:
        marks, self._marks_in_tx = self._marks_in_tx, []
        self._damaged = None  # a rewrite rolled back too: read the marks again
        for h, reason in marks:
            with contextlib.suppress(sqlite3.Error):
                self.mark_damaged(h, reason)

    # ----------------------------------------------------------------- meta
    def meta_get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    def meta_incr(self, key: str) -> int:
        n = int(self.meta_get(key) or 0) + 1
        self.meta_set(key, str(n))
        return n

    # ----------------------------------------------------------------- roots
    def roots(self) -> list[Root]:
        rows = self.db.execute("SELECT id, path FROM roots ORDER BY id").fetchall()
        return [Root(rid, Path(os.fsdecode(bytes(p)))) for rid, p in rows]

    def add_roots(self, paths: Iterable[Path]) -> list[Root]:
        """Register roots (idempotent) and record them beside the DB for store discovery."""
        wanted = list(paths)
        with self.transaction():
            for p in wanted:
                self.db.execute(
                    "INSERT OR IGNORE INTO roots(path, added_ns) VALUES(?, ?)",
                    (os.fsencode(p), time.time_ns()),
                )
        roots = self.roots()
        _write_roots_file(self.path, [r.path for r in roots])
        by_path = {r.path: r for r in roots}
        return [by_path[p] for p in wanted]

    # ----------------------------------------------------------------- files
    def file_id(self, root_id: int, relpath: bytes, *, create: bool = True) -> int | None:
        row = self.db.execute(
            "SELECT id FROM files WHERE root_id=? AND relpath=?", (root_id, relpath)
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        cur = self.db.execute(
            "INSERT INTO files(root_id, relpath) VALUES(?, ?)", (root_id, relpath)
        )
        return int(cur.lastrowid or 0)

    def has_files(self) -> bool:
        return self.db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None

    def file_and_head(self, root_id: int, relpath: bytes) -> tuple[int | None, Version | None]:
        """The file's id and newest version, in one query (the hot path of capture)."""
        row = self.db.execute(
            f"SELECT f.id, {_VERSION_COLS} FROM files f LEFT JOIN versions v ON v.id = f.head_id"
            " LEFT JOIN objects o ON o.id = v.object_id WHERE f.root_id=? AND f.relpath=?",
            (root_id, relpath)).fetchone()
        if row is None:
            return None, None
        return int(row[0]), (Version.from_row(row[1:]) if row[1] is not None else None)

    def heads(self, root_id: int, relpaths: list[bytes]) -> dict[bytes, Head]:
        """What a batch needs of the newest version of each of ``relpaths`` that has one (bulk
        :meth:`file_and_head`, without building whole :class:`Version` objects)."""
        out: dict[bytes, Head] = {}
        for i in range(0, len(relpaths), 500):
            part = relpaths[i:i + 500]
            marks = ",".join("?" * len(part))
            for rel, oid, h, present, mode in self.db.execute(
                    "SELECT f.relpath, v.object_id, o.hash, v.present, v.mode FROM files f"
                    " JOIN versions v ON v.id = f.head_id LEFT JOIN objects o"
                    f" ON o.id = v.object_id WHERE f.root_id=? AND f.relpath IN ({marks})",
                    (root_id, *part)):
                out[bytes(rel)] = Head(oid, None if h is None else bytes(h), bool(present), mode)
        return out

    def head(self, file_id: int) -> Version | None:
        row = self.db.execute(
            f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.id = "
            "(SELECT head_id FROM files WHERE id=?)", (file_id,)
        ).fetchone()
        return Version.from_row(row) if row else None

    def live_files(self, root_id: int, prefix: bytes = b"") -> dict[bytes, Version]:
        """Files whose newest version is present, under ``prefix`` (b"": the whole root)."""
        where, args = _under("f.relpath", prefix)
        rows = self.db.execute(f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM}"
                               " WHERE v.id = f.head_id AND f.live=1 AND f.root_id=?" + where,
                               (root_id, *args))
        return {v.relpath: v for v in map(Version.from_row, rows)}

    # ----------------------------------------------------------------- versions
    def new_file(self, root_id: int, relpath: bytes) -> int:
        cur = self.db.execute("INSERT INTO files(root_id, relpath) VALUES(?, ?)",
                              (root_id, relpath))
        return int(cur.lastrowid or 0)

    def add_version(self, nv: NewVersion, time_ns: int | None = None,
                    st: os.stat_result | None = None) -> int:
        """Append a version and make it the file's head; ``st`` also refreshes the scan cache
        (a tombstone, or a version without ``st``, clears it)."""
        t = time.time_ns() if time_ns is None else time_ns
        cur = self.db.execute(
            "INSERT INTO versions(file_id, object_id, present, kind, origin, time_ns, mode, size,"
            " valid, session, note, peer_id) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (nv.file_id, nv.object_id, int(nv.present), nv.kind, nv.origin, t, nv.mode, nv.size,
             None if nv.valid is None else int(nv.valid), nv.session, nv.note, nv.peer_id),
        )
        vid = int(cur.lastrowid or 0)
        sig = _signature(st, t) if st is not None and nv.present else (None,) * 6
        self.db.execute(
            "UPDATE files SET head_id=?, live=?, size=?, mtime_ns=?, ctime_ns=?, ino=?, dev=?,"
            " mode=? WHERE id=?", (vid, int(nv.present), *sig, nv.file_id))
        return vid

    def add_new_files(self, rows: list[tuple[int, bytes, NewVersion, os.stat_result]],
                      time_ns: int) -> list[tuple[int, int]]:
        """Bulk path of a first scan: (root id, relpath, version, stat) for paths that have no
        file row yet; one version each. Ids are assigned here (we hold the writer lock)."""
        db = self.db
        fid = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM files").fetchone()[0]) + 1
        vid = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM versions").fetchone()[0]) + 1
        files, versions = [], []
        vids: list[tuple[int, int]] = []
        for root_id, relpath, nv, st in rows:
            files.append((fid, root_id, relpath, vid, 1, *_signature(st, time_ns)))
            versions.append((vid, fid, nv.object_id, 1, nv.kind, nv.origin, time_ns, nv.mode,
                             nv.size, None if nv.valid is None else int(nv.valid), nv.session,
                             nv.note))
            vids.append((fid, vid))
            fid += 1
            vid += 1
        db.executemany("INSERT INTO versions(id, file_id, object_id, present, kind, origin,"
                       " time_ns, mode, size, valid, session, note)"
                       " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", versions)
        db.executemany("INSERT INTO files(id, root_id, relpath, head_id, live, size, mtime_ns,"
                       " ctime_ns, ino, dev, mode) VALUES(?,?,?,?,?,?,?,?,?,?,?)", files)
        return vids

    # ----------------------------------------------------------------- the batch journal
    def begin_batch(self, session: str | None, files: int) -> int:
        """A new batch, ``prepared``: its entries follow in the same transaction."""
        cur = self.db.execute(
            "INSERT INTO batches(state, created_ns, session, files) VALUES('prepared',?,?,?)",
            (time.time_ns(), session, files))
        return int(cur.lastrowid or 0)

    def add_batch_entries(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """One entry per target: (batch, seq, root, relpath, action, old_present, old object,
        old mode, new object, new mode, temp name, extra JSON)."""
        self.db.executemany("INSERT INTO batch_entries VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def commit_batch(self, batch_id: int) -> None:
        """The commit point's row (the caller's transaction makes it durable)."""
        self.db.execute("UPDATE batches SET state='committed' WHERE id=?", (batch_id,))

    def end_batch(self, batch_id: int, state: Literal["done", "rolled_back"],
                  error: str | None = None) -> None:
        """The batch is over: its state, when, why (rolled back), and its entries dropped."""
        self.db.execute("UPDATE batches SET state=?, finished_ns=?, error=? WHERE id=?",
                        (state, time.time_ns(), error[:500] if error else None, batch_id))
        self.db.execute("DELETE FROM batch_entries WHERE batch_id=?", (batch_id,))

    def unfinished_batches(self) -> list[tuple[int, BatchState, str | None]]:
        """(id, state, session) of every batch a crash interrupted, oldest first."""
        return [(int(r[0]), r[1], r[2]) for r in self.db.execute(
            "SELECT id, state, session FROM batches WHERE state IN ('prepared', 'committed')"
            " ORDER BY id")]

    def batch_entries(self, batch_id: int) -> list[tuple[Any, ...]]:
        """(root, relpath, action, old_present, old object, old mode, new object, new mode,
        temp, extra JSON) of each entry, in order."""
        return self.db.execute(
            "SELECT root_id, relpath, action, old_present, old_object_id, old_mode,"
            " new_object_id, new_mode, temp, created_dirs FROM batch_entries WHERE batch_id=?"
            " ORDER BY seq", (batch_id,)).fetchall()

    def add_versions(self, items: list[tuple[int, bytes, NewVersion, os.stat_result | None]],
                     time_ns: int | None = None) -> list[int]:
        """Bulk :meth:`add_version`: (root id, relpath, version, stat), creating file rows as
        needed (``NewVersion.file_id`` is ignored). Ids are assigned here (writer lock)."""
        t = time.time_ns() if time_ns is None else time_ns
        db = self.db
        known: dict[tuple[int, bytes], int] = {}
        by_root: dict[int, list[bytes]] = {}
        for rid, rel, _nv, _st in items:
            by_root.setdefault(rid, []).append(rel)
        for rid, rels in by_root.items():
            for i in range(0, len(rels), 500):
                part = rels[i:i + 500]
                marks = ",".join("?" * len(part))
                for fid, rel in db.execute(
                        f"SELECT id, relpath FROM files WHERE root_id=? AND relpath IN ({marks})",
                        (rid, *part)):
                    known[(rid, bytes(rel))] = int(fid)
        next_fid = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM files").fetchone()[0]) + 1
        vid = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM versions").fetchone()[0]) + 1
        new_files, updates, versions, vids = [], [], [], []
        for rid, rel, nv, st in items:
            sig = _signature(st, t) if st is not None and nv.present else (None,) * 6
            fid = known.get((rid, rel))
            if fid is None:
                fid = known[(rid, rel)] = next_fid
                next_fid += 1
                new_files.append((fid, rid, rel, vid, int(nv.present), *sig))
            else:
                updates.append((vid, int(nv.present), *sig, fid))
            versions.append((vid, fid, nv.object_id, int(nv.present), nv.kind, nv.origin, t,
                             nv.mode, nv.size, None if nv.valid is None else int(nv.valid),
                             nv.session, nv.note, nv.peer_id))
            vids.append(vid)
            vid += 1
        db.executemany("INSERT INTO versions(id, file_id, object_id, present, kind, origin,"
                       " time_ns, mode, size, valid, session, note, peer_id)"
                       " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", versions)
        db.executemany("INSERT INTO files(id, root_id, relpath, head_id, live, size, mtime_ns,"
                       " ctime_ns, ino, dev, mode) VALUES(?,?,?,?,?,?,?,?,?,?,?)", new_files)
        db.executemany("UPDATE files SET head_id=?, live=?, size=?, mtime_ns=?, ctime_ns=?,"
                       " ino=?, dev=?, mode=? WHERE id=?", updates)
        return vids

    def version(self, version_id: int) -> Version | None:
        row = self.db.execute(
            f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.id=?", (version_id,)
        ).fetchone()
        return Version.from_row(row) if row else None

    def versions(self, version_ids: Sequence[int]) -> list[Version]:
        """The versions of these ids that exist, in no particular order (ids in parts of
        500, under SQLite's limit of bound parameters)."""
        out: list[Version] = []
        for at in range(0, len(version_ids), 500):
            part = version_ids[at:at + 500]
            out += [Version.from_row(r) for r in self.db.execute(
                f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.id IN "
                f"({','.join('?' * len(part))})", tuple(part))]
        return out

    def versions_of(self, file_id: int, *, limit: int | None = None) -> list[Version]:
        sql = f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.file_id=? ORDER BY v.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Version.from_row(r) for r in self.db.execute(sql, (file_id,))]

    def versions_under(
        self, root_id: int | None, prefix: bytes = b"", *, limit: int | None = None
    ) -> list[Version]:
        """Newest first: every version of files under ``prefix`` (or across the store)."""
        sql = f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM}"
        args: tuple[Any, ...] = ()
        if root_id is not None:
            where, under = _under("f.relpath", prefix)
            sql += " WHERE f.root_id=?" + where
            args = (root_id, *under)
        sql += " ORDER BY v.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Version.from_row(r) for r in self.db.execute(sql, args)]

    def version_at(self, file_id: int, time_ns: int) -> Version | None:
        row = self.db.execute(
            f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.file_id=? AND v.time_ns<=? "
            "ORDER BY v.id DESC LIMIT 1", (file_id, time_ns)
        ).fetchone()
        return Version.from_row(row) if row else None

    def states_at(self, root_id: int, prefix: bytes, time_ns: int) -> dict[bytes, Version]:
        """For each file under ``prefix``: its newest version at or before ``time_ns``."""
        where, args = _under("f2.relpath", prefix)
        rows = self.db.execute(
            f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.id IN ("
            " SELECT MAX(v2.id) FROM versions v2 JOIN files f2 ON f2.id = v2.file_id"
            f" WHERE f2.root_id=?{where} AND v2.time_ns <= ? GROUP BY v2.file_id)",
            (root_id, *args, time_ns),
        )
        return {v.relpath: v for v in map(Version.from_row, rows)}

    def versions_using(self, object_id: int) -> list[int]:
        """Ids of the versions whose content is this object, oldest first."""
        return [int(r[0]) for r in self.db.execute(
            "SELECT id FROM versions WHERE object_id=? ORDER BY id", (object_id,))]

    def has_history(self, root_id: int, relpath: bytes) -> bool:
        """Whether anything was ever recorded at ``relpath`` or under it."""
        if self.file_id(root_id, relpath, create=False) is not None:
            return True
        lo, hi = prefix_range(relpath)
        sql = "SELECT 1 FROM files WHERE root_id=?"
        args: tuple[Any, ...] = (root_id,)
        if relpath:
            sql += " AND relpath >= ? AND relpath < ?"
            args += (lo, hi)
        return self.db.execute(sql + " LIMIT 1", args).fetchone() is not None

    def recent_unlabelled_heads(self, since_ns: int, origin: Origin) -> list[Version]:
        """Versions recorded at or after ``since_ns`` with ``origin`` and no session that are
        still their file's newest, newest first. Ids grow with time: windows of ids are read
        from the newest back (each twice the last) until one reaches before ``since_ns``, so
        this costs the recent end of the table, not all of it."""
        top = self.db.execute("SELECT MAX(id) FROM versions").fetchone()[0]
        out: list[Version] = []
        hi, step = (int(top) if top is not None else 0), 1024
        while hi > 0:
            lo = max(0, hi - step)
            out += [Version.from_row(r) for r in self.db.execute(
                f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.id > ? AND v.id <= ?"
                " AND v.time_ns >= ? AND v.origin = ? AND v.session IS NULL"
                " AND f.head_id = v.id ORDER BY v.id DESC", (lo, hi, since_ns, origin))]
            oldest = self.db.execute("SELECT MIN(time_ns) FROM versions WHERE id > ? AND id <= ?",
                                     (lo, hi)).fetchone()[0]
            if oldest is None or oldest < since_ns:
                break
            hi, step = lo, step * 2
        return out

    def set_session(self, version_ids: Iterable[int], session: str) -> None:
        """Label versions that have no session yet (a label is never replaced)."""
        self.db.executemany("UPDATE versions SET session=? WHERE id=? AND session IS NULL",
                            [(session, vid) for vid in version_ids])

    # ----------------------------------------------------------------- scan cache
    def cache_put(self, file_id: int, st: os.stat_result, *, seen_ns: int | None = None) -> None:
        """Remember what we saw; a stat taken within RACY_NS of its change is marked racy."""
        seen = time.time_ns() if seen_ns is None else seen_ns
        self.db.execute(
            "UPDATE files SET size=?, mtime_ns=?, ctime_ns=?, ino=?, dev=?, mode=? WHERE id=?",
            (*_signature(st, seen), file_id))

    def cache_drop(self, file_id: int) -> None:
        self.db.execute(
            "UPDATE files SET size=NULL, mtime_ns=NULL, ctime_ns=NULL, ino=NULL, dev=NULL,"
            " mode=NULL WHERE id=?", (file_id,))

    def scan_state(self, root_id: int, prefix: bytes = b"") -> dict[bytes, tuple[int, ...] | None]:
        """Live files under ``prefix`` -> their stat signature when last seen (None: unknown).

        One table, plain tuples: this is the hot path of every re-scan.
        """
        where, args = _under("relpath", prefix)
        rows = self.db.execute("SELECT relpath, size, mtime_ns, ctime_ns, ino, dev, mode"
                               " FROM files WHERE live = 1 AND root_id=?" + where,
                               (root_id, *args))
        return {bytes(r[0]): (r[1:] if r[1] is not None else None) for r in rows}

    def first_versions(self, root_id: int, prefix: bytes = b"") -> dict[bytes, tuple[str, int]]:
        """relpath -> (kind, time) of the first version of every file at or under ``prefix``
        (a restore of a big tree asks this of every file at once)."""
        where, args = _under("f.relpath", prefix)
        rows = self.db.execute(
            "SELECT f.relpath, v.kind, v.time_ns FROM files f JOIN versions v ON v.id ="
            " (SELECT MIN(v2.id) FROM versions v2 WHERE v2.file_id = f.id) WHERE f.root_id=?"
            + where, (root_id, *args))
        return {bytes(rel): (kind, int(t)) for rel, kind, t in rows}

    def cache_by_inode(self, dev: int, ino: int) -> list[tuple[int, int, bytes, CacheEntry]]:
        """(file_id, root_id, relpath, entry) for files last seen with this inode."""
        rows = self.db.execute(
            "SELECT id, root_id, relpath, id, size, mtime_ns, ctime_ns, ino, dev, mode FROM files"
            " WHERE ino=? AND dev=?", (ino, dev),
        ).fetchall()
        return [(int(r[0]), int(r[1]), bytes(r[2]), CacheEntry(*r[3:])) for r in rows]

    # ----------------------------------------------------------------- validation
    def set_verdict(self, version_id: int, valid: bool | None,
                    kind: VersionKind | None = None) -> None:
        """Record what validation said of a version (and, for a rejected one, its new kind)."""
        if kind is None:
            self.db.execute("UPDATE versions SET valid=? WHERE id=?",
                            (None if valid is None else int(valid), version_id))
        else:
            self.db.execute("UPDATE versions SET valid=?, kind=? WHERE id=?",
                            (None if valid is None else int(valid), kind, version_id))

    def set_verdicts(self, verdicts: Sequence[tuple[int, bool | None]]) -> set[int]:
        """:meth:`set_verdict` of many versions (id, valid) at once; returns the ids that
        exist (a version gc'd meanwhile has nothing to record)."""
        # A statement per 400 versions, not a step per version: sqlite3 hands the GIL over
        # at every step, and this runs at up to 1,000 versions/s (guardian.store.commit_rows).
        live: set[int] = set()
        for i in range(0, len(verdicts), 400):
            part = [(vid, None if valid is None else int(valid))
                    for vid, valid in verdicts[i:i + 400]]
            marks = ",".join(["(?,?)"] * len(part))
            args = [x for row in part for x in row]
            if sqlite3.sqlite_version_info >= (3, 33):
                self.db.execute(f"UPDATE versions SET valid=u.column2 FROM (VALUES {marks})"
                                " AS u WHERE versions.id=u.column1", args)
                ids = ",".join("?" * len(part))
                got = self.db.execute(f"SELECT json_group_array(id) FROM versions WHERE id IN"
                                      f" ({ids})", [vid for vid, _ in part]).fetchone()[0]
                live.update(json.loads(got))
            else:  # pragma: no cover - SQLite before 3.33 has no UPDATE FROM
                self.db.executemany("UPDATE versions SET valid=?2 WHERE id=?1", part)
                live.update(r[0] for r in self.db.execute(
                    f"SELECT id FROM versions WHERE id IN ({','.join('?' * len(part))})",
                    [vid for vid, _ in part]))
        return live

    def add_problems(self, version_id: int,
                     rows: Iterable[tuple[str, int | None, int | None, str, str]]) -> None:
        """(validator, line, column, severity, message) of a version's problems."""
        self.db.executemany("INSERT INTO problems VALUES(?,?,?,?,?,?)",
                            ((version_id, *r) for r in rows))

    def add_alert(self, severity: str, kind: str, message: str, path: bytes | None,
                  versions: list[int] | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO alerts(time_ns, severity, kind, path, message, versions)"
            " VALUES(?,?,?,?,?,?)",
            (time.time_ns(), severity, kind, path, message, json.dumps(versions or [])))
        return int(cur.lastrowid or 0)

    def alerts(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest alerts, newest first."""
        rows = self.db.execute(
            "SELECT id, time_ns, severity, kind, path, message, versions FROM alerts"
            " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "time_ns": r[1], "severity": r[2], "kind": r[3],
                 "path": os.fsdecode(r[4]) if r[4] is not None else None, "message": r[5],
                 "versions": json.loads(r[6] or "[]")} for r in rows]

    # ----------------------------------------------------------------- operations
    def record_operation(
        self, op: str, *, duration_ns: int, outcome: str, path: bytes | None = None,
        error_category: str | None = None, optimisation: str | None = None,
        batch_id: int | None = None, detail: dict[str, Any] | None = None,
        label: str | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO operations(time_ns, op, path, duration_ns, outcome, error_category,"
            " optimisation, batch_id, detail, label) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (time.time_ns(), op, path, duration_ns, outcome, error_category, optimisation,
             batch_id, json.dumps(detail) if detail else None, label),
        )

    def record_operations(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Bulk :meth:`record_operation`: (op, duration_ns, outcome, path, error_category,
        optimisation, batch_id) each, at one time, optionally followed by (bytes, label)."""
        now = time.time_ns()
        self.db.executemany(
            "INSERT INTO operations(time_ns, op, path, duration_ns, outcome, error_category,"
            " optimisation, batch_id, bytes, label) VALUES(?,?,?,?,?,?,?,?,?,?)",
            [(now, r[0], r[3], r[1], r[2], r[4], r[5], r[6], *(*r[7:9], None, None)[:2])
             for r in rows])

    # ----------------------------------------------------------------- stats
    def counts(self) -> dict[str, int]:
        q = self.db.execute
        files = q("SELECT COUNT(*) FROM files WHERE live=1").fetchone()[0]
        versions = q("SELECT COUNT(*) FROM versions").fetchone()[0]
        objects, stored = q("SELECT COUNT(*), COALESCE(SUM(stored_size),0) FROM objects").fetchone()
        # The newest version recorded (by id: MAX(time_ns) would read every version, and
        # the status line asks every couple of seconds).
        newest = q("SELECT time_ns FROM versions ORDER BY id DESC LIMIT 1").fetchone()
        return {"files": files, "versions": versions, "objects": objects,
                "stored_bytes": stored, "last_version_ns": newest[0] if newest else 0}

    def operation_outcomes(self) -> list[tuple[str, str | None]]:
        """(outcome, optimisation) of every recorded operation (``guardian bench``'s tally)."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT outcome, optimisation FROM operations")]

    # ----------------------------------------------------------------- health samples
    def object_ids(self) -> list[int]:
        return [int(r[0]) for r in self.db.execute("SELECT id FROM objects ORDER BY id")]

    def object_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM objects").fetchone()[0])

    def sample_ids(self, table: Literal["objects", "versions"], n: int) -> list[int]:
        """Up to ``n`` random distinct ids of stored objects, or of versions with content,
        ascending: each the first row at or after a random id (a few index probes, however
        big the store; ids after gaps are likelier, which a health sample can afford)."""
        import random

        cond = " AND present = 1 AND object_id IS NOT NULL" if table == "versions" else ""
        top = self.db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
        if not top:
            return []
        rng = random.SystemRandom()
        ids: set[int] = set()
        first = f"SELECT id FROM {table} WHERE id >= ?{cond} ORDER BY id LIMIT 1"
        for _ in range(n * 3):
            if len(ids) >= n:
                break
            row = self.db.execute(first, (rng.randint(1, top),)).fetchone()
            if row is None:
                row = self.db.execute(first, (1,)).fetchone()
            if row is None:
                break
            ids.add(int(row[0]))
        return sorted(ids)

    def quick_check(self) -> list[str]:
        """SQLite's ``quick_check``: ``["ok"]``, or what it found damaged."""
        return [str(r[0]) for r in self.db.execute("PRAGMA quick_check").fetchall()]

    # ----------------------------------------------------------------- observe
    # guardian.observe's queries: operations rolled up per hour, alerts with a dedupe key and
    # a state, saved reports, filed suggestions (see _OBSERVE_SCHEMA).
    def observe_ready(self) -> bool:
        """Whether the store has guardian.observe's columns: a reader of a store that no
        writer of this release has opened yet sees raw operations and legacy alerts only."""
        ready = getattr(self, "_observe_ready", None)
        if ready is None:
            # operations has guardian.observe's columns, and alerts too if it exists yet (a
            # table created lazily has them from the start; see _LAZY_TABLES).
            ops = {r[1] for r in self.db.execute("PRAGMA main.table_info(operations)")}
            alerts = {r[1] for r in self.db.execute("PRAGMA main.table_info(alerts)")}
            ready = self._observe_ready = "label" in ops and (not alerts or "state" in alerts)
        return bool(ready)

    def record_observed(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Operations guardian.observe measured: (time_ns, op, duration_ns, outcome, path,
        category, optimisation, items, bytes, label, latency JSON, detail JSON) each."""
        self.db.executemany(
            "INSERT INTO operations(time_ns, op, duration_ns, outcome, path, error_category,"
            " optimisation, items, bytes, label, latency, detail)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def _last_id_before(self, table: str, lo: int, cutoff_ns: int) -> int:
        """The largest id after ``lo`` whose row is older than ``cutoff_ns``, by bisection on
        ids (rows are appended in time order; versions have no time index)."""
        q = f"SELECT id, time_ns FROM {table} WHERE id > ? ORDER BY id LIMIT 1"
        top = self.db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
        best, hi = lo, top
        while best < hi:
            mid = (best + hi + 1) // 2
            row = self.db.execute(q, (mid - 1,)).fetchone()
            if row is None or row[0] > hi:
                hi = mid - 1
            elif row[1] < cutoff_ns:
                best = row[0]
            else:
                hi = mid - 1
        return best

    def rollup_pending(self, cutoff_ns: int) -> int:
        """Operation rows older than ``cutoff_ns`` not rolled up yet (about: ids are dense)."""
        wm = int(self.meta_get("observe.ops_rolled") or 0)
        return self._last_id_before("operations", wm, cutoff_ns) - wm

    def rollup(self, cutoff_ns: int, *, limit: int = 200_000,
               keep_raw_ns: int | None = None) -> dict[str, int]:
        """Fold operation and version rows older than ``cutoff_ns`` into per-hour rows (at most
        ``limit`` of each per call; call inside a transaction), and delete operation rows
        already folded that are older than ``keep_raw_ns``."""
        import json as _json

        out = {"operations": 0, "versions": 0, "deleted": 0}
        wm = int(self.meta_get("observe.ops_rolled") or 0)
        hi = min(self._last_id_before("operations", wm, cutoff_ns), wm + limit)
        if hi > wm:
            edges = [int(b * 1e9) for b in DURATION_BUCKETS_S]
            cols = ", ".join(_DUR_COLS)
            sums = ", ".join(f"SUM(duration_ns <= {e})" for e in edges)
            upd = ", ".join(f"{c} = {c} + excluded.{c}" for c in _DUR_COLS)
            self.db.execute(
                "INSERT INTO operation_hours(hour, op, outcome, category, optimisation, label,"
                f" count, items, bytes, dur_sum, dur_max, {cols})"
                f" SELECT time_ns / {_HOUR_NS}, op, outcome, COALESCE(error_category, ''),"
                " COALESCE(optimisation, ''), COALESCE(label, ''), COUNT(*),"
                " SUM(COALESCE(items, 1)), SUM(COALESCE(bytes, 0)), SUM(duration_ns),"
                f" MAX(duration_ns), {sums} FROM operations WHERE id > ? AND id <= ?"
                " GROUP BY 1, 2, 3, 4, 5, 6"
                " ON CONFLICT(hour, op, outcome, category, optimisation, label) DO UPDATE SET"
                " count = count + excluded.count, items = items + excluded.items,"
                " bytes = bytes + excluded.bytes, dur_sum = dur_sum + excluded.dur_sum,"
                f" dur_max = MAX(dur_max, excluded.dur_max), {upd}", (wm, hi))
            lat: dict[tuple[Any, ...], list[int]] = {}
            for row in self.db.execute(
                    f"SELECT time_ns / {_HOUR_NS}, op, outcome, COALESCE(error_category, ''),"
                    " COALESCE(optimisation, ''), COALESCE(label, ''), latency FROM operations"
                    " WHERE id > ? AND id <= ? AND latency IS NOT NULL", (wm, hi)):
                h = _json.loads(row[6])
                acc = lat.setdefault(row[:6], [0, 0, 0] + [0] * len(_LAT_COLS))
                acc[0] += h["n"]
                acc[1] += h["sum"]
                acc[2] = max(acc[2], h["max"])
                for i, c in enumerate(h["b"][:len(_LAT_COLS)]):
                    acc[3 + i] += c
            if lat:
                sets = ", ".join(f"{c} = {c} + ?" for c in _LAT_COLS)
                self.db.executemany(
                    "UPDATE operation_hours SET lat_count = lat_count + ?, lat_sum = lat_sum + ?,"
                    f" lat_max = MAX(lat_max, ?), {sets} WHERE hour=? AND op=? AND outcome=? AND"
                    " category=? AND optimisation=? AND label=?",
                    [(*acc, *key) for key, acc in lat.items()])
            out["operations"] = self.db.execute(
                "SELECT COUNT(*) FROM operations WHERE id > ? AND id <= ?", (wm, hi)).fetchone()[0]
            self.meta_set("observe.ops_rolled", str(hi))
            wm = hi
        vwm = int(self.meta_get("observe.versions_rolled") or 0)
        vhi = min(self._last_id_before("versions", vwm, cutoff_ns), vwm + limit)
        if vhi > vwm:
            self.db.execute(
                "INSERT INTO version_hours(hour, kind, origin, count, bytes)"
                f" SELECT time_ns / {_HOUR_NS}, kind, origin, COUNT(*),"
                " SUM(CASE WHEN present THEN COALESCE(size, 0) ELSE 0 END) FROM versions"
                " WHERE id > ? AND id <= ? GROUP BY 1, 2, 3 ON CONFLICT(hour, kind, origin)"
                " DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes",
                (vwm, vhi))
            out["versions"] = vhi - vwm
            self.meta_set("observe.versions_rolled", str(vhi))
        if keep_raw_ns is not None:
            out["deleted"] = self.db.execute(
                "DELETE FROM operations WHERE id <= ? AND time_ns < ?",
                (wm, keep_raw_ns)).rowcount
        return out

    def op_groups(self, since_ns: int, until_ns: int, *, raw_only: bool = False
                  ) -> tuple[list[tuple[Any, ...]], int | None]:
        """Operations of a window, grouped by (op, outcome, category, optimisation, label):
        count, items, bytes, dur_sum, dur_max, the duration histogram, then lat_count,
        lat_sum, lat_max and the latency histogram (zero for rows not rolled up yet: see
        :meth:`op_latencies`). Rolled-up hours count whole: the second value is the start of
        the earliest hour used (None: the window was read from raw rows only)."""
        ready = self.observe_ready() and not raw_only
        wm = int(self.meta_get("observe.ops_rolled") or 0) if ready else 0
        edges = [int(b * 1e9) for b in DURATION_BUCKETS_S]
        key = ("COALESCE(error_category, '')", "COALESCE(optimisation, '')",
               "COALESCE(label, '')") if ready else ("COALESCE(error_category, '')",
                                                     "COALESCE(optimisation, '')", "''")
        items, nbytes = ("COALESCE(items, 1)", "COALESCE(bytes, 0)") if ready else ("1", "0")
        zeros = ", ".join("0" for _ in range(3 + len(_LAT_COLS)))
        rows = list(self.db.execute(
            f"SELECT op, outcome, {', '.join(key)}, COUNT(*), SUM({items}), SUM({nbytes}),"
            " SUM(duration_ns), MAX(duration_ns), "
            + ", ".join(f"SUM(duration_ns <= {e})" for e in edges) + f", {zeros}"
            f" FROM operations WHERE id > ? AND {self._raw_time()}"
            " GROUP BY 1, 2, 3, 4, 5", (wm, since_ns, until_ns)))
        first = None
        if ready and wm:
            lo, hi = since_ns // _HOUR_NS, until_ns // _HOUR_NS
            hours = list(self.db.execute(
                "SELECT op, outcome, category, optimisation, label, SUM(count), SUM(items),"
                " SUM(bytes), SUM(dur_sum), MAX(dur_max), "
                + ", ".join(f"SUM({c})" for c in _DUR_COLS)
                + ", SUM(lat_count), SUM(lat_sum), MAX(lat_max), "
                + ", ".join(f"SUM({c})" for c in _LAT_COLS)
                + " FROM operation_hours WHERE hour >= ? AND hour <= ?"
                " GROUP BY 1, 2, 3, 4, 5", (lo, hi)))
            if hours:
                row = self.db.execute("SELECT MIN(hour) FROM operation_hours WHERE hour >= ?"
                                      " AND hour <= ?", (lo, hi)).fetchone()
                first = int(row[0]) * _HOUR_NS
            rows += hours
        return rows, first

    def op_latencies(self, since_ns: int, until_ns: int) -> list[tuple[str, str]]:
        """(op, latency JSON) of the window's operation rows not rolled up yet that carry a
        capture-latency histogram."""
        if not self.observe_ready():
            return []
        wm = int(self.meta_get("observe.ops_rolled") or 0)
        return [(r[0], r[1]) for r in self.db.execute(
            f"SELECT op, latency FROM operations WHERE id > ? AND {self._raw_time()}"
            " AND latency IS NOT NULL", (wm, since_ns, until_ns))]

    def _raw_time(self) -> str:
        """The window's condition on rows not rolled up: once rollups exist they are the
        last hour or two, found by id (the unary + keeps SQLite off the time index, which
        would walk every raw row the window covers); before, by the time index."""
        rolled = self.observe_ready() and self.meta_get("observe.ops_rolled")
        return ("+time_ns >= ? AND +time_ns < ?" if rolled else "time_ns >= ? AND time_ns < ?")

    def op_durations(self, since_ns: int, until_ns: int,
                     limit: int) -> list[tuple[str, int]] | None:
        """(op, duration_ns) of every raw operation row of the window, or None if more than
        ``limit`` (the caller falls back to the histograms)."""
        n = self.db.execute("SELECT COUNT(*) FROM operations WHERE time_ns >= ? AND time_ns < ?",
                            (since_ns, until_ns)).fetchone()[0]
        if n > limit:
            return None
        return [(r[0], int(r[1])) for r in self.db.execute(
            "SELECT op, duration_ns FROM operations WHERE time_ns >= ? AND time_ns < ?",
            (since_ns, until_ns))]

    def op_rows(self, since_ns: int, until_ns: int, ops: Sequence[str] | None = None
                ) -> list[tuple[Any, ...]]:
        """Raw operation rows of a window, oldest first: (id, time_ns, op, path, duration_ns,
        outcome, category, optimisation, batch_id, label, items, bytes, detail)."""
        ready = self.observe_ready()
        extra = "label, COALESCE(items, 1), COALESCE(bytes, 0)" if ready else "NULL, 1, 0"
        sql = ("SELECT id, time_ns, op, path, duration_ns, outcome, error_category, optimisation,"
               f" batch_id, {extra}, detail FROM operations WHERE time_ns >= ? AND time_ns < ?")
        args: tuple[Any, ...] = (since_ns, until_ns)
        if ops:
            sql += f" AND op IN ({','.join('?' * len(ops))})"
            args += tuple(ops)
        return list(self.db.execute(sql + " ORDER BY time_ns, id", args))

    def version_groups(self, since_ns: int, until_ns: int) -> list[tuple[str, str, int, int]]:
        """(kind, origin, count, bytes of present versions) recorded in a window."""
        ready = self.observe_ready()
        vwm = int(self.meta_get("observe.versions_rolled") or 0) if ready else 0
        lo = self._last_id_before("versions", vwm, since_ns)
        acc: dict[tuple[str, str], list[int]] = {}
        for kind, origin, n, b in self.db.execute(
                "SELECT kind, origin, COUNT(*), SUM(CASE WHEN present THEN COALESCE(size, 0)"
                " ELSE 0 END) FROM versions WHERE id > ? AND time_ns >= ? AND time_ns < ?"
                " GROUP BY 1, 2", (lo, since_ns, until_ns)):
            acc.setdefault((kind, origin), [0, 0])
            acc[(kind, origin)][0] += n
            acc[(kind, origin)][1] += b or 0
        if ready and vwm:
            for kind, origin, n, b in self.db.execute(
                    "SELECT kind, origin, SUM(count), SUM(bytes) FROM version_hours"
                    " WHERE hour >= ? AND hour <= ? GROUP BY 1, 2",
                    (since_ns // _HOUR_NS, until_ns // _HOUR_NS)):
                acc.setdefault((kind, origin), [0, 0])
                acc[(kind, origin)][0] += n
                acc[(kind, origin)][1] += b or 0
        return [(k, o, v[0], v[1]) for (k, o), v in sorted(acc.items())]

    def path_versions(self, since_ns: int, until_ns: int, kinds: Sequence[str] | None = None
                      ) -> list[tuple[int, bytes, str, int, int]]:
        """(root_id, relpath, kind, count, bytes) per file and kind of the versions recorded
        in a window (bytes: of present versions)."""
        lo = self._last_id_before("versions", 0, since_ns)
        sql = ("SELECT f.root_id, f.relpath, v.kind, COUNT(*), SUM(CASE WHEN v.present THEN"
               " COALESCE(v.size, 0) ELSE 0 END) FROM versions v JOIN files f ON f.id = v.file_id"
               " WHERE v.id > ? AND v.time_ns >= ? AND v.time_ns < ?")
        args: tuple[Any, ...] = (lo, since_ns, until_ns)
        if kinds:
            sql += f" AND v.kind IN ({','.join('?' * len(kinds))})"
            args += tuple(kinds)
        return [(int(r[0]), bytes(r[1]), r[2], int(r[3]), int(r[4] or 0))
                for r in self.db.execute(sql + " GROUP BY v.file_id, v.kind", args)]

    def path_index(self) -> list[tuple[int, int, bytes, bool, str, bool | None, int]]:
        """Every path the store knows, deleted ones included, in path order: (file id, root
        id, relpath, live, head kind, head valid, head time). The TUI's restore tree is built
        from it (one pass over ``files``, in the order of its unique index)."""
        return [(int(fid), int(rid), bytes(rel), bool(live), kind or "",
                 None if valid is None else bool(valid), int(t or 0))
                for fid, rid, rel, live, kind, valid, t in self.db.execute(
                    "SELECT f.id, f.root_id, f.relpath, f.live, v.kind, v.valid, v.time_ns"
                    " FROM files f LEFT JOIN versions v ON v.id = f.head_id"
                    " ORDER BY f.root_id, f.relpath")]

    def live_relpaths(self, root_id: int, limit: int) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute(
            "SELECT relpath FROM files WHERE root_id=? AND live=1 LIMIT ?", (root_id, limit))]

    def add_size_sample(self, disk_bytes: int) -> dict[str, int]:
        """Record the store's size now (one row per hour, the last sample of it kept)."""
        objects, stored, raw = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(stored_size), 0), COALESCE(SUM(size), 0)"
            " FROM objects").fetchone()
        versions = self.db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM versions WHERE present").fetchone()[0]
        now = time.time_ns()
        self.db.execute("INSERT OR REPLACE INTO store_sizes VALUES(?,?,?,?,?,?,?)",
                        (now // _HOUR_NS, now, disk_bytes, stored, raw, versions, objects))
        return {"time_ns": now, "disk_bytes": disk_bytes, "stored_bytes": stored,
                "objects_bytes": raw, "versions_bytes": versions, "objects": objects}

    def size_samples(self, since_ns: int) -> list[dict[str, int]]:
        """The size samples from the last one before ``since_ns`` on, oldest first."""
        if not self.observe_ready():
            return []
        start = self.db.execute("SELECT MAX(hour) FROM store_sizes WHERE time_ns <= ?",
                                (since_ns,)).fetchone()[0]
        rows = self.db.execute(
            "SELECT time_ns, disk_bytes, stored_bytes, objects_bytes, versions_bytes, objects"
            " FROM store_sizes WHERE hour >= ? ORDER BY hour",
            (start if start is not None else -1,))
        return [dict(zip(("time_ns", "disk_bytes", "stored_bytes", "objects_bytes",
                          "versions_bytes", "objects"), r, strict=True)) for r in rows]

    # alerts: one row per problem while it lasts (open, then acknowledged), found again by its
    # key; resolved rows are history, and the same key raised again opens a new row.
    _ALERT_COLS = ("id, COALESCE(key, kind || ':' || COALESCE(CAST(path AS TEXT), message)),"
                   " severity, kind, path, message, versions, count, COALESCE(first_ns, time_ns),"
                   " COALESCE(last_ns, time_ns), state, ack_ns, resolved_ns")

    @staticmethod
    def _alert_dict(r: tuple[Any, ...]) -> dict[str, Any]:
        return {"id": r[0], "key": r[1], "severity": r[2], "kind": r[3],
                "path": os.fsdecode(r[4]) if r[4] is not None else None, "message": r[5],
                "versions": json.loads(r[6] or "[]"), "count": r[7], "time_ns": r[8],
                "first_ns": r[8], "last_ns": r[9], "state": r[10], "ack_ns": r[11],
                "resolved_ns": r[12]}

    def raise_alert(self, key: str, severity: str, kind: str, message: str,
                    path: bytes | None, versions: list[int] | None = None
                    ) -> tuple[dict[str, Any], bool]:
        """Open an alert, or count one more occurrence of the unresolved alert with this key
        (its message, severity and versions updated); (the alert, whether it is new)."""
        now = time.time_ns()
        row = self.db.execute("SELECT id, versions FROM alerts WHERE key=? AND state != 'resolved'"
                              " ORDER BY id DESC LIMIT 1", (key,)).fetchone()
        if row is not None:
            ids = sorted({*json.loads(row[1] or "[]"), *(versions or [])})[-50:]
            self.db.execute("UPDATE alerts SET count = count + 1, last_ns=?, message=?,"
                            " severity=?, versions=? WHERE id=?",
                            (now, message, severity, json.dumps(ids), row[0]))
            alert_id, new = int(row[0]), False
        else:
            cur = self.db.execute(
                "INSERT INTO alerts(time_ns, severity, kind, path, message, versions, key, count,"
                " first_ns, last_ns, state) VALUES(?,?,?,?,?,?,?,1,?,?,'open')",
                (now, severity, kind, path, message, json.dumps(versions or []), key, now, now))
            alert_id, new = int(cur.lastrowid or 0), True
        got = self.alert(alert_id)
        assert got is not None
        return got, new

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT {self._ALERT_COLS} FROM alerts WHERE id=?",
                              (alert_id,)).fetchone()
        return self._alert_dict(row) if row else None

    def resolve_alerts(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """Resolve the unresolved alerts with these keys; return them as they are now."""
        now = time.time_ns()
        wanted = list(dict.fromkeys(keys))
        if len(wanted) > 8:
            # The daemon asks for every path validated since it last asked (five keys each):
            # the few unresolved alerts, one read of the partial index, not a query per key.
            have = set(wanted)
            ids = [aid for key, aid in self.db.execute(
                "SELECT key, id FROM alerts WHERE state != 'resolved' ORDER BY id").fetchall()
                if key in have]
        else:
            ids = [aid for key in wanted for (aid,) in self.db.execute(
                "SELECT id FROM alerts WHERE key=? AND state != 'resolved'", (key,)).fetchall()]
        done = []
        for aid in ids:
            self.db.execute("UPDATE alerts SET state='resolved', resolved_ns=? WHERE id=?",
                            (now, aid))
            a = self.alert(aid)
            if a is not None:
                done.append(a)
        return done

    def ack_alerts(self, ids: Sequence[int] | None) -> dict[str, list[int]]:
        """Acknowledge open alerts (``ids`` None: every open one): {"acknowledged": [...],
        "already": [...] (acknowledged or resolved before), "missing": [...]}."""
        now = time.time_ns()
        out: dict[str, list[int]] = {"acknowledged": [], "already": [], "missing": []}
        if ids is None:
            ids = [r[0] for r in self.db.execute("SELECT id FROM alerts WHERE state='open'"
                                                 " ORDER BY id")]
        for aid in ids:
            row = self.db.execute("SELECT state FROM alerts WHERE id=?", (aid,)).fetchone()
            if row is None:
                out["missing"].append(aid)
            elif row[0] != "open":
                out["already"].append(aid)
            else:
                self.db.execute("UPDATE alerts SET state='acknowledged', ack_ns=? WHERE id=?",
                                (now, aid))
                out["acknowledged"].append(aid)
        return out

    def alert_list(self, *, unresolved: bool = False, limit: int = 50) -> list[dict[str, Any]]:
        """Alerts, newest activity first; ``unresolved``: only open and acknowledged ones."""
        if not self.observe_ready():
            return [{**a, "key": f"{a['kind']}:{a['path'] or a['message']}", "count": 1,
                     "first_ns": a["time_ns"], "last_ns": a["time_ns"], "state": "open",
                     "ack_ns": None, "resolved_ns": None} for a in self.alerts(limit)]
        where = " WHERE state != 'resolved'" if unresolved else ""
        return [self._alert_dict(r) for r in self.db.execute(
            f"SELECT {self._ALERT_COLS} FROM alerts{where}"
            " ORDER BY COALESCE(last_ns, time_ns) DESC, id DESC LIMIT ?", (limit,))]

    def unresolved_alerts(self, kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Key -> the unresolved alert of these kinds."""
        if not self.observe_ready():
            return {}
        marks = ",".join("?" * len(kinds))
        return {a["key"]: a for a in map(self._alert_dict, self.db.execute(
            f"SELECT {self._ALERT_COLS} FROM alerts WHERE state != 'resolved'"
            f" AND kind IN ({marks})", tuple(kinds)))}

    def open_alert_counts(self) -> dict[str, int]:
        """Severity -> how many alerts are open or acknowledged (not resolved)."""
        sql = "SELECT severity, COUNT(*) FROM alerts"
        if self.observe_ready():
            sql += " WHERE state != 'resolved'"
        return {r[0]: int(r[1]) for r in self.db.execute(sql + " GROUP BY 1")}

    # reports and filed suggestions
    def save_report(self, since_ns: int, until_ns: int, report: dict[str, Any]) -> int:
        cur = self.db.execute("INSERT INTO reports(created_ns, since_ns, until_ns, report)"
                              " VALUES(?,?,?,?)",
                              (time.time_ns(), since_ns, until_ns, json.dumps(report)))
        return int(cur.lastrowid or 0)

    def reports(self, limit: int = 50) -> list[dict[str, Any]]:
        """Saved reports, newest first (with their summary, not the whole report)."""
        if not self.observe_ready():
            return []
        out = []
        for rid, created, since, until, text in self.db.execute(
                "SELECT id, created_ns, since_ns, until_ns, report FROM reports"
                " ORDER BY id DESC LIMIT ?", (limit,)):
            out.append({"id": rid, "created_ns": created, "since_ns": since,
                        "until_ns": until, "summary": json.loads(text).get("summary", {})})
        return out

    def report(self, report_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT report FROM reports WHERE id=?", (report_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def filed_suggestions(self) -> dict[str, str | None]:
        """Key -> issue URL of every suggestion already filed."""
        if not self.observe_ready():
            return {}
        return {r[0]: r[1] for r in self.db.execute("SELECT key, url FROM filed_suggestions")}

    def mark_filed(self, key: str, url: str | None, title: str) -> bool:
        """Remember that a suggestion was filed; False if it already was."""
        cur = self.db.execute("INSERT OR IGNORE INTO filed_suggestions VALUES(?,?,?,?)",
                              (key, time.time_ns(), url, title))
        return cur.rowcount > 0


    # ----------------------------------------------------------------- agent sessions
    def agent_session_seen(self, session: str, agent: str, now: int, *, cwd: str | None = None,
                           transcript: str | None = None, detail: str | None = None,
                           ended: bool = False) -> None:
        """A session's row, made on the first event it sends and touched by every other."""
        self.db.execute(
            "INSERT INTO agent_sessions(id, agent, started_ns, last_ns, ended_ns, cwd,"
            " transcript, detail) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
            " last_ns=excluded.last_ns, ended_ns=COALESCE(excluded.ended_ns, ended_ns),"
            " cwd=COALESCE(cwd, excluded.cwd), transcript=COALESCE(transcript,"
            " excluded.transcript), detail=COALESCE(excluded.detail, detail)",
            (session, agent, now, now, now if ended else None, cwd, transcript, detail))

    def agent_prompt_start(self, session: str, key: str | None, text: str | None,
                           now: int) -> int:
        """A new prompt of ``session``; the one before it ends here if no Stop ended it."""
        self.agent_prompt_end(session, now)
        cur = self.db.execute("INSERT INTO agent_prompts(session, key, started_ns, text)"
                              " VALUES(?,?,?,?)", (session, key, now, text))
        return int(cur.lastrowid or 0)

    def agent_prompt_end(self, session: str, now: int) -> None:
        self.db.execute("UPDATE agent_prompts SET ended_ns=? WHERE session=? AND ended_ns IS"
                        " NULL", (now, session))

    def agent_prompt_of(self, session: str, key: str | None) -> int | None:
        """The prompt a call belongs to: the one the agent names, else the session's last."""
        if key:
            row = self.db.execute("SELECT id FROM agent_prompts WHERE session=? AND key=?"
                                  " ORDER BY id DESC LIMIT 1", (session, key)).fetchone()
            if row:
                return int(row[0])
        row = self.db.execute("SELECT MAX(id) FROM agent_prompts WHERE session=?",
                              (session,)).fetchone()
        return None if row[0] is None else int(row[0])

    def agent_prompt_id(self, prompt: str) -> int | None:
        """A prompt named by its number (``guardian sessions ID`` lists them) or the agent's
        prompt_id."""
        if prompt.isdigit() and len(prompt) < 19:
            row = self.db.execute("SELECT id FROM agent_prompts WHERE id=?",
                                  (int(prompt),)).fetchone()
            if row:
                return int(row[0])
        row = self.db.execute("SELECT MAX(id) FROM agent_prompts WHERE key=?",
                              (prompt,)).fetchone()
        return None if row[0] is None else int(row[0])

    def agent_call_add(self, session: str, prompt: int | None, tool_use_id: str | None,
                       tool: str, kind: str, now: int, *, paths: Sequence[str] = (),
                       command: str | None = None, outcome: str, reason: str | None = None,
                       expect: dict[str, Any] | None = None, ended: bool = False,
                       agent_id: str | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO agent_calls(session, prompt, tool_use_id, tool, kind, paths, command,"
            " started_ns, ended_ns, outcome, reason, expect, agent_id)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (session, prompt, tool_use_id, tool, kind, json.dumps(list(paths)), command, now,
             now if ended else None, outcome, reason,
             None if expect is None else json.dumps(expect), agent_id))
        return int(cur.lastrowid or 0)

    # One definition with the no-daemon hook's writer (guardian.store.lean_write).
    _CALL_COLS = lean_write.CALL_COLS
    _call_dict = staticmethod(lean_write.call_dict)

    def agent_call(self, session: str, tool_use_id: str) -> dict[str, Any] | None:
        """The newest call of ``session`` with this tool_use_id (Pre and Post share it)."""
        row = self.db.execute(f"SELECT {self._CALL_COLS} FROM agent_calls WHERE session=? AND"
                              " tool_use_id=? ORDER BY id DESC LIMIT 1",
                              (session, tool_use_id)).fetchone()
        return self._call_dict(row) if row else None

    def agent_call_finish(self, call_id: int, now: int, outcome: str,
                          reason: str | None = None) -> None:
        self.db.execute("UPDATE agent_calls SET ended_ns=?, outcome=?, reason=COALESCE(?, reason)"
                        " WHERE id=?", (now, outcome, reason, call_id))

    def agent_open_windows(self, since_ns: int) -> list[dict[str, Any]]:
        """Attribution windows still open that opened at or after ``since_ns``."""
        return [self._call_dict(r) for r in self.db.execute(
            f"SELECT {self._CALL_COLS} FROM agent_calls WHERE kind='window' AND ended_ns IS NULL"
            " AND started_ns >= ? ORDER BY id", (since_ns,))]

    def agent_windows_overlapping(self, call_id: int, start_ns: int, end_ns: int) -> list[int]:
        """Other windows that were open at some moment in [start_ns, end_ns]."""
        return [int(r[0]) for r in self.db.execute(
            "SELECT id FROM agent_calls WHERE kind='window' AND id != ? AND started_ns <= ?"
            " AND (ended_ns IS NULL OR ended_ns >= ?)", (call_id, end_ns, start_ns))]

    def agent_label(self, rows: Sequence[tuple[int, int, str, int | None, str, bool]]) -> None:
        """(version, call, session, prompt, how, ambiguous): which call made which version.
        An unambiguous one also gives the version its session label (if it has none)."""
        self.db.executemany("INSERT OR IGNORE INTO agent_changes VALUES(?,?,?,?,?,?)",
                            [(v, c, s, p, h, int(a)) for v, c, s, p, h, a in rows])
        self.db.executemany("UPDATE versions SET session=? WHERE id=? AND session IS NULL",
                            [(s, v) for v, _c, s, _p, _h, a in rows if not a])

    def versions_after(self, file_id: int, after_id: int) -> list[Version]:
        """Versions of a file newer than ``after_id`` that no write tool's call claims yet
        (one a Bash window claimed meanwhile may be claimed by the tool too)."""
        return [Version.from_row(r) for r in self.db.execute(
            f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.file_id=? AND v.id > ? AND"
            " NOT EXISTS (SELECT 1 FROM agent_changes a WHERE a.version_id = v.id"
            " AND a.how = 'tool')"
            " ORDER BY v.id",
            (file_id, after_id))]

    def version_before(self, file_id: int, version_id: int) -> Version | None:
        """The version of a file just before ``version_id`` (None: it had none)."""
        row = self.db.execute(
            f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.file_id=? AND v.id < ?"
            " ORDER BY v.id DESC LIMIT 1", (file_id, version_id)).fetchone()
        return Version.from_row(row) if row else None

    def agent_sessions(self, session: str | None = None) -> list[dict[str, Any]]:
        """Every session (or one), newest first, with its counts."""
        where, args = ("WHERE s.id=?", (session,)) if session else ("", ())
        rows = self.db.execute(
            "SELECT s.id, s.agent, s.started_ns, s.last_ns, s.ended_ns, s.cwd, s.detail,"
            " (SELECT COUNT(*) FROM agent_prompts p WHERE p.session=s.id),"
            " (SELECT COUNT(*) FROM agent_calls c WHERE c.session=s.id AND c.kind='write'),"
            " (SELECT COUNT(*) FROM agent_calls c WHERE c.session=s.id AND c.kind='window'),"
            " (SELECT COUNT(*) FROM agent_calls c WHERE c.session=s.id AND c.outcome='denied')"
            f" FROM agent_sessions s {where} ORDER BY s.last_ns DESC", args)
        keys = ("id", "agent", "started_ns", "last_ns", "ended_ns", "cwd", "detail", "prompts",
                "write_calls", "bash_calls", "rejected")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def agent_prompts(self, session: str) -> list[dict[str, Any]]:
        keys = ("id", "key", "started_ns", "ended_ns", "text")
        return [dict(zip(keys, r, strict=True)) for r in self.db.execute(
            "SELECT id, key, started_ns, ended_ns, text FROM agent_prompts WHERE session=?"
            " ORDER BY id", (session,))]

    def agent_calls(self, session: str) -> list[dict[str, Any]]:
        return [self._call_dict(r) for r in self.db.execute(
            f"SELECT {self._CALL_COLS} FROM agent_calls WHERE session=? ORDER BY id",
            (session,))]

    def agent_changes(self, *, session: str | None = None, prompt: int | None = None,
                      last: int | None = None, since_ns: int | None = None
                      ) -> list[tuple[Version, int, str, int | None, str, bool]]:
        """(version, call, session, prompt, how, ambiguous) of the agents' changes chosen by
        session, prompt, the newest ``last`` versions or a time; oldest first."""
        sql = (f"SELECT {_VERSION_COLS}, a.call_id, a.session, a.prompt, a.how, a.ambiguous"
               " FROM agent_changes a JOIN versions v ON v.id = a.version_id"
               " JOIN files f ON f.id = v.file_id LEFT JOIN objects o ON o.id = v.object_id")
        conds: list[str] = []
        args: list[Any] = []
        if session is not None:
            conds.append("a.session = ?")
            args.append(session)
        if prompt is not None:
            conds.append("a.prompt = ?")
            args.append(prompt)
        if since_ns is not None:
            conds.append("v.time_ns >= ?")
            args.append(since_ns)
        if last is not None:
            conds.append("v.id IN (SELECT DISTINCT version_id FROM agent_changes ORDER BY"
                         " version_id DESC LIMIT ?)")
            args.append(int(last))
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY v.id, a.call_id"
        n = len(_VERSION_COLS.split(","))
        return [(Version.from_row(r[:n]), int(r[n]), str(r[n + 1]), r[n + 2], str(r[n + 3]),
                 bool(r[n + 4])) for r in self.db.execute(sql, args)]

    def versions_labelled(self, session: str) -> list[Version]:
        """Versions whose session label is ``session`` however they got it (a batch or an MCP
        write of that session, ``snapshot --session``), oldest first."""
        return [Version.from_row(r) for r in self.db.execute(
            f"SELECT {_VERSION_COLS} FROM {_VERSION_FROM} WHERE v.session=? ORDER BY v.id",
            (session,))]

    def agent_files(self, session: str) -> list[tuple[int, bytes, str, bool]]:
        """(root id, relpath, how, ambiguous) of every file a session changed."""
        return [(int(r), bytes(p), str(h), bool(a)) for r, p, h, a in self.db.execute(
            "SELECT f.root_id, f.relpath, a.how, MAX(a.ambiguous) FROM agent_changes a"
            " JOIN versions v ON v.id = a.version_id JOIN files f ON f.id = v.file_id"
            " WHERE a.session=? GROUP BY f.root_id, f.relpath, a.how ORDER BY f.relpath",
            (session,))]


def _signature(st: os.stat_result, seen_ns: int) -> tuple[int, int, int, int, int, int]:
    """What the scan cache keeps of a stat; size -1 when taken within RACY_NS of a change."""
    racy = seen_ns - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS
    return (-1 if racy else st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev,
            st.st_mode)


def _open_reader(db_path: Path, path: Path, flags: str) -> _Connection:
    db = _connect(sqlite_uri(db_path, flags), path, uri=True)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error:
        db.close()
        raise
    return db


def _mark(db: sqlite3.Connection) -> str:
    """``store`` (meta holds ``created_ns``, written with the schema), ``empty`` (no schema:
    a creation interrupted before its first commit) or ``foreign`` (some other database)."""
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
                      ).fetchone() is None:
            anything = db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
            return "foreign" if anything else "empty"
        row = db.execute("SELECT 1 FROM meta WHERE key='created_ns'").fetchone()
    except DamagedStoreError:
        raise
    except sqlite3.OperationalError:  # a meta table of another shape
        return "foreign"
    return "store" if row else "foreign"


def _mark_of_file(path: Path, db_path: Path) -> str:
    """:func:`_mark` of an existing ``guardian.db``, read without writing anything."""
    db = _open_read_only(path, db_path, check=False)
    try:
        return _mark(db)
    finally:
        db.close()


def _open_read_only(path: Path, db_path: Path, *, check: bool = True) -> _Connection:
    if not db_path.is_file():
        raise NotFoundError(f"no Guardian store at {path}")
    try:
        db = _open_reader(db_path, path, "mode=ro")
    except DamagedStoreError:
        raise
    except sqlite3.Error as e:
        if os.access(path, os.W_OK):
            raise StoreError(f"store {path}: cannot read: {e}") from None
        # A WAL database on read-only media has no -shm to share: nobody can be
        # writing it, so reading it as immutable is safe.
        try:
            db = _open_reader(db_path, path, "immutable=1")
        except DamagedStoreError:
            raise
        except sqlite3.Error as e2:
            raise StoreError(f"store {path}: cannot read: {e2}") from None
    if check:
        try:
            mark = _mark(db)
        except BaseException:
            db.close()
            raise
        if mark != "store":
            db.close()
            why = "" if mark == "empty" else f" ({db_path.name} is not a Guardian database)"
            raise NotFoundError(f"no Guardian store at {path}{why}")
    return db


#: Page size of a new store. Stored contents are mostly a few KiB: with 4 KiB pages each
#: such object spills into an overflow page, and a commit writes two WAL frames (two write
#: calls each) per object; 16 KiB pages hold three or four (a 1,000 x 4 KiB batch's commit
#: went from ~22 ms to ~2 ms). Fixed when the database is created (WAL mode cannot change it).
PAGE_SIZE = 16384
#: The writer checkpoints the WAL itself instead of SQLite doing it inside whichever commit
#: crosses 1,000 pages (that commit then copies and fsyncs ~16 MB: a 1,000-file batch took
#: 35 ms instead of 5). The daemon does it when idle, :meth:`Store.close` at the end, and a
#: commit inline only once the WAL has grown past this (a burst with no idle moment).
WAL_INLINE_CHECKPOINT = 64 * 1024 * 1024
#: A process that leaves the store (:meth:`Store.leave`) checkpoints a WAL bigger than this
#: (so hooks without a daemon, each leaving a few pages, keep it small).
WAL_KEEP_ON_LEAVE = 4 * 1024 * 1024
#: Databases left with ``Store.leave(checkpoint_later=True)``: checkpointed after this
#: process exits, by the detached process ``guardian.batch.io.hand_off_releases`` starts.
LEFT_TO_CHECKPOINT: list[Path] = []


def _configure(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA busy_timeout=30000")
    if db.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new database
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot switch the store to WAL mode (got {mode})")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA cache_size=-16000")
    db.execute("PRAGMA temp_store=MEMORY")


def _ensure_schema(db: sqlite3.Connection) -> None:
    """Create the schema, or add what a store of this schema version lacks (every statement
    is IF NOT EXISTS: tables added within a version appear in older stores)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA};COMMIT;")
        _migrate_observe(db)
        _migrate_deltas(db)
        return
    if version != 0:
        raise StoreError(
            f"store schema version {version} is not supported by this Guardian "
            f"(expects {SCHEMA_VERSION}); upgrade Guardian"
        )
    # One script, one transaction: a crash mid-way leaves an empty database, not half a schema.
    db.executescript(
        f"BEGIN IMMEDIATE;{_SCHEMA};"
        f"INSERT INTO meta VALUES('created_ns', '{time.time_ns()}');"
        f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
    )
    _migrate_observe(db)
    _migrate_deltas(db)


class _WriterLock:
    """An exclusive ``flock`` on the store's ``lock`` file, held while the store is open.

    The same kernel lock filelock's UnixFileLock takes, without its import cost (~50 ms on a
    cold start, paid by every hook invocation).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def _acquire_writer_lock(path: Path, timeout: float) -> _WriterLock:
    try:
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StoreError(f"store {path}: cannot lock: {e.strerror or e}") from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return _WriterLock(fd)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                pid = _read_pid(path)
                who = f" (pid {pid})" if pid else ""
                raise StoreBusyError(
                    f"store {path} is in use by another guardian process{who}; "
                    "only one writer per store"
                ) from None
            time.sleep(0.05)
        except OSError as e:
            os.close(fd)
            raise StoreError(f"store {path}: cannot lock: {e.strerror or e}") from None


def _write_pid(path: Path) -> None:
    with contextlib.suppress(OSError):
        tmp = path / f"writer.pid.{os.getpid()}"
        tmp.write_text(str(os.getpid()), encoding="ascii")
        os.replace(tmp, path / "writer.pid")


def _read_pid(path: Path) -> int | None:
    try:
        return int((path / "writer.pid").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _write_roots_file(store: Path, roots: list[Path]) -> None:
    data = json.dumps({"roots": [os.fsdecode(r) for r in roots]}, indent=1)
    tmp = store / f"{ROOTS_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, store / ROOTS_FILE)


def _under(column: str, prefix: bytes) -> tuple[str, tuple[bytes, ...]]:
    """The WHERE clause (and its arguments) for ``column`` at or under ``prefix``: an index
    range, not LIKE (relpaths are bytes and may hold % and _)."""
    if not prefix:
        return "", ()
    lo, hi = prefix_range(prefix)
    return f" AND ({column} = ? OR ({column} >= ? AND {column} < ?))", (prefix, lo, hi)
