//! Which schema migrations a store has applied (sqlx's `_sqlx_migrations` table), against
//! the ones this binary carries: `wpgate doctor` tells a store this binary would still
//! migrate from one a newer binary already migrated, without migrating anything.

use super::Backend;
use crate::store::{SchemaStatus, StoreError};
use sqlx::{Database, Executor, IntoArguments, Pool};

pub(super) async fn status<B: Backend>(pool: &Pool<B::Db>) -> Result<SchemaStatus, StoreError>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
    for<'r> (i64, bool, Vec<u8>): sqlx::FromRow<'r, <B::Db as Database>::Row>,
{
    let known: Vec<&sqlx::migrate::Migration> = B::migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    let rows: Vec<(i64, bool, Vec<u8>)> = match sqlx::query_as(
        "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        // A database no gateway has migrated yet: nothing applied.
        Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => Vec::new(),
        Err(e) => return Err(B::unavailable(e)),
    };
    let mut status = SchemaStatus {
        expected: known.iter().map(|m| m.version).collect(),
        ..SchemaStatus::default()
    };
    for (version, success, checksum) in rows {
        if !success {
            status.failed.push(version);
            continue;
        }
        status.applied.push(version);
        if known
            .iter()
            .any(|m| m.version == version && *m.checksum != *checksum)
        {
            status.changed.push(version);
        }
    }
    Ok(status)
}
