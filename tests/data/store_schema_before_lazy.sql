-- The schema of a store made by Guardian's main branch before lazy tables (commit c1d9313),
-- as 'sqlite3 guardian.db .schema' printed it: every table existed from the store's creation.
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE roots(
    id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE, added_ns INTEGER NOT NULL
);
CREATE TABLE objects(
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,          -- SHA-256 of the raw bytes
    size INTEGER NOT NULL,              -- raw size
    stored_size INTEGER NOT NULL,       -- size after compression
    codec TEXT NOT NULL,                -- 'zstd' | 'raw' | 'zstd-delta' (see _DELTA_COLUMNS)
    loose INTEGER NOT NULL DEFAULT 0,   -- 1: bytes live in objects/ab/cdef..., data is NULL
    data BLOB
, base_id INTEGER, depth INTEGER NOT NULL DEFAULT 0, chain_pos INTEGER NOT NULL DEFAULT 0);
CREATE TABLE files(
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
CREATE INDEX files_by_ino ON files(ino) WHERE ino IS NOT NULL;
CREATE TABLE versions(
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
CREATE INDEX versions_by_file ON versions(file_id, id);
CREATE INDEX versions_by_object ON versions(object_id);
CREATE TABLE operations(
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
, items INTEGER, bytes INTEGER, label TEXT, latency TEXT);
CREATE INDEX operations_by_time ON operations(time_ns);
CREATE TABLE problems(
    version_id INTEGER NOT NULL,
    validator TEXT NOT NULL,
    line INTEGER,
    col INTEGER,
    severity TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX problems_by_version ON problems(version_id);
CREATE TABLE batches(
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,                -- prepared | committed | done | rolled_back
    created_ns INTEGER NOT NULL,
    finished_ns INTEGER,
    session TEXT,
    files INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE batch_entries(             -- the intent log of unfinished batches
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
CREATE TABLE damaged(                   -- objects found not to match their hash
    hash BLOB PRIMARY KEY,              -- by hash, not id: gc may free an id for reuse
    found_ns INTEGER NOT NULL,
    reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE alerts(
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    severity TEXT NOT NULL,             -- info | warning | critical
    kind TEXT NOT NULL,                 -- invalid | reverted | revert-failed | rules | untrusted …
    path BLOB,
    message TEXT NOT NULL,
    versions TEXT                       -- JSON list of the version ids involved
, key TEXT, count INTEGER NOT NULL DEFAULT 1, first_ns INTEGER, last_ns INTEGER, state TEXT NOT NULL DEFAULT 'open', ack_ns INTEGER, resolved_ns INTEGER);
CREATE TABLE operation_hours(
    hour INTEGER NOT NULL,              -- time_ns // 3600e9
    op TEXT NOT NULL, outcome TEXT NOT NULL, category TEXT NOT NULL,
    optimisation TEXT NOT NULL, label TEXT NOT NULL,
    count INTEGER NOT NULL, items INTEGER NOT NULL, bytes INTEGER NOT NULL,
    dur_sum INTEGER NOT NULL, dur_max INTEGER NOT NULL,
    h0 INTEGER NOT NULL DEFAULT 0, h1 INTEGER NOT NULL DEFAULT 0, h2 INTEGER NOT NULL DEFAULT 0, h3 INTEGER NOT NULL DEFAULT 0, h4 INTEGER NOT NULL DEFAULT 0, h5 INTEGER NOT NULL DEFAULT 0, h6 INTEGER NOT NULL DEFAULT 0, h7 INTEGER NOT NULL DEFAULT 0, h8 INTEGER NOT NULL DEFAULT 0, h9 INTEGER NOT NULL DEFAULT 0, h10 INTEGER NOT NULL DEFAULT 0, h11 INTEGER NOT NULL DEFAULT 0, h12 INTEGER NOT NULL DEFAULT 0, h13 INTEGER NOT NULL DEFAULT 0, h14 INTEGER NOT NULL DEFAULT 0,
    lat_count INTEGER NOT NULL DEFAULT 0, lat_sum INTEGER NOT NULL DEFAULT 0,
    lat_max INTEGER NOT NULL DEFAULT 0,
    l0 INTEGER NOT NULL DEFAULT 0, l1 INTEGER NOT NULL DEFAULT 0, l2 INTEGER NOT NULL DEFAULT 0, l3 INTEGER NOT NULL DEFAULT 0, l4 INTEGER NOT NULL DEFAULT 0, l5 INTEGER NOT NULL DEFAULT 0, l6 INTEGER NOT NULL DEFAULT 0, l7 INTEGER NOT NULL DEFAULT 0, l8 INTEGER NOT NULL DEFAULT 0, l9 INTEGER NOT NULL DEFAULT 0, l10 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(hour, op, outcome, category, optimisation, label)
) WITHOUT ROWID;
CREATE TABLE version_hours(
    hour INTEGER NOT NULL, kind TEXT NOT NULL, origin TEXT NOT NULL,
    count INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY(hour, kind, origin)
) WITHOUT ROWID;
CREATE TABLE store_sizes(
    hour INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, disk_bytes INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL, objects_bytes INTEGER NOT NULL,
    versions_bytes INTEGER NOT NULL, objects INTEGER NOT NULL
);
CREATE TABLE reports(
    id INTEGER PRIMARY KEY, created_ns INTEGER NOT NULL, since_ns INTEGER NOT NULL,
    until_ns INTEGER NOT NULL, report TEXT NOT NULL
);
CREATE TABLE filed_suggestions(
    key TEXT PRIMARY KEY, filed_ns INTEGER NOT NULL, url TEXT, title TEXT
) WITHOUT ROWID;
CREATE INDEX alerts_unresolved ON alerts(key) WHERE state != 'resolved';
CREATE TABLE agent_sessions(
    id TEXT PRIMARY KEY,                -- the agent's session_id (or undo-N: an undo)
    agent TEXT NOT NULL,                -- claude | gemini | codex | guardian
    started_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    cwd TEXT,
    transcript TEXT,
    detail TEXT                         -- how it started / why it ended
) WITHOUT ROWID;
CREATE TABLE agent_prompts(
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL,
    key TEXT,                           -- the agent's prompt_id, when it sends one
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    text TEXT
);
CREATE INDEX agent_prompts_by_session ON agent_prompts(session, id);
CREATE TABLE agent_calls(
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
CREATE INDEX agent_calls_by_use ON agent_calls(session, tool_use_id);
CREATE INDEX agent_calls_open ON agent_calls(kind) WHERE ended_ns IS NULL;
CREATE TABLE agent_changes(
    version_id INTEGER NOT NULL,
    call_id INTEGER NOT NULL,
    session TEXT NOT NULL,
    prompt INTEGER,
    how TEXT NOT NULL,                  -- tool | window | undo
    ambiguous INTEGER NOT NULL DEFAULT 0, -- 1: other windows were open too
    PRIMARY KEY(version_id, call_id)
) WITHOUT ROWID;
CREATE INDEX agent_changes_by_session ON agent_changes(session, version_id);
CREATE INDEX agent_changes_by_prompt ON agent_changes(prompt);
CREATE INDEX objects_by_base ON objects(base_id) WHERE base_id IS NOT NULL;
