//! The store for fleets: one PostgreSQL database shared by several gateway replicas.
//! Same schema and behaviour as the SQLite store; committed changes are also pushed to
//! every replica with NOTIFY (see [`PostgresStore::spawn_listener`]).
//!
//! Store outages must surface as errors, not hangs (the gateway then serves stale cache
//! entries): a connection is waited for at most [`ACQUIRE_TIMEOUT`], a statement runs
//! at most [`STATEMENT_TIMEOUT`], and a transaction left idle is ended by the server.
//!
//! The URL may hold a password: it only ever appears redacted ([`redact_url`]).

use super::{
    sealed_by_kinds, trace_query, AdminTokenRecord, ApiKeyRecord, AuditEntry, AuditRecord, Change,
    ChangeEvent, ChangeKind, ChangesSince, ImportBatch, RecordCounts, Reseal, SealedSlot,
    SealedValue, SiteRecord, Store, StoreError, StoredCredential,
};
use crate::config::redact_url;
use crate::site::CredentialKind;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Postgres, Row, Transaction};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// The channel committed changes are announced on; payload `<seq>:<kind>:<id>`.
pub const CHANGES_CHANNEL: &str = "wpgate_changes";
/// `application_name` of the store's pooled connections.
pub const APPLICATION_NAME: &str = "wpgate";
/// `application_name` of the listener's dedicated connection (so an operator, or a
/// test, can find it in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "wpgate-listener";
/// The advisory lock every write that records changes holds until it commits, so the
/// change log's `seq` order is commit order. Two int4 keys ("wpga", 1): a key space apart
/// from the single-bigint lock sqlx's migrator takes.
const CHANGE_LOG_LOCK: (i32, i32) = (0x7770_6761, 1);

/// Longest wait for a pooled connection (including connecting) before a call fails
/// with `Unavailable`.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a dedicated connection (migrations, the listener).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side limit per statement (unless the URL's `options` set one).
const STATEMENT_TIMEOUT: &str = "5s";
/// A transaction whose client went quiet (a stuck or partitioned replica) is ended by
/// the server, releasing its row and advisory locks.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "30s";
/// Client-side limit of one store call: acquiring a connection, the statements, the
/// commit.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);
/// Client-side limit of one import batch (`wpgate store migrate`, bulk loads).
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_CONNECTIONS: u32 = 16;
/// How long the listener waits without a notification before checking its connection.
const LISTENER_HEARTBEAT: Duration = Duration::from_secs(30);
/// The listener's reconnect backoff: doubles from the first to the last.
const LISTENER_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

pub struct PostgresStore {
    pool: PgPool,
    /// For the listener's dedicated connections.
    listen_options: PgConnectOptions,
}

/// Runs one store call, failing with `Unavailable` after `limit`: the backstop for a
/// server that stops answering on an open connection (a network partition), where
/// neither the acquire timeout nor the server's statement timeout can help.
async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "PostgreSQL did not answer within {limit:?}"
        )))
    })
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
            "no PostgreSQL connection within {ACQUIRE_TIMEOUT:?} (is the server up and reachable?)"
        )),
        other => StoreError::Unavailable(format!("PostgreSQL: {other}")),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

const SITE_COLUMNS: &str = "id, name, upstream_url, enabled, credential_kind, \
    credential_username, credential_sealed, auth_policy, jwt_secret_sealed, \
    required_namespaces, health_fail_fast, created_at, updated_at, version";
const KEY_COLUMNS: &str =
    "key_id, site_id, label, secret_hash, created_at, expires_at, revoked_at, grace_until";
const ADMIN_TOKEN_COLUMNS: &str =
    "id, label, scope, secret_hash, created_at, revoked_at, last_used_at";
const AUDIT_COLUMNS: &str = "id, at, actor, action, target, site_id, request_id, detail";

fn site_from_row(row: &PgRow) -> Result<SiteRecord, StoreError> {
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
        required_namespaces: row.try_get("required_namespaces").map_err(unavailable)?,
        health_fail_fast: row.try_get("health_fail_fast").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        updated_at: row.try_get("updated_at").map_err(unavailable)?,
        version: row.try_get("version").map_err(unavailable)?,
    })
}

fn key_from_row(row: &PgRow) -> Result<ApiKeyRecord, StoreError> {
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

fn admin_token_from_row(row: &PgRow) -> Result<AdminTokenRecord, StoreError> {
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

fn audit_from_row(r: &PgRow) -> Result<AuditRecord, StoreError> {
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

async fn write_audit(
    tx: &mut Transaction<'_, Postgres>,
    audit: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, site_id, request_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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

/// Appends one change-log row per id in the write's transaction (which holds
/// [`CHANGE_LOG_LOCK`], so `MAX(seq) + 1` is free and the rows commit in `seq` order),
/// and queues one notification per row, delivered when the transaction commits.
async fn record_changes(
    tx: &mut Transaction<'_, Postgres>,
    kind: ChangeKind,
    ids: &[&str],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH last AS (SELECT COALESCE(MAX(seq), 0) AS seq FROM changes), \
         added AS ( \
             INSERT INTO changes (seq, at, kind, id) \
             SELECT last.seq + t.n, $1, $2, t.id \
             FROM last, UNNEST($3::text[]) WITH ORDINALITY AS t(id, n) \
             RETURNING seq, kind, id) \
         SELECT pg_notify($4, seq || ':' || kind || ':' || id) FROM added ORDER BY seq",
    )
    .bind(crate::time::now_unix())
    .bind(kind.as_str())
    .bind(ids)
    .bind(CHANGES_CHANNEL)
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

async fn record_change(
    tx: &mut Transaction<'_, Postgres>,
    kind: ChangeKind,
    id: &str,
) -> Result<(), StoreError> {
    record_changes(tx, kind, &[id]).await
}

/// Parses a notification payload `<seq>:<kind>:<id>`.
fn parse_change(payload: &str) -> Option<Change> {
    let mut parts = payload.splitn(3, ':');
    let seq = parts.next()?.parse().ok()?;
    let kind = ChangeKind::parse(parts.next()?)?;
    let id = parts.next()?.to_string();
    Some(Change { seq, kind, id })
}

/// Sealed values of one slot kind (a [`SEALED_SLOT_KINDS`] tag) after an id, not
/// sealed with a key id, in id order (ids are `COLLATE "C"`, as Rust orders them):
/// binds (after id, key id, limit). `split_part(v, '.', 2)` is the key id of sealed
/// text `v1.<kid>.<nonce>.<ct>`.
fn sealed_kind_sql(kind: &str) -> &'static str {
    match kind {
        "c" => {
            "SELECT id, credential_sealed AS v FROM sites WHERE id > $1 \
                AND credential_sealed IS NOT NULL \
                AND split_part(credential_sealed, '.', 2) <> $2 ORDER BY id LIMIT $3"
        }
        "j" => {
            "SELECT id, jwt_secret_sealed AS v FROM sites WHERE id > $1 \
                AND jwt_secret_sealed IS NOT NULL \
                AND split_part(jwt_secret_sealed, '.', 2) <> $2 ORDER BY id LIMIT $3"
        }
        _ => {
            "SELECT name AS id, value AS v FROM settings WHERE name > $1 \
              AND value LIKE 'v1.%' AND split_part(value, '.', 2) <> $2 \
              ORDER BY name LIMIT $3"
        }
    }
}

impl PostgresStore {
    /// Connects (lazily: the pool opens connections as calls need them), runs the
    /// migrations on a dedicated connection, and returns the store. Several replicas may
    /// open the same database at once: sqlx's migrator holds an advisory lock while it
    /// checks and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let base: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL {shown}: {e}")))?;
        let base = base
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1));
        let mut server_settings = vec![(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        )];
        // An operator's own statement_timeout (URL `options=-c statement_timeout=...`) wins.
        if !base
            .get_options()
            .is_some_and(|o| o.contains("statement_timeout"))
        {
            server_settings.push(("statement_timeout", STATEMENT_TIMEOUT));
        }
        let options = base
            .clone()
            .application_name(APPLICATION_NAME)
            .options(server_settings.iter().copied());
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Some(Duration::from_secs(300)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .connect_lazy_with(options);

        // Migrations may wait for another replica's migration: no statement timeout.
        let migrate_options = base
            .clone()
            .application_name("wpgate-migrate")
            .options([("statement_timeout", "0")]);
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, migrate_options.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "{shown}: no connection within {CONNECT_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| StoreError::Unavailable(format!("{shown}: {e}")))?;
        // run_direct: `run` makes the future not `Send` for every lifetime (sqlx's
        // "Acquire is not general enough"), and `store::open` must be spawnable.
        let migrated = MIGRATOR.run_direct(&mut conn).await;
        let _ = conn.close().await;
        migrated.map_err(|e| StoreError::Unavailable(format!("{shown}: migration failed: {e}")))?;

        let listen_options = base.application_name(LISTENER_APPLICATION_NAME);
        Ok(PostgresStore {
            pool,
            listen_options,
        })
    }

    /// Begins a transaction for a write that records changes: takes the change-log lock
    /// first, before any row lock, so writers queue in one order and never deadlock.
    async fn begin_write(&self) -> Result<Transaction<'_, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(CHANGE_LOG_LOCK.0)
            .bind(CHANGE_LOG_LOCK.1)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        Ok(tx)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        bounded(CALL_TIMEOUT, async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn get_site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            trace_query("get_site", id);
            let row = sqlx::query(&format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            row.as_ref().map(site_from_row).transpose()
        })
        .await
    }

    async fn list_sites(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SiteRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            trace_query("list_sites", after.unwrap_or(""));
            let rows = sqlx::query(&format!(
                "SELECT {SITE_COLUMNS} FROM sites WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(site_from_row).collect()
        })
        .await
    }

    async fn create_site(&self, site: &SiteRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let res = sqlx::query(&format!(
                "INSERT INTO sites ({SITE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
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
            .bind(&site.required_namespaces)
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
        })
        .await
    }

    async fn update_site(
        &self,
        site: &SiteRecord,
        audit: &AuditEntry,
    ) -> Result<SiteRecord, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let now = crate::time::now_unix();
            let done = sqlx::query(
                "UPDATE sites SET name = $1, upstream_url = $2, enabled = $3, credential_kind = $4, \
                 credential_username = $5, credential_sealed = $6, auth_policy = $7, \
                 jwt_secret_sealed = $8, required_namespaces = $9, health_fail_fast = $10, \
                 updated_at = $11, version = version + 1 \
                 WHERE id = $12 AND version = $13",
            )
            .bind(&site.name)
            .bind(&site.upstream_url)
            .bind(site.enabled)
            .bind(site.credential.kind.as_str())
            .bind(&site.credential.username)
            .bind(&site.credential.sealed_secret)
            .bind(&site.auth_policy)
            .bind(&site.jwt_secret_sealed)
            .bind(&site.required_namespaces)
            .bind(site.health_fail_fast)
            .bind(now)
            .bind(&site.id)
            .bind(site.version)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if done.rows_affected() == 0 {
                let exists = sqlx::query("SELECT 1 FROM sites WHERE id = $1")
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
        })
        .await
    }

    async fn delete_site(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let keys: Vec<String> = sqlx::query_scalar(
                "SELECT key_id FROM api_keys WHERE site_id = $1 ORDER BY key_id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
            let done = sqlx::query("DELETE FROM sites WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("site {id}")));
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            record_changes(&mut tx, ChangeKind::ApiKey, &keys).await?;
            record_change(&mut tx, ChangeKind::Site, id).await?;
            write_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(unavailable)
        })
        .await
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            trace_query("get_api_key", key_id);
            let row = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1"
            ))
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(key_from_row).transpose()
        })
        .await
    }

    async fn list_api_keys(&self, site_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            trace_query("list_api_keys", site_id);
            let rows = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE site_id = $1 ORDER BY created_at, key_id"
            ))
            .bind(site_id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(key_from_row).collect()
        })
        .await
    }

    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let res = sqlx::query(&format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
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
                Err(e) if is_foreign_key_violation(&e) => {
                    return Err(StoreError::NotFound(format!("site {}", key.site_id)))
                }
                Err(e) => return Err(unavailable(e)),
                Ok(_) => {}
            }
            record_change(&mut tx, ChangeKind::ApiKey, &key.key_id).await?;
            write_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(unavailable)
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        revoked_at: i64,
        grace_until: i64,
        audit: &AuditEntry,
    ) -> Result<ApiKeyRecord, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            // Revoking again may shorten a grace period, never lengthen it.
            let row = sqlx::query(&format!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1), \
                 grace_until = LEAST(COALESCE(grace_until, $2), $2) WHERE key_id = $3 \
                 RETURNING {KEY_COLUMNS}"
            ))
            .bind(revoked_at)
            .bind(grace_until)
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(format!("key {key_id}")));
            };
            let key = key_from_row(&row)?;
            record_change(&mut tx, ChangeKind::ApiKey, key_id).await?;
            write_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(key)
        })
        .await
    }

    async fn list_audit(
        &self,
        site_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log \
                 WHERE ($1::text IS NULL OR site_id = $1) ORDER BY id DESC LIMIT $2"
            ))
            .bind(site_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(audit_from_row).collect()
        })
        .await
    }

    async fn create_admin_token(
        &self,
        token: &AdminTokenRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let res = sqlx::query(&format!(
                "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
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
        })
        .await
    }

    async fn get_admin_token(&self, id: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            trace_query("get_admin_token", id);
            let row = sqlx::query(&format!(
                "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
            row.as_ref().map(admin_token_from_row).transpose()
        })
        .await
    }

    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let rows = sqlx::query(&format!(
                "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at, id"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(admin_token_from_row).collect()
        })
        .await
    }

    async fn revoke_admin_token(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<AdminTokenRecord, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let row = sqlx::query(&format!(
                "UPDATE admin_tokens SET revoked_at = LEAST(COALESCE(revoked_at, $1), $1) \
                 WHERE id = $2 RETURNING {ADMIN_TOKEN_COLUMNS}"
            ))
            .bind(at)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(format!("admin token {id}")));
            };
            let token = admin_token_from_row(&row)?;
            record_change(&mut tx, ChangeKind::AdminToken, id).await?;
            write_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(token)
        })
        .await
    }

    async fn touch_admin_token(&self, id: &str, at: i64) -> Result<(), StoreError> {
        bounded(CALL_TIMEOUT, async move {
            sqlx::query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            trace_query("get_setting", name);
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn insert_setting_if_absent(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if inserted.rows_affected() > 0 {
                record_change(&mut tx, ChangeKind::Setting, name).await?;
            }
            let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(stored)
        })
        .await
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn changes_since(&self, seq: i64, limit: u32) -> Result<ChangesSince, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            // One statement, one snapshot: the oldest kept row and the rows after `seq` agree.
            // Pruned past `seq`: the oldest kept row is not the next one after it.
            let rows = sqlx::query(
                "SELECT seq, kind, id, (SELECT MIN(seq) FROM changes) AS oldest \
                 FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            let oldest: Option<i64> = match rows.first() {
                Some(r) => r.try_get("oldest").map_err(unavailable)?,
                None => None,
            };
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
            let complete = oldest.is_none_or(|oldest| oldest <= seq + 1);
            Ok(ChangesSince { changes, complete })
        })
        .await
    }

    async fn prune_changes(&self, before: i64) -> Result<u64, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            // Keep the newest row so the sequence (and `complete`) stays meaningful.
            let done = sqlx::query(
                "DELETE FROM changes WHERE at < $1 AND seq < (SELECT MAX(seq) FROM changes)",
            )
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// Pushes committed changes from a dedicated connection that LISTENs on
    /// [`CHANGES_CHANNEL`]; see [`listen`].
    fn spawn_listener(&self, events: UnboundedSender<ChangeEvent>) -> bool {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(listen(self.listen_options.clone(), events));
                true
            }
            Err(_) => {
                tracing::warn!(
                    "no async runtime to run the PostgreSQL change listener on: changes are polled"
                );
                false
            }
        }
    }

    async fn sealed_key_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            // Kept by triggers (see the migration): no scan of the sites.
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
        })
        .await
    }

    async fn sealed_not_by(
        &self,
        key_id: &str,
        after: Option<&SealedSlot>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError> {
        let read = sealed_by_kinds(after, limit, |kind, after_id, want| async move {
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
        });
        bounded(CALL_TIMEOUT, read).await
    }

    async fn reseal(&self, batch: &[Reseal], audit: &AuditEntry) -> Result<u64, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let mut tx = self.begin_write().await?;
            let mut replaced = 0;
            for r in batch {
                let sql = match &r.old.slot {
                    SealedSlot::SiteCredential(_) => {
                        "UPDATE sites SET credential_sealed = $1 \
                         WHERE id = $2 AND credential_sealed = $3"
                    }
                    SealedSlot::SiteJwtSecret(_) => {
                        "UPDATE sites SET jwt_secret_sealed = $1 \
                         WHERE id = $2 AND jwt_secret_sealed = $3"
                    }
                    SealedSlot::Setting(_) => {
                        "UPDATE settings SET value = $1 WHERE name = $2 AND value = $3"
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
        })
        .await
    }

    async fn record_counts(&self) -> Result<RecordCounts, StoreError> {
        bounded(CALL_TIMEOUT, async move {
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
        })
        .await
    }

    async fn export_api_keys(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let rows = sqlx::query(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id > $1 ORDER BY key_id LIMIT $2"
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(key_from_row).collect()
        })
        .await
    }

    async fn export_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
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
        })
        .await
    }

    async fn export_audit(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        bounded(CALL_TIMEOUT, async move {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(audit_from_row).collect()
        })
        .await
    }

    async fn import(&self, batch: &ImportBatch) -> Result<(), StoreError> {
        bounded(IMPORT_TIMEOUT, async move {
            // One multi-row INSERT per table, the rows sent as arrays and UNNESTed. The
            // change-log lock, though no change is recorded: it keeps the sealed-count
            // triggers' updates in one order with every other write.
            let mut tx = self.begin_write().await?;
            if !batch.settings.is_empty() {
                let (names, values): (Vec<&str>, Vec<&str>) = batch
                    .settings
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .unzip();
                sqlx::query(
                    "INSERT INTO settings (name, value) SELECT * FROM UNNEST($1::text[], $2::text[])",
                )
                .bind(names)
                .bind(values)
                .execute(&mut *tx)
                .await
                .map_err(import_error)?;
            }
            if !batch.admin_tokens.is_empty() {
                let t = &batch.admin_tokens;
                sqlx::query(&format!(
                    "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS}) SELECT * FROM UNNEST(\
                     $1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], \
                     $7::int8[])"
                ))
                .bind(t.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
                .bind(t.iter().map(|r| r.label.as_deref()).collect::<Vec<_>>())
                .bind(t.iter().map(|r| r.scope.as_str()).collect::<Vec<_>>())
                .bind(t.iter().map(|r| r.secret_hash.as_str()).collect::<Vec<_>>())
                .bind(t.iter().map(|r| r.created_at).collect::<Vec<_>>())
                .bind(t.iter().map(|r| r.revoked_at).collect::<Vec<_>>())
                .bind(t.iter().map(|r| r.last_used_at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(import_error)?;
            }
            if !batch.sites.is_empty() {
                let s = &batch.sites;
                // A site's namespaces travel as one JSON array text (arrays of arrays must
                // be rectangular in PostgreSQL).
                let namespaces: Vec<String> = s
                    .iter()
                    .map(|r| serde_json::to_string(&r.required_namespaces).unwrap_or_default())
                    .collect();
                sqlx::query(&format!(
                    "INSERT INTO sites ({SITE_COLUMNS}) \
                     SELECT id, name, upstream_url, enabled, credential_kind, credential_username, \
                     credential_sealed, auth_policy, jwt_secret_sealed, \
                     ARRAY(SELECT json_array_elements_text(ns::json)), health_fail_fast, \
                     created_at, updated_at, version \
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], \
                     $12::int8[], $13::int8[], $14::int8[]) \
                     AS t(id, name, upstream_url, enabled, credential_kind, credential_username, \
                     credential_sealed, auth_policy, jwt_secret_sealed, ns, health_fail_fast, \
                     created_at, updated_at, version)"
                ))
                .bind(s.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
                .bind(s.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
                .bind(s.iter().map(|r| r.upstream_url.as_str()).collect::<Vec<_>>())
                .bind(s.iter().map(|r| r.enabled).collect::<Vec<_>>())
                .bind(
                    s.iter()
                        .map(|r| r.credential.kind.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    s.iter()
                        .map(|r| r.credential.username.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    s.iter()
                        .map(|r| r.credential.sealed_secret.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(s.iter().map(|r| r.auth_policy.as_deref()).collect::<Vec<_>>())
                .bind(
                    s.iter()
                        .map(|r| r.jwt_secret_sealed.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(namespaces)
                .bind(s.iter().map(|r| r.health_fail_fast).collect::<Vec<_>>())
                .bind(s.iter().map(|r| r.created_at).collect::<Vec<_>>())
                .bind(s.iter().map(|r| r.updated_at).collect::<Vec<_>>())
                .bind(s.iter().map(|r| r.version).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(import_error)?;
            }
            if !batch.api_keys.is_empty() {
                let k = &batch.api_keys;
                sqlx::query(&format!(
                    "INSERT INTO api_keys ({KEY_COLUMNS}) SELECT * FROM UNNEST(\
                     $1::text[], $2::text[], $3::text[], $4::bytea[], $5::int8[], $6::int8[], \
                     $7::int8[], $8::int8[])"
                ))
                .bind(k.iter().map(|r| r.key_id.as_str()).collect::<Vec<_>>())
                .bind(k.iter().map(|r| r.site_id.as_str()).collect::<Vec<_>>())
                .bind(k.iter().map(|r| r.label.as_deref()).collect::<Vec<_>>())
                .bind(k.iter().map(|r| r.secret_hash.as_slice()).collect::<Vec<_>>())
                .bind(k.iter().map(|r| r.created_at).collect::<Vec<_>>())
                .bind(k.iter().map(|r| r.expires_at).collect::<Vec<_>>())
                .bind(k.iter().map(|r| r.revoked_at).collect::<Vec<_>>())
                .bind(k.iter().map(|r| r.grace_until).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(import_error)?;
            }
            if !batch.audit.is_empty() {
                let a = &batch.audit;
                sqlx::query(&format!(
                    "INSERT INTO audit_log ({AUDIT_COLUMNS}) SELECT * FROM UNNEST(\
                     $1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[])"
                ))
                .bind(a.iter().map(|r| r.id).collect::<Vec<_>>())
                .bind(a.iter().map(|r| r.at).collect::<Vec<_>>())
                .bind(a.iter().map(|r| r.entry.actor.as_str()).collect::<Vec<_>>())
                .bind(a.iter().map(|r| r.entry.action.as_str()).collect::<Vec<_>>())
                .bind(a.iter().map(|r| r.entry.target.as_str()).collect::<Vec<_>>())
                .bind(
                    a.iter()
                        .map(|r| r.entry.site_id.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    a.iter()
                        .map(|r| r.entry.request_id.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(a.iter().map(|r| r.entry.detail.as_deref()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(import_error)?;
                // Explicit ids do not advance the identity: new entries go after the copies.
                sqlx::query(
                    "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), \
                     (SELECT MAX(id) FROM audit_log))",
                )
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        })
        .await
    }
}

/// An import's error: a record already there or a key without its site is the caller's
/// mistake, anything else the store's.
fn import_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::AlreadyExists(format!("a record being imported ({})", d.message()))
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound("the site of an API key being imported".into())
        }
        _ => unavailable(e),
    }
}

/// The change listener: a task with its own connection (not from the pool, so a busy
/// pool never starves it) that LISTENs on [`CHANGES_CHANNEL`] and forwards every
/// notification as [`ChangeEvent::Changed`]. It sends `Connected` after each
/// (re)connect — notifications sent while it was away are lost, so the reader then
/// catches up from the change log — and `Disconnected` when the connection drops, then
/// reconnects with a backoff from 100 ms doubling to 5 s. It ends when the receiver is
/// dropped. After [`LISTENER_HEARTBEAT`] without a notification it checks that the
/// server still answers.
async fn listen(options: PgConnectOptions, events: UnboundedSender<ChangeEvent>) {
    let (first, last) = LISTENER_BACKOFF;
    let mut backoff = first;
    let mut failures: u32 = 0;
    loop {
        let connected = tokio::select! {
            _ = events.closed() => return,
            c = tokio::time::timeout(CONNECT_TIMEOUT, connect_listener(&options)) => c,
        };
        match connected {
            Ok(Ok(mut listener)) => {
                if failures > 0 {
                    tracing::info!(target: "wpgate::store", "PostgreSQL change listener reconnected");
                }
                failures = 0;
                backoff = first;
                if events.send(ChangeEvent::Connected).is_err() {
                    return;
                }
                loop {
                    let next = tokio::select! {
                        _ = events.closed() => return,
                        n = listener.try_recv() => Some(n),
                        _ = tokio::time::sleep(LISTENER_HEARTBEAT) => None,
                    };
                    let Some(next) = next else {
                        // Quiet for a while: make sure the server still answers (a network
                        // partition raises no error by itself).
                        let probe = sqlx::query("SELECT 1").execute(&mut listener);
                        match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
                            Ok(Ok(_)) => continue,
                            Ok(Err(e)) => tracing::warn!(
                                target: "wpgate::store",
                                error = %e,
                                "PostgreSQL change listener's connection failed; reconnecting"
                            ),
                            Err(_) => tracing::warn!(
                                target: "wpgate::store",
                                "PostgreSQL change listener's connection stopped answering; reconnecting"
                            ),
                        }
                        break;
                    };
                    match next {
                        Ok(Some(n)) => match parse_change(n.payload()) {
                            Some(change) => {
                                if events.send(ChangeEvent::Changed(change)).is_err() {
                                    return;
                                }
                            }
                            None => tracing::warn!(
                                target: "wpgate::store",
                                payload = n.payload(),
                                "ignoring a malformed change notification"
                            ),
                        },
                        Ok(None) => {
                            tracing::warn!(
                                target: "wpgate::store",
                                "PostgreSQL change listener lost its connection; reconnecting"
                            );
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(
                                target: "wpgate::store",
                                error = %e,
                                "PostgreSQL change listener failed; reconnecting"
                            );
                            break;
                        }
                    }
                }
                drop(listener);
                if events.send(ChangeEvent::Disconnected).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(
                        target: "wpgate::store",
                        error = %e,
                        "PostgreSQL change listener cannot connect; retrying (changes are polled meanwhile)"
                    );
                }
            }
            Err(_) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(
                        target: "wpgate::store",
                        "PostgreSQL change listener: no connection within {CONNECT_TIMEOUT:?}; retrying"
                    );
                }
            }
        }
        tokio::select! {
            _ = events.closed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(last);
    }
}

/// A fresh listening connection: a pool of one, only so `PgListener` can hold it.
async fn connect_listener(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnecting is ours to do (so the reader hears of it): no silent reconnects.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_payloads() {
        assert_eq!(
            parse_change("42:site:shop"),
            Some(Change {
                seq: 42,
                kind: ChangeKind::Site,
                id: "shop".into()
            })
        );
        assert_eq!(
            parse_change("7:setting:a:b").map(|c| c.id),
            Some("a:b".into())
        );
        assert_eq!(parse_change("x:site:shop"), None);
        assert_eq!(parse_change("1:planet:earth"), None);
        assert_eq!(parse_change("1:site"), None);
    }
}
