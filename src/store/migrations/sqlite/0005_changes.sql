-- The change log: every write appends one row per record it touched, in the same
-- transaction, so other processes (the CLI, other replicas) can invalidate their
-- caches. Rows older than a day are pruned by the gateway.
CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    at   INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('site', 'api_key', 'admin_token', 'setting')),
    id   TEXT NOT NULL
);
CREATE INDEX changes_by_at ON changes(at);
