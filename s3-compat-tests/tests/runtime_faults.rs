//! Faults injected at run time through the admin API (`/api/v1/backends/{id}/faults`, only on
//! a gateway started with `--allow-fault-injection` or the `multicloud-sim` profile), and the
//! backends listing (`/api/v1/backends`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use control_api::{ClientError, Faults, StatusCode};
use s3_compat_tests::*;
use serde_json::{json, Value};

/// Latency injected into one backend.
const SLOW_MS: f64 = 300.0;

/// A server with six local backends (`local0`..`local5`, ec-4-2) whose GETs read the data
/// shards first and never hedge, so that a slow backend holding a data shard is waited for
/// (no agents: the node agent would turn hedging on once it saw the slow backend).
fn server(allow: bool) -> TestServer {
    let mut opts = ServerOptions::new()
        .flag("--read-strategy", "data-first")
        .flag("--agents", "off")
        .flag("--scrub-interval-secs", 86400)
        .flag("--heal-interval-secs", 3600);
    if allow {
        opts = opts.switch("--allow-fault-injection");
    }
    TestServer::start(opts)
}

async fn put_objects(srv: &TestServer, bucket: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let c = srv.client();
    create_bucket(&c, bucket).await;
    let mut objects = Vec::new();
    for i in 0..n {
        let data = random_bytes(256 * 1024 + i);
        put_bytes(&c, bucket, &format!("k{i}"), &data).await;
        objects.push((format!("k{i}"), data));
    }
    srv.settled().await;
    objects
}

async fn get_all(srv: &TestServer, bucket: &str, objects: &[(String, Vec<u8>)]) {
    let c = srv.client();
    for (k, data) in objects {
        assert_same_bytes(&get_bytes(&c, bucket, k).await, data, k);
    }
}

/// The GET statistics of `id` over the last minute.
fn get_stats<'a>(all: &'a Value, id: &str) -> &'a Value {
    let backend = all["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["backend"] == id))
        .unwrap_or_else(|| panic!("backend {id} missing from {all}"));
    let window = backend["windows"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["window"] == "1m"))
        .unwrap_or_else(|| panic!("no 1m window of {id} in {all}"));
    &window["get"]
}

/// Shards of data (index < k = 4) on `local0`: each is one GET that waits for it.
fn data_shards_on_local0(srv: &TestServer) -> usize {
    let shards = srv.backend_dir(0).join("shards");
    std::fs::read_dir(&shards)
        .expect("local0 shards")
        .flatten()
        .flat_map(|set| std::fs::read_dir(set.path()).into_iter().flatten().flatten())
        .filter(|f| {
            f.file_name()
                .to_str()
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|i| i < 4)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_set_at_run_time_slows_one_backend_until_cleared() {
    let srv = server(true);
    let objects = put_objects(&srv, "slow", 12).await;
    let admin = srv.admin_client(Some(ADMIN_TOKEN));

    let slow = Faults {
        latency_ms: SLOW_MS,
        ..Faults::default()
    };
    let answer = admin.set_backend_faults("local0", &slow).await.expect("PUT faults");
    assert_eq!(answer, slow);
    assert_eq!(admin.backend_faults("local0").await.expect("GET faults"), slow);
    let log = srv.log_contents();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("injected faults changed") && l.contains("backend=local0")),
        "the change was not logged:\n{log}"
    );
    let view = admin.backends().await.expect("GET backends");
    assert!(view.fault_injection, "{view:?}");
    for b in &view.backends {
        // Every backend has an injector when injection is allowed; only local0's injects.
        let want = if b.id == "local0" {
            slow.clone()
        } else {
            Faults::default()
        };
        assert_eq!(b.faults.as_ref(), Some(&want), "{view:?}");
    }

    for _ in 0..2 {
        get_all(&srv, "slow", &objects).await;
    }
    let (status, all) = srv.admin("GET", "/api/v1/telemetry/backends").await;
    assert_eq!(status, 200, "{all}");
    let p95 = get_stats(&all, "local0")["p95_ms"].as_f64().expect("local0 GET p95");
    assert!(
        p95 >= SLOW_MS - 50.0,
        "local0 GET p95 {p95} ms with {SLOW_MS} ms injected: {all}"
    );
    for i in 1..6 {
        let id = format!("local{i}");
        if let Some(p95) = get_stats(&all, &id)["p95_ms"].as_f64() {
            assert!(p95 < SLOW_MS - 50.0, "{id} GET p95 {p95} ms, nothing injected: {all}");
        }
    }

    assert_eq!(
        admin.clear_backend_faults("local0").await.expect("DELETE faults"),
        Faults::default()
    );
    assert_eq!(
        admin.backend_faults("local0").await.expect("GET faults"),
        Faults::default()
    );
    // Were the latency still injected, these GETs would wait for local0 at least this long.
    let waits = data_shards_on_local0(&srv);
    assert!(waits >= 1, "no data shard on local0");
    let started = Instant::now();
    get_all(&srv, "slow", &objects).await;
    let took = started.elapsed();
    let floor = Duration::from_secs_f64(waits as f64 * SLOW_MS / 1000.0);
    assert!(
        took < floor,
        "{} GETs took {took:?} after the fault was cleared",
        objects.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_at_run_time_is_read_around_and_recovers_when_cleared() {
    let srv = server(true);
    let objects = put_objects(&srv, "flaky", 8).await;
    let admin = srv.admin_client(Some(ADMIN_TOKEN));
    let failing = Faults {
        error_rate: 1.0,
        ..Faults::default()
    };
    admin.set_backend_faults("local0", &failing).await.expect("PUT faults");
    for _ in 0..2 {
        get_all(&srv, "flaky", &objects).await;
    }
    let view = admin.backends().await.expect("GET backends");
    let local0 = view.backends.iter().find(|b| b.id == "local0").expect("local0");
    assert!(local0.consecutive_failures >= 1, "{local0:?}");
    assert!(
        local0
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("injected error")),
        "{local0:?}"
    );

    admin.clear_backend_faults("local0").await.expect("DELETE faults");
    // The gateway's probes of a failing backend find it answering again (after a backoff of
    // at most a minute).
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(75);
    while Instant::now() < deadline {
        let view = admin.backends().await.expect("GET backends");
        let b = view.backends.into_iter().find(|b| b.id == "local0").expect("local0");
        if b.consecutive_failures == 0 && !b.suspect {
            last = None;
            break;
        }
        last = Some(b);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        last.is_none(),
        "local0 still failing after the fault was cleared: {last:?}"
    );
    get_all(&srv, "flaky", &objects).await;
}

#[tokio::test]
async fn without_the_flag_faults_cannot_be_changed() {
    let root = tempfile::tempdir().expect("temp dir");
    // b2 has faults from its configuration; the others none.
    let faults = BTreeMap::from([(2, "latency_ms = 5")]);
    let srv = TestServer::start(ServerOptions::new().config_toml(six_local_backends(root.path(), &faults)));
    let admin = srv.admin_client(Some(ADMIN_TOKEN));
    let before = admin.backends().await.expect("GET backends");
    assert!(!before.fault_injection, "{before:?}");
    for b in &before.backends {
        let want = (b.id == "b2").then(|| Faults {
            latency_ms: 5.0,
            ..Faults::default()
        });
        // Without the flag only configured faults are wrapped around a backend.
        assert_eq!(b.faults, want, "{before:?}");
    }

    for (method, body) in [
        ("PUT", Some(json!({"error_rate": 1.0}))),
        ("GET", None),
        ("DELETE", None),
    ] {
        for id in ["b0", "b2"] {
            let path = format!("/api/v1/backends/{id}/faults");
            let (status, answer) = match &body {
                Some(b) => srv.admin_json(method, &path, b.clone()).await,
                None => srv.admin(method, &path).await,
            };
            assert_eq!(status, 403, "{method} {path}: {answer}");
            let msg = answer["error"].as_str().unwrap_or_default();
            assert!(msg.contains("--allow-fault-injection"), "{method} {path}: {answer}");
        }
    }
    let err = admin
        .set_backend_faults("b0", &Faults::default())
        .await
        .expect_err("typed PUT");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN), "{err}");
    assert_eq!(admin.backends().await.expect("GET backends"), before);
}

#[tokio::test]
async fn bad_fault_requests_are_refused_with_the_reason() {
    let srv = server(true);
    let path = "/api/v1/backends/local1/faults";
    for (body, field) in [
        (json!({"error_rate": 1.5}), "error_rate"),
        (json!({"bitflip_rate": -0.1}), "bitflip_rate"),
        (json!({"latency_ms": -5}), "latency_ms"),
        (json!({"jitter_ms": 1e300}), "jitter_ms"),
        (json!({"bandwidth_mib_s": 0}), "bandwidth_mib_s"),
        (json!({"outages": [[10, 5]]}), "outages"),
        (json!({"latency": 300}), "latency"),
        (json!({"latency_ms": "slow"}), "latency_ms"),
        (json!({"seed": -1}), "seed"),
        (json!([1, 2]), "faults object"),
        (json!({"outages": [[1, 2, 3]]}), "outages"),
    ] {
        let (status, answer) = srv.admin_json("PUT", path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let msg = answer["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{body}: the answer should name {field}: {answer}");
    }
    let (status, text) = srv
        .admin_send("PUT", path, Some(ADMIN_TOKEN), b"{\"latency_ms\": ".to_vec())
        .await;
    assert_eq!(status, 400, "{text}");

    let (status, answer) = srv
        .admin_json("PUT", "/api/v1/backends/nosuch/faults", json!({"latency_ms": 1}))
        .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"].as_str().is_some_and(|m| m.contains("nosuch")),
        "{answer}"
    );
    let (status, _) = srv.admin("DELETE", "/api/v1/backends/nosuch/faults").await;
    assert_eq!(status, 404);

    for (method, p) in [("GET", "/api/v1/backends"), ("GET", path), ("DELETE", path)] {
        let (status, answer) = srv.admin_with_token(method, p, None).await;
        assert_eq!(status, 401, "{method} {p}: {answer}");
    }
    let admin = srv.admin_client(None);
    let err = admin
        .set_backend_faults(
            "local1",
            &Faults {
                error_rate: 1.0,
                ..Faults::default()
            },
        )
        .await
        .expect_err("PUT without a token");
    assert!(
        matches!(
            err,
            ClientError::Api {
                status: StatusCode::UNAUTHORIZED,
                ..
            }
        ),
        "{err}"
    );

    // Nothing was changed by any of them.
    let view = srv
        .admin_client(Some(ADMIN_TOKEN))
        .backends()
        .await
        .expect("GET backends");
    assert!(
        view.backends.iter().all(|b| b.faults == Some(Faults::default())),
        "{view:?}"
    );
}

#[tokio::test]
async fn the_backends_listing_shows_labels_prices_and_simulated_faults() {
    let srv = TestServer::start(ServerOptions::new().flag("--profile", "multicloud-sim"));
    let view = srv
        .admin_client(Some(ADMIN_TOKEN))
        .backends()
        .await
        .expect("GET backends");
    assert!(view.fault_injection, "the profile allows fault injection: {view:?}");
    let ids: Vec<&str> = view.backends.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        ids,
        ["aws-eu", "gcp-eu", "aws-us", "azure-us", "gcp-asia", "azure-asia"],
        "configuration order"
    );
    let aws_eu = &view.backends[0];
    assert_eq!((aws_eu.kind.as_str(), aws_eu.local), ("local", true));
    let l = &aws_eu.labels;
    assert_eq!(
        (l.provider.as_str(), l.region.as_str(), l.gdpr),
        ("aws", "eu", true),
        "{aws_eu:?}"
    );
    assert_eq!((l.cost_per_gib_month, l.egress_per_gib), (0.023, 0.09), "{aws_eu:?}");
    let f = aws_eu.faults.as_ref().expect("simulated faults");
    assert_eq!((f.latency_ms, f.jitter_ms, f.bandwidth_mib_s), (12.0, 4.0, Some(80.0)));
    let asia = view.backends.iter().find(|b| b.id == "azure-asia").expect("azure-asia");
    assert!(!asia.labels.gdpr && asia.labels.region == "asia", "{asia:?}");
    assert!(
        view.backends.iter().all(|b| !b.suspect && b.last_error.is_none()),
        "{view:?}"
    );

    // The raw answer carries the documented keys.
    let (status, raw) = srv.admin("GET", "/api/v1/backends").await;
    assert_eq!(status, 200, "{raw}");
    let first = &raw["backends"][0];
    for key in [
        "id",
        "kind",
        "local",
        "labels",
        "suspect",
        "consecutive_failures",
        "last_error",
        "faults",
    ] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }

    // The CLI lists the same, and changes a simulated cloud's faults.
    let out = cli(&srv, &["backend", "list"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("aws-eu") && l.contains("latency 12ms")),
        "{text}"
    );
    let out = cli(
        &srv,
        &["backend", "faults", "gcp-asia", "--latency-ms", "400", "--json"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let answer: Faults = serde_json::from_slice(&out.stdout).expect("faults JSON");
    assert_eq!(answer.latency_ms, 400.0);
    let out = cli(&srv, &["backend", "faults", "gcp-asia", "--clear"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "gcp-asia: none\n");
    let out = cli(&srv, &["backend", "faults", "nosuch"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{out:?}");
}

/// Runs the `mlsysops` CLI against `srv`'s admin API.
async fn cli(srv: &TestServer, args: &[&str]) -> std::process::Output {
    let url = format!("http://{}", srv.admin_addr());
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary_path())
            .args(&args)
            .env("MLSYSOPS_ADMIN_URL", url)
            .env("MLSYSOPS_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", binary_path().display()))
    })
    .await
    .expect("CLI task")
}
