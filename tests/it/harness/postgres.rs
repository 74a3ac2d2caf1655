//! A fresh PostgreSQL database per test (`wpgate_t_<random>`), created through the
//! server named by `WPGATE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! what `tests/run` sets up) and dropped when the handle is dropped, so tests run in
//! parallel and leave nothing behind. An unreachable server fails the test: these tests
//! never skip.

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

use wpgate::config::{redact_url, StoreUrl};

use super::wait::block_on_thread;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The maintenance URL the test databases are created through.
pub fn admin_url() -> String {
    std::env::var("WPGATE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Connects to the maintenance database, failing the test with instructions when the
/// server does not answer.
pub async fn admin_connection() -> PgConnection {
    let url = admin_url();
    let shown = redact_url(&url);
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL at {shown} is not reachable ({e}). These tests need it: run them \
             through tests/run (it installs and starts PostgreSQL), or start one and set \
             WPGATE_TEST_PG_URL"
        ),
        Err(_) => panic!(
            "PostgreSQL at {shown} did not answer within 10s. These tests need it: run them \
             through tests/run, or set WPGATE_TEST_PG_URL"
        ),
    }
}

/// A database of the test's own; dropped (connections and all) with the handle.
pub struct TestDb {
    pub name: String,
    /// `postgres://...` URL of the new database.
    pub url: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub fn create() -> TestDb {
        let name = format!("wpgate_t_{}", uuid::Uuid::new_v4().simple());
        let create = name.clone();
        block_on_thread(async move {
            let mut conn = admin_connection().await;
            conn.execute(format!("CREATE DATABASE {create}").as_str())
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {create}: {e}"));
            let _ = conn.close().await;
        });
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{name}"));
        TestDb {
            name,
            url: url.to_string(),
        }
    }

    /// `store.url` of this database, as a gateway config or the CLI takes it.
    pub fn store_url(&self) -> StoreUrl {
        StoreUrl::Postgres(self.url.clone())
    }

    /// Terminates every backend of this database whose application_name is `app`;
    /// returns how many.
    pub async fn terminate_backends(&self, app: &str) -> i64 {
        self.count_backends("COUNT(pg_terminate_backend(pid))", app)
            .await
    }

    /// How many backends of this database have application_name `app`.
    pub async fn backends(&self, app: &str) -> i64 {
        self.count_backends("COUNT(*)", app).await
    }

    /// `SELECT <count> FROM pg_stat_activity` over this database's backends named `app`.
    async fn count_backends(&self, count: &str, app: &str) -> i64 {
        let mut conn = admin_connection().await;
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT {count} FROM pg_stat_activity WHERE datname = $1 AND application_name = $2"
        ))
        .bind(&self.name)
        .bind(app)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_thread(async move {
            let url = admin_url();
            if let Ok(mut conn) = PgConnection::connect(&url).await {
                // FORCE (PostgreSQL 13+) ends the stores' pooled connections.
                if let Err(e) = conn
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                {
                    eprintln!("could not drop test database {name}: {e}");
                }
                let _ = conn.close().await;
            }
        });
    }
}
