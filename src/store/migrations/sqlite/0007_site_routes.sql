-- Path prefixes a site forwards besides the WordPress REST API (e.g.
-- ["/xmlrpc.php", "/wp-content/uploads/"], as JSON); NULL: the REST API only.
ALTER TABLE sites ADD COLUMN allowed_paths TEXT;
