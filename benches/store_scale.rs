//! The store at fleet scale, SQLite and PostgreSQL side by side: bulk load, cold reads
//! (cache bypassed), resolve on a cache miss and on a hit, gateway memory with every
//! site cached, and start-up time as the fleet grows (it must not depend on the count).
//! Targets: cold site read from SQLite <= 200 us, from PostgreSQL <= 1 ms; <= 200 MB
//! with 100k sites cached.
//!
//! Sizes: `cargo test` (tests/run's smoke pass) uses a tiny fleet; `cargo bench --bench
//! store_scale` 10k sites / 100k keys; WPGATE_BENCH_FULL=1 100k sites / 1M API keys,
//! start-up measured up to 1M sites (needs ~2 GB of disk and some minutes).
//! PostgreSQL: a database of its own, created through WPGATE_TEST_PG_URL (default
//! postgres://postgres@127.0.0.1:5432/test) and dropped at the end.
//!
//! Run: WPGATE_BENCH_FULL=1 cargo bench --bench store_scale
// Set-up failures should abort the benchmark loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor, PgConnection};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wpgate::config::{Config, LoadOptions};
use wpgate::crypto::{Keyring, Place};
use wpgate::fleet::Fleet;
use wpgate::store::{ApiKeyRecord, ImportBatch, SiteRecord, Store};

#[path = "../tests/it/harness/records.rs"]
mod records;

// Like the gateway binary: memory figures should be the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set in the child process that measures memory: the config file to open.
const MEMORY_CHILD: &str = "WPGATE_BENCH_MEMORY_CHILD";
const BATCH: usize = 5_000;

#[derive(Clone, Copy, Debug)]
struct Scale {
    sites: usize,
    keys: usize,
    /// The largest fleet start-up is timed at.
    startup_sites: usize,
    /// Timed lookups per measurement.
    samples: usize,
}

/// Values re-sealed per rewrap batch (one transaction each).
const REWRAP_BATCH: usize = 100;

fn scale() -> (Scale, &'static str) {
    let bench = std::env::args().any(|a| a == "--bench");
    let full = std::env::var("WPGATE_BENCH_FULL").is_ok_and(|v| v == "1");
    match (full, bench) {
        (true, _) => (
            Scale {
                sites: 100_000,
                keys: 1_000_000,
                startup_sites: 1_000_000,
                samples: 20_000,
            },
            "full (WPGATE_BENCH_FULL=1)",
        ),
        (false, true) => (
            Scale {
                sites: 10_000,
                keys: 100_000,
                startup_sites: 100_000,
                samples: 5_000,
            },
            "default (WPGATE_BENCH_FULL=1 for 100k sites / 1M keys)",
        ),
        (false, false) => (
            Scale {
                sites: 500,
                keys: 5_000,
                startup_sites: 2_000,
                samples: 200,
            },
            "smoke test (cargo test)",
        ),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Default)]
struct Results {
    load_sites: Duration,
    load_keys: Duration,
    get_site: Percentiles,
    get_key: Percentiles,
    resolve_cold: Percentiles,
    resolve_hit: Percentiles,
    /// (RSS after open, RSS with every site cached), bytes.
    memory: (u64, u64),
    /// (sites, start-up time)
    startup: Vec<(usize, Duration)>,
    /// Keyring rewrap of every sealed value in batches of [`REWRAP_BATCH`]: (values,
    /// time, time per value in the last tenth of the batches / in the first tenth).
    /// Linear cost shows as the same rate at every scale and a ratio near 1.
    rewrap: (u64, Duration, f64),
}

#[derive(Default, Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort();
    let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)];
    Percentiles {
        p50: at(50),
        p99: at(99),
    }
}

fn site_id(i: usize) -> String {
    format!("site-{i:07}")
}

fn key_id(i: usize) -> String {
    format!("k{i:011}")
}

/// The process's resident set size, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn write_config(dir: &Path, store_url: &str, capacity: usize) -> PathBuf {
    let path = dir.join("wpgate.toml");
    let text = format!(
        "data_dir = {data:?}\n[store]\nurl = {store_url:?}\n[cache]\ncapacity = {capacity}\n\
         ttl = \"1h\"\nnegative_ttl = \"1h\"\n[log]\nlevel = \"warn\"\n",
        data = dir.join("data").display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn load_config(path: &Path) -> Config {
    Config::load(&LoadOptions {
        config_file: Some(path.to_path_buf()),
        data_dir: None,
    })
    .unwrap()
}

/// Opens the fleet as `wpgate serve` does at start; returns it and how long it took.
async fn open_fleet(config: &Config) -> (Fleet, Duration) {
    let started = Instant::now();
    let (fleet, _) = Fleet::open(
        config,
        std::sync::Arc::new(wpgate::metrics::Metrics::new().unwrap()),
    )
    .await
    .unwrap();
    (fleet, started.elapsed())
}

/// Median of three start-ups.
async fn startup(config: &Config) -> Duration {
    let mut times = Vec::new();
    for _ in 0..3 {
        let (fleet, took) = open_fleet(config).await;
        drop(fleet);
        times.push(took);
    }
    times.sort();
    times[1]
}

/// Imports `from..to` in batches of [`BATCH`], each built by `batch` (inside the timing).
async fn import_in_batches(
    store: &dyn Store,
    from: usize,
    to: usize,
    mut batch: impl FnMut(Range<usize>) -> ImportBatch,
) -> Duration {
    let started = Instant::now();
    let mut i = from;
    while i < to {
        let end = (i + BATCH).min(to);
        store.import(&batch(i..end)).await.unwrap();
        i = end;
    }
    started.elapsed()
}

/// Sites `from..to`, each with an app-password credential sealed under `keyring`.
async fn load_sites(store: &dyn Store, keyring: &Keyring, from: usize, to: usize) -> Duration {
    import_in_batches(store, from, to, |range| ImportBatch {
        sites: range
            .map(|n| {
                let id = site_id(n);
                let sealed = keyring
                    .seal(
                        &Place::site(&id, wpgate::store::UPSTREAM_CREDENTIAL_FIELD),
                        format!("app pass {n:016}").as_bytes(),
                    )
                    .unwrap();
                SiteRecord {
                    name: format!("Site {n}"),
                    upstream_url: format!("http://127.0.0.1:{}", 10_000 + n % 50_000),
                    credential: records::app_password(sealed),
                    ..records::site(&id)
                }
            })
            .collect(),
        ..ImportBatch::default()
    })
    .await
}

async fn load_keys(store: &dyn Store, keys: usize, sites: usize) -> Duration {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    import_in_batches(store, 0, keys, |range| ImportBatch {
        api_keys: range
            .map(|n| ApiKeyRecord {
                key_id: key_id(n),
                site_id: site_id(n % sites),
                label: None,
                secret_hash: (0..32).map(|_| rng.gen()).collect(),
                created_at: 1_700_000_000,
                expires_at: None,
                revoked_at: None,
                grace_until: None,
                last_used_at: None,
                verified: Default::default(),
                marked: Default::default(),
            })
            .collect(),
        ..ImportBatch::default()
    })
    .await
}

/// Times `samples` lookups `find` of distinct random indexes below `n`; each must find
/// its record.
async fn time_lookups<F, Fut>(n: usize, samples: usize, seed: u64, mut find: F) -> Percentiles
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut times = Vec::with_capacity(samples);
    for &i in idx.iter().cycle().take(samples) {
        let started = Instant::now();
        let found = find(i).await;
        times.push(started.elapsed());
        assert!(found, "record {i} not found");
    }
    percentiles(times)
}

async fn run_backend(backend: Backend, scale: Scale, dir: &Path, store_url: &str) -> Results {
    let mut r = Results::default();
    let config_path = write_config(dir, store_url, scale.sites.max(1000));
    let config = load_config(&config_path);
    // First start: schema and API-key pepper created, keyring generated.
    let (fleet, took) = open_fleet(&config).await;
    r.startup.push((0, took));
    drop(fleet);
    let keyring = Keyring::load_file(&config.boot.keyring_file).unwrap();
    let store = wpgate::store::open(&config.boot.store).await.unwrap();

    r.load_sites = load_sites(store.as_ref(), &keyring, 0, scale.sites).await;
    r.load_keys = load_keys(store.as_ref(), scale.keys, scale.sites).await;
    r.startup.push((scale.sites, startup(&config).await));

    // Cold reads straight from the store (no cache at all).
    for _ in 0..2 {
        // warm the pool and the statement caches
        store.get_site(&site_id(0)).await.unwrap();
    }
    r.get_site = time_lookups(scale.sites, scale.samples, 1, |i| {
        let store = &store;
        async move { store.get_site(&site_id(i)).await.unwrap().is_some() }
    })
    .await;
    r.get_key = time_lookups(scale.keys, scale.samples, 2, |i| {
        let store = &store;
        async move { store.get_api_key(&key_id(i)).await.unwrap().is_some() }
    })
    .await;

    // Resolve as the request path does: a miss loads, unseals and caches; then hits.
    let (fleet, _) = open_fleet(&config).await;
    let fleet = Arc::new(fleet);
    let samples = scale.samples.min(scale.sites);
    let resolve = |i: usize| {
        let fleet = &fleet;
        async move { fleet.resolve_site(&site_id(i)).await.unwrap().is_some() }
    };
    r.resolve_cold = time_lookups(scale.sites, samples, 3, resolve).await;
    r.resolve_hit = time_lookups(scale.sites, samples, 3, resolve).await;
    drop(fleet);

    r.memory = memory_in_child(&config_path, scale.sites);
    r.rewrap = rewrap(store.as_ref(), &config.boot.keyring_file, REWRAP_BATCH).await;

    // Grow the fleet: start-up must not grow with it.
    if scale.startup_sites > scale.sites {
        load_sites(store.as_ref(), &keyring, scale.sites, scale.startup_sites).await;
        r.startup
            .push((scale.startup_sites, startup(&config).await));
    }
    let _ = backend;
    r
}

/// Adds a primary key to the keyring file and re-seals every value under it, timing
/// each batch.
async fn rewrap(store: &dyn Store, keyring_file: &Path, batch: usize) -> (u64, Duration, f64) {
    let text = std::fs::read_to_string(keyring_file).unwrap();
    let (text, _) = wpgate::crypto::edit::add_key(&text, "bench", true).unwrap();
    let keyring = Keyring::parse(&text, "bench").unwrap();
    wpgate::crypto::replace_private_file(keyring_file, &text).unwrap();
    let started = Instant::now();
    let (mut last, mut last_done) = (started, 0);
    // Time per value of each batch but the (shorter) last one.
    let mut per_value = Vec::new();
    let done = wpgate::fleet::rotation::rewrap(
        store,
        &keyring,
        u32::try_from(batch).unwrap_or(u32::MAX),
        &wpgate::fleet::Actor::new("bench"),
        |p| {
            let now = Instant::now();
            let n = p.resealed - last_done;
            if n as usize >= batch {
                per_value.push((now - last).as_secs_f64() / n as f64);
            }
            (last, last_done) = (now, p.resealed);
        },
    )
    .await
    .unwrap();
    let took = started.elapsed();
    let tenth = (per_value.len() / 10).max(1);
    let mean = |b: &[f64]| b.iter().sum::<f64>() / b.len() as f64;
    let growth = mean(&per_value[per_value.len() - tenth..]) / mean(&per_value[..tenth]);
    (done.resealed, took, growth)
}

/// Gateway memory in a clean process: RSS after start-up, and with every site cached.
fn memory_in_child(config: &Path, sites: usize) -> (u64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(MEMORY_CHILD, config)
        .env("WPGATE_BENCH_SITES", sites.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "memory child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("rss "))
        .unwrap_or_else(|| panic!("memory child printed {text}"));
    let mut parts = line.split(' ').map(|v| v.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

fn memory_child(config: &Path) {
    let sites: usize = std::env::var("WPGATE_BENCH_SITES")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = load_config(config);
        let (fleet, _) = open_fleet(&config).await;
        let fleet = Arc::new(fleet);
        let before = rss();
        // Eight loaders at once, as concurrent requests would.
        let loaders: Vec<_> = (0..8)
            .map(|t| {
                let fleet = fleet.clone();
                tokio::spawn(async move {
                    for i in (t..sites).step_by(8) {
                        assert!(fleet.resolve_site(&site_id(i)).await.unwrap().is_some());
                    }
                })
            })
            .collect();
        for l in loaders {
            l.await.unwrap();
        }
        // Every site is cached now: a hit for each.
        for i in 0..sites {
            assert!(
                fleet.cached_site(&site_id(i)).is_some(),
                "site {i} not cached"
            );
        }
        println!("rss {before} {}", rss());
    });
}

/// A database of its own on the test server; dropped by [`drop_database`].
async fn create_database() -> (String, String) {
    let admin = std::env::var("WPGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let shown = wpgate::config::redact_url(&admin);
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {shown} is not reachable ({e}): run through tests/run or set \
             WPGATE_TEST_PG_URL"
        )
    });
    let name = format!("wpgate_b_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let _ = conn.close().await;
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    (name, url.to_string())
}

async fn drop_database(name: &str) {
    let admin = std::env::var("WPGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
    let _ = conn.close().await;
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn main() {
    if let Ok(config) = std::env::var(MEMORY_CHILD) {
        memory_child(Path::new(&config));
        return;
    }
    let (scale, mode) = scale();
    println!(
        "store_scale, {mode}: {} sites, {} API keys, start-up up to {} sites, {} samples",
        scale.sites, scale.keys, scale.startup_sites, scale.samples
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut all = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let results = rt.block_on(async {
            match backend {
                Backend::Sqlite => {
                    let url = format!("sqlite://{}", dir.path().join("store.db").display());
                    run_backend(backend, scale, dir.path(), &url).await
                }
                Backend::Postgres => {
                    let (name, url) = create_database().await;
                    let r = run_backend(backend, scale, dir.path(), &url).await;
                    drop_database(&name).await;
                    r
                }
            }
        });
        eprintln!(
            "{} done in {:.1}s",
            backend.name(),
            started.elapsed().as_secs_f64()
        );
        all.push((backend, results));
    }

    let rate = |n: usize, d: Duration| format!("{:.0}/s", n as f64 / d.as_secs_f64());
    println!();
    println!("| measure | {} | {} |", all[0].0.name(), all[1].0.name());
    println!("|---|---|---|");
    let row = |label: String, f: &dyn Fn(&Results) -> String| {
        println!("| {label} | {} | {} |", f(&all[0].1), f(&all[1].1));
    };
    row(format!("bulk load {} sites", scale.sites), &|r| {
        rate(scale.sites, r.load_sites)
    });
    row(format!("bulk load {} API keys", scale.keys), &|r| {
        rate(scale.keys, r.load_keys)
    });
    row("cold site read (store) p50 / p99".into(), &|r| {
        format!("{} / {}", us(r.get_site.p50), us(r.get_site.p99))
    });
    row("cold API-key read (store) p50 / p99".into(), &|r| {
        format!("{} / {}", us(r.get_key.p50), us(r.get_key.p99))
    });
    row(
        "resolve, cache miss (read + unseal + cache) p50 / p99".into(),
        &|r| format!("{} / {}", us(r.resolve_cold.p50), us(r.resolve_cold.p99)),
    );
    row("resolve, cache hit p50 / p99".into(), &|r| {
        format!(
            "{:.2} µs / {:.2} µs",
            r.resolve_hit.p50.as_secs_f64() * 1e6,
            r.resolve_hit.p99.as_secs_f64() * 1e6
        )
    });
    row(
        format!("RSS after start-up / with {} sites cached", scale.sites),
        &|r| format!("{} / {}", mb(r.memory.0), mb(r.memory.1)),
    );
    row(
        format!(
            "keyring rewrap (batches of {REWRAP_BATCH}): values/s (time per value, last/first batches)"
        ),
        &|r| {
            format!(
                "{} values: {} ({:.2}×)",
                r.rewrap.0,
                rate(r.rewrap.0 as usize, r.rewrap.1),
                r.rewrap.2
            )
        },
    );
    for (i, (sites, _)) in all[0].1.startup.iter().enumerate() {
        row(
            format!("start-up (open, migrate, keyring check) with {sites} sites"),
            &|r| format!("{:.1} ms", r.startup[i].1.as_secs_f64() * 1e3),
        );
    }
    println!();
    println!(
        "targets: cold site read SQLite <= 200 µs, PostgreSQL <= 1 ms; <= 200 MB with 100k sites cached; start-up independent of the site count"
    );
}
