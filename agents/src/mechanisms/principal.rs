//! `principal_throttle`: slows one S3 principal (access key) down at its gateway, through
//! `PUT/DELETE /api/v1/principals/{principal}/throttle`. Requests over the rate are answered
//! `503 SlowDown`, which every S3 client backs off from.
//!
//! The command is `{"principal": "...", "throttle": {requests_per_s, burst, reason, ttl_s}}`
//! to throttle, or `{"principal": "...", "throttle": null}` to lift it.

use crate::error::{Error, Result};
use crate::framework::{Applied, Mechanism};
use crate::gateway::Gateway;
use crate::plan::Plan;
use crate::world::World;
use async_trait::async_trait;
use control_api::{routes, Decision, Method, StatusCode};
use serde_json::{json, Value};

/// The mechanism's name, as plans give it.
pub const NAME: &str = "principal_throttle";

/// The throttle of S3 principals at one gateway.
pub struct PrincipalThrottleMechanism {
    gateway: Gateway,
}

impl PrincipalThrottleMechanism {
    /// Over `gateway`.
    #[must_use]
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }
}

fn fail(message: String) -> Error {
    Error::Mechanism {
        mechanism: NAME.into(),
        message,
    }
}

/// The admin path of `principal`'s throttle (the name percent-encoded as one segment).
fn path_of(principal: &str) -> String {
    let segment: String = url_segment(principal);
    routes::PRINCIPAL_THROTTLE.replace("{principal}", &segment)
}

fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Mechanism for PrincipalThrottleMechanism {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, plan: &Plan) -> Result<Applied> {
        let principal = plan.command["principal"]
            .as_str()
            .ok_or_else(|| fail("command names no principal".into()))?;
        let path = path_of(principal);
        let client = self.gateway.client();
        let throttle = &plan.command["throttle"];
        if throttle.is_null() {
            let (status, body) = client
                .send(Method::DELETE, &path, None)
                .await
                .map_err(|e| fail(format!("lifting the throttle of {principal}: {e}")))?;
            return match status {
                StatusCode::NOT_FOUND => Ok(Applied::Unchanged),
                s if s.is_success() => Ok(Applied::Done {
                    epoch: None,
                    undo: None,
                }),
                s => Err(fail(format!("lifting the throttle of {principal}: {s}: {body}"))),
            };
        }
        let body = serde_json::to_vec(throttle).map_err(|e| fail(format!("throttle of {principal}: {e}")))?;
        let (status, answer) = client
            .send(Method::PUT, &path, Some(body))
            .await
            .map_err(|e| fail(format!("throttling {principal}: {e}")))?;
        if !status.is_success() {
            return Err(fail(format!("throttling {principal}: {status}: {answer}")));
        }
        Ok(Applied::Done {
            epoch: None,
            undo: Some(json!({"principal": principal, "throttle": null})),
        })
    }

    fn finished(&self, _: &Decision, _: &World) -> bool {
        true
    }

    async fn get_state(&self) -> Value {
        match self
            .gateway
            .client()
            .send(Method::GET, routes::PRINCIPAL_THROTTLES, None)
            .await
        {
            Ok((_, v)) => v,
            Err(e) => json!({"error": e.to_string()}),
        }
    }

    async fn get_options(&self) -> Value {
        json!({"principal": "an access key", "throttle": "{requests_per_s, burst, reason, ttl_s} or null"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_become_one_path_segment() {
        assert_eq!(path_of("AKIA1"), "/api/v1/principals/AKIA1/throttle");
        assert_eq!(path_of("a/b c"), "/api/v1/principals/a%2Fb%20c/throttle");
    }
}
