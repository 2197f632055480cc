//! The trust and identity routes over real HTTP: every route, 401s, bad input.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use trust::{Evidence, Identities, KeyPair, Reputation};

const TOKEN: &str = "s3cret-token";

async fn serve() -> (String, Reputation, Identities) {
    let reputation = Reputation::default();
    let identities = Identities::in_memory();
    let app = trust::routes::router(reputation.clone(), identities.clone(), Arc::from(TOKEN));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), reputation, identities)
}

async fn call(method: Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

fn error(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_else(|| panic!("no error field: {v}"))
}

#[tokio::test]
async fn every_route_answers_401_without_or_with_a_wrong_token() {
    let (base, _, _) = serve().await;
    let paths = [
        (Method::GET, "/api/v1/trust/subjects"),
        (Method::GET, "/api/v1/trust/subjects/backend:b1"),
        (Method::POST, "/api/v1/trust/subjects/backend:b1/feedback"),
        (Method::GET, "/api/v1/trust/config"),
        (Method::PUT, "/api/v1/trust/config"),
        (Method::GET, "/api/v1/identities"),
        (Method::POST, "/api/v1/identities"),
        (Method::GET, "/api/v1/identities/c1"),
        (Method::POST, "/api/v1/identities/c1/revoke"),
    ];
    for (m, p) in paths {
        let url = format!("{base}{p}");
        let none = Client::new().request(m.clone(), &url).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{m} {p}");
        let body: Value = none.json().await.unwrap();
        assert!(error(&body).contains("Bearer"), "{body}");
        let wrong = Client::new()
            .request(m.clone(), &url)
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{m} {p}");
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(error(&body), "wrong admin token");
    }
}

#[tokio::test]
async fn subjects_config_and_feedback() {
    let (base, reputation, _) = serve().await;
    let b1: trust::Subject = "backend:b1".parse().unwrap();
    let now = trust::now_ms();
    reputation
        .record(Evidence::new(
            b1.clone(),
            control_api::EvidenceKind::Success,
            200.0,
            now,
            "calls",
        ))
        .unwrap();
    reputation
        .record(Evidence::new(
            "principal:AKIA1".parse().unwrap(),
            control_api::EvidenceKind::AuthFailure,
            3.0,
            now,
            "bad sig",
        ))
        .unwrap();

    let (st, v) = call(Method::GET, &format!("{base}/api/v1/trust/subjects"), None).await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = v["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["backend:b1", "principal:AKIA1"]);
    let (_, v) = call(
        Method::GET,
        &format!("{base}/api/v1/trust/subjects?kind=principal"),
        None,
    )
    .await;
    assert_eq!(v["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(v["subjects"][0]["failures"], 3.0);
    let (st, v) = call(Method::GET, &format!("{base}/api/v1/trust/subjects?kind=bucket"), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error(&v).starts_with("kind: unknown subject kind"), "{v}");

    let (st, v) = call(Method::GET, &format!("{base}/api/v1/trust/subjects/backend:b1"), None).await;
    assert_eq!(st, StatusCode::OK);
    let before = v["score"].as_f64().unwrap();
    assert!(before > 0.9, "{v}");
    assert_eq!(v["indexes"]["identity"], 1.0);
    assert_eq!(v["evidence"][0]["reason"], "calls");
    let (st, v) = call(Method::GET, &format!("{base}/api/v1/trust/subjects/backend:zz"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(error(&v), "no trust subject backend:zz");
    let (st, v) = call(Method::GET, &format!("{base}/api/v1/trust/subjects/b1"), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("kind:id"), "{v}");

    // Operator feedback moves the score and is kept as evidence.
    let url = format!("{base}/api/v1/trust/subjects/backend:b1/feedback");
    let (st, v) = call(
        Method::POST,
        &url,
        Some(json!({"outcome":"failure","weight":100,"reason":"lost a disk"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["score"].as_f64().unwrap() < before - 0.2, "{v}");
    let last = v["evidence"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["reason"].as_str()),
        (Some("operator_failure"), Some("operator: lost a disk"))
    );
    for (body, needle) in [
        (json!({"outcome":"failure","weight":0}), "weight: 0 is not in"),
        (json!({"outcome":"failure","weight":101}), "weight: 101"),
        (
            json!({"outcome":"maybe","weight":1}),
            "feedback: unknown variant `maybe`",
        ),
        (
            json!({"outcome":"success","weight":1,"extra":1}),
            "unknown field `extra`",
        ),
    ] {
        let (st, v) = call(Method::POST, &url, Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(error(&v).contains(needle), "{v}");
    }
    let big = Client::new()
        .post(&url)
        .bearer_auth(TOKEN)
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = big.json().await.unwrap();
    assert!(error(&v).starts_with("feedback:"), "{v}");

    // Config.
    let cfg_url = format!("{base}/api/v1/trust/config");
    let (st, v) = call(Method::GET, &cfg_url, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["indexes"], json!(["behaviour", "capability"]));
    assert_eq!(v["weights"], json!([0.6, 0.4]));
    let (st, v) = call(
        Method::PUT,
        &cfg_url,
        Some(json!({"node_ids":["n1"],"indexes":["identity","behaviour"],"weights":[0.5,0.5]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["half_life_s"], 3600.0);
    assert_eq!(reputation.config().node_ids, ["n1"]);
    let (st, v) = call(
        Method::PUT,
        &cfg_url,
        Some(json!({"indexes":["behaviour"],"weights":[1,2]})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("weights: 2 weights for 1 indexes"), "{v}");
    let (st, v) = call(Method::PUT, &cfg_url, Some(json!({"indexes":["behaviour"]}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("missing field `weights`"), "{v}");
    assert_eq!(reputation.config().indexes, ["identity", "behaviour"]);
}

#[tokio::test]
async fn identities_enrol_get_revoke() {
    let (base, reputation, identities) = serve().await;
    let key = KeyPair::generate();
    let other = KeyPair::generate();
    let url = format!("{base}/api/v1/identities");
    let enrol = json!({"id":"c1","kind":"agent","public_key":key.public_key().to_base64()});
    let (st, v) = call(Method::POST, &url, Some(enrol.clone())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["enrolled_by"], "operator");
    // The same again is fine; another key is a conflict until replaced.
    assert_eq!(call(Method::POST, &url, Some(enrol.clone())).await.0, StatusCode::OK);
    let mut swap = json!({"id":"c1","kind":"agent","public_key":other.public_key().to_base64()});
    let (st, v) = call(Method::POST, &url, Some(swap.clone())).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(error(&v).contains("different key"), "{v}");
    for (body, needle) in [
        (
            json!({"id":"c2","kind":"agent","public_key":"AAAA"}),
            "public_key: bad public key: 3 bytes",
        ),
        (
            json!({"id":"c2","kind":"robot","public_key":"AAAA"}),
            "enrolment: unknown variant `robot`",
        ),
        (
            json!({"id":"","kind":"agent","public_key":key.public_key().to_base64()}),
            "empty",
        ),
    ] {
        let (st, v) = call(Method::POST, &url, Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(error(&v).contains(needle), "{v}");
    }

    let (st, v) = call(Method::GET, &url, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["identities"].as_array().unwrap().len(), 1);
    let (st, v) = call(Method::GET, &format!("{url}/c1"), None).await;
    assert_eq!(
        (st, v["public_key"].as_str()),
        (StatusCode::OK, Some(key.public_key().to_base64().as_str()))
    );
    let (st, v) = call(Method::GET, &format!("{url}/c9"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(error(&v), "no identity c9");

    // The enrolment set the agent's identity index.
    let agent: trust::Subject = "agent:c1".parse().unwrap();
    assert_eq!(reputation.score(&agent).unwrap().indexes["identity"], 1.0);

    let msg = trust::signed_bytes(&[b"c1", b"1"]);
    assert_eq!(identities.verify("c1", &msg, &key.sign(&msg)), Ok(()));
    let (st, v) = call(
        Method::POST,
        &format!("{url}/c1/revoke"),
        Some(json!({"reason":"key leaked"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["revoked"]["reason"], "key leaked");
    assert_eq!(
        identities.verify("c1", &msg, &key.sign(&msg)),
        Err(trust::VerifyError::Revoked("c1".into()))
    );
    assert_eq!(reputation.score(&agent).unwrap().score, 0.0);
    let (st, _) = call(Method::POST, &format!("{url}/c9/revoke"), Some(json!({"reason":"x"}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = call(Method::POST, &format!("{url}/c1/revoke"), Some(json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error(&v).contains("missing field `reason`"), "{v}");

    // Replacing installs the new key and lifts the revocation.
    swap["replace"] = json!(true);
    let (st, v) = call(Method::POST, &url, Some(swap)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get("revoked").is_none(), "{v}");
    assert_eq!(identities.verify("c1", &msg, &other.sign(&msg)), Ok(()));
}
