-- Per-site health settings: REST namespaces the site must offer (a plugin's, e.g.
-- ["myplugin/v1"], as JSON) and whether proxy requests fail fast while it is unreachable.
ALTER TABLE sites ADD COLUMN required_namespaces TEXT;
ALTER TABLE sites ADD COLUMN health_fail_fast INTEGER NOT NULL DEFAULT 0;
