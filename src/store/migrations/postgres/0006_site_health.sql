-- Each site's latest health check and when it is checked next, shared by every replica
-- (`health::prober`): the same table as SQLite's migration 0011. A site is due once
-- due_at has passed; a replica claims due sites in one statement (FOR UPDATE SKIP
-- LOCKED, so replicas claiming at once take different sites): it becomes their holder
-- until lease_until, and no other replica checks them meanwhile. It then writes the
-- result, ends the lease and sets due_at to the next check (one interval, or the backoff
-- of a site that is down, after the previous due time). A replica that dies mid-check
-- leaves its lease to run out; the site is then claimed again. due_at, claimed_at and
-- lease_until are milliseconds on the server's clock (now()); checked_at is unix
-- seconds. seq comes from site_health_seq with every result written, so readers fetch
-- what changed since their last read (a sequence hands out numbers out of commit order:
-- readers keep the newest seq per site and read everything now and then).
CREATE SEQUENCE site_health_seq;

CREATE TABLE site_health (
    site_id              TEXT COLLATE "C" PRIMARY KEY REFERENCES sites(id) ON DELETE CASCADE,
    due_at               BIGINT NOT NULL DEFAULT 0,
    holder               TEXT,
    claimed_at           BIGINT,
    lease_until          BIGINT,
    state                TEXT NOT NULL DEFAULT 'unknown',
    message              TEXT NOT NULL DEFAULT '',
    checked_at           BIGINT,
    duration_ms          BIGINT NOT NULL DEFAULT 0,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    wordpress_user       TEXT,
    checked_by           TEXT,
    seq                  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX site_health_by_due ON site_health(due_at);
CREATE INDEX site_health_by_seq ON site_health(seq);

INSERT INTO site_health (site_id) SELECT id FROM sites;

-- A row for every new site (statement-level: an import adds its rows at once).
CREATE FUNCTION site_health_enroll() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO site_health (site_id) SELECT id FROM new_rows
    ON CONFLICT (site_id) DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER site_health_enroll AFTER INSERT ON sites
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION site_health_enroll();
