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
