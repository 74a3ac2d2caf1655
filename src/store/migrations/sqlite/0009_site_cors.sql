-- Browser origins a site lets call it (CORS), normalised as browsers send the Origin
-- header (e.g. ["https://app.example.com", "http://localhost:3000"], as JSON); NULL:
-- none.
ALTER TABLE sites ADD COLUMN allowed_origins TEXT;
-- A gateway reads the origins of every site that has some (to answer preflights before
-- a site is known): the partial index holds only those rows, however many sites there
-- are. `Dialect::array_nonempty` writes the same condition.
CREATE INDEX sites_allowed_origins ON sites (id) WHERE allowed_origins IS NOT NULL;
