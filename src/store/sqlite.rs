//! The embedded default store: one SQLite file (WAL mode), migrated on open.

use super::{
    sealed_by_kinds, trace_query, AdminTokenRecord, ApiKeyRecord, AuditEntry, AuditRecord, Change,
    ChangeKind, ChangesSince, ImportBatch, RecordCounts, Reseal, SealedSlot, SealedValue,
    SiteRecord, Store, StoreError, StoredCredential,
};
use crate::site::CredentialKind;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::path::Path;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

const SITE_COLUMNS: &str = "id, name, upstream_url, enabled, credential_kind, \
    credential_username, credential_sealed, auth_policy, jwt_secret_sealed, \
    required_namespaces, health_fail_fast, created_at, updated_at, version";
const KEY_COLUMNS: &str =
    "key_id, site_id, label, secret_hash, created_at, expires_at, revoked_at, grace_until";

fn site_from_row(row: &SqliteRow) -> Result<SiteRecord, StoreError> {
    let kind: String = row.try_get("credential_kind").map_err(unavailable)?;
    let kind: CredentialKind = kind.parse().map_err(StoreError::Corrupt)?;
    Ok(SiteRecord {
        id: row.try_get("id").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        upstream_url: row.try_get("upstream_url").map_err(unavailable)?,
        enabled: row.try_get("enabled").map_err(unavailable)?,
        credential: StoredCredential {
            kind,
            username: row.try_get("credential_username").map_err(unavailable)?,
            sealed_secret: row.try_get("credential_sealed").map_err(unavailable)?,
        },
        auth_policy: row.try_get("auth_policy").map_err(unavailable)?,
        jwt_secret_sealed: row.try_get("jwt_secret_sealed").map_err(unavailable)?,
        required_namespaces: match row
            .try_get::<Option<String>, _>("required_namespaces")
            .map_err(unavailable)?
        {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("required_namespaces: {e}")))?,
            None => Vec::new(),
        },
        health_fail_fast: row.try_get("health_fail_fast").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        updated_at: row.try_get("updated_at").map_err(unavailable)?,
        version: row.try_get("version").map_err(unavailable)?,
    })
}

const AUDIT_COLUMNS: &str = "id, at, actor, action, target, site_id, request_id, detail";

fn audit_from_row(r: &SqliteRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: r.try_get("id").map_err(unavailable)?,
        at: r.try_get("at").map_err(unavailable)?,
        entry: AuditEntry {
            actor: r.try_get("actor").map_err(unavailable)?,
            action: r.try_get("action").map_err(unavailable)?,
            target: r.try_get("target").map_err(unavailable)?,
            site_id: r.try_get("site_id").map_err(unavailable)?,
            request_id: r.try_get("request_id").map_err(unavailable)?,
            detail: r.try_get("detail").map_err(unavailable)?,
        },
    })
}

const ADMIN_TOKEN_COLUMNS: &str =
    "id, label, scope, secret_hash, created_at, revoked_at, last_used_at";

fn admin_token_from_row(row: &SqliteRow) -> Result<AdminTokenRecord, StoreError> {
    let scope: String = row.try_get("scope").map_err(unavailable)?;
    Ok(AdminTokenRecord {
        id: row.try_get("id").map_err(unavailable)?,
        label: row.try_get("label").map_err(unavailable)?,
        scope: scope.parse().map_err(StoreError::Corrupt)?,
        secret_hash: row.try_get("secret_hash").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        revoked_at: row.try_get("revoked_at").map_err(unavailable)?,
        last_used_at: row.try_get("last_used_at").map_err(unavailable)?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_id: row.try_get("key_id").map_err(unavailable)?,
        site_id: row.try_get("site_id").map_err(unavailable)?,
        label: row.try_get("label").map_err(unavailable)?,
        secret_hash: row.try_get("secret_hash").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        expires_at: row.try_get("expires_at").map_err(unavailable)?,
        revoked_at: row.try_get("revoked_at").map_err(unavailable)?,
        grace_until: row.try_get("grace_until").map_err(unavailable)?,
    })
}

fn namespaces_json(ns: &[String]) -> Option<String> {
    (!ns.is_empty()).then(|| serde_json::to_string(ns).unwrap_or_default())
}

async fn write_audit(
    tx: &mut Transaction<'_, Sqlite>,
    audit: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, site_id, request_id, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(crate::time::now_unix())
    .bind(&audit.actor)
    .bind(&audit.action)
    .bind(&audit.target)
    .bind(&audit.site_id)
    .bind(&audit.request_id)
    .bind(&audit.detail)
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Appends one change-log row in the write's transaction.
async fn record_change(
    tx: &mut Transaction<'_, Sqlite>,
    kind: ChangeKind,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO changes (at, kind, id) VALUES (?, ?, ?)")
        .bind(crate::time::now_unix())
        .bind(kind.as_str())
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Sealed values of one slot kind (a [`SEALED_SLOT_KINDS`] tag) after an id, not
/// sealed with a key id, in id order: binds (after id, key id, limit). The key id of
/// sealed text `v1.<kid>.<nonce>.<ct>` is the text between the first two dots.
fn sealed_kind_sql(kind: &str) -> &'static str {
    match kind {
        "c" => "SELECT id, credential_sealed AS v FROM sites WHERE id > ? \
                AND credential_sealed IS NOT NULL \
                AND substr(credential_sealed, 4, instr(substr(credential_sealed, 4), '.') - 1) <> ? \
                ORDER BY id LIMIT ?",
        "j" => "SELECT id, jwt_secret_sealed AS v FROM sites WHERE id > ? \
                AND jwt_secret_sealed IS NOT NULL \
                AND substr(jwt_secret_sealed, 4, instr(substr(jwt_secret_sealed, 4), '.') - 1) <> ? \
                ORDER BY id LIMIT ?",
        _ => "SELECT name AS id, value AS v FROM settings WHERE name > ? \
              AND value LIKE 'v1.%' AND substr(value, 4, instr(substr(value, 4), '.') - 1) <> ? \
              ORDER BY name LIMIT ?",
    }
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = crate::config::model::parent_dir(path) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        // run_direct: `run` makes the future not `Send` for every lifetime (sqlx's
        // "Acquire is not general enough"), and `store::open` must be spawnable.
        let mut conn = pool.acquire().await.map_err(unavailable)?;
        MIGRATOR
            .run_direct(&mut *conn)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        drop(conn);
        Ok(SqliteStore { pool })
    }

    async fn begin(&self) -> Result<Transaction<'_, Sqlite>, StoreError> {
        self.pool.begin().await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError> {
        trace_query("get_site", id);
        let row = sqlx::query(&format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(site_from_row).transpose()
    }

    async fn list_sites(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SiteRecord>, StoreError> {
        trace_query("list_sites", after.unwrap_or(""));
        let rows = sqlx::query(&format!(
            "SELECT {SITE_COLUMNS} FROM sites WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(site_from_row).collect()
    }

    async fn create_site(&self, site: &SiteRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let res = sqlx::query(&format!(
            "INSERT INTO sites ({SITE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&site.id)
        .bind(&site.name)
        .bind(&site.upstream_url)
        .bind(site.enabled)
        .bind(site.credential.kind.as_str())
        .bind(&site.credential.username)
        .bind(&site.credential.sealed_secret)
        .bind(&site.auth_policy)
        .bind(&site.jwt_secret_sealed)
        .bind(namespaces_json(&site.required_namespaces))
        .bind(site.health_fail_fast)
        .bind(site.created_at)
        .bind(site.updated_at)
        .bind(site.version)
        .execute(&mut *tx)
        .await;
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists(format!("site {}", site.id)))
            }
            Err(e) => return Err(unavailable(e)),
            Ok(_) => {}
        }
        record_change(&mut tx, ChangeKind::Site, &site.id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn update_site(
        &self,
        site: &SiteRecord,
        audit: &AuditEntry,
    ) -> Result<SiteRecord, StoreError> {
        let mut tx = self.begin().await?;
        let now = crate::time::now_unix();
        let done = sqlx::query(
            "UPDATE sites SET name = ?, upstream_url = ?, enabled = ?, credential_kind = ?, \
             credential_username = ?, credential_sealed = ?, auth_policy = ?, \
             jwt_secret_sealed = ?, required_namespaces = ?, health_fail_fast = ?, \
             updated_at = ?, version = version + 1 \
             WHERE id = ? AND version = ?",
        )
        .bind(&site.name)
        .bind(&site.upstream_url)
        .bind(site.enabled)
        .bind(site.credential.kind.as_str())
        .bind(&site.credential.username)
        .bind(&site.credential.sealed_secret)
        .bind(&site.auth_policy)
        .bind(&site.jwt_secret_sealed)
        .bind(namespaces_json(&site.required_namespaces))
        .bind(site.health_fail_fast)
        .bind(now)
        .bind(&site.id)
        .bind(site.version)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 FROM sites WHERE id = ?")
                .bind(&site.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?
                .is_some();
            return Err(if exists {
                StoreError::VersionConflict {
                    what: format!("site {}", site.id),
                    expected: site.version,
                }
            } else {
                StoreError::NotFound(format!("site {}", site.id))
            });
        }
        record_change(&mut tx, ChangeKind::Site, &site.id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(SiteRecord {
            updated_at: now,
            version: site.version + 1,
            ..site.clone()
        })
    }

    async fn delete_site(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT key_id FROM api_keys WHERE site_id = ? ORDER BY key_id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        for key in &keys {
            record_change(&mut tx, ChangeKind::ApiKey, key).await?;
        }
        let done = sqlx::query("DELETE FROM sites WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("site {id}")));
        }
        record_change(&mut tx, ChangeKind::Site, id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        trace_query("get_api_key", key_id);
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?"
        ))
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_api_keys(&self, site_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        trace_query("list_api_keys", site_id);
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE site_id = ? ORDER BY created_at, key_id"
        ))
        .bind(site_id)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let res = sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&key.key_id)
        .bind(&key.site_id)
        .bind(&key.label)
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.grace_until)
        .execute(&mut *tx)
        .await;
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists(format!("key {}", key.key_id)))
            }
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                return Err(StoreError::NotFound(format!("site {}", key.site_id)))
            }
            Err(e) => return Err(unavailable(e)),
            Ok(_) => {}
        }
        record_change(&mut tx, ChangeKind::ApiKey, &key.key_id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        revoked_at: i64,
        grace_until: i64,
        audit: &AuditEntry,
    ) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.begin().await?;
        // Revoking again may shorten a grace period, never lengthen it.
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?), \
             grace_until = MIN(COALESCE(grace_until, ?), ?) WHERE key_id = ?",
        )
        .bind(revoked_at)
        .bind(grace_until)
        .bind(grace_until)
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("key {key_id}")));
        }
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?"
        ))
        .bind(key_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        let key = key_from_row(&row)?;
        record_change(&mut tx, ChangeKind::ApiKey, key_id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(key)
    }

    async fn list_audit(
        &self,
        site_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE (? IS NULL OR site_id = ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(site_id)
        .bind(site_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn create_admin_token(
        &self,
        token: &AdminTokenRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let res = sqlx::query(&format!(
            "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&token.id)
        .bind(&token.label)
        .bind(token.scope.as_str())
        .bind(&token.secret_hash)
        .bind(token.created_at)
        .bind(token.revoked_at)
        .bind(token.last_used_at)
        .execute(&mut *tx)
        .await;
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists(format!(
                    "admin token {}",
                    token.id
                )))
            }
            Err(e) => return Err(unavailable(e)),
            Ok(_) => {}
        }
        record_change(&mut tx, ChangeKind::AdminToken, &token.id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get_admin_token(&self, id: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        trace_query("get_admin_token", id);
        let row = sqlx::query(&format!(
            "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(admin_token_from_row).transpose()
    }

    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(admin_token_from_row).collect()
    }

    async fn revoke_admin_token(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<AdminTokenRecord, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE admin_tokens SET revoked_at = MIN(COALESCE(revoked_at, ?), ?) WHERE id = ?",
        )
        .bind(at)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("admin token {id}")));
        }
        let row = sqlx::query(&format!(
            "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        let token = admin_token_from_row(&row)?;
        record_change(&mut tx, ChangeKind::AdminToken, id).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(token)
    }

    async fn touch_admin_token(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE admin_tokens SET last_used_at = ? WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        trace_query("get_setting", name);
        sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn insert_setting_if_absent(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if inserted.rows_affected() > 0 {
            record_change(&mut tx, ChangeKind::Setting, name).await?;
        }
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(stored)
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn changes_since(&self, seq: i64, limit: u32) -> Result<ChangesSince, StoreError> {
        let mut tx = self.begin().await?;
        // Pruned past `seq`: the oldest kept row is not the next one after it.
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM changes")
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        let rows =
            sqlx::query("SELECT seq, kind, id FROM changes WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(seq)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let changes = rows
            .iter()
            .map(|r| {
                let kind: String = r.try_get("kind").map_err(unavailable)?;
                Ok(Change {
                    seq: r.try_get("seq").map_err(unavailable)?,
                    kind: ChangeKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("change kind {kind:?}")))?,
                    id: r.try_get("id").map_err(unavailable)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let complete = match (oldest, changes.first()) {
            (Some(oldest), Some(_)) => oldest <= seq + 1,
            _ => true,
        };
        Ok(ChangesSince { changes, complete })
    }

    async fn prune_changes(&self, before: i64) -> Result<u64, StoreError> {
        // Keep the newest row so the sequence (and `complete`) stays meaningful.
        let done = sqlx::query(
            "DELETE FROM changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM changes)",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn sealed_key_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        // Kept by triggers (migration 0006): no scan of the sites.
        let rows = sqlx::query("SELECT kid, n FROM sealed_counts WHERE n > 0 ORDER BY kid")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kid").map_err(unavailable)?,
                    r.try_get("n").map_err(unavailable)?,
                ))
            })
            .collect()
    }

    async fn sealed_not_by(
        &self,
        key_id: &str,
        after: Option<&SealedSlot>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError> {
        sealed_by_kinds(after, limit, |kind, after_id, want| async move {
            let rows = sqlx::query(sealed_kind_sql(kind))
                .bind(after_id)
                .bind(key_id)
                .bind(want)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get("id").map_err(unavailable)?,
                        r.try_get("v").map_err(unavailable)?,
                    ))
                })
                .collect()
        })
        .await
    }

    async fn reseal(&self, batch: &[Reseal], audit: &AuditEntry) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut replaced = 0;
        for r in batch {
            let sql = match &r.old.slot {
                SealedSlot::SiteCredential(_) => {
                    "UPDATE sites SET credential_sealed = ? WHERE id = ? AND credential_sealed = ?"
                }
                SealedSlot::SiteJwtSecret(_) => {
                    "UPDATE sites SET jwt_secret_sealed = ? WHERE id = ? AND jwt_secret_sealed = ?"
                }
                SealedSlot::Setting(_) => {
                    "UPDATE settings SET value = ? WHERE name = ? AND value = ?"
                }
            };
            let (kind, id) = r.old.slot.change();
            let done = sqlx::query(sql)
                .bind(&r.new_sealed)
                .bind(id)
                .bind(&r.old.sealed)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            if done.rows_affected() > 0 {
                replaced += done.rows_affected();
                record_change(&mut tx, kind, id).await?;
            }
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(replaced)
    }

    async fn record_counts(&self) -> Result<RecordCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM sites) AS sites, \
             (SELECT COUNT(*) FROM api_keys) AS api_keys, \
             (SELECT COUNT(*) FROM admin_tokens) AS admin_tokens, \
             (SELECT COUNT(*) FROM settings) AS settings, \
             (SELECT COUNT(*) FROM audit_log) AS audit",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        let n = |col: &str| -> Result<u64, StoreError> {
            let v: i64 = row.try_get(col).map_err(unavailable)?;
            Ok(u64::try_from(v).unwrap_or_default())
        };
        Ok(RecordCounts {
            sites: n("sites")?,
            api_keys: n("api_keys")?,
            admin_tokens: n("admin_tokens")?,
            settings: n("settings")?,
            audit: n("audit")?,
        })
    }

    async fn export_api_keys(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id > ? ORDER BY key_id LIMIT ?"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn export_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM settings ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name").map_err(unavailable)?,
                    r.try_get("value").map_err(unavailable)?,
                ))
            })
            .collect()
    }

    async fn export_audit(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn import(&self, batch: &ImportBatch) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Multi-row INSERTs, each under SQLite's limit of 32766 bound parameters.
        for chunk in batch.settings.chunks(1000) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO settings (name, value) ");
            q.push_values(chunk, |mut b, (name, value)| {
                b.push_bind(name).push_bind(value);
            });
            q.build().execute(&mut *tx).await.map_err(import_error)?;
        }
        for chunk in batch.admin_tokens.chunks(1000) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS}) "
            ));
            q.push_values(chunk, |mut b, t| {
                b.push_bind(&t.id)
                    .push_bind(&t.label)
                    .push_bind(t.scope.as_str())
                    .push_bind(&t.secret_hash)
                    .push_bind(t.created_at)
                    .push_bind(t.revoked_at)
                    .push_bind(t.last_used_at);
            });
            q.build().execute(&mut *tx).await.map_err(import_error)?;
        }
        for chunk in batch.sites.chunks(1000) {
            let mut q = QueryBuilder::<Sqlite>::new(format!("INSERT INTO sites ({SITE_COLUMNS}) "));
            q.push_values(chunk, |mut b, site| {
                b.push_bind(&site.id)
                    .push_bind(&site.name)
                    .push_bind(&site.upstream_url)
                    .push_bind(site.enabled)
                    .push_bind(site.credential.kind.as_str())
                    .push_bind(&site.credential.username)
                    .push_bind(&site.credential.sealed_secret)
                    .push_bind(&site.auth_policy)
                    .push_bind(&site.jwt_secret_sealed)
                    .push_bind(namespaces_json(&site.required_namespaces))
                    .push_bind(site.health_fail_fast)
                    .push_bind(site.created_at)
                    .push_bind(site.updated_at)
                    .push_bind(site.version);
            });
            q.build().execute(&mut *tx).await.map_err(import_error)?;
        }
        for chunk in batch.api_keys.chunks(2000) {
            let mut q =
                QueryBuilder::<Sqlite>::new(format!("INSERT INTO api_keys ({KEY_COLUMNS}) "));
            q.push_values(chunk, |mut b, k| {
                b.push_bind(&k.key_id)
                    .push_bind(&k.site_id)
                    .push_bind(&k.label)
                    .push_bind(&k.secret_hash)
                    .push_bind(k.created_at)
                    .push_bind(k.expires_at)
                    .push_bind(k.revoked_at)
                    .push_bind(k.grace_until);
            });
            q.build().execute(&mut *tx).await.map_err(import_error)?;
        }
        for chunk in batch.audit.chunks(2000) {
            let mut q =
                QueryBuilder::<Sqlite>::new(format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) "));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.at)
                    .push_bind(&r.entry.actor)
                    .push_bind(&r.entry.action)
                    .push_bind(&r.entry.target)
                    .push_bind(&r.entry.site_id)
                    .push_bind(&r.entry.request_id)
                    .push_bind(&r.entry.detail);
            });
            q.build().execute(&mut *tx).await.map_err(import_error)?;
        }
        tx.commit().await.map_err(unavailable)
    }
}

/// An import's error: a record already there or a key without its site is the caller's
/// mistake, anything else the store's.
fn import_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::AlreadyExists(format!("a record being imported ({d})"))
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound("the site of an API key being imported".into())
        }
        _ => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(action: &str, target: &str) -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            action: action.into(),
            target: target.into(),
            site_id: target.strip_prefix("site:").map(str::to_string),
            request_id: None,
            detail: None,
        }
    }

    fn site(id: &str) -> SiteRecord {
        SiteRecord {
            id: id.into(),
            name: id.into(),
            upstream_url: "http://127.0.0.1:1".into(),
            enabled: true,
            credential: StoredCredential {
                kind: CredentialKind::None,
                username: None,
                sealed_secret: None,
            },
            auth_policy: None,
            jwt_secret_sealed: None,
            required_namespaces: vec!["myplugin/v1".into()],
            health_fail_fast: false,
            created_at: 1,
            updated_at: 1,
            version: 1,
        }
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn sites_crud_with_versions_and_audit() {
        let (_d, s) = store().await;
        s.create_site(&site("shop"), &audit("site.create", "site:shop"))
            .await
            .unwrap();
        assert!(matches!(
            s.create_site(&site("shop"), &audit("site.create", "site:shop"))
                .await,
            Err(StoreError::AlreadyExists(_))
        ));
        let mut rec = s.get_site("shop").await.unwrap().unwrap();
        rec.enabled = false;
        let updated = s
            .update_site(&rec, &audit("site.disable", "site:shop"))
            .await
            .unwrap();
        assert_eq!(updated.version, 2);
        // A stale version is refused and changes nothing.
        assert!(matches!(
            s.update_site(&rec, &audit("site.update", "site:shop"))
                .await,
            Err(StoreError::VersionConflict { .. })
        ));
        assert!(!s.get_site("shop").await.unwrap().unwrap().enabled);
        s.create_site(&site("blog"), &audit("site.create", "site:blog"))
            .await
            .unwrap();
        let page = s.list_sites(None, 1).await.unwrap();
        assert_eq!(page[0].id, "blog");
        let page = s.list_sites(Some("blog"), 10).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, "shop");
        let log = s.list_audit(Some("shop"), 10).await.unwrap();
        let actions: Vec<_> = log.iter().map(|r| r.entry.action.as_str()).collect();
        assert_eq!(actions, vec!["site.disable", "site.create"]);
    }

    #[tokio::test]
    async fn keys_revoke_and_cascade() {
        let (_d, s) = store().await;
        s.create_site(&site("shop"), &audit("site.create", "site:shop"))
            .await
            .unwrap();
        let key = ApiKeyRecord {
            key_id: "abc".into(),
            site_id: "shop".into(),
            label: None,
            secret_hash: vec![7; 32],
            created_at: 10,
            expires_at: None,
            revoked_at: None,
            grace_until: None,
        };
        s.insert_api_key(&key, &audit("key.issue", "key:abc"))
            .await
            .unwrap();
        let orphan = ApiKeyRecord {
            key_id: "def".into(),
            site_id: "nope".into(),
            ..key.clone()
        };
        assert!(matches!(
            s.insert_api_key(&orphan, &audit("key.issue", "key:def"))
                .await,
            Err(StoreError::NotFound(_))
        ));
        let r = s
            .revoke_api_key("abc", 100, 200, &audit("key.revoke", "key:abc"))
            .await
            .unwrap();
        assert_eq!((r.revoked_at, r.grace_until), (Some(100), Some(200)));
        // A second revoke can shorten the grace, not extend it.
        let r = s
            .revoke_api_key("abc", 150, 500, &audit("key.revoke", "key:abc"))
            .await
            .unwrap();
        assert_eq!((r.revoked_at, r.grace_until), (Some(100), Some(200)));
        let r = s
            .revoke_api_key("abc", 150, 150, &audit("key.revoke", "key:abc"))
            .await
            .unwrap();
        assert_eq!((r.revoked_at, r.grace_until), (Some(100), Some(150)));
        s.delete_site("shop", &audit("site.delete", "site:shop"))
            .await
            .unwrap();
        assert!(s.get_api_key("abc").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn admin_tokens_create_revoke_touch() {
        use crate::store::AdminScope;
        let (_d, s) = store().await;
        let token = AdminTokenRecord {
            id: "tok1".into(),
            label: Some("ops".into()),
            scope: AdminScope::Write,
            secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_at: 10,
            revoked_at: None,
            last_used_at: None,
        };
        s.create_admin_token(&token, &audit("admin_token.create", "admin_token:tok1"))
            .await
            .unwrap();
        assert!(matches!(
            s.create_admin_token(&token, &audit("admin_token.create", "admin_token:tok1"))
                .await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(
            s.get_admin_token("tok1").await.unwrap(),
            Some(token.clone())
        );
        assert!(s.get_admin_token("nope").await.unwrap().is_none());
        s.touch_admin_token("tok1", 20).await.unwrap();
        let r = s
            .revoke_admin_token("tok1", 30, &audit("admin_token.revoke", "admin_token:tok1"))
            .await
            .unwrap();
        assert_eq!((r.revoked_at, r.last_used_at), (Some(30), Some(20)));
        // Revoking again keeps the first time.
        let r = s
            .revoke_admin_token("tok1", 40, &audit("admin_token.revoke", "admin_token:tok1"))
            .await
            .unwrap();
        assert_eq!(r.revoked_at, Some(30));
        assert!(matches!(
            s.revoke_admin_token("nope", 40, &audit("admin_token.revoke", "admin_token:nope"))
                .await,
            Err(StoreError::NotFound(_))
        ));
        let all = s.list_admin_tokens().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].scope, AdminScope::Write);
        let log = s.list_audit(None, 10).await.unwrap();
        assert_eq!(log.len(), 3);
        assert!(log.iter().all(|r| r.entry.site_id.is_none()));
    }

    /// A store made before migration 0006 gets its sealed counts from its contents.
    #[tokio::test]
    async fn sealed_counts_migration_counts_existing_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let before_0006 = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                MIGRATOR
                    .migrations
                    .iter()
                    .filter(|m| m.version < 6)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        let mut conn = pool.acquire().await.unwrap();
        before_0006.run_direct(&mut *conn).await.unwrap();
        for sql in [
            "INSERT INTO sites (id, name, upstream_url, credential_kind, credential_sealed, \
             jwt_secret_sealed, created_at, updated_at) \
             VALUES ('a', 'a', 'http://x', 'bearer', 'v1.k1.n.c', 'v1.k2.n.c', 1, 1)",
            "INSERT INTO sites (id, name, upstream_url, credential_kind, credential_sealed, \
             created_at, updated_at) VALUES ('b', 'b', 'http://x', 'bearer', 'v1.k1.n.d', 1, 1)",
            "INSERT INTO sites (id, name, upstream_url, credential_kind, created_at, updated_at) \
             VALUES ('c', 'c', 'http://x', 'none', 1, 1)",
            "INSERT INTO settings (name, value) VALUES ('pepper', 'v1.k2.n.p'), ('x', 'plain')",
        ] {
            sqlx::query(sql).execute(&mut *conn).await.unwrap();
        }
        drop(conn);
        pool.close().await;
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            s.sealed_key_counts().await.unwrap(),
            vec![("k1".to_string(), 2), ("k2".to_string(), 2)]
        );
    }

    #[tokio::test]
    async fn settings_are_created_once() {
        let (_d, s) = store().await;
        assert_eq!(s.insert_setting_if_absent("p", "one").await.unwrap(), "one");
        assert_eq!(s.insert_setting_if_absent("p", "two").await.unwrap(), "one");
        assert_eq!(s.get_setting("p").await.unwrap().as_deref(), Some("one"));
    }
}
