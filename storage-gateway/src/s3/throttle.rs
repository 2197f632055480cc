//! Throttles of S3 principals: a token bucket per throttled access key, checked from the
//! request head before s3s reads anything, so a throttled client costs a map lookup and a
//! short `503 SlowDown`.
//!
//! Throttles live in memory only: a restart lifts them all. They are remediation set by an
//! operator or a policy that watches the principal statistics, which sets them again if the
//! behaviour goes on. At most [`MAX_THROTTLES`] are held; expired ones go when next looked at.

use control_api::{ThrottleRequest, ThrottleView};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Throttles held at once; setting one more is refused.
pub const MAX_THROTTLES: usize = 4096;

/// Why a throttle could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// The request is invalid (the message names the field).
    #[error("{0}")]
    Invalid(String),
    /// [`MAX_THROTTLES`] are in force already.
    #[error("{MAX_THROTTLES} principals are throttled already; lift one first")]
    Full,
}

#[derive(Debug)]
struct Bucket {
    view: ThrottleView,
    until: Option<Instant>,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn expired(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now >= u)
    }

    /// Takes a token if there is one, after refilling for the time since the last call.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.view.requests_per_s).min(f64::from(self.view.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The throttles in force, by principal; shared by the S3 front and the admin API.
#[derive(Debug, Default)]
pub struct Throttles {
    map: Mutex<HashMap<String, Bucket>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Throttles {
    /// No throttle.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Throttles `principal` as `req` says, replacing its throttle if it had one (with a full
    /// bucket); returns the throttle now in force.
    ///
    /// # Errors
    /// An invalid request, or [`MAX_THROTTLES`] other principals throttled already.
    pub fn set(&self, principal: &str, req: &ThrottleRequest) -> Result<ThrottleView, ThrottleError> {
        self.set_at(Instant::now(), principal, req)
    }

    fn set_at(&self, now: Instant, principal: &str, req: &ThrottleRequest) -> Result<ThrottleView, ThrottleError> {
        req.check().map_err(ThrottleError::Invalid)?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, b| !b.expired(now));
        if map.len() >= MAX_THROTTLES && !map.contains_key(principal) {
            return Err(ThrottleError::Full);
        }
        let since_ms = unix_ms();
        let ttl = req.ttl_s.map(Duration::from_secs);
        let view = ThrottleView {
            principal: principal.to_owned(),
            requests_per_s: req.requests_per_s,
            burst: req.effective_burst(),
            reason: req.reason.clone(),
            since_ms,
            until_ms: req.ttl_s.map(|s| since_ms.saturating_add(s.saturating_mul(1000))),
        };
        map.insert(
            principal.to_owned(),
            Bucket {
                tokens: f64::from(view.burst),
                view: view.clone(),
                until: ttl.and_then(|t| now.checked_add(t)),
                refilled: now,
            },
        );
        Ok(view)
    }

    /// Lifts `principal`'s throttle; whether it had one in force.
    pub fn remove(&self, principal: &str) -> bool {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(principal).is_some_and(|b| !b.expired(now))
    }

    /// Every throttle in force, by principal.
    #[must_use]
    pub fn list(&self) -> Vec<ThrottleView> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, b| !b.expired(now));
        let mut out: Vec<ThrottleView> = map.values().map(|b| b.view.clone()).collect();
        out.sort_by(|a, b| a.principal.cmp(&b.principal));
        out
    }

    /// Whether a request of `principal` may go on now (taking a token if it is throttled).
    #[must_use]
    pub fn admit(&self, principal: &str) -> bool {
        self.admit_at(Instant::now(), principal)
    }

    fn admit_at(&self, now: Instant, principal: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(bucket) = map.get_mut(principal) else {
            return true;
        };
        if bucket.expired(now) {
            map.remove(principal);
            return true;
        }
        bucket.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(rate: f64, burst: Option<u32>, ttl_s: Option<u64>) -> ThrottleRequest {
        ThrottleRequest {
            requests_per_s: rate,
            burst,
            reason: "test".into(),
            ttl_s,
        }
    }

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let t = Throttles::new();
        let t0 = Instant::now();
        let v = t.set_at(t0, "AKIA1", &req(2.0, Some(3), None)).unwrap();
        assert_eq!((v.burst, v.until_ms), (3, None));
        let admitted = (0..10).filter(|_| t.admit_at(t0, "AKIA1")).count();
        assert_eq!(admitted, 3);
        // Others are not throttled.
        assert!(t.admit_at(t0, "AKIA2"));
        // Half a second brings one token at 2/s; it never exceeds the burst.
        assert!(t.admit_at(t0 + Duration::from_millis(500), "AKIA1"));
        assert!(!t.admit_at(t0 + Duration::from_millis(500), "AKIA1"));
        let later = t0 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| t.admit_at(later, "AKIA1")).count(), 3);
    }

    #[test]
    fn throttles_expire_and_can_be_removed() {
        let t = Throttles::new();
        let t0 = Instant::now();
        let v = t.set_at(t0, "a", &req(1.0, None, Some(10))).unwrap();
        assert_eq!(v.until_ms, Some(v.since_ms + 10_000));
        assert_eq!(v.burst, 1);
        assert!(t.admit_at(t0, "a"));
        assert!(!t.admit_at(t0, "a"));
        // Expired: admitted, and gone from the map.
        assert!(t.admit_at(t0 + Duration::from_secs(10), "a"));
        assert!(!t.map.lock().unwrap().contains_key("a"));
        t.set("b", &req(1.0, None, None)).unwrap();
        assert_eq!(t.list().len(), 1);
        assert!(t.remove("b"));
        assert!(!t.remove("b"));
        assert!(t.list().is_empty());
    }

    #[test]
    fn invalid_requests_and_too_many_throttles_are_refused() {
        let t = Throttles::new();
        assert!(matches!(
            t.set("a", &req(0.0, None, None)),
            Err(ThrottleError::Invalid(m)) if m.contains("requests_per_s")
        ));
        let t0 = Instant::now();
        for i in 0..MAX_THROTTLES {
            t.set_at(t0, &format!("p{i}"), &req(1.0, None, None)).unwrap();
        }
        assert!(matches!(
            t.set_at(t0, "one-more", &req(1.0, None, None)),
            Err(ThrottleError::Full)
        ));
        // Replacing one in force is not growing.
        t.set_at(t0, "p0", &req(5.0, None, None)).unwrap();
        assert!(t.remove("p1"));
        t.set_at(t0, "one-more", &req(1.0, None, None)).unwrap();
    }
}
