//! `GET /api/v1/anomalies`: the kept verdicts, behind the admin token.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use control_api::{routes, AnomaliesPage, AnomalyClass, ErrorBody};

use crate::store::{Anomalies, Query};

/// Verdicts answered when the query does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The most verdicts one answer holds.
pub const MAX_LIMIT: usize = 1000;

/// The anomalies route over `store`, answering only requests bearing `token`.
pub fn router(store: Anomalies, token: Arc<str>) -> Router {
    Router::new()
        .route(routes::ANOMALIES, get(list))
        .with_state(store)
        .layer(middleware::from_fn_with_state(token, control_api::auth::require_token))
        // GETs only: nothing to read from a body.
        .layer(DefaultBodyLimit::max(1024))
}

fn fail(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
}

/// The query of `?subject=&class=&since=&limit=`, or the message naming what is wrong.
///
/// # Errors
/// A message naming the parameter when one is unknown or its value is not valid.
pub fn parse_query(raw: &str) -> Result<Query, String> {
    let mut q = Query {
        limit: DEFAULT_LIMIT,
        ..Query::default()
    };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "subject" => q.subject = Some(v.into_owned()),
            "class" => {
                q.class = Some(AnomalyClass::parse(&v).ok_or_else(|| {
                    format!("anomalies: class={v:?} is not a class (malfunction, attack, tampering)")
                })?);
            }
            "since" => {
                q.since_ms = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("anomalies: since={v:?} is not a time in ms since the epoch"))?,
                );
            }
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| format!("anomalies: limit={v:?} is not a number from 1 to {MAX_LIMIT}"))?;
            }
            other => {
                return Err(format!(
                    "anomalies: unknown parameter {other:?} (subject, class, since, limit)"
                ))
            }
        }
    }
    Ok(q)
}

async fn list(State(store): State<Anomalies>, RawQuery(raw): RawQuery) -> Response {
    match parse_query(raw.as_deref().unwrap_or_default()) {
        Ok(q) => Json(AnomaliesPage {
            anomalies: store.query(&q),
        })
        .into_response(),
        Err(e) => fail(StatusCode::BAD_REQUEST, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_bad_parameter() {
        let q = parse_query("subject=backend%3Ab1&class=attack&since=5&limit=7").unwrap();
        assert_eq!(q.subject.as_deref(), Some("backend:b1"));
        assert_eq!(q.class, Some(AnomalyClass::Attack));
        assert_eq!((q.since_ms, q.limit), (Some(5), 7));
        assert_eq!(parse_query("").unwrap().limit, DEFAULT_LIMIT);
        for (raw, name) in [
            ("class=bad", "class="),
            ("since=-1", "since="),
            ("limit=0", "limit="),
            ("x=1", "\"x\""),
        ] {
            let e = parse_query(raw).unwrap_err();
            assert!(e.contains(name), "{raw}: {e}");
        }
    }
}
