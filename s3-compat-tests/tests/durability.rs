//! Loss of backend directories: with 4+2 every object must survive any two
//! missing backends byte for byte, and with three missing a read must fail
//! cleanly (503) without the server touching what is left on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use s3_compat_tests::*;

/// How long the server log may lag behind an answer (it is pumped from the process's stderr).
const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

const BACKENDS: usize = 6;

/// Moves backend directories out of the server's sight (same file system,
/// outside the data dir) and puts them back on `restore` or drop.
struct Outage {
    moved: Vec<(PathBuf, PathBuf)>,
}

impl Outage {
    fn new(srv: &TestServer, backends: &[usize]) -> Self {
        let away = srv.scratch_dir();
        let mut moved = Vec::new();
        for &i in backends {
            let from = srv.backend_dir(i);
            let to = away.join(format!("local{i}"));
            std::fs::rename(&from, &to).unwrap_or_else(|e| panic!("move {} away: {e}", from.display()));
            moved.push((from, to));
        }
        Outage { moved }
    }

    fn restore(mut self) {
        self.put_back();
    }

    fn put_back(&mut self) {
        for (home, away) in self.moved.drain(..) {
            // A directory the server recreated meanwhile makes this rename
            // fail, which is itself a finding worth reporting.
            std::fs::rename(&away, &home).unwrap_or_else(|e| {
                panic!(
                    "restore {} (did the server recreate it while it was gone? contents: {:?}): {e}",
                    home.display(),
                    snapshot_files(&home).keys().collect::<Vec<_>>()
                )
            });
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.put_back();
        } else {
            for (home, away) in self.moved.drain(..) {
                let _ = std::fs::rename(&away, &home);
            }
        }
    }
}

fn snapshot_backends(srv: &TestServer) -> BTreeMap<String, (u64, String)> {
    let mut all = BTreeMap::new();
    for i in 0..BACKENDS {
        for (path, entry) in snapshot_files(&srv.backend_dir(i)) {
            // The audit object is the gateway's own probe, written on its own schedule (first
            // at start + audit_interval_secs), not data a client's request touched.
            if path == ".mlsysops/audit" {
                continue;
            }
            all.insert(format!("local{i}/{path}"), entry);
        }
    }
    all
}

struct Stored {
    bucket: &'static str,
    key: String,
    data: Vec<u8>,
}

async fn assert_all_readable(c: &Client, objects: &[Stored], situation: &str) {
    for o in objects {
        let got = match c.get_object().bucket(o.bucket).key(&o.key).send().await {
            Ok(out) => collect_body(out.body).await,
            Err(e) => panic!(
                "{situation}: GET {}/{} ({} bytes) failed: {:?}",
                o.bucket,
                o.key,
                o.data.len(),
                err_info(&e)
            ),
        };
        assert_same_bytes(&got, &o.data, &format!("{situation}: {}/{}", o.bucket, o.key));
    }
}

#[tokio::test]
async fn any_two_lost_backends_are_tolerated_and_three_fail_cleanly() {
    // Reads during an outage queue the missing shards for repair; a heal pass in the middle of
    // an outage would rebuild them into the moved-away backend's path (seen on a loaded
    // machine). This test is about reads, so the healer stays out of it after its first pass.
    let srv = TestServer::start(
        ServerOptions::new()
            .default_policy("ec-4-2")
            .flag("--heal-interval-secs", 3600),
    );
    let c = srv.client();
    create_bucket(&c, "erasure").await;
    ok(
        c.create_bucket()
            .bucket("replicas")
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from("replicate-3"))
                    .build(),
            )
            .send()
            .await,
        "CreateBucket replicate-3",
    );

    let mut objects = Vec::new();
    for (name, size) in [
        ("empty", 0),
        ("one-byte", 1),
        ("one-block", MIB),
        ("block-plus-one", MIB + 1),
        ("three-and-a-half", 3 * MIB + MIB / 2),
        ("odd", 777_777),
    ] {
        let data = random_bytes(size);
        put_bytes(&c, "erasure", name, &data).await;
        objects.push(Stored {
            bucket: "erasure",
            key: name.to_owned(),
            data,
        });
    }
    let parts = vec![random_bytes(5 * MIB), random_bytes(MIB + 3)];
    put_multipart(&c, "erasure", "multipart", &parts).await;
    objects.push(Stored {
        bucket: "erasure",
        key: "multipart".to_owned(),
        data: parts.concat(),
    });
    for (name, size) in [("small", 10), ("two-blocks", 2 * MIB + 5)] {
        let data = random_bytes(size);
        put_bytes(&c, "replicas", name, &data).await;
        objects.push(Stored {
            bucket: "replicas",
            key: name.to_owned(),
            data,
        });
    }

    srv.settled().await;
    let before = snapshot_backends(&srv);
    assert!(!before.is_empty(), "no shard files under {:?}", srv.backend_dirs());

    for a in 0..BACKENDS {
        for b in a + 1..BACKENDS {
            let outage = Outage::new(&srv, &[a, b]);
            let situation = format!("backends {a} and {b} missing");
            assert_all_readable(&c, &objects, &situation).await;
            // A range inside the object needs partial reconstruction.
            let o = &objects[4];
            let (first, last) = (MIB - 5, 2 * MIB + 5);
            let out = ok(
                c.get_object()
                    .bucket(o.bucket)
                    .key(&o.key)
                    .range(format!("bytes={first}-{last}"))
                    .send()
                    .await,
                &format!("{situation}: ranged GET"),
            );
            assert_same_bytes(
                &collect_body(out.body).await,
                &o.data[first..=last],
                &format!("{situation}: range of {}", o.key),
            );
            outage.restore();
        }
    }
    assert_eq!(
        snapshot_backends(&srv),
        before,
        "backend contents changed while reading with two backends missing"
    );

    let lost = [1, 3, 4];
    let outage = Outage::new(&srv, &lost);
    for o in objects.iter().filter(|o| o.bucket == "erasure" && !o.data.is_empty()) {
        let info = expect_err(
            c.get_object().bucket(o.bucket).key(&o.key).send().await,
            503,
            Some("ServiceUnavailable"),
        );
        // The client gets a generic message; the log names the object.
        let message = info.message.clone().unwrap_or_default();
        assert!(
            !message.contains("shard set"),
            "internal detail sent to the client: {info:?}"
        );
        assert!(
            eventually(LOG_WAIT, || srv
                .log_contents()
                .lines()
                .any(|l| l.contains(o.key.as_str()) && l.contains("error_id")))
            .await,
            "the log of the 503 for {} does not name the object",
            o.key
        );
    }
    outage.restore();

    assert_all_readable(&c, &objects, "after restoring all backends").await;
    assert_eq!(
        snapshot_backends(&srv),
        before,
        "backend contents changed by the failed reads"
    );
}

#[tokio::test]
async fn two_plus_one_on_three_backends_with_small_blocks() {
    let block = 64 * 1024;
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(3)
            .default_policy("ec-2-1")
            .block_size(block as u64),
    );
    let c = srv.client();
    create_bucket(&c, "narrow").await;
    let data = random_bytes(MIB + 3);
    put_bytes(&c, "narrow", "obj", &data).await;
    srv.settled().await;

    let backends: Vec<String> = std::fs::read_dir(srv.data_dir().join("backends"))
        .expect("backends dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(backends, ["local0", "local1", "local2"]);
    srv.settled().await;
    let sets = srv.all_shard_sets();
    assert!(
        sets.iter().all(|s| s.len() == 1) && sets[0] == sets[1] && sets[1] == sets[2],
        "one shard set on each of the three backends: {sets:?}"
    );

    // 4+2 needs six backends.
    expect_err(
        c.create_bucket()
            .bucket("wide")
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from("ec-4-2"))
                    .build(),
            )
            .send()
            .await,
        400,
        None,
    );

    let ranges = [
        (0, 0),
        (block - 1, block),
        (3 * block + 17, 9 * block + 5),
        (MIB - 2, MIB + 2),
    ];
    for lost in 0..3 {
        let outage = Outage::new(&srv, &[lost]);
        let situation = format!("backend {lost} of 3 missing");
        assert_same_bytes(&get_bytes(&c, "narrow", "obj").await, &data, &situation);
        for (first, last) in ranges {
            let out = ok(
                c.get_object()
                    .bucket("narrow")
                    .key("obj")
                    .range(format!("bytes={first}-{last}"))
                    .send()
                    .await,
                &format!("{situation}: range {first}-{last}"),
            );
            assert_same_bytes(
                &collect_body(out.body).await,
                &data[first..=last],
                &format!("{situation}: range {first}-{last}"),
            );
        }
        outage.restore();
    }
    let outage = Outage::new(&srv, &[0, 2]);
    expect_err(
        c.get_object().bucket("narrow").key("obj").send().await,
        503,
        Some("ServiceUnavailable"),
    );
    outage.restore();
    assert_same_bytes(&get_bytes(&c, "narrow", "obj").await, &data, "all backends back");
}
