//! Per-principal evidence and throttles (issue 13): request counts per claimed access key
//! (`/api/v1/telemetry/principals`), throttles answered `503 SlowDown`
//! (`/api/v1/principals/{principal}/throttle`), integrity failures per backend in the backend
//! telemetry, and refused `policy_update_token`s counted for `admin-api`.

use std::time::{Duration, Instant};

use control_api::{routes, ClientError, Faults, StatusCode, ThrottleRequest};
use s3_compat_tests::*;
use serde_json::{json, Value};

/// The forger's access key: unknown to the gateway, signed with a made-up secret.
const FORGED_KEY: &str = "AKIAFORGED0001";

fn server(opts: ServerOptions) -> TestServer {
    TestServer::start(
        opts.flag("--agents", "off")
            .flag("--scrub-interval-secs", 86400)
            .flag("--heal-interval-secs", 3600),
    )
}

/// The entry of `principal` in a principal telemetry answer.
fn principal<'a>(all: &'a Value, name: &str) -> Option<&'a Value> {
    all["principals"].as_array()?.iter().find(|p| p["principal"] == name)
}

/// Counter `field` of `principal`: its total and its 1-minute window (0 when not listed).
fn counts(all: &Value, name: &str, field: &str) -> (u64, u64) {
    let Some(p) = principal(all, name) else { return (0, 0) };
    let minute = p["windows"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["window"] == "1m"))
        .unwrap_or_else(|| panic!("no 1m window in {p}"));
    (
        p["total"][field].as_u64().unwrap_or(0),
        minute[field].as_u64().unwrap_or(0),
    )
}

/// Polls the principal telemetry until `done` holds (requests are recorded when their response
/// body ends, just after the client has it); returns the last answer.
async fn principals_until(srv: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let admin = srv.admin_client(Some(ADMIN_TOKEN));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = admin.principal_telemetry().await.expect("principal telemetry");
        if done(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "{what}: not seen in {all:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signatures_are_counted_against_the_key_they_claim() {
    let srv = server(ServerOptions::new());
    let good = srv.client();
    create_bucket(&good, "pbucket").await;
    put_bytes(&good, "pbucket", "k", b"hello").await;
    for _ in 0..3 {
        assert_eq!(get_bytes(&good, "pbucket", "k").await, b"hello");
    }
    let forged = srv.client_with_credentials(FORGED_KEY, "not-the-secret-0000");
    for _ in 0..4 {
        let res = forged.get_object().bucket("pbucket").key("k").send().await;
        expect_err(res, 403, Some("InvalidAccessKeyId"));
    }
    let all = principals_until(&srv, "4 auth failures of the forged key", |all| {
        counts(all, FORGED_KEY, "auth_failures").0 >= 4
    })
    .await;
    assert_eq!(counts(&all, FORGED_KEY, "auth_failures"), (4, 4), "{all:#}");
    assert_eq!(counts(&all, FORGED_KEY, "denied"), (4, 4), "{all:#}");
    assert_eq!(counts(&all, FORGED_KEY, "requests").0, 4, "{all:#}");
    assert_eq!(counts(&all, FORGED_KEY, "gets").0, 0, "never routed: {all:#}");
    // The good key's requests are its own: a bucket, a PUT, three GETs, no failure.
    assert_eq!(counts(&all, ACCESS_KEY, "auth_failures"), (0, 0), "{all:#}");
    assert_eq!(counts(&all, ACCESS_KEY, "gets"), (3, 3), "{all:#}");
    assert_eq!(counts(&all, ACCESS_KEY, "puts").0, 1, "{all:#}");
    assert!(counts(&all, ACCESS_KEY, "requests").0 >= 5, "{all:#}");
    assert!(counts(&all, ACCESS_KEY, "bytes_out").0 >= 15, "{all:#}");
    // Every window is there, with every counter.
    let p = principal(&all, ACCESS_KEY).expect("good key listed");
    let windows: Vec<&str> = p["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| w["window"].as_str().expect("window name"))
        .collect();
    assert_eq!(windows, ["1m", "15m", "1h"], "{p}");
    assert_eq!(p["windows"][1]["seconds"], 900, "{p}");
    for field in [
        "requests",
        "auth_failures",
        "denied",
        "client_errors",
        "server_errors",
        "not_found",
        "heads",
        "gets",
        "puts",
        "deletes",
        "lists",
        "bytes_in",
        "bytes_out",
        "token_failures",
        "throttled",
    ] {
        assert!(p["total"][field].is_u64(), "total.{field} missing: {p}");
        assert!(p["windows"][2][field].is_u64(), "1h.{field} missing: {p}");
    }
    // Without credentials: `anonymous`, denied but no auth failure (nothing was forged).
    let anon = raw_request("GET", &format!("{}/pbucket/k", srv.endpoint()), &[], Vec::new()).await;
    assert_eq!(anon.status, 403, "{}", anon.body_text());
    let all = principals_until(&srv, "the anonymous request", |all| {
        counts(all, "anonymous", "denied").0 >= 1
    })
    .await;
    assert_eq!(counts(&all, "anonymous", "auth_failures").0, 0, "{all:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_key_gets_slow_down_until_the_throttle_is_lifted() {
    let srv = server(ServerOptions::new());
    let good = srv.client();
    create_bucket(&good, "tbucket").await;
    put_bytes(&good, "tbucket", "k", b"data").await;
    let admin = srv.admin_client(Some(ADMIN_TOKEN));

    let view = admin
        .throttle_principal(
            ACCESS_KEY,
            &ThrottleRequest {
                requests_per_s: 1.0,
                burst: Some(1),
                reason: "HEAD/404 scan".into(),
                ttl_s: Some(600),
            },
        )
        .await
        .expect("throttle set");
    assert_eq!((view.principal.as_str(), view.burst), (ACCESS_KEY, 1));
    assert_eq!(view.until_ms, Some(view.since_ms + 600_000));
    let listed = admin.principal_throttles().await.expect("throttles");
    assert_eq!(listed.throttles, vec![view.clone()]);

    let mut slowed = 0;
    let mut served = 0;
    for _ in 0..10 {
        match good.get_object().bucket("tbucket").key("k").send().await {
            Ok(out) => {
                assert_eq!(collect_body(out.body).await, b"data");
                served += 1;
            }
            Err(e) => {
                let info = err_info(&e);
                assert_eq!(
                    (info.status, info.code.as_deref()),
                    (Some(503), Some("SlowDown")),
                    "{info:?}"
                );
                slowed += 1;
            }
        }
    }
    assert!(
        slowed >= 5,
        "10 GETs in a burst at 1/s: {slowed} slowed, {served} served"
    );
    assert!(served >= 1, "the burst of 1 lets the first through");
    // On the wire: the S3 XML error body, even for a forged signature under the key.
    let forged = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"
    );
    let mut raw = None;
    for _ in 0..5 {
        let r = raw_request(
            "GET",
            &format!("{}/tbucket/k", srv.endpoint()),
            &[("authorization", &forged)],
            Vec::new(),
        )
        .await;
        if r.status == 503 {
            raw = Some(r);
            break;
        }
    }
    let raw = raw.expect("a forged request under the throttled key is throttled too");
    assert_eq!(raw.error_code().as_deref(), Some("SlowDown"), "{}", raw.body_text());
    assert!(raw.body_text().starts_with("<?xml"), "{}", raw.body_text());

    let all = principals_until(&srv, "throttled requests", |all| {
        counts(all, ACCESS_KEY, "throttled").0 >= slowed
    })
    .await;
    assert_eq!(
        counts(&all, ACCESS_KEY, "server_errors").0,
        0,
        "a throttle is no server error: {all:#}"
    );

    admin.unthrottle_principal(ACCESS_KEY).await.expect("throttle lifted");
    match admin.unthrottle_principal(ACCESS_KEY).await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, StatusCode::NOT_FOUND),
        other => panic!("second DELETE: want 404, got {other:?}"),
    }
    assert!(admin
        .principal_throttles()
        .await
        .expect("throttles")
        .throttles
        .is_empty());
    for i in 0..10 {
        let out = ok(
            good.get_object().bucket("tbucket").key("k").send().await,
            &format!("GET {i} after the throttle"),
        );
        assert_eq!(collect_body(out.body).await, b"data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_routes_refuse_bad_input_and_callers_without_the_token() {
    let srv = server(ServerOptions::new());
    let throttle = routes::PRINCIPAL_THROTTLE.replace("{principal}", "AKIA1");
    let body = json!({"requests_per_s": 1.0, "reason": "r"});
    for (method, path) in [
        ("GET", routes::PRINCIPAL_TELEMETRY.to_owned()),
        ("GET", routes::PRINCIPAL_THROTTLES.to_owned()),
        ("PUT", throttle.clone()),
        ("DELETE", throttle.clone()),
    ] {
        let (status, resp) = srv.admin_json_with_token(method, &path, body.clone(), None).await;
        assert_eq!(status, 401, "{method} {path} without a token: {resp}");
        assert!(resp["error"].is_string(), "{resp}");
        let (status, _) = srv
            .admin_json_with_token(method, &path, body.clone(), Some("wrong"))
            .await;
        assert_eq!(status, 401, "{method} {path} with a wrong token");
    }
    // A bad name in the path, bad bodies: 400 naming what is wrong.
    let bad_name = routes::PRINCIPAL_THROTTLE.replace("{principal}", "a%20b");
    let (status, resp) = srv.admin_json("PUT", &bad_name, body.clone()).await;
    assert_eq!(status, 400, "{resp}");
    assert!(
        resp["error"].as_str().is_some_and(|m| m.contains("invalid principal")),
        "{resp}"
    );
    let (status, _) = srv.admin("DELETE", &bad_name).await;
    assert_eq!(status, 400);
    for (bad, field) in [
        (json!({"requests_per_s": 0, "reason": "r"}), "requests_per_s"),
        (json!({"requests_per_s": 2e6, "reason": "r"}), "requests_per_s"),
        (json!({"requests_per_s": "fast", "reason": "r"}), "requests_per_s"),
        (json!({"requests_per_s": 1, "reason": ""}), "reason"),
        (json!({"requests_per_s": 1}), "reason"),
        (json!({"requests_per_s": 1, "reason": "r", "burst": 0}), "burst"),
        (json!({"requests_per_s": 1, "reason": "r", "rate": 3}), "rate"),
    ] {
        let (status, resp) = srv.admin_json("PUT", &throttle, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {resp}");
        assert!(
            resp["error"].as_str().is_some_and(|m| m.contains(field)),
            "{bad}: error does not name {field}: {resp}"
        );
    }
    let (status, resp) = srv.admin("DELETE", &throttle).await;
    assert_eq!(status, 404, "{resp}");
    let (status, resp) = srv.admin("GET", routes::PRINCIPAL_THROTTLES).await;
    assert_eq!((status, resp), (200, json!({"throttles": []})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flips_of_one_backend_are_counted_as_its_integrity_failures() {
    let srv = server(
        ServerOptions::new()
            .switch("--allow-fault-injection")
            .flag("--read-strategy", "data-first"),
    );
    let c = srv.client();
    create_bucket(&c, "ibucket").await;
    let mut objects = Vec::new();
    for i in 0..8 {
        let data = random_bytes(64 * 1024 + i);
        put_bytes(&c, "ibucket", &format!("k{i}"), &data).await;
        objects.push((format!("k{i}"), data));
    }
    srv.settled().await;
    let admin = srv.admin_client(Some(ADMIN_TOKEN));
    admin
        .set_backend_faults(
            "local0",
            &Faults {
                bitflip_rate: 1.0,
                seed: Some(7),
                ..Faults::default()
            },
        )
        .await
        .expect("bit flips on local0");
    for (k, data) in &objects {
        assert_same_bytes(&get_bytes(&c, "ibucket", k).await, data, k);
    }
    let all = admin.backend_telemetry().await.expect("backend telemetry");
    let backends = all["backends"].as_array().expect("backends");
    for b in backends {
        let id = b["backend"].as_str().expect("id");
        let total = b["total"]["integrity_failures"]
            .as_u64()
            .expect("total.integrity_failures");
        let hour = b["windows"][2]["integrity_failures"]
            .as_u64()
            .expect("1h integrity_failures");
        assert!(b["total"]["calls"].is_u64() && b["total"]["errors"].is_u64(), "{b}");
        if id == "local0" {
            assert!(total > 0, "bit flips on local0 not counted: {b}");
            assert_eq!(hour, total, "{b}");
        } else {
            assert_eq!(total, 0, "{id} counted failures it did not have: {b}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_policy_update_token_is_counted_for_admin_api() {
    let srv = server(ServerOptions::new());
    create_bucket(&srv.client(), "tok").await;
    let policy = routes::STORAGE_POLICY.replace("{bucket}", "tok");
    let (status, resp) = srv
        .admin_json("PUT", &policy, json!({"policy_update_token": "agent-t0ken-42"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    for guess in ["guess-0001", "guess-0002"] {
        let (status, resp) = srv
            .admin_json(
                "PUT",
                &policy,
                json!({"automatic": true, "policy_update_token": guess, "preset": "ec-2-1"}),
            )
            .await;
        assert_eq!(status, 403, "{resp}");
    }
    let (status, resp) = srv
        .admin_json("PUT", &policy, json!({"automatic": true, "preset": "ec-2-1"}))
        .await;
    assert_eq!(status, 403, "{resp}");
    let all = principals_until(&srv, "three token failures", |all| {
        counts(all, "admin-api", "token_failures").0 >= 3
    })
    .await;
    assert_eq!(counts(&all, "admin-api", "token_failures"), (3, 3), "{all:#}");
    assert_eq!(counts(&all, "admin-api", "requests").0, 0, "{all:#}");
    // The right token is no failure.
    let (status, resp) = srv
        .admin_json(
            "PUT",
            &policy,
            json!({"automatic": true, "policy_update_token": "agent-t0ken-42", "preset": "ec-2-1"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let all = srv
        .admin_client(Some(ADMIN_TOKEN))
        .principal_telemetry()
        .await
        .expect("telemetry");
    assert_eq!(counts(&all, "admin-api", "token_failures").0, 3, "{all:#}");
}
