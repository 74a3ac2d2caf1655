-- Site upstream credentials still sealed in format v1 (bound to their site, not yet to
-- the origin of its upstream): every start-up looks for them (`fleet::binding`) and
-- re-seals them bound to their origin. The partial index holds only those rows, so the
-- look-up costs nothing once they are bound, however many sites there are.
CREATE INDEX sites_unbound_credentials ON sites (id)
WHERE substr(credential_sealed, 1, 3) = 'v1.';
