//! The SQL both backends share: one [`SqlStore`] runs the same statements (rendered for
//! each backend's [`Dialect`]) on SQLite and PostgreSQL. A [`Backend`] brings only what
//! is its own: the pool, how a write transaction begins, how the change log is
//! appended (and announced), time limits. Site health results and leases are in
//! `health`.

mod batch;
mod dialect;
mod health;
mod queries;
mod rows;
mod schema;
mod store;
mod txn;

pub use dialect::Dialect;

use crate::store::{ChangeEvent, ChangeKind, SealedSlot, SealedValue, StoreError};
use queries::Queries;
use sqlx::{Database, Pool, Transaction};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// What one database does its own way.
pub trait Backend: Send + Sync + 'static {
    type Db: Database;
    /// The database's name in errors.
    const NAME: &'static str;
    const DIALECT: Dialect;
    /// Longest one store call may take (`None`: no limit).
    const CALL_TIMEOUT: Option<Duration>;
    /// Longest one import batch may take.
    const IMPORT_TIMEOUT: Option<Duration>;

    fn pool(&self) -> &Pool<Self::Db>;
    /// The schema migrations this binary carries for the database.
    fn migrator() -> &'static sqlx::migrate::Migrator;
    /// How many rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;
    /// The store's error for a driver error.
    fn unavailable(e: sqlx::Error) -> StoreError;
    /// Begins the transaction of a write (one that records changes, or an import).
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, StoreError>> + Send;
    /// Appends one change-log row per id, in `ids` order, in the write's transaction.
    fn record_changes<'a>(
        tx: &'a mut Transaction<'static, Self::Db>,
        kind: ChangeKind,
        ids: &'a [&'a str],
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;
    /// Runs after an import batch's audit records are inserted, before it commits.
    fn audit_imported<'a>(
        tx: &'a mut Transaction<'static, Self::Db>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;
    /// See [`crate::store::Store::spawn_listener`].
    fn spawn_listener(&self, _events: UnboundedSender<ChangeEvent>) -> bool {
        false
    }
}

/// A store on a SQL database: [`crate::store::Store`] for every [`Backend`].
pub struct SqlStore<B> {
    backend: B,
    sql: Queries,
    health: health::HealthQueries,
}

impl<B: Backend> SqlStore<B> {
    pub(crate) fn new(backend: B) -> Self {
        SqlStore {
            backend,
            sql: Queries::new(&B::DIALECT),
            health: health::HealthQueries::new(&B::DIALECT),
        }
    }

    /// Runs one store call within the backend's call time limit.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        bounded::<B, T>(B::CALL_TIMEOUT, call).await
    }
}

/// Runs `call`, failing with `Unavailable` after `limit`: the backstop for a server that
/// stops answering on an open connection (a network partition), where neither the
/// acquire timeout nor a server-side statement timeout can help.
async fn bounded<B: Backend, T>(
    limit: Option<Duration>,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let Some(limit) = limit else {
        return call.await;
    };
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "{} did not answer within {limit:?}",
            B::NAME
        )))
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

/// `Store::sealed_not_by`: reads slot kind by kind from the cursor, one index range
/// each (not a sorted union of everything, so a batch costs its own size whatever the
/// fleet's). `fetch(kind, after_id, want)` returns up to `want` `(id, sealed, upstream
/// URL)` rows of that kind after `after_id`, in id order, not sealed with the key id
/// being rotated away from.
async fn sealed_by_kinds<F, Fut>(
    after: Option<&SealedSlot>,
    limit: u32,
    mut fetch: F,
) -> Result<Vec<SealedValue>, StoreError>
where
    F: FnMut(&'static str, String, i64) -> Fut,
    Fut: Future<Output = Result<Vec<(String, String, Option<String>)>, StoreError>>,
{
    let (from_kind, from_id) = after.map_or(("c", ""), SealedSlot::position);
    let mut out = Vec::new();
    for kind in crate::store::SEALED_SLOT_KINDS
        .iter()
        .skip_while(|k| **k != from_kind)
    {
        let want = i64::from(limit) - out.len() as i64;
        if want <= 0 {
            break;
        }
        let after_id = if *kind == from_kind { from_id } else { "" };
        for (id, sealed, upstream_url) in fetch(kind, after_id.to_string(), want).await? {
            out.push(SealedValue {
                slot: SealedSlot::at(kind, id),
                sealed,
                upstream_url,
            });
        }
    }
    Ok(out)
}
