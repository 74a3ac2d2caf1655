-- Admin API tokens (`wpgat_<id>_<secret>`): only an argon2id hash (PHC string) of the
-- secret is stored. A revoked token is kept, so the audit log can still name it.
CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    label        TEXT,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    secret_hash  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);

-- The site an audit entry concerns (key events too, whose target is the key), so the
-- admin API can list a site's whole history.
ALTER TABLE audit_log ADD COLUMN site_id TEXT;
CREATE INDEX audit_log_by_site ON audit_log(site_id, id);
UPDATE audit_log SET site_id = substr(target, 6) WHERE target LIKE 'site:%';
UPDATE audit_log SET site_id = substr(detail, 6)
    WHERE target LIKE 'key:%' AND action = 'key.issue' AND detail LIKE 'site=%';
