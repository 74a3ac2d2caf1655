-- Browser origins a site lets call it (CORS), normalised as browsers send the Origin
-- header, e.g. {https://app.example.com,http://localhost:3000}; empty: none.
ALTER TABLE sites ADD COLUMN allowed_origins TEXT[] NOT NULL DEFAULT '{}';
-- A gateway reads the origins of every site that has some (to answer preflights before
-- a site is known): the partial index holds only those rows, however many sites there
-- are. `Dialect::array_nonempty` writes the same condition.
CREATE INDEX sites_allowed_origins ON sites (id) WHERE cardinality(allowed_origins) > 0;
