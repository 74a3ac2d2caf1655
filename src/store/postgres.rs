//! The store for fleets: one PostgreSQL database shared by several gateway replicas.
//! Same schema, statements (`sql`) and behaviour as the SQLite store; here: the pool and
//! its time limits, the change log's advisory lock, and the NOTIFY that pushes
//! committed changes to every replica (see [`PostgresBackend::spawn_listener`]).
//!
//! Store outages must surface as errors, not hangs (the gateway then serves stale cache
//! entries): a connection is waited for at most [`ACQUIRE_TIMEOUT`], a statement runs
//! at most [`STATEMENT_TIMEOUT`], and a transaction left idle is ended by the server.
//!
//! The URL may hold a password: it only ever appears redacted ([`redact_url`]).

use super::sql::{Backend, Dialect, SqlStore};
use super::{Change, ChangeEvent, ChangeKind, StoreError};
use crate::config::redact_url;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{ConnectOptions, Connection, Postgres, Transaction};
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

/// The PostgreSQL store.
pub type PostgresStore = SqlStore<PostgresBackend>;

pub struct PostgresBackend {
    pool: PgPool,
    /// For the listener's dedicated connections.
    listen_options: PgConnectOptions,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
            "no PostgreSQL connection within {ACQUIRE_TIMEOUT:?} (is the server up and reachable?)"
        )),
        other => StoreError::Unavailable(format!("PostgreSQL: {other}")),
    }
}

impl PostgresStore {
    /// Connects (lazily: the pool opens connections as calls need them), runs the
    /// migrations on a dedicated connection, and returns the store. Several replicas may
    /// open the same database at once: sqlx's migrator holds an advisory lock while it
    /// checks and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let (base, pool) = pool_for(url, &[])?;

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
        Ok(SqlStore::new(PostgresBackend {
            pool,
            listen_options,
        }))
    }

    /// Connects (lazily) without migrating, on sessions that refuse writes
    /// (`default_transaction_read_only`): see [`crate::store::open_read_only`].
    pub fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let (base, pool) = pool_for(url, &[("default_transaction_read_only", "on")])?;
        let listen_options = base.application_name(LISTENER_APPLICATION_NAME);
        Ok(SqlStore::new(PostgresBackend {
            pool,
            listen_options,
        }))
    }
}

/// The connection options of `url` (as the migrations and the listener take them) and a
/// lazy pool on them with the store's server settings, plus `extra` ones.
fn pool_for(
    url: &str,
    extra: &[(&'static str, &'static str)],
) -> Result<(PgConnectOptions, PgPool), StoreError> {
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
    server_settings.extend_from_slice(extra);
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
    Ok((base, pool))
}

impl Backend for PostgresBackend {
    type Db = Postgres;
    const NAME: &'static str = "PostgreSQL";
    const DIALECT: Dialect = Dialect {
        numbered_params: true,
        least: "LEAST",
        greatest: "GREATEST",
        array_read: "array_to_json({c})::text",
        array_write: "ARRAY(SELECT e FROM json_array_elements_text(CAST(? AS json)) \
                           WITH ORDINALITY AS t(e, n) ORDER BY n)",
        array_nonempty: "cardinality({c}) > 0",
        key_id_of: "split_part({v}, '.', 2)",
        // Statement start on the server: one clock for every replica's leases.
        now_ms: "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)",
        next_health_seq: "nextval('site_health_seq')",
        skip_locked: " FOR UPDATE SKIP LOCKED",
    };
    const CALL_TIMEOUT: Option<Duration> = Some(CALL_TIMEOUT);
    const IMPORT_TIMEOUT: Option<Duration> = Some(IMPORT_TIMEOUT);

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn unavailable(e: sqlx::Error) -> StoreError {
        unavailable(e)
    }

    /// Takes the change-log lock first, before any row lock, so writers queue in one
    /// order and never deadlock. Imports take it too, though they record no change: it
    /// keeps the sealed-count triggers' updates in one order with every other write.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(CHANGE_LOG_LOCK.0)
            .bind(CHANGE_LOG_LOCK.1)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        Ok(tx)
    }

    /// Appends one change-log row per id in the write's transaction (which holds
    /// [`CHANGE_LOG_LOCK`], so `MAX(seq) + 1` is free and the rows commit in `seq` order),
    /// and queues one notification per row, delivered when the transaction commits.
    async fn record_changes(
        tx: &mut Transaction<'static, Postgres>,
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

    /// Explicit ids do not advance the audit log's identity: new entries go after the
    /// copies.
    async fn audit_imported(tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), \
             (SELECT MAX(id) FROM audit_log))",
        )
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        Ok(())
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
}

/// Parses a notification payload `<seq>:<kind>:<id>`.
fn parse_change(payload: &str) -> Option<Change> {
    let mut parts = payload.splitn(3, ':');
    let seq = parts.next()?.parse().ok()?;
    let kind = ChangeKind::parse(parts.next()?)?;
    let id = parts.next()?.to_string();
    Some(Change { seq, kind, id })
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
