//! Waiting on a condition without fixed sleeps: poll it until it holds or a deadline passes.

use std::future::Future;
use std::panic::resume_unwind;
use std::time::{Duration, Instant};

/// How long a test waits for a CLI change to reach a running gateway (cache.ttl is 1 s
/// in these tests; the rest is slack for a loaded 2-core machine).
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

/// Poll `f` until it returns `Ok`, or panic after `timeout` with the last `Err`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Blocking variant of [`poll_until`] for synchronous helpers.
pub fn poll_until_blocking<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Runs `f` to completion on a fresh runtime on a thread of its own: usable from sync
/// code, from inside a test's runtime and from `Drop` (which may run on a runtime thread).
pub fn block_on_thread<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap_or_else(|panic| resume_unwind(panic))
}
