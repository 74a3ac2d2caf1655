-- Per-site client authentication policy (which methods, JWT settings) as JSON, and the
-- site's JWT HMAC secret, sealed like every other secret.
ALTER TABLE sites ADD COLUMN auth_policy TEXT;
ALTER TABLE sites ADD COLUMN jwt_secret_sealed TEXT;
