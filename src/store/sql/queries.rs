//! Every statement the shared store runs, rendered once per store for its dialect.

use super::dialect::Dialect;

/// Columns of `sites` in the order the shared code binds and reads them.
pub const SITE_COLUMNS: &str = "id, name, upstream_url, enabled, credential_kind, \
    credential_username, credential_sealed, auth_policy, jwt_secret_sealed, \
    required_namespaces, health_fail_fast, allowed_paths, allowed_origins, created_at, updated_at, \
    version";
pub const KEY_COLUMNS: &str = "key_id, site_id, label, secret_hash, created_at, expires_at, \
    revoked_at, grace_until, last_used_at";
/// One row of [`KEY_COLUMNS`] values.
pub const KEY_ROW: &str = "?, ?, ?, ?, ?, ?, ?, ?, ?";
pub const ADMIN_TOKEN_COLUMNS: &str =
    "id, label, scope, secret_hash, created_at, revoked_at, last_used_at";
pub const AUDIT_COLUMNS: &str = "id, at, actor, action, target, site_id, request_id, detail";

/// The statements, parameters in the dialect's form. Comments name the parameters.
pub struct Queries {
    pub site: String,
    /// (after id, text ('' = any), LIKE pattern on the lowercased id, the same on the
    /// lowercased name, health state ('' = any), the same state, limit)
    pub sites_matching: String,
    /// [`SITE_COLUMNS`], namespaces, allowed paths and origins as JSON text
    pub insert_site: String,
    /// (name, upstream_url, enabled, credential_kind, credential_username,
    /// credential_sealed, auth_policy, jwt_secret_sealed, namespaces JSON,
    /// health_fail_fast, allowed paths JSON, allowed origins JSON, updated_at, id,
    /// expected version)
    pub update_site: String,
    /// `(id, allowed_origins)` of the sites that allow some origin, by id
    pub site_origins: String,
    pub site_exists: String,
    pub site_key_ids: String,
    pub delete_site: String,

    pub key: String,
    pub site_keys: String,
    /// [`KEY_COLUMNS`]
    pub insert_key: String,
    /// (revoked_at, grace_until, grace_until, key id), returns the key
    pub revoke_key: String,
    /// (after key id, limit)
    pub keys_after: String,
    /// (before, before, limit), returns the deleted keys: keys revoked (their grace
    /// over) or expired before `before`
    pub purge_keys: String,

    /// (at, actor, action, target, site_id, request_id, detail)
    pub insert_audit: String,
    /// (site id or NULL, site id or NULL, since (unix s), before id, limit), newest first
    pub audit_newest: String,
    /// (after id, limit), oldest first
    pub audit_after: String,

    /// [`ADMIN_TOKEN_COLUMNS`]
    pub insert_token: String,
    pub token: String,
    pub tokens: String,
    /// (at, at, id), returns the token
    pub revoke_token: String,
    /// (at, id)
    pub touch_token: String,

    pub setting: String,
    /// (name, value)
    pub insert_setting_if_absent: String,
    pub settings: String,

    pub latest_change: String,
    /// (after seq, limit); each row also carries the oldest kept seq
    pub changes_after: String,
    /// (before)
    pub prune_changes: String,

    pub sealed_counts: String,
    /// By slot kind tag: (after id, key id, limit), `(id, v, u)` rows (`u`: the site's
    /// upstream URL for a credential, else NULL)
    pub sealed_credentials: String,
    pub sealed_jwt_secrets: String,
    pub sealed_settings: String,
    /// By slot kind: (new sealed, id, old sealed)
    pub reseal_credential: String,
    pub reseal_jwt_secret: String,
    pub reseal_setting: String,
    /// (after id, limit), `(id, v, u)` rows: credentials still in sealed format v1
    pub unbound_credentials: String,
    /// (new sealed, id, old sealed, upstream URL)
    pub bind_credential: String,

    pub record_counts: String,
    pub ping: String,
}

/// One row of [`SITE_COLUMNS`] values, lists as JSON text parameters.
pub fn site_row(d: &Dialect) -> String {
    let list = d.array_write;
    format!("?, ?, ?, ?, ?, ?, ?, ?, ?, {list}, ?, {list}, {list}, ?, ?, ?")
}

impl Queries {
    pub fn new(d: &Dialect) -> Self {
        let r = |sql: &str| d.render(sql);
        let site_select = SITE_COLUMNS
            .replace(
                "required_namespaces",
                &d.array_column("required_namespaces"),
            )
            .replace("allowed_paths", &d.array_column("allowed_paths"))
            .replace("allowed_origins", &d.array_column("allowed_origins"));
        let list = d.array_write;
        let least = d.least;
        let sealed = |column: &str, url: &str| {
            r(&format!(
                "SELECT id, {column} AS v, {url} AS u FROM sites WHERE id > ? \
                 AND {column} IS NOT NULL AND {} <> ? ORDER BY id LIMIT ?",
                d.key_id(column)
            ))
        };
        Queries {
            site: r(&format!("SELECT {site_select} FROM sites WHERE id = ?")),
            sites_matching: r(&format!(
                "SELECT {site_select} FROM sites WHERE id > ? \
                 AND (? = '' OR lower(id) LIKE ? ESCAPE '\\' \
                      OR lower(coalesce(name, '')) LIKE ? ESCAPE '\\') \
                 AND (? = '' OR EXISTS (SELECT 1 FROM site_health h \
                      WHERE h.site_id = sites.id AND h.state = ?)) \
                 ORDER BY id LIMIT ?"
            )),
            insert_site: r(&format!(
                "INSERT INTO sites ({SITE_COLUMNS}) \
                 VALUES ({})",
                site_row(d)
            )),
            update_site: r(&format!(
                "UPDATE sites SET name = ?, upstream_url = ?, enabled = ?, credential_kind = ?, \
                 credential_username = ?, credential_sealed = ?, auth_policy = ?, \
                 jwt_secret_sealed = ?, required_namespaces = {list}, health_fail_fast = ?, \
                 allowed_paths = {list}, allowed_origins = {list}, updated_at = ?, \
                 version = version + 1 WHERE id = ? AND version = ?"
            )),
            // The condition is the one of the partial index `sites_allowed_origins`
            // (migrations): the rows read are the sites with origins, not every site.
            site_origins: r(&format!(
                "SELECT id, {} FROM sites WHERE {} ORDER BY id",
                d.array_column("allowed_origins"),
                d.array_nonempty("allowed_origins")
            )),
            site_exists: r("SELECT 1 FROM sites WHERE id = ?"),
            site_key_ids: r("SELECT key_id FROM api_keys WHERE site_id = ? ORDER BY key_id"),
            delete_site: r("DELETE FROM sites WHERE id = ?"),

            key: r(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?"
            )),
            site_keys: r(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE site_id = ? ORDER BY created_at, key_id"
            )),
            insert_key: r(&format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ({KEY_ROW})"
            )),
            // Revoking again may shorten a grace period, never lengthen it.
            revoke_key: r(&format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?), \
                 grace_until = {least}(COALESCE(grace_until, ?), ?) WHERE key_id = ? \
                 RETURNING {KEY_COLUMNS}"
            )),
            keys_after: r(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id > ? ORDER BY key_id LIMIT ?"
            )),
            purge_keys: r(&format!(
                "DELETE FROM api_keys WHERE key_id IN (SELECT key_id FROM api_keys \
                 WHERE (revoked_at IS NOT NULL AND COALESCE(grace_until, revoked_at) < ?) \
                 OR (expires_at IS NOT NULL AND expires_at < ?) ORDER BY key_id LIMIT ?) \
                 RETURNING {KEY_COLUMNS}"
            )),

            insert_audit: r(
                "INSERT INTO audit_log (at, actor, action, target, site_id, request_id, detail) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            ),
            audit_newest: r(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log \
                 WHERE (CAST(? AS TEXT) IS NULL OR site_id = ?) AND at >= ? AND id < ? \
                 ORDER BY id DESC LIMIT ?"
            )),
            audit_after: r(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?"
            )),

            insert_token: r(&format!(
                "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )),
            token: r(&format!(
                "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE id = ?"
            )),
            tokens: r(&format!(
                "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at, id"
            )),
            revoke_token: r(&format!(
                "UPDATE admin_tokens SET revoked_at = {least}(COALESCE(revoked_at, ?), ?) \
                 WHERE id = ? RETURNING {ADMIN_TOKEN_COLUMNS}"
            )),
            touch_token: r("UPDATE admin_tokens SET last_used_at = ? WHERE id = ?"),

            setting: r("SELECT value FROM settings WHERE name = ?"),
            insert_setting_if_absent: r(
                "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            ),
            settings: r("SELECT name, value FROM settings ORDER BY name"),

            latest_change: r("SELECT COALESCE(MAX(seq), 0) FROM changes"),
            // One statement, one snapshot: the oldest kept row and the rows after `seq`
            // agree.
            changes_after: r(
                "SELECT seq, kind, id, (SELECT MIN(seq) FROM changes) AS oldest \
                 FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
            ),
            // Keep the newest row so the sequence (and `complete`) stays meaningful.
            prune_changes: r(
                "DELETE FROM changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM changes)",
            ),

            // Kept by triggers (see the migrations): no scan of the sites.
            sealed_counts: r("SELECT kid, n FROM sealed_counts WHERE n > 0 ORDER BY kid"),
            sealed_credentials: sealed("credential_sealed", "upstream_url"),
            sealed_jwt_secrets: sealed("jwt_secret_sealed", "CAST(NULL AS TEXT)"),
            sealed_settings: r(&format!(
                "SELECT name AS id, value AS v, CAST(NULL AS TEXT) AS u FROM settings \
                 WHERE name > ? \
                 AND value LIKE 'v1.%' AND {} <> ? ORDER BY name LIMIT ?",
                d.key_id("value")
            )),
            reseal_credential: r(
                "UPDATE sites SET credential_sealed = ? WHERE id = ? AND credential_sealed = ?",
            ),
            reseal_jwt_secret: r(
                "UPDATE sites SET jwt_secret_sealed = ? WHERE id = ? AND jwt_secret_sealed = ?",
            ),
            reseal_setting: r("UPDATE settings SET value = ? WHERE name = ? AND value = ?"),
            // The condition is the one of the partial index `sites_unbound_credentials`
            // (migrations), written the same way so both planners use it.
            unbound_credentials: r(
                "SELECT id, credential_sealed AS v, upstream_url AS u FROM sites \
                 WHERE id > ? AND substr(credential_sealed, 1, 3) = 'v1.' ORDER BY id LIMIT ?",
            ),
            bind_credential: r("UPDATE sites SET credential_sealed = ? \
                 WHERE id = ? AND credential_sealed = ? AND upstream_url = ?"),

            record_counts: r("SELECT (SELECT COUNT(*) FROM sites) AS sites, \
                 (SELECT COUNT(*) FROM api_keys) AS api_keys, \
                 (SELECT COUNT(*) FROM admin_tokens) AS admin_tokens, \
                 (SELECT COUNT(*) FROM settings) AS settings, \
                 (SELECT COUNT(*) FROM audit_log) AS audit"),
            ping: r("SELECT 1"),
        }
    }

    /// (at, key id...): each listed key's `last_used_at` becomes the later of its own
    /// and `at` (it never moves back, whichever replica writes last).
    pub fn key_use(d: &Dialect, keys: usize) -> String {
        d.render(&format!(
            "UPDATE api_keys SET last_used_at = {}(COALESCE(last_used_at, 0), ?) \
             WHERE key_id IN ({})",
            d.greatest,
            Dialect::params(keys)
        ))
    }

    /// (url..., limit): the ids of the sites whose upstream URL is one of `urls`.
    pub fn sites_with_upstream(d: &Dialect, urls: usize) -> String {
        d.render(&format!(
            "SELECT id FROM sites WHERE upstream_url IN ({}) ORDER BY id LIMIT ?",
            Dialect::params(urls)
        ))
    }

    /// The sealed values of one slot kind tag (see [`crate::store::SEALED_SLOT_KINDS`]).
    pub fn sealed_of_kind(&self, kind: &str) -> &str {
        match kind {
            "c" => &self.sealed_credentials,
            "j" => &self.sealed_jwt_secrets,
            _ => &self.sealed_settings,
        }
    }

    /// The re-seal of one slot.
    pub fn reseal(&self, slot: &crate::store::SealedSlot) -> &str {
        use crate::store::SealedSlot;
        match slot {
            SealedSlot::SiteCredential(_) => &self.reseal_credential,
            SealedSlot::SiteJwtSecret(_) => &self.reseal_jwt_secret,
            SealedSlot::Setting(_) => &self.reseal_setting,
        }
    }
}
