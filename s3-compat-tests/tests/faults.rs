//! Backends with injected faults (the `faults` table of a `[[backend]]`): the gateway serves
//! correct data through bit flips and erroring backends, and reports what it saw.

use std::collections::BTreeMap;

use s3_compat_tests::*;

#[tokio::test]
async fn bit_flips_on_reads_never_reach_the_client_and_are_queued() {
    let root = tempfile::tempdir().expect("temp dir");
    // Every read from b0 and b1 comes back with one bit flipped.
    let faults = BTreeMap::from([(0, "bitflip_rate = 1.0, seed = 1"), (1, "bitflip_rate = 1.0, seed = 2")]);
    let srv = TestServer::start(
        ServerOptions::new()
            .config_toml(six_local_backends(root.path(), &faults))
            .flag("--heal-interval-secs", 3600),
    );
    let c = srv.client();
    create_bucket(&c, "flips").await;
    let mut objects = BTreeMap::new();
    for i in 0..12 {
        let data = random_bytes(MIB + 1000 * i);
        put_bytes(&c, "flips", &format!("k{i}"), &data).await;
        objects.insert(format!("k{i}"), data);
    }
    for (k, data) in &objects {
        assert_same_bytes(
            &get_bytes(&c, "flips", k).await,
            data,
            &format!("{k} through bit flips"),
        );
    }
    // Every object has a shard on b0 or b1 (6 of 6 backends); each read of them was caught.
    let (status, view) = srv.admin("GET", "/api/v1/redundancy").await;
    assert_eq!(status, 200, "{view}");
    assert!(
        view["repair_queue"].as_u64().is_some_and(|n| n >= 1),
        "flipped reads were not queued: {view}"
    );
    let log = srv.log_contents();
    assert!(log.contains("checksum mismatch"), "no checksum mismatch logged:\n{log}");
}

#[tokio::test]
async fn an_always_failing_backend_is_routed_around() {
    let root = tempfile::tempdir().expect("temp dir");
    let faults = BTreeMap::from([(3, "error_rate = 1.0")]);
    let srv = TestServer::start(
        ServerOptions::new()
            .default_policy("ec-3-2")
            .config_toml(six_local_backends(root.path(), &faults)),
    );
    let c = srv.client();
    create_bucket(&c, "flaky").await;
    for i in 0..10 {
        let data = random_bytes(300_000 + i);
        put_bytes(&c, "flaky", &format!("k{i}"), &data).await;
        assert_same_bytes(&get_bytes(&c, "flaky", &format!("k{i}")).await, &data, &format!("k{i}"));
    }
    let (_, view) = srv.admin("GET", "/api/v1/redundancy").await;
    let b3 = view["backends"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["id"] == "b3"))
        .cloned()
        .unwrap_or_default();
    assert!(
        b3["consecutive_failures"].as_u64().is_some_and(|n| n >= 1)
            && b3["last_error"].as_str().is_some_and(|e| e.contains("injected error")),
        "b3 should show its injected failures: {b3}"
    );
    // Nothing new went to b3 once it failed: at most the objects written before that.
    let on_b3 = std::fs::read_dir(root.path().join("b3/shards"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(on_b3, 0, "shards were stored on an always-failing backend");
}

#[test]
fn nonsense_fault_tables_are_refused_at_start() {
    let root = tempfile::tempdir().expect("temp dir");
    let faults = BTreeMap::from([(0, "error_rate = 2.0")]);
    let data = tempfile::tempdir().expect("data dir");
    let conf = data.path().join("c.toml");
    std::fs::write(&conf, six_local_backends(root.path(), &faults)).expect("write config");
    let out = std::process::Command::new(binary_path())
        .args([
            "serve",
            "--s3-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path().join("d"))
        .arg("--config")
        .arg(&conf)
        .output()
        .expect("run mlsysops");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with error_rate = 2.0");
    assert!(err.contains("b0") && err.contains("error_rate"), "{err}");
}

#[tokio::test]
async fn the_multicloud_sim_profile_serves_with_six_labelled_slow_clouds() {
    let srv = TestServer::start(ServerOptions::new().flag("--profile", "multicloud-sim"));
    let (status, view) = srv.admin("GET", "/api/v1/redundancy").await;
    assert_eq!(status, 200, "{view}");
    let mut ids: Vec<String> = view["backends"]
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    ids.sort();
    assert_eq!(
        ids,
        ["aws-eu", "aws-us", "azure-asia", "azure-us", "gcp-asia", "gcp-eu"],
        "{view}"
    );

    let c = srv.client();
    create_bucket(&c, "everywhere").await;
    let data = random_bytes(2 * MIB + 3);
    put_bytes(&c, "everywhere", "k", &data).await;
    assert_same_bytes(
        &get_bytes(&c, "everywhere", "k").await,
        &data,
        "ec-4-2 over six simulated clouds",
    );

    // The labels are real: a GDPR bucket lands on the two EU clouds only.
    c.create_bucket()
        .bucket("gdpr-only")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    "replicate-2@gdpr=true",
                ))
                .build(),
        )
        .send()
        .await
        .expect("replicate-2@gdpr=true");
    put_bytes(&c, "gdpr-only", "k", &data).await;
    srv.settled().await;
    let backends = srv.data_dir().join("backends");
    for id in ["aws-us", "azure-us", "gcp-asia", "azure-asia"] {
        let sets = std::fs::read_dir(backends.join(id).join("shards"))
            .map(|d| d.count())
            .unwrap_or(0);
        // One set: the ec-4-2 object, which spans all six.
        assert_eq!(sets, 1, "{id} holds {sets} sets: the GDPR object went there");
    }
    for id in ["aws-eu", "gcp-eu"] {
        let sets = std::fs::read_dir(backends.join(id).join("shards"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(sets, 2, "{id} should hold the ec-4-2 set and a GDPR copy");
    }

    // A profile and explicit backends exclude each other.
    let out = std::process::Command::new(binary_path())
        .args([
            "serve",
            "--profile",
            "multicloud-sim",
            "--local-backends",
            "6",
            "--data-dir",
        ])
        .arg(srv.data_dir().with_file_name("other"))
        .output()
        .expect("run mlsysops");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("brings its own backends"));
}
