//! S3 principals: their request statistics and throttles (`/api/v1/telemetry/principals`, `/api/v1/principals/*`).
//!
//! A principal is the access key id an S3 request claims. Its statistics stay
//! [`serde_json::Value`] on the client side (their type is the `telemetry` crate's
//! `PrincipalSnapshot`); its throttle is spelled here.

use serde::{Deserialize, Serialize};

/// Highest rate a throttle may allow, requests per second.
pub const MAX_THROTTLE_RATE: f64 = 1e6;
/// Longest throttle reason, in characters.
pub const MAX_REASON_CHARS: usize = 1024;

/// `PUT /api/v1/principals/{principal}/throttle`: limit one principal's S3 requests; beyond the
/// rate they are answered `503 SlowDown` before anything else is done with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleRequest {
    /// Sustained rate allowed, requests per second (more than 0, at most 1e6).
    pub requests_per_s: f64,
    /// Requests allowed at once after a quiet spell (at least 1); default: the rate rounded up,
    /// at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Why (1 to 1024 characters): shown in the throttle list and the logs.
    pub reason: String,
    /// Seconds until the throttle lifts itself (at least 1); none: until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

impl ThrottleRequest {
    /// Why the request is invalid, naming the field; `Ok` when it is not.
    pub fn check(&self) -> Result<(), String> {
        let r = self.requests_per_s;
        if !(r.is_finite() && r > 0.0 && r <= MAX_THROTTLE_RATE) {
            return Err(format!(
                "requests_per_s must be more than 0 and at most {MAX_THROTTLE_RATE}, not {r}"
            ));
        }
        if self.burst == Some(0) {
            return Err("burst must be at least 1".into());
        }
        let chars = self.reason.chars().count();
        if !(1..=MAX_REASON_CHARS).contains(&chars) {
            return Err(format!(
                "reason must be 1 to {MAX_REASON_CHARS} characters, not {chars}"
            ));
        }
        if self.ttl_s == Some(0) {
            return Err("ttl_s must be at least 1 (or left out: no expiry)".into());
        }
        Ok(())
    }

    /// The burst in force: the one given, else the rate rounded up (at least 1).
    #[must_use]
    pub fn effective_burst(&self) -> u32 {
        // Clamped into u32's range first: the cast cannot truncate.
        self.burst
            .unwrap_or_else(|| self.requests_per_s.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
    }
}

/// One throttle in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleView {
    /// The principal (access key id) throttled.
    pub principal: String,
    /// Sustained rate allowed, requests per second.
    pub requests_per_s: f64,
    /// Requests allowed at once.
    pub burst: u32,
    /// Why.
    pub reason: String,
    /// When it was set, Unix ms.
    pub since_ms: u64,
    /// When it lifts itself, Unix ms; `None`: when deleted.
    pub until_ms: Option<u64>,
}

/// `GET /api/v1/principals/throttles`: every throttle in force, by principal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThrottlesView {
    /// The throttles.
    pub throttles: Vec<ThrottleView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(rate: f64) -> ThrottleRequest {
        ThrottleRequest {
            requests_per_s: rate,
            burst: None,
            reason: "scan".into(),
            ttl_s: None,
        }
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        assert!(req(1.0).check().is_ok());
        assert!(req(1e6).check().is_ok());
        for bad in [0.0, -1.0, 1e6 + 1.0, f64::NAN, f64::INFINITY] {
            let e = req(bad).check().unwrap_err();
            assert!(e.contains("requests_per_s"), "{e}");
        }
        let e = ThrottleRequest {
            burst: Some(0),
            ..req(1.0)
        }
        .check()
        .unwrap_err();
        assert!(e.contains("burst"), "{e}");
        for reason in [String::new(), "x".repeat(1025)] {
            let e = ThrottleRequest { reason, ..req(1.0) }.check().unwrap_err();
            assert!(e.contains("reason"), "{e}");
        }
        assert!(ThrottleRequest {
            reason: "é".repeat(1024),
            ..req(1.0)
        }
        .check()
        .is_ok());
        let e = ThrottleRequest {
            ttl_s: Some(0),
            ..req(1.0)
        }
        .check()
        .unwrap_err();
        assert!(e.contains("ttl_s"), "{e}");
    }

    #[test]
    fn burst_defaults_to_the_rate_rounded_up() {
        assert_eq!(req(0.1).effective_burst(), 1);
        assert_eq!(req(2.5).effective_burst(), 3);
        assert_eq!(req(1e6).effective_burst(), 1_000_000);
        let given = ThrottleRequest {
            burst: Some(7),
            ..req(1.0)
        };
        assert_eq!(given.effective_burst(), 7);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let ok: ThrottleRequest = serde_json::from_str(r#"{"requests_per_s": 2, "reason": "r"}"#).unwrap();
        assert_eq!((ok.burst, ok.ttl_s), (None, None));
        let e =
            serde_json::from_str::<ThrottleRequest>(r#"{"requests_per_s": 2, "reason": "r", "rate": 1}"#).unwrap_err();
        assert!(e.to_string().contains("rate"), "{e}");
        assert!(serde_json::from_str::<ThrottleRequest>(r#"{"requests_per_s": 2}"#).is_err());
    }
}
