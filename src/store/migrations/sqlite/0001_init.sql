-- wpgate store schema, version 1. Secrets are never stored in plaintext:
-- credential_sealed and settings.value hold AES-256-GCM sealed text, api_keys holds
-- only an HMAC-SHA-256 of each key's secret.

CREATE TABLE sites (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    upstream_url        TEXT NOT NULL,
    enabled             INTEGER NOT NULL DEFAULT 1,
    credential_kind     TEXT NOT NULL
        CHECK (credential_kind IN ('app_password', 'bearer', 'header', 'none')),
    -- the WordPress user (app_password) or the header name (header)
    credential_username TEXT,
    credential_sealed   TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    version             INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY NOT NULL,
    site_id     TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    label       TEXT,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    -- a revoked key still works until grace_until (a rotation without a cut-off)
    grace_until INTEGER
);
CREATE INDEX api_keys_by_site ON api_keys(site_id);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    request_id TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_by_target ON audit_log(target, id);

-- gateway-wide values, e.g. the sealed API-key pepper
CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
