//! A model served elsewhere, reached in the MLSysOps ML connector's shape:
//! `POST {base}/deployment/{id}/predict` with `{"data": ..., "explain": bool}`, answered by
//! `{"prediction": ..., "explanation": ...}`.
//!
//! Every call is bounded: 2 s to connect, 5 s in all, 1 MiB of answer. Errors name the model
//! and the URL's path only, so a token in the base URL's userinfo or query never reaches a log.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Client, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use super::model::{model_error, Dataset, Model, Prediction};
use crate::error::{Error, Result};

/// Time to connect, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for a whole call, answer included, by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read, bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Most of an error answer's body quoted in the error.
const QUOTED_BYTES: usize = 200;

/// A deployment of the ML connector, called over HTTP. A base URL's userinfo is sent as basic
/// auth and shown nowhere, `Debug` included.
#[derive(Clone)]
pub struct ExternalModel {
    name: String,
    url: Url,
    client: Client,
    call_timeout: Duration,
    max_answer: usize,
}

impl std::fmt::Debug for ExternalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalModel")
            .field("name", &self.name)
            .field("path", &self.path())
            .field("call_timeout", &self.call_timeout)
            .field("max_answer", &self.max_answer)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct PredictRequest<'a> {
    data: &'a Value,
    explain: bool,
}

impl ExternalModel {
    /// The deployment `deployment` of the connector at `base` (e.g. `http://mlc:8090`), named
    /// after the deployment, with the default timeouts.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `base` is not an http(s) URL or `deployment` is empty.
    #[allow(
        clippy::result_large_err,
        reason = "crate::Error holds a ClientError by value (error.rs)"
    )]
    pub fn new(base: &str, deployment: &str) -> Result<Self> {
        Self::with_timeouts(base, deployment, CONNECT_TIMEOUT, CALL_TIMEOUT)
    }

    /// As [`ExternalModel::new`], with other timeouts.
    ///
    /// # Errors
    /// As [`ExternalModel::new`], and [`Error::Model`] when the HTTP client cannot be built.
    #[allow(
        clippy::result_large_err,
        reason = "crate::Error holds a ClientError by value (error.rs)"
    )]
    pub fn with_timeouts(base: &str, deployment: &str, connect: Duration, call: Duration) -> Result<Self> {
        if deployment.is_empty() {
            return Err(Error::Invalid("ml connector: the deployment id is empty".into()));
        }
        let mut url = Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| Error::Invalid("ml connector: the endpoint is not an http(s) URL".into()))?;
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| Error::Invalid("ml connector: the endpoint cannot take a path".into()))?
            .pop_if_empty()
            .extend(["deployment", deployment, "predict"]);
        let client = Client::builder()
            .connect_timeout(connect)
            .timeout(call)
            // A redirect could carry the request somewhere unvetted; the connector has no need.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| model_error(deployment, format!("building the HTTP client: {}", e.without_url())))?;
        Ok(Self {
            name: deployment.to_owned(),
            url,
            client,
            call_timeout: call,
            max_answer: MAX_ANSWER_BYTES,
        })
    }

    /// The same model under another name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same model reading at most `bytes` of answer.
    #[must_use]
    pub fn max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes;
        self
    }

    /// The path called, as errors show it.
    #[must_use]
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// Asks the deployment about `data`.
    ///
    /// # Errors
    /// [`Error::Model`] naming the model and the path when the call fails, times out, answers
    /// non-2xx, more than the bound, or anything but `{"prediction": ...}` JSON.
    pub async fn call(&self, data: &Value, explain: bool) -> Result<Prediction> {
        let fail = |message: String| model_error(&self.name, format!("POST {}: {message}", self.path()));
        let transport = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() {
                fail(format!("no answer within {} ms", self.call_timeout.as_millis()))
            } else if e.is_connect() {
                fail(format!("cannot connect: {}", root_cause(&e)))
            } else {
                fail(root_cause(&e))
            }
        };
        let mut response = self
            .client
            .post(self.url.clone())
            .json(&PredictRequest { data, explain })
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if response.content_length().is_some_and(|n| n > self.max_answer as u64) {
            return Err(fail(format!("answer larger than {} bytes", self.max_answer)));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_answer {
                return Err(fail(format!("answer larger than {} bytes", self.max_answer)));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(fail(status_message(status, &body)));
        }
        let answer: Value = serde_json::from_slice(&body).map_err(|e| fail(format!("answer is not JSON: {e}")))?;
        if answer.get("prediction").is_none() {
            return Err(fail("answer has no `prediction`".into()));
        }
        serde_json::from_value(answer).map_err(|e| fail(format!("answer is not {{prediction, explanation}}: {e}")))
    }
}

/// `HTTP 500 Internal Server Error: <the start of the body>`.
fn status_message(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BYTES)]);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    }
}

/// The innermost cause, which says what happened (reqwest's outer message is generic).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[async_trait]
impl Model for ExternalModel {
    fn name(&self) -> &str {
        &self.name
    }

    /// A deployment is trained by whoever deployed it.
    async fn train(&mut self, _data: &Dataset) -> Result<()> {
        Err(model_error(
            &self.name,
            "an external deployment is trained by its ML connector, not by the agent",
        ))
    }

    async fn predict(&self, input: &Value, explain: bool) -> Result<Prediction> {
        self.call(input, explain).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_built_under_the_base_and_drops_secrets_from_the_path() {
        let m = ExternalModel::new("http://user:secret@mlc:8090/api/?token=abc", "dep 1").unwrap();
        assert_eq!(m.path(), "/api/deployment/dep%201/predict");
        let shown = format!("{m:?}");
        assert!(!shown.contains("secret") && !shown.contains("abc"), "{shown}");
        let m = ExternalModel::new("https://mlc", "d").unwrap();
        assert_eq!(m.path(), "/deployment/d/predict");
        assert!(ExternalModel::new("mlc:8090", "d").is_err());
        assert!(ExternalModel::new("ftp://mlc", "d").is_err());
        assert!(ExternalModel::new("http://mlc", "").is_err());
    }
}
