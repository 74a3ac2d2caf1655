//! The embedded default store: one SQLite file (WAL mode), migrated on open. The
//! statements are the shared ones (`sql`); here: the pool, its pragmas, the change log.

use super::sql::{Backend, Dialect, SqlStore};
use super::{ChangeKind, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::path::Path;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// The SQLite store.
pub type SqliteStore = SqlStore<SqliteBackend>;

pub struct SqliteBackend {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
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
        Ok(SqlStore::new(SqliteBackend { pool }))
    }

    /// Opens an existing store file read-only, without migrating it: see
    /// [`crate::store::open_read_only`]. A file that does not exist is not created.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Unavailable(format!(
                "{} does not exist (the gateway creates it on its first start)",
                path.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        Ok(SqlStore::new(SqliteBackend { pool }))
    }
}

impl Backend for SqliteBackend {
    type Db = Sqlite;
    const NAME: &'static str = "SQLite";
    const DIALECT: Dialect = Dialect {
        numbered_params: false,
        least: "MIN",
        greatest: "MAX",
        array_read: "{c}",
        array_write: "?",
        array_nonempty: "{c} IS NOT NULL",
        key_id_of: "substr({v}, 4, instr(substr({v}, 4), '.') - 1)",
        // 'now' is the same for a whole statement.
        now_ms: "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        next_health_seq: "(SELECT COALESCE(MAX(seq), 0) + 1 FROM site_health)",
        skip_locked: "",
    };
    // One local file: calls end on their own (busy_timeout bounds lock waits).
    const CALL_TIMEOUT: Option<Duration> = None;
    const IMPORT_TIMEOUT: Option<Duration> = None;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn unavailable(e: sqlx::Error) -> StoreError {
        unavailable(e)
    }

    /// `BEGIN IMMEDIATE`: the write lock is taken at the start, waiting (busy_timeout)
    /// for another writer, rather than at the first write. A deferred transaction that
    /// reads first and then writes cannot wait there: SQLite answers "database is
    /// locked" at once when another connection wrote, or still holds the lock (e.g. a
    /// failed transaction whose rollback is still on its way), since its read.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)
    }

    /// `changes.seq` is an AUTOINCREMENT key and SQLite runs one write transaction at a
    /// time, so `seq` order is commit order.
    async fn record_changes(
        tx: &mut Transaction<'static, Sqlite>,
        kind: ChangeKind,
        ids: &[&str],
    ) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("INSERT INTO changes (at, kind, id) VALUES (?, ?, ?)")
                .bind(crate::time::now_unix())
                .bind(kind.as_str())
                .bind(*id)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Explicit audit ids move `AUTOINCREMENT` on by themselves.
    async fn audit_imported(_tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

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
}
