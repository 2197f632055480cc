//! The Prometheus page of a test server and reading samples off it.

use crate::process::TestServer;
use crate::process::ADMIN_TOKEN;

impl TestServer {
    /// The `/metrics` page (Prometheus text), fetched with the test token.
    pub async fn metrics(&self) -> String {
        let (status, text) = self.admin_raw("GET", "/metrics", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        text
    }
}

/// The value of the Prometheus sample `name` whose labels include every `label=value` pair of
/// `labels`, summed over the samples that match (e.g. over status codes).
pub fn prom_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if matches {
            let v: f64 = value.trim().split(' ').next().unwrap_or("").parse().ok()?;
            total = Some(total.unwrap_or(0.0) + v);
        }
    }
    total
}
