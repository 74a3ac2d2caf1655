-- When each API key was last accepted (unix seconds, to the minute: gateways gather the
-- keys their requests used and write them about once a minute, never moving the time
-- back). NULL: not used since this column exists.
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
