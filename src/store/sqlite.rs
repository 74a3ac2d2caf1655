//! The embedded default store: one SQLite file (WAL mode), migrated on open.

use super::{
    trace_query, AdminTokenRecord, ApiKeyRecord, AuditEntry, AuditRecord, SiteRecord, Store,
    StoreError, StoredCredential,
};
use crate::site::CredentialKind;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
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
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
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
        let done = sqlx::query("DELETE FROM sites WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("site {id}")));
        }
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
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(key)
    }

    async fn list_audit(
        &self,
        site_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, site_id, request_id, detail FROM audit_log \
             WHERE (? IS NULL OR site_id = ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(site_id)
        .bind(site_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
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
            })
            .collect()
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
        sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(stored)
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

    #[tokio::test]
    async fn settings_are_created_once() {
        let (_d, s) = store().await;
        assert_eq!(s.insert_setting_if_absent("p", "one").await.unwrap(), "one");
        assert_eq!(s.insert_setting_if_absent("p", "two").await.unwrap(), "one");
        assert_eq!(s.get_setting("p").await.unwrap().as_deref(), Some("one"));
    }
}
