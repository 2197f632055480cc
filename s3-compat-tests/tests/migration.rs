//! Bucket policy changes with live migration: `PUT /api/v1/buckets/{b}/policy` starts a new
//! policy epoch and the migrator re-encodes / moves every object of older epochs in the
//! background. Under client load no request may fail, every object must read back byte for
//! byte, and in the end the shards must be where the new policy says and nowhere else. A crash
//! in the middle resumes; an overwrite racing the migrator wins; the API refuses what it must;
//! the CLI drives it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use s3_compat_tests::*;
use serde_json::{json, Value};

const BLOCK: u64 = 64 * 1024;
/// Generous bound for one migration of a few MiB on a debug build sharing 2 cores.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Sizes around the block size: empty, tiny, one partial block, exactly one block, several
/// blocks, a block boundary plus a bit, many blocks.
const SIZES: [usize; 7] = [0, 1, 1000, 64 * 1024, 300 * 1024, MIB + 17, 5 * MIB / 2];

fn policy_path(bucket: &str) -> String {
    format!("/api/v1/buckets/{bucket}/policy")
}

fn migration_path(bucket: &str) -> String {
    format!("/api/v1/buckets/{bucket}/migration")
}

fn history_path(bucket: &str) -> String {
    format!("/api/v1/buckets/{bucket}/policy/history")
}

async fn get_policy(srv: &TestServer, bucket: &str) -> Value {
    let (status, view) = srv.admin("GET", &policy_path(bucket)).await;
    assert_eq!(status, 200, "GET policy of {bucket}: {view}");
    view
}

async fn get_migration(srv: &TestServer, bucket: &str) -> Value {
    let (status, view) = srv.admin("GET", &migration_path(bucket)).await;
    assert_eq!(status, 200, "GET migration of {bucket}: {view}");
    view
}

fn epoch_of(view: &Value) -> u64 {
    view["epoch"].as_u64().unwrap_or_else(|| panic!("no epoch in {view}"))
}

/// PUTs a policy change that must be accepted as a change: 200, `changed: true`, the epoch
/// one up from `before`, and a migration job aiming at that epoch. Returns the new policy view.
async fn change_policy(srv: &TestServer, bucket: &str, body: Value, before: u64) -> Value {
    let (status, resp) = srv.admin_json("PUT", &policy_path(bucket), body.clone()).await;
    assert_eq!(status, 200, "PUT policy {body}: {resp}");
    assert_eq!(resp["changed"], true, "PUT policy {body}: {resp}");
    let policy = resp["policy"].clone();
    assert_eq!(epoch_of(&policy), before + 1, "PUT policy {body}: {resp}");
    assert_eq!(
        resp["migration"]["target_epoch"],
        before + 1,
        "PUT policy {body}: {resp}"
    );
    policy
}

/// Checks a finished migration view: aimed at `epoch`, everything done, nothing failed.
#[track_caller]
fn assert_migration_finished(view: &Value, epoch: u64) {
    assert_eq!(view["target_epoch"], epoch, "{view}");
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(view["objects_remaining"], 0, "{view}");
    assert_eq!(view["errors"], 0, "{view}");
    assert_eq!(view["last_error"], Value::Null, "{view}");
    assert_eq!(view["skipped"], 0, "{view}");
    assert!(view["finished_ms"].as_u64().is_some(), "{view}");
}

/// [`assert_migration_finished`], and the totals add up: everything counted was done, and
/// (when no client wrote meanwhile, `exact`) every object done was re-encoded, moved or
/// relabelled; objects overwritten while the job ran may have needed none of these.
#[track_caller]
fn assert_migration_clean(view: &Value, epoch: u64, exact: bool) {
    assert_migration_finished(view, epoch);
    assert_eq!(view["objects_done"], view["objects_total"], "{view}");
    assert_eq!(view["bytes_done"], view["bytes_total"], "{view}");
    let outcomes: u64 = ["objects_reencoded", "objects_moved", "objects_relabelled"]
        .iter()
        .map(|f| view[f].as_u64().unwrap_or_else(|| panic!("no {f} in {view}")))
        .sum();
    let done = view["objects_done"]
        .as_u64()
        .unwrap_or_else(|| panic!("no objects_done in {view}"));
    if exact {
        assert_eq!(outcomes, done, "outcomes do not add up to objects_done: {view}");
    } else {
        assert!(outcomes <= done, "more outcomes than objects done: {view}");
    }
}

/// An object the load only reads: its content and the ETag S3 gives it.
#[derive(Clone)]
struct Fixed {
    key: String,
    data: Arc<Vec<u8>>,
    etag: String,
}

/// Puts the fixed objects of the mixed-load test: `copies` objects of every size in `SIZES`
/// and one multipart object of 5 MiB + 1 MiB.
async fn put_fixed(c: &Client, bucket: &str, copies: usize) -> Vec<Fixed> {
    let mut out = Vec::new();
    for copy in 0..copies {
        for (i, &size) in SIZES.iter().enumerate() {
            let key = format!("fixed/{copy}/s{i}-{size}");
            let data = random_bytes(size);
            put_bytes(c, bucket, &key, &data).await;
            out.push(Fixed {
                key,
                etag: etag_of(&data),
                data: Arc::new(data),
            });
        }
    }
    let parts = vec![random_bytes(5 * MIB), random_bytes(MIB)];
    put_multipart(c, bucket, "fixed/multipart", &parts).await;
    out.push(Fixed {
        key: "fixed/multipart".to_owned(),
        etag: multipart_etag(&parts),
        data: Arc::new(parts.concat()),
    });
    out
}

/// What the load tasks saw.
#[derive(Default)]
struct LoadStats {
    ops: AtomicU64,
    failures: AtomicU64,
    /// The first few failures, for the assertion message.
    first_failures: Mutex<Vec<String>>,
}

impl LoadStats {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_failures.lock().expect("failures");
        if first.len() < 20 {
            first.push(what);
        }
    }
}

/// GET (of `range`, when given) as bytes, or what went wrong.
async fn fetch(c: &Client, bucket: &str, key: &str, range: Option<String>) -> Result<Vec<u8>, String> {
    let what = match &range {
        Some(r) => format!("GET {key} {r}"),
        None => format!("GET {key}"),
    };
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range)
        .send()
        .await
        .map_err(|e| format!("{what}: {:?}", err_info(&e)))?;
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| format!("{what}: reading the body: {e}"))?;
    Ok(body.into_bytes().to_vec())
}

fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: {} bytes (md5 {}), want {} bytes (md5 {})",
            got.len(),
            md5_hex(got),
            want.len(),
            md5_hex(want)
        ))
    }
}

/// What every load task shares.
#[derive(Clone)]
struct Load {
    c: Client,
    bucket: &'static str,
    fixed: Arc<Vec<Fixed>>,
    total_keys: usize,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
}

impl Load {
    /// One load task: overwrites and reads back its own keys (`own`, with their current
    /// content), reads, HEADs and range-reads the fixed objects, lists the bucket, until `stop`.
    /// Every request must succeed with the right answer. Returns its keys' final contents.
    async fn run(self, task: usize, mut own: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        let (c, bucket) = (&self.c, self.bucket);
        let mut n: usize = 0;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let f = &self.fixed[(n * 7 + task) % self.fixed.len()];
            let slot = n % own.len();
            let key = own[slot].0.clone();
            let result: Result<(), String> = match n % 6 {
                0 => match fetch(c, bucket, &key, None).await {
                    Ok(got) => compare(&format!("GET {key}"), &got, &own[slot].1),
                    Err(e) => Err(e),
                },
                1 => {
                    let data = random_bytes(1 + (n * 7919 + task * 104_729) % 200_000);
                    let res = c
                        .put_object()
                        .bucket(bucket)
                        .key(&key)
                        .body(ByteStream::from(data.clone()))
                        .send()
                        .await;
                    match res {
                        Ok(out) if out.e_tag() == Some(etag_of(&data).as_str()) => {
                            own[slot].1 = data;
                            Ok(())
                        }
                        Ok(out) => Err(format!("PUT {key}: ETag {:?}, want {}", out.e_tag(), etag_of(&data))),
                        Err(e) => Err(format!("PUT {key}: {:?}", err_info(&e))),
                    }
                }
                2 => match fetch(c, bucket, &f.key, None).await {
                    Ok(got) => compare(&format!("GET {}", f.key), &got, &f.data),
                    Err(e) => Err(e),
                },
                3 => match c.head_object().bucket(bucket).key(&f.key).send().await {
                    Ok(out)
                        if out.content_length() == Some(f.data.len() as i64)
                            && out.e_tag() == Some(f.etag.as_str()) =>
                    {
                        Ok(())
                    }
                    Ok(out) => Err(format!(
                        "HEAD {}: length {:?} ETag {:?}, want {} {}",
                        f.key,
                        out.content_length(),
                        out.e_tag(),
                        f.data.len(),
                        f.etag
                    )),
                    Err(e) => Err(format!("HEAD {}: {:?}", f.key, err_info(&e))),
                },
                4 => match c.list_objects_v2().bucket(bucket).send().await {
                    Ok(out) if out.contents().len() == self.total_keys && out.is_truncated() != Some(true) => Ok(()),
                    Ok(out) => Err(format!(
                        "LIST: {} keys (truncated {:?}), want {}",
                        out.contents().len(),
                        out.is_truncated(),
                        self.total_keys
                    )),
                    Err(e) => Err(format!("LIST: {:?}", err_info(&e))),
                },
                _ if f.data.len() < 2 => Ok(()),
                _ => {
                    // A ranged GET across block boundaries.
                    let len = f.data.len();
                    let (a, b) = (len / 3, (len - 1).min(len / 3 + 2 * BLOCK as usize + 5));
                    match fetch(c, bucket, &f.key, Some(format!("bytes={a}-{b}"))).await {
                        Ok(got) => compare(&format!("GET {} bytes={a}-{b}", f.key), &got, &f.data[a..=b]),
                        Err(e) => Err(e),
                    }
                }
            };
            self.stats.ops.fetch_add(1, Ordering::SeqCst);
            if let Err(what) = result {
                self.stats.fail(format!("task {task} op {n}: {what}"));
            }
            // Leave the two cores some room for the migrator.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        own
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_under_mixed_load() {
    const BUCKET: &str = "mix";
    const TASKS: usize = 3;
    const KEYS_PER_TASK: usize = 2;
    let started = Instant::now();
    let srv = TestServer::start(ServerOptions::new().local_backends(12).block_size(BLOCK));
    let c = srv.client();
    create_bucket(&c, BUCKET).await;

    let initial = get_policy(&srv, BUCKET).await;
    assert_eq!(
        (initial["k"].as_u64(), initial["m"].as_u64()),
        (Some(4), Some(2)),
        "{initial}"
    );
    assert_eq!(initial["preset"], "ec-4-2", "{initial}");
    assert_eq!(initial["eligible"].as_array().map(Vec::len), Some(12), "{initial}");
    let mut epoch = epoch_of(&initial);
    let (status, view) = srv.admin("GET", &migration_path(BUCKET)).await;
    assert_eq!(status, 200, "{view}");
    assert_ne!(view["state"], "running", "nothing to migrate yet: {view}");

    let fixed = Arc::new(put_fixed(&c, BUCKET, 3).await);
    let mut own_keys = Vec::new();
    for t in 0..TASKS {
        let mut own = Vec::new();
        for j in 0..KEYS_PER_TASK {
            let key = format!("load/t{t}/k{j}");
            let data = random_bytes(50_000 + 70_001 * j + 1_013 * t);
            put_bytes(&c, BUCKET, &key, &data).await;
            own.push((key, data));
        }
        own_keys.push(own);
    }
    let total_keys = fixed.len() + TASKS * KEYS_PER_TASK;
    srv.settled().await;
    // One set per segment before any change; the migration may not leave more behind.
    let sets_before = srv.distinct_shard_sets().len();
    let nonempty = fixed.iter().filter(|f| !f.data.is_empty()).count() + TASKS * KEYS_PER_TASK;
    assert!(
        sets_before >= nonempty,
        "{sets_before} shard sets for {nonempty} non-empty objects"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LoadStats::default());
    let load = Load {
        c: c.clone(),
        bucket: BUCKET,
        fixed: fixed.clone(),
        total_keys,
        stop: stop.clone(),
        stats: stats.clone(),
    };
    let tasks: Vec<_> = own_keys
        .into_iter()
        .enumerate()
        .map(|(t, own)| tokio::spawn(load.clone().run(t, own)))
        .collect();

    let ops_at_first_change = stats.ops.load(Ordering::SeqCst);
    let changes = [
        (json!({"preset": "ec-8-4", "reason": "wider stripes"}), 8, 4, "admin"),
        (
            json!({"k": 2, "m": 1, "changed_by": "alice", "reason": "cheaper"}),
            2,
            1,
            "alice",
        ),
        (
            json!({"preset": "replicate-3", "backends": ["local0", "local1", "local2"],
                   "changed_by": "bob", "reason": "three replicas on the first three"}),
            1,
            2,
            "bob",
        ),
    ];
    let mut timings = Vec::new();
    for (body, k, m, _) in &changes {
        let t = Instant::now();
        let policy = change_policy(&srv, BUCKET, body.clone(), epoch).await;
        epoch += 1;
        assert_eq!(
            (policy["k"].as_u64(), policy["m"].as_u64()),
            (Some(*k), Some(*m)),
            "{policy}"
        );
        let done = srv.wait_migration_done(BUCKET, MIGRATION_TIMEOUT).await;
        assert_migration_clean(&done, epoch, false);
        assert!(
            done["objects_reencoded"].as_u64().is_some_and(|n| n > 0),
            "a change of k re-encodes: {done}"
        );
        timings.push(format!("{body} took {:?}: {done}", t.elapsed()));
        let failures = stats.failures.load(Ordering::SeqCst);
        assert_eq!(
            failures,
            0,
            "client requests failed during the migration to {body}: {:?}",
            stats.first_failures.lock().expect("failures")
        );
    }
    let ops_during = stats.ops.load(Ordering::SeqCst) - ops_at_first_change;
    stop.store(true, Ordering::SeqCst);
    let mut own_final = Vec::new();
    for task in tasks {
        own_final.extend(task.await.expect("load task"));
    }
    eprintln!("migrations: {timings:#?}\nclient ops during the migrations: {ops_during}");
    assert!(ops_during > 0, "the load did not run during the migrations");
    assert_eq!(
        stats.failures.load(Ordering::SeqCst),
        0,
        "client requests failed: {:?}",
        stats.first_failures.lock().expect("failures")
    );

    // Every object reads back as last written.
    for f in fixed.iter() {
        assert_same_bytes(&get_bytes(&c, BUCKET, &f.key).await, &f.data, &f.key);
    }
    for (key, data) in &own_final {
        assert_same_bytes(&get_bytes(&c, BUCKET, key).await, data, key);
    }

    // Three replicas of every set on local0..local2, nothing anywhere else.
    let first_three: BTreeSet<usize> = (0..3).collect();
    wait_for_layout(&srv, &first_three, 3, nonempty..=sets_before).await;
    for i in 3..12 {
        assert!(srv.shard_sets(i).is_empty(), "local{i}: {:?}", srv.shard_sets(i));
    }

    let view = get_migration(&srv, BUCKET).await;
    assert_eq!(view["objects_remaining"], 0, "{view}");
    assert_eq!(view["errors"], 0, "{view}");
    let policy = get_policy(&srv, BUCKET).await;
    assert_eq!(
        (policy["k"].as_u64(), policy["m"].as_u64()),
        (Some(1), Some(2)),
        "{policy}"
    );
    assert_eq!(policy["preset"], "replicate-3", "{policy}");
    assert_eq!(policy["epoch"], epoch, "{policy}");
    assert_eq!(policy["eligible"], json!(["local0", "local1", "local2"]), "{policy}");
    assert_eq!(policy["changed_by"], "bob", "{policy}");

    let (status, history) = srv.admin("GET", &history_path(BUCKET)).await;
    assert_eq!(status, 200, "{history}");
    let entries = history["changes"].as_array().unwrap_or_else(|| panic!("{history}"));
    assert_eq!(entries.len(), 3, "{history}");
    let mut prev_km = (Some(4), Some(2));
    for (i, (entry, (body, k, m, by))) in entries.iter().zip(&changes).enumerate() {
        let want_epoch = epoch - 2 + i as u64;
        assert_eq!(entry["epoch"], want_epoch, "{entry}");
        assert_eq!(entry["automatic"], false, "{entry}");
        assert_eq!(entry["changed_by"], *by, "{entry}");
        assert_eq!(entry["reason"], body["reason"], "{entry}");
        assert_eq!(
            (entry["old"]["k"].as_u64(), entry["old"]["m"].as_u64()),
            prev_km,
            "{entry}"
        );
        assert_eq!(
            (entry["new"]["k"].as_u64(), entry["new"]["m"].as_u64()),
            (Some(*k), Some(*m)),
            "{entry}"
        );
        assert_eq!(entry["new"]["epoch"], want_epoch, "{entry}");
        assert!(entry["at_ms"].as_u64().is_some_and(|t| t > 0), "{entry}");
        prev_km = (Some(*k), Some(*m));
    }

    let text = srv.metrics().await;
    assert!(text.contains("mlsysops_migration"), "no migration metrics on /metrics");
    let migrated = prom_value(&text, "mlsysops_migration_objects_total", &[("aws_s3_bucket", BUCKET)]);
    assert!(
        migrated.is_some_and(|n| n >= nonempty as f64),
        "objects migrated: {migrated:?}"
    );
    assert_eq!(
        prom_value(
            &text,
            "mlsysops_migration_remaining_objects",
            &[("aws_s3_bucket", BUCKET)]
        ),
        Some(0.0)
    );
    eprintln!("policy_changes_under_mixed_load: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_resumes_after_kill9() {
    const BUCKET: &str = "resume";
    const OBJECTS: usize = 12;
    let started = Instant::now();
    let mut srv = TestServer::start(
        ServerOptions::new()
            .local_backends(8)
            .block_size(BLOCK)
            .flag("--migration-mib-per-sec", 0.5)
            // The sets the kill cut off are swept at the restart, not an hour later.
            .flag("--sweep-grace-secs", 0),
    );
    let (status, throttle) = srv.admin("GET", "/api/v1/migration").await;
    assert_eq!(status, 200, "{throttle}");
    assert_eq!(throttle["max_mib_per_sec"].as_f64(), Some(0.5), "{throttle}");
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    let objects: Vec<(String, Vec<u8>)> = (0..OBJECTS)
        .map(|i| (format!("o{i:02}"), random_bytes(200 * 1024 + 41_017 * i)))
        .collect();
    for (key, data) in &objects {
        put_bytes(&c, BUCKET, key, data).await;
    }
    srv.settled().await;
    assert_eq!(srv.distinct_shard_sets().len(), OBJECTS);
    let epoch = epoch_of(&get_policy(&srv, BUCKET).await);
    change_policy(
        &srv,
        BUCKET,
        json!({"preset": "ec-2-1", "backends": ["local0", "local1", "local2", "local3"], "reason": "shrink"}),
        epoch,
    )
    .await;

    // Kill the gateway once part of the work is done.
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    let before_kill = loop {
        let view = get_migration(&srv, BUCKET).await;
        assert_ne!(
            view["state"], "done",
            "the migration finished before the kill: is the 0.5 MiB/s throttle honoured? {view}"
        );
        if view["state"] == "running" && view["objects_done"].as_u64().is_some_and(|n| n > 0) {
            break view;
        }
        assert!(Instant::now() < deadline, "no object migrated: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    srv.kill9();
    srv.start_again();
    let (status, throttle) = srv
        .admin_json("PUT", "/api/v1/migration", json!({"max_mib_per_sec": 0}))
        .await;
    assert_eq!(status, 200, "{throttle}");
    assert_eq!(throttle["max_mib_per_sec"].as_f64(), Some(0.0), "{throttle}");

    let after = get_migration(&srv, BUCKET).await;
    assert_eq!(after["target_epoch"], epoch + 1, "after the restart: {after}");
    let done = srv.wait_migration_done(BUCKET, MIGRATION_TIMEOUT).await;
    assert_migration_clean(&done, epoch + 1, true);
    // The restarted job counts only what was left.
    assert!(
        done["objects_total"].as_u64().is_some_and(|n| n <= OBJECTS as u64),
        "before the kill: {before_kill}\nafter: {done}"
    );

    let c = srv.client();
    for (key, data) in &objects {
        assert_same_bytes(&get_bytes(&c, BUCKET, key).await, data, key);
    }
    let first_four: BTreeSet<usize> = (0..4).collect();
    wait_for_layout(&srv, &first_four, 3, OBJECTS..=OBJECTS).await;
    for i in 4..8 {
        assert!(srv.shard_sets(i).is_empty(), "local{i}: {:?}", srv.shard_sets(i));
    }
    let policy = get_policy(&srv, BUCKET).await;
    assert_eq!(
        (policy["k"].as_u64(), policy["m"].as_u64()),
        (Some(2), Some(1)),
        "{policy}"
    );
    assert_eq!(policy["epoch"], epoch + 1, "{policy}");
    eprintln!("migration_resumes_after_kill9: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_during_migration_wins() {
    const BUCKET: &str = "race";
    let started = Instant::now();
    let mut srv = TestServer::start(
        ServerOptions::new()
            .local_backends(6)
            .block_size(BLOCK)
            .flag("--migration-mib-per-sec", 0.5),
    );
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    let old = random_bytes(3 * MIB);
    put_bytes(&c, BUCKET, "big", &old).await;
    srv.settled().await;
    let epoch = epoch_of(&get_policy(&srv, BUCKET).await);
    change_policy(
        &srv,
        BUCKET,
        json!({"preset": "ec-2-1", "backends": ["local0", "local1", "local2"], "reason": "race"}),
        epoch,
    )
    .await;

    // Wait until the migrator is into the object (bytes counted, or a rate measured), at most
    // a few seconds; at 0.5 MiB/s the 3 MiB take six.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut view = get_migration(&srv, BUCKET).await;
    while Instant::now() < deadline
        && view["bytes_done"].as_u64() == Some(0)
        && view["rate_bytes_per_sec"].as_f64().is_none_or(|r| r == 0.0)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        view = get_migration(&srv, BUCKET).await;
    }
    assert_eq!(view["state"], "running", "{view}");
    assert_eq!(view["objects_done"], 0, "the old version was migrated already: {view}");

    let new = random_bytes(3 * MIB + 4321);
    let out = put_bytes(&c, BUCKET, "big", &new).await;
    assert_eq!(out.e_tag(), Some(etag_of(&new).as_str()));
    let during = get_migration(&srv, BUCKET).await;
    assert_same_bytes(&get_bytes(&c, BUCKET, "big").await, &new, "right after the overwrite");

    let done = srv.wait_migration_done(BUCKET, MIGRATION_TIMEOUT).await;
    assert_migration_finished(&done, epoch + 1);
    assert_same_bytes(&get_bytes(&c, BUCKET, "big").await, &new, "after the migration");
    let head = ok(c.head_object().bucket(BUCKET).key("big").send().await, "HEAD big");
    assert_eq!(head.e_tag(), Some(etag_of(&new).as_str()));
    assert_eq!(head.content_length(), Some(new.len() as i64));

    // One set (the new version's), on local0..local2 only.
    let first_three: BTreeSet<usize> = (0..3).collect();
    wait_for_layout(&srv, &first_three, 3, 1..=1).await;

    // And it stays the new content across a restart (what the migrator committed is durable).
    srv.restart();
    assert_same_bytes(&get_bytes(&srv.client(), BUCKET, "big").await, &new, "after a restart");
    eprintln!(
        "overwrite_during_migration_wins: {:?}; migration view at the overwrite {view}, after it {during}",
        started.elapsed()
    );
}

#[tokio::test]
async fn policy_api_refusals() {
    const BUCKET: &str = "pol";
    let started = Instant::now();
    let srv = TestServer::start(ServerOptions::new().local_backends(6));
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    put_bytes(&c, BUCKET, "k", &random_bytes(1000)).await;
    let epoch = epoch_of(&get_policy(&srv, BUCKET).await);
    let policy = policy_path(BUCKET);
    let migration = migration_path(BUCKET);

    // 401 without the admin token, or with a wrong one.
    for token in [None, Some("wrong-token")] {
        for (method, path) in [("GET", &policy), ("GET", &migration), ("GET", &history_path(BUCKET))] {
            let (status, body) = srv.admin_with_token(method, path, token).await;
            assert_eq!(status, 401, "{method} {path} with token {token:?}: {body}");
            assert!(body["error"].is_string(), "{body}");
        }
        let (status, body) = srv
            .admin_json_with_token("PUT", &policy, json!({"preset": "ec-2-1"}), token)
            .await;
        assert_eq!(status, 401, "PUT policy with token {token:?}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }

    // 404 for a bucket that does not exist.
    for (method, path) in [
        ("GET", policy_path("nosuch")),
        ("GET", migration_path("nosuch")),
        ("GET", history_path("nosuch")),
    ] {
        let (status, body) = srv.admin(method, &path).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body["error"].as_str().is_some_and(|m| m.contains("nosuch")), "{body}");
    }
    let (status, body) = srv
        .admin_json("PUT", &policy_path("nosuch"), json!({"preset": "ec-2-1"}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| m.contains("nosuch")), "{body}");

    // 400 for invalid changes, with a message naming the cause (any one of the words).
    let invalid: Vec<(Value, &[&str])> = vec![
        (json!({"preset": "ec-8-4"}), &["backend", "eligible"]),
        (json!({"k": 4, "m": 1, "redundancy": "high"}), &["redundancy", "high"]),
        (json!({"k": 4, "m": 0, "redundancy": "high"}), &["redundancy", "high"]),
        (json!({"backends": ["local0", "nosuch9"]}), &["nosuch9"]),
        (json!({"backends": "colour=red"}), &["colour"]),
        (json!({"block_size": 100}), &["block"]),
        (json!({"k": 0, "m": 2}), &["k"]),
        (json!({"preset": "ec-4-2", "k": 4}), &["preset"]),
        (json!({"preset": "ec-2-1", "colour": "red"}), &["colour"]),
        (
            json!({"encryption": true, "server_side_encryption": "off"}),
            &["encryption"],
        ),
    ];
    for (body, words) in &invalid {
        let (status, resp) = srv.admin_json("PUT", &policy, body.clone()).await;
        assert_eq!(status, 400, "PUT policy {body}: {resp}");
        let message = resp["error"].as_str().unwrap_or_else(|| panic!("{body}: {resp}"));
        assert!(
            words.iter().any(|w| mentions(message, w)),
            "PUT policy {body}: error {message:?} names none of {words:?}"
        );
    }
    let (status, text) = srv
        .admin_send("PUT", &policy, Some(ADMIN_TOKEN), b"{\"preset\": ".to_vec())
        .await;
    assert_eq!(status, 400, "malformed JSON: {text}");
    let resp: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("malformed JSON: not JSON ({e}): {text}"));
    assert!(resp["error"].as_str().is_some_and(|m| !m.is_empty()), "{resp}");
    assert_eq!(
        epoch_of(&get_policy(&srv, BUCKET).await),
        epoch,
        "a refused change moved the epoch"
    );

    // 403 for an automatic change while the bucket has no token, or with a wrong one.
    let agent_change = json!({"preset": "ec-2-1", "automatic": true, "changed_by": "agent-7", "reason": "cheaper"});
    let (status, resp) = srv.admin_json("PUT", &policy, agent_change.clone()).await;
    assert_eq!(status, 403, "automatic change, bucket without a token: {resp}");
    assert!(resp["error"].is_string(), "{resp}");
    let mut wrong = agent_change.clone();
    wrong["policy_update_token"] = json!("guess");
    let (status, resp) = srv.admin_json("PUT", &policy, wrong.clone()).await;
    assert_eq!(status, 403, "automatic change with a token, bucket without one: {resp}");
    assert_eq!(
        epoch_of(&get_policy(&srv, BUCKET).await),
        epoch,
        "a refused change moved the epoch"
    );

    // A human sets the token; an agent with the wrong token is still refused, with the right
    // one it gets through.
    let (status, resp) = srv
        .admin_json(
            "PUT",
            &policy,
            json!({"policy_update_token": "agent-t0ken-42", "reason": "let the agent tune it"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert!(!resp.to_string().contains("agent-t0ken-42"), "the token shows: {resp}");
    let view = get_policy(&srv, BUCKET).await;
    assert_eq!(view["automatic_updates"], true, "{view}");
    let epoch = epoch_of(&view);
    let (status, resp) = srv.admin_json("PUT", &policy, wrong).await;
    assert_eq!(status, 403, "automatic change with the wrong token: {resp}");
    assert_eq!(
        epoch_of(&get_policy(&srv, BUCKET).await),
        epoch,
        "a refused change moved the epoch"
    );
    let mut right = agent_change.clone();
    right["policy_update_token"] = json!("agent-t0ken-42");
    let view = change_policy(&srv, BUCKET, right.clone(), epoch).await;
    assert_eq!((view["k"].as_u64(), view["m"].as_u64()), (Some(2), Some(1)), "{view}");
    assert_eq!(view["changed_by"], "agent-7", "{view}");
    assert_eq!(view["reason"], "cheaper", "{view}");
    // The same again changes nothing.
    let (status, resp) = srv.admin_json("PUT", &policy, right).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["changed"], false, "{resp}");
    assert_eq!(resp["policy"]["epoch"], epoch + 1, "{resp}");

    let (status, text) = srv.admin_raw("GET", &policy, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("agent-t0ken-42"), "GET policy shows the token: {text}");
    let (status, text) = srv.admin_raw("GET", &history_path(BUCKET), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("agent-t0ken-42"), "the history shows the token: {text}");
    let history: Value = serde_json::from_str(&text).expect("history is JSON");
    let last = history["changes"]
        .as_array()
        .and_then(|c| c.last())
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(last["epoch"], epoch + 1, "{last}");
    assert_eq!(last["automatic"], true, "{last}");
    assert_eq!(last["changed_by"], "agent-7", "{last}");
    assert_eq!(last["reason"], "cheaper", "{last}");
    assert_eq!(
        (last["new"]["k"].as_u64(), last["new"]["m"].as_u64()),
        (Some(2), Some(1)),
        "{last}"
    );
    assert_eq!(
        (last["old"]["k"].as_u64(), last["old"]["m"].as_u64()),
        (Some(4), Some(2)),
        "{last}"
    );
    eprintln!("policy_api_refusals: {:?}", started.elapsed());
}

/// Whether `message` mentions `word`: as a whole word when it is that short (`k`), else anywhere
/// (case-insensitive).
fn mentions(message: &str, word: &str) -> bool {
    let (message, word) = (message.to_lowercase(), word.to_lowercase());
    if word.len() <= 2 {
        message
            .split(|ch: char| !ch.is_alphanumeric() && ch != '_')
            .any(|token| token == word)
    } else {
        message.contains(&word)
    }
}

/// Runs the real binary with the admin URL and token in its environment.
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

fn describe(out: &std::process::Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_policy_commands() {
    const BUCKET: &str = "clib";
    let started = Instant::now();
    let srv = TestServer::start(ServerOptions::new().local_backends(6).block_size(BLOCK));
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    let objects: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("o{i}"), random_bytes(100_000 * i + 7)))
        .collect();
    for (key, data) in &objects {
        put_bytes(&c, BUCKET, key, data).await;
    }
    let epoch = epoch_of(&get_policy(&srv, BUCKET).await);

    let out = cli(
        &srv,
        &[
            "bucket", "policy", "set", BUCKET, "--preset", "ec-2-1", "--reason", "cli test", "--wait",
        ],
    )
    .await;
    assert!(out.status.success(), "policy set: {}", describe(&out));
    // --wait returns once the migration is done.
    let view = get_migration(&srv, BUCKET).await;
    assert_eq!(view["state"], "done", "after `policy set --wait`: {view}");
    assert_eq!(view["objects_remaining"], 0, "{view}");
    assert_eq!(view["target_epoch"], epoch + 1, "{view}");

    let out = cli(&srv, &["bucket", "policy", "get", BUCKET, "--json"]).await;
    assert!(out.status.success(), "policy get: {}", describe(&out));
    let shown: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("policy get --json is not JSON ({e}): {}", describe(&out)));
    let shown = if shown.get("k").is_some() {
        shown
    } else {
        shown["policy"].clone()
    };
    assert_eq!(
        (shown["k"].as_u64(), shown["m"].as_u64()),
        (Some(2), Some(1)),
        "{shown}"
    );
    assert_eq!(shown["epoch"], epoch + 1, "{shown}");
    assert_eq!(shown["reason"], "cli test", "{shown}");

    let out = cli(&srv, &["bucket", "migration", BUCKET, "--json"]).await;
    assert!(out.status.success(), "migration: {}", describe(&out));
    let shown: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("migration --json is not JSON ({e}): {}", describe(&out)));
    assert_eq!(shown["state"], "done", "{shown}");
    assert_eq!(shown["target_epoch"], epoch + 1, "{shown}");

    let out = cli(&srv, &["bucket", "policy", "set", BUCKET, "--preset", "ec-bogus-9"]).await;
    assert!(!out.status.success(), "a bad preset was accepted: {}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ec-bogus-9") || stderr.to_lowercase().contains("preset"),
        "the error does not say what is wrong: {}",
        describe(&out)
    );
    let out = cli(&srv, &["bucket", "policy", "get", "nosuch", "--json"]).await;
    assert!(!out.status.success(), "policy of a missing bucket: {}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nosuch"),
        "the error does not name the bucket: {}",
        describe(&out)
    );
    assert_eq!(epoch_of(&get_policy(&srv, BUCKET).await), epoch + 1);

    for (key, data) in &objects {
        assert_same_bytes(&get_bytes(&c, BUCKET, key).await, data, key);
    }
    eprintln!("cli_policy_commands: {:?}", started.elapsed());
}
