//! Backend health: a circuit breaker that routes requests around a failing backend.
//!
//! After a failure the backend is *suspect* for a backoff that doubles with each consecutive
//! failure (1 s up to 60 s); meanwhile calls fail at once instead of waiting for timeouts, so
//! reads take other shards and writes queue the shard for repair. When the backoff ends, the
//! next call is the trial: success clears the state, failure doubles the backoff.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    suspect_until: Option<Instant>,
    last_error: Option<String>,
}

/// Health of one backend, shared by all clones of it.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

/// A point-in-time view of a backend's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthStatus {
    /// Whether calls are currently refused.
    pub suspect: bool,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Time until the next trial call, when suspect.
    pub retry_in: Option<Duration>,
    /// The last failure, if any since the last success.
    pub last_error: Option<String>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(remaining backoff, last error)` while calls should not be attempted.
    pub fn admit(&self) -> Result<(), (Duration, String)> {
        let s = self.lock();
        match s.suspect_until {
            Some(until) if until > Instant::now() => {
                Err((until - Instant::now(), s.last_error.clone().unwrap_or_default()))
            }
            _ => Ok(()),
        }
    }

    /// A call succeeded (or failed for a reason that says nothing about the backend).
    pub fn success(&self) {
        let mut s = self.lock();
        if s.consecutive_failures > 0 {
            tracing::info!(after_failures = s.consecutive_failures, "backend healthy again");
        }
        *s = State::default();
    }

    /// A call failed because of the backend.
    pub fn failure(&self, error: &str) {
        let mut s = self.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let exp = s.consecutive_failures.saturating_sub(1).min(6);
        let backoff = (FIRST_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF);
        s.suspect_until = Some(Instant::now() + backoff);
        s.last_error = Some(error.to_owned());
    }

    /// No failure since the last success: placement prefers such backends for new shards.
    pub fn is_healthy(&self) -> bool {
        self.lock().consecutive_failures == 0
    }

    /// The current state.
    pub fn status(&self) -> HealthStatus {
        let s = self.lock();
        let now = Instant::now();
        let retry_in = s.suspect_until.filter(|u| *u > now).map(|u| u - now);
        HealthStatus {
            suspect: retry_in.is_some(),
            consecutive_failures: s.consecutive_failures,
            retry_in,
            last_error: s.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_and_success_clears() {
        let h = Health::default();
        assert!(h.admit().is_ok());
        h.failure("connection refused");
        let (wait, why) = h.admit().unwrap_err();
        assert!(wait <= FIRST_BACKOFF && why == "connection refused");
        for _ in 0..10 {
            h.failure("again");
        }
        let st = h.status();
        assert!(st.suspect && st.consecutive_failures == 11);
        assert!(st.retry_in.unwrap() > FIRST_BACKOFF * 30 && st.retry_in.unwrap() <= MAX_BACKOFF);
        h.success();
        assert!(h.admit().is_ok());
        assert_eq!(h.status().consecutive_failures, 0);
    }
}
