//! Trust reputation and anomaly detection on the real binary, under client load (issue 13):
//!
//! - a backend that starts flipping bits on read is named by a tampering (or malfunction)
//!   verdict, its trust sinks below the bucket's `min_trust` while the healthy backends stay
//!   above it, the trust keeper drains it, every object reads back byte-identical, and its
//!   trust recovers once the fault is gone;
//! - a backend that turns slow and erratic is classified malfunction, never attack;
//! - a burst of forged signatures under one access key is classified attack naming that
//!   principal, its trust falls, the principal guard throttles it (503 SlowDown), and the real
//!   client is unaffected;
//! - the trust and anomaly APIs answer 401 without the admin token.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3_compat_tests::*;
use serde_json::{json, Value};

/// The agents' period: short, so that the detector's baseline (8 windows) fills in seconds.
const PERIOD_S: u64 = 1;

fn server() -> TestServer {
    TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .default_policy("ec-2-1")
            .switch("--allow-fault-injection")
            .flag("--agent-period-secs", PERIOD_S)
            .flag("--agent-cooldown-secs", 2)
            .flag("--audit-interval-secs", 1)
            .flag("--sweep-grace-secs", 0)
            // The read load would make buckets hot and hot/cold would move them: kept out, so
            // that what moves a bucket here is trust.
            .config_toml("[agents.policies.hotcold]\nhot_reads_per_s = 1000000.0\nhot_exit_reads_per_s = 500000.0\n"),
    )
}

async fn anomalies(srv: &TestServer, query: &str) -> Vec<Value> {
    let (status, page) = srv.admin("GET", &format!("/api/v1/anomalies{query}")).await;
    assert_eq!(status, 200, "{page}");
    page["anomalies"].as_array().cloned().unwrap_or_default()
}

async fn trust_of(srv: &TestServer, subject: &str) -> Option<f64> {
    let (status, view) = srv.admin("GET", &format!("/api/v1/trust/subjects/{subject}")).await;
    (status == 200).then(|| view["score"].as_f64()).flatten()
}

async fn set_faults(srv: &TestServer, backend: &str, faults: Value) {
    let (status, body) = srv
        .admin_json("PUT", &format!("/api/v1/backends/{backend}/faults"), faults)
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn eligible(srv: &TestServer, bucket: &str) -> Vec<String> {
    let (_, p) = srv
        .admin("GET", &format!("/api/v1/buckets/{bucket}/storage-policy"))
        .await;
    serde_json::from_value(p["eligible"].clone()).unwrap_or_default()
}

async fn intent(srv: &TestServer, bucket: &str, body: Value) {
    let (status, view) = srv
        .admin_json("PUT", &format!("/api/v1/buckets/{bucket}/intent"), body)
        .await;
    assert_eq!(status, 200, "{view}");
    until(Duration::from_secs(30), "the intent applied", || async {
        let (_, v) = srv.admin("GET", &format!("/api/v1/buckets/{bucket}/intent")).await;
        if v["state"] == "applied" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
}

/// Objects written and what they hold.
type Objects = Vec<(String, String, Vec<u8>)>;

/// Reads every object over and over until `stop`, checking each byte; counts reads and keeps
/// any failure.
fn read_load(
    srv: &TestServer,
    objects: Arc<Objects>,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|w| {
            let c = srv.client();
            let (objects, stop, reads, failures) = (objects.clone(), stop.clone(), reads.clone(), failures.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (bucket, key, want) = &objects[i % objects.len()];
                    match c.get_object().bucket(bucket).key(key).send().await {
                        Ok(o) => match o.body.collect().await.map(|b| b.into_bytes()) {
                            Ok(b) if b.as_ref() == want.as_slice() => {}
                            Ok(_) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{bucket}/{key}: different bytes")),
                            Err(e) => failures.lock().unwrap().push(format!("{bucket}/{key}: {e:?}")),
                        },
                        Err(e) => failures.lock().unwrap().push(format!("{bucket}/{key}: {e:?}")),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bit_flipping_backend_loses_trust_is_drained_and_recovers_and_no_object_changes() {
    let srv = server();
    // `guarded` must keep its data on trusted backends; `canary` (no intent) keeps reads on
    // every backend, so each one's behaviour stays observed after a drain.
    intent(&srv, "guarded", json!({"redundancy": "one", "min_trust": 0.5})).await;
    let c = srv.client();
    create_bucket(&c, "canary").await;
    let mut objects = Vec::new();
    for i in 0..12 {
        for bucket in ["guarded", "canary"] {
            let key = format!("obj{i}");
            let data = random_bytes(48 * 1024 + i);
            put_bytes(&c, bucket, &key, &data).await;
            objects.push((bucket.to_owned(), key, data));
        }
    }
    let objects = Arc::new(objects);
    let (stop, reads, failures) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::default(),
    );
    let load = read_load(
        &srv,
        objects.clone(),
        stop.clone(),
        reads.clone(),
        Arc::clone(&failures),
    );

    // Every backend earns trust above the bucket's minimum from its good calls.
    let all = eligible(&srv, "guarded").await;
    assert_eq!(all.len(), 6, "{all:?}");
    until(Duration::from_secs(60), "every backend trusted", || async {
        let mut scores = Vec::new();
        for b in &all {
            scores.push((b.clone(), trust_of(&srv, &format!("backend:{b}")).await));
        }
        if scores.iter().all(|(_, t)| t.is_some_and(|t| t >= 0.6)) {
            Ok(())
        } else {
            Err(format!("{scores:?}"))
        }
    })
    .await;
    // The detector's baseline fills (8 windows at one per period).
    tokio::time::sleep(Duration::from_secs(10)).await;

    let bad = all[2].clone();
    let injected = Instant::now();
    let injected_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    set_faults(&srv, &bad, json!({"bitflip_rate": 1.0, "seed": 7})).await;

    let verdict = until(
        Duration::from_secs(60),
        "an integrity verdict on the flipping backend",
        || async {
            let found = anomalies(&srv, &format!("?subject=backend:{bad}&since={injected_ms}")).await;
            found
                .iter()
                .find(|v| matches!(v["class"].as_str(), Some("tampering" | "malfunction")))
                .cloned()
                .ok_or_else(|| format!("{found:?}"))
        },
    )
    .await;
    let detected = injected.elapsed();
    assert!(
        verdict["deviations"].to_string().contains("checksum"),
        "the explanation names the checksum failures: {verdict:#}"
    );
    let low = until(
        Duration::from_secs(60),
        "the flipping backend's trust below 0.5",
        || async {
            match trust_of(&srv, &format!("backend:{bad}")).await {
                Some(t) if t < 0.5 => Ok(t),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    for b in all.iter().filter(|b| **b != bad) {
        let t = trust_of(&srv, &format!("backend:{b}")).await.unwrap();
        assert!(t >= 0.5, "healthy backend {b} fell to {t} beside {bad} at {low}");
    }
    // Drained from `guarded` by the trust keeper, with its reason in the decision log.
    until(Duration::from_secs(60), "the drain", || async {
        let e = eligible(&srv, "guarded").await;
        if e.contains(&bad) {
            Err(format!("{e:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    let drained = injected.elapsed();
    let (_, page) = srv.admin("GET", "/api/v1/decisions?bucket=guarded&limit=100").await;
    let drain = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["policy"] == "trust_keeper")
        .cloned()
        .unwrap_or_else(|| panic!("no trust_keeper decision: {page:#}"));
    let reason = drain["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("drains backend {bad}")) && reason.contains("min_trust 0.50"),
        "{reason}"
    );
    srv.wait_migration_done("guarded", Duration::from_secs(60)).await;
    eprintln!("bit flips on {bad}: verdict after {detected:?}, drained after {drained:?}, trust {low:.2}");
    // Both show on /metrics, for dashboards: the verdict and the trust keeper's decision.
    let text = srv.metrics().await;
    let class = verdict["class"].as_str().unwrap();
    let verdicts = prom_value(
        &text,
        "mlsysops_anomaly_verdicts_total",
        &[("mlsysops_anomaly_class", class), ("mlsysops_subject_kind", "backend")],
    );
    assert!(verdicts.is_some_and(|n| n >= 1.0), "{verdicts:?}");
    // Recorded `pending` while its migration runs, or `applied`: summed over statuses.
    let drains = prom_value(
        &text,
        "mlsysops_agent_decisions_total",
        &[("mlsysops_policy", "trust_keeper")],
    );
    assert!(drains.is_some_and(|n| n >= 1.0), "{drains:?}");

    // The fault goes; reads of the canary bucket give evidence again, and trust climbs back.
    set_faults(&srv, &bad, json!({})).await;
    until(Duration::from_secs(120), "trust recovered", || async {
        match trust_of(&srv, &format!("backend:{bad}")).await {
            Some(t) if t >= 0.5 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed reads of {}: {failures:?}",
        failures.len(),
        reads.load(Ordering::Relaxed)
    );
    for (bucket, key, want) in objects.iter() {
        assert_eq!(&get_bytes(&c, bucket, key).await, want, "{bucket}/{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_and_erratic_backend_is_a_malfunction_not_an_attack() {
    let srv = server();
    let c = srv.client();
    create_bucket(&c, "data").await;
    let mut objects = Vec::new();
    for i in 0..12 {
        let key = format!("obj{i}");
        let data = random_bytes(32 * 1024 + i);
        put_bytes(&c, "data", &key, &data).await;
        objects.push(("data".to_owned(), key, data));
    }
    let (stop, reads, failures) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::default(),
    );
    let load = read_load(&srv, Arc::new(objects), stop.clone(), reads, Arc::clone(&failures));
    tokio::time::sleep(Duration::from_secs(12)).await;
    set_faults(
        &srv,
        "local1",
        json!({"latency_ms": 120.0, "jitter_ms": 150.0, "error_rate": 0.05, "seed": 3}),
    )
    .await;
    let verdict = until(Duration::from_secs(60), "a verdict on the slow backend", || async {
        let found = anomalies(&srv, "?subject=backend:local1").await;
        found.first().cloned().ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(verdict["class"], "malfunction", "{verdict:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = anomalies(&srv, "?subject=backend:local1").await;
    assert!(all.iter().all(|v| v["class"] != "attack"), "{all:#?}");
    assert!(anomalies(&srv, "?class=attack").await.is_empty(), "no attack anywhere");
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.await.unwrap();
    }
    assert!(failures.lock().unwrap().is_empty(), "{:?}", failures.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_signatures_from_one_key_are_an_attack_that_gets_it_throttled_and_nobody_else() {
    let srv = server();
    let good = srv.client();
    create_bucket(&good, "app").await;
    put_bytes(&good, "app", "k", b"payload").await;
    // Normal traffic builds the good key's baseline.
    for _ in 0..40 {
        assert_eq!(get_bytes(&good, "app", "k").await, b"payload");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    const ATTACKER: &str = "AKIAATTACKER0001";
    let forged = srv.client_with_credentials(ATTACKER, "guessed-secret-000000");
    for _ in 0..150 {
        let _ = forged.get_object().bucket("app").key("k").send().await;
    }
    let verdict = until(
        Duration::from_secs(30),
        "an attack verdict on the forging key",
        || async {
            let found = anomalies(&srv, "?class=attack").await;
            found.first().cloned().ok_or_else(|| "none yet".to_owned())
        },
    )
    .await;
    assert_eq!(verdict["subject"], format!("principal:{ATTACKER}"), "{verdict:#}");
    assert!(
        verdict["deviations"].to_string().contains("auth_failures"),
        "{verdict:#}"
    );

    // Throttled by the principal guard, with the verdict as its reason.
    let throttle = until(Duration::from_secs(30), "the attacker throttled", || async {
        let (_, t) = srv.admin("GET", "/api/v1/principals/throttles").await;
        t["throttles"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["principal"] == ATTACKER).cloned())
            .ok_or_else(|| t.to_string())
    })
    .await;
    assert!(
        throttle["reason"].as_str().unwrap_or_default().contains("attack"),
        "{throttle:#}"
    );
    let (_, page) = srv.admin("GET", "/api/v1/decisions?limit=100").await;
    assert!(
        page["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["policy"] == "principal_guard" && d["target"] == format!("principal/{ATTACKER}")),
        "{page:#}"
    );
    let mut slowed = 0;
    for _ in 0..20 {
        if let Err(e) = forged.get_object().bucket("app").key("k").send().await {
            if e.raw_response().is_some_and(|r| r.status().as_u16() == 503) {
                slowed += 1;
            }
        }
    }
    assert!(slowed >= 10, "only {slowed} of 20 requests answered 503 SlowDown");
    // The real client is untouched.
    for _ in 0..20 {
        assert_eq!(get_bytes(&good, "app", "k").await, b"payload");
    }
    let attacker = trust_of(&srv, &format!("principal:{ATTACKER}")).await.unwrap();
    let honest = trust_of(&srv, &format!("principal:{ACCESS_KEY}")).await.unwrap();
    assert!(
        attacker < 0.3 && honest > attacker + 0.3,
        "attacker {attacker}, honest {honest}"
    );
    assert!(
        anomalies(&srv, &format!("?subject=principal:{ACCESS_KEY}"))
            .await
            .is_empty(),
        "the honest key was accused"
    );

    // A burst of storage-policy changes with a guessed policy_update_token: an attack too, on
    // the admin API's principal (it has no access key).
    intent(
        &srv,
        "tokened",
        json!({"redundancy": "one", "policy_update_token": "the-real-token-1"}),
    )
    .await;
    for i in 0..60 {
        let (status, body) = srv
            .admin_json(
                "PUT",
                "/api/v1/buckets/tokened/storage-policy",
                json!({"preset": "ec-2-1", "automatic": true, "policy_update_token": format!("guess-{i:04}"), "reason": "x"}),
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }
    let verdict = until(Duration::from_secs(30), "an attack verdict on admin-api", || async {
        let found = anomalies(&srv, "?subject=principal:admin-api").await;
        found.first().cloned().ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(verdict["class"], "attack", "{verdict:#}");
    assert!(
        verdict["deviations"].to_string().contains("token_failures"),
        "{verdict:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_and_anomaly_apis_need_the_admin_token() {
    let srv = server();
    for (method, path) in [
        ("GET", "/api/v1/trust/subjects"),
        ("GET", "/api/v1/trust/subjects/backend:local0"),
        ("GET", "/api/v1/trust/config"),
        ("PUT", "/api/v1/trust/config"),
        ("POST", "/api/v1/trust/subjects/backend:local0/feedback"),
        ("GET", "/api/v1/identities"),
        ("POST", "/api/v1/identities"),
        ("POST", "/api/v1/identities/local/revoke"),
        ("GET", "/api/v1/anomalies"),
        ("GET", "/api/v1/telemetry/principals"),
        ("GET", "/api/v1/principals/throttles"),
    ] {
        for token in [None, Some("wrong-token-0000000")] {
            let (status, body) = srv.admin_raw(method, path, token).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
        }
    }
    // With the token: the node's own identity is enrolled, its key created 0600.
    let (status, ids) = srv.admin("GET", "/api/v1/identities").await;
    assert_eq!(status, 200, "{ids}");
    assert!(ids.to_string().contains("\"local\""), "{ids:#}");
    let key = srv.data_dir().join("agents/identity.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
}
