-- How many sealed values each keyring key seals, kept up to date by triggers: start-up
-- (which refuses a keyring lacking a key in use) and the keyring metrics read a few rows
-- instead of scanning every site. Counted like before: every non-NULL
-- sites.credential_sealed and sites.jwt_secret_sealed, and settings whose value starts
-- with 'v1.'; the key id is the text between the first and second dot. Rows that drop
-- to 0 stay (and are not reported).
CREATE TABLE sealed_counts (
    kid TEXT PRIMARY KEY NOT NULL,
    n   INTEGER NOT NULL
);

INSERT INTO sealed_counts (kid, n)
SELECT substr(v, 4, instr(substr(v, 4), '.') - 1) AS kid, COUNT(*)
FROM (
    SELECT credential_sealed AS v FROM sites WHERE credential_sealed IS NOT NULL
    UNION ALL SELECT jwt_secret_sealed FROM sites WHERE jwt_secret_sealed IS NOT NULL
    UNION ALL SELECT value FROM settings WHERE value LIKE 'v1.%'
)
GROUP BY kid;

CREATE TRIGGER sealed_counts_sites_insert AFTER INSERT ON sites
BEGIN
    INSERT INTO sealed_counts (kid, n)
    SELECT substr(v, 4, instr(substr(v, 4), '.') - 1), 1
    FROM (SELECT NEW.credential_sealed AS v UNION ALL SELECT NEW.jwt_secret_sealed)
    WHERE v IS NOT NULL
    ON CONFLICT (kid) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sealed_counts_sites_delete AFTER DELETE ON sites
BEGIN
    UPDATE sealed_counts SET n = n - 1
    WHERE OLD.credential_sealed IS NOT NULL
      AND kid = substr(OLD.credential_sealed, 4, instr(substr(OLD.credential_sealed, 4), '.') - 1);
    UPDATE sealed_counts SET n = n - 1
    WHERE OLD.jwt_secret_sealed IS NOT NULL
      AND kid = substr(OLD.jwt_secret_sealed, 4, instr(substr(OLD.jwt_secret_sealed, 4), '.') - 1);
END;

CREATE TRIGGER sealed_counts_sites_update AFTER UPDATE OF credential_sealed, jwt_secret_sealed ON sites
WHEN OLD.credential_sealed IS NOT NEW.credential_sealed
  OR OLD.jwt_secret_sealed IS NOT NEW.jwt_secret_sealed
BEGIN
    UPDATE sealed_counts SET n = n - 1
    WHERE OLD.credential_sealed IS NOT NULL
      AND kid = substr(OLD.credential_sealed, 4, instr(substr(OLD.credential_sealed, 4), '.') - 1);
    UPDATE sealed_counts SET n = n - 1
    WHERE OLD.jwt_secret_sealed IS NOT NULL
      AND kid = substr(OLD.jwt_secret_sealed, 4, instr(substr(OLD.jwt_secret_sealed, 4), '.') - 1);
    INSERT INTO sealed_counts (kid, n)
    SELECT substr(v, 4, instr(substr(v, 4), '.') - 1), 1
    FROM (SELECT NEW.credential_sealed AS v UNION ALL SELECT NEW.jwt_secret_sealed)
    WHERE v IS NOT NULL
    ON CONFLICT (kid) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sealed_counts_settings_insert AFTER INSERT ON settings
WHEN NEW.value LIKE 'v1.%'
BEGIN
    INSERT INTO sealed_counts (kid, n)
    VALUES (substr(NEW.value, 4, instr(substr(NEW.value, 4), '.') - 1), 1)
    ON CONFLICT (kid) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sealed_counts_settings_delete AFTER DELETE ON settings
WHEN OLD.value LIKE 'v1.%'
BEGIN
    UPDATE sealed_counts SET n = n - 1
    WHERE kid = substr(OLD.value, 4, instr(substr(OLD.value, 4), '.') - 1);
END;

CREATE TRIGGER sealed_counts_settings_update AFTER UPDATE OF value ON settings
WHEN OLD.value IS NOT NEW.value
BEGIN
    UPDATE sealed_counts SET n = n - 1
    WHERE OLD.value LIKE 'v1.%'
      AND kid = substr(OLD.value, 4, instr(substr(OLD.value, 4), '.') - 1);
    INSERT INTO sealed_counts (kid, n)
    SELECT substr(NEW.value, 4, instr(substr(NEW.value, 4), '.') - 1), 1
    WHERE NEW.value LIKE 'v1.%'
    ON CONFLICT (kid) DO UPDATE SET n = n + 1;
END;
