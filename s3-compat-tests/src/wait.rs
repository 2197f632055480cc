//! Waiting for asynchronous server work to converge.

use std::time::{Duration, Instant};

/// Polls `check` until it returns true or `timeout` passes; returns the last
/// result. For converging on asynchronous server work, not for timing.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the async `check` every 250 ms until it gives `Ok`, and returns that; after
/// `timeout`, fails the test with `what` and the last `Err` (the state seen).
pub async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let t = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) => assert!(t.elapsed() < timeout, "{what}: not within {timeout:?}; last: {state}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
