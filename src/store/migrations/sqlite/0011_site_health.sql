-- Each site's latest health check and when it is checked next, shared by every process
-- on the store (`health::prober`). A site is due once due_at has passed; a process
-- claims due sites in one statement: it becomes their holder until lease_until, and no
-- other process checks them meanwhile. It then writes the result, ends the lease and
-- sets due_at to the next check (one interval, or the backoff of a site that is down,
-- after the previous due time). A process that dies mid-check leaves its lease to run
-- out; the site is then claimed again. due_at, claimed_at and lease_until are
-- milliseconds on the store's clock; checked_at is unix seconds. seq grows with every
-- result written, so readers fetch what changed since their last read. A row is added
-- for every new site (trigger below) and goes with its site.
CREATE TABLE site_health (
    site_id              TEXT PRIMARY KEY REFERENCES sites(id) ON DELETE CASCADE,
    due_at               INTEGER NOT NULL DEFAULT 0,
    holder               TEXT,
    claimed_at           INTEGER,
    lease_until          INTEGER,
    state                TEXT NOT NULL DEFAULT 'unknown',
    message              TEXT NOT NULL DEFAULT '',
    checked_at           INTEGER,
    duration_ms          INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    wordpress_user       TEXT,
    checked_by           TEXT,
    seq                  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX site_health_by_due ON site_health(due_at);
CREATE INDEX site_health_by_seq ON site_health(seq);

INSERT INTO site_health (site_id) SELECT id FROM sites;

CREATE TRIGGER site_health_enroll AFTER INSERT ON sites
BEGIN
    INSERT INTO site_health (site_id) VALUES (NEW.id) ON CONFLICT (site_id) DO NOTHING;
END;
