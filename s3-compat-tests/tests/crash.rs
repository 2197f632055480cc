//! Process death: kill -9 in the middle of concurrent overwrites must leave
//! every key with its old or its new content, keep acknowledged writes, and
//! leave no orphaned shard sets after the startup sweep. Also: clean SIGTERM
//! shutdown, persistence across restarts, and the metadata lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use s3_compat_tests::*;
use tokio::sync::{Notify, Semaphore};

const KEYS: usize = 40;
const BUCKET: &str = "crash";

fn key(i: usize) -> String {
    format!("obj/{i:02}")
}

fn size_of(i: usize) -> usize {
    match i % 5 {
        0 => 1 + i,
        1 => MIB,
        2 => MIB + 1 + i,
        3 => 2 * MIB + 4321 * i,
        _ => 300_000 + 10_007 * i,
    }
}

async fn put_all(c: &Client, contents: &[Vec<u8>]) {
    let sem = Arc::new(Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, data) in contents.iter().enumerate() {
        let (c, sem, data) = (c.clone(), sem.clone(), data.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            put_bytes(&c, BUCKET, &key(i), &data).await;
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.expect("initial PUT task");
    }
}

/// Every set must be on every backend (4+2 over six backends), each holding
/// exactly one non-empty shard file.
fn shard_layout_problems(srv: &TestServer, live: usize) -> Option<String> {
    let sets = srv.all_shard_sets();
    let counts: Vec<usize> = sets.iter().map(|s| s.len()).collect();
    if counts.iter().any(|&n| n != live) || sets.windows(2).any(|w| w[0] != w[1]) {
        return Some(format!(
            "shard sets per backend {counts:?}, want {live} identical sets on each; union has {}",
            srv.distinct_shard_sets().len()
        ));
    }
    for (i, backend_sets) in sets.iter().enumerate() {
        for set in backend_sets {
            let dir = srv.backend_dir(i).join("shards").join(set);
            let files: Vec<(String, u64)> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| {
                            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                            (e.file_name().to_string_lossy().into_owned(), len)
                        })
                        .collect()
                })
                .unwrap_or_default();
            if files.len() != 1 || files[0].1 == 0 {
                return Some(format!("{} holds {files:?}, want one non-empty shard", dir.display()));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_overwrites_keeps_old_or_new_and_leaves_no_orphans() {
    // No grace period: the crash's orphans are swept by the very next start (by default they
    // would wait an hour, in case someone else were still writing them).
    let mut srv = TestServer::start(
        ServerOptions::new()
            .default_policy("ec-4-2")
            .flag("--sweep-grace-secs", 0),
    );
    let c = srv.client();
    create_bucket(&c, BUCKET).await;

    let old: Vec<Vec<u8>> = (0..KEYS).map(|i| random_bytes(size_of(i))).collect();
    // Different sizes for the new versions, so a torn mix of both is caught
    // by length as well as by content.
    let new: Vec<Vec<u8>> = (0..KEYS).map(|i| random_bytes(size_of(i) + 1000 + i)).collect();
    put_all(&c, &old).await;
    let settled = eventually(Duration::from_secs(10), || shard_layout_problems(&srv, KEYS).is_none()).await;
    assert!(settled, "before the crash: {:?}", shard_layout_problems(&srv, KEYS));

    let acked = Arc::new(Mutex::new(vec![false; KEYS]));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let sem = Arc::new(Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, data) in new.iter().enumerate() {
        let (c, sem, data) = (c.clone(), sem.clone(), data.clone());
        let (acked, acked_count, finished, progress) =
            (acked.clone(), acked_count.clone(), finished.clone(), progress.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let res = c
                .put_object()
                .bucket(BUCKET)
                .key(key(i))
                .body(ByteStream::from(data))
                .send()
                .await;
            if res.is_ok() {
                acked.lock().unwrap()[i] = true;
                acked_count.fetch_add(1, Ordering::SeqCst);
            }
            finished.fetch_add(1, Ordering::SeqCst);
            progress.notify_one();
        });
    }

    // Kill once a quarter of the overwrites are acknowledged: up to eight
    // are then mid-flight and the rest have not started.
    let wait = async {
        while acked_count.load(Ordering::SeqCst) < KEYS / 4 && finished.load(Ordering::SeqCst) < KEYS {
            progress.notified().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(300), wait)
        .await
        .expect("overwrites made no progress");
    srv.kill9();
    let acked_at_kill = acked_count.load(Ordering::SeqCst);
    // Sets beyond the live objects are unfinished PUTs or not yet deleted
    // old versions: what the startup sweep has to clear.
    let sets_at_kill = srv.distinct_shard_sets().len();
    assert!(
        acked_at_kill < KEYS,
        "all overwrites finished before the kill; the crash tested nothing"
    );
    while let Some(res) = tokio::time::timeout(Duration::from_secs(120), tasks.join_next())
        .await
        .expect("PUTs still hanging after the server was killed")
    {
        res.expect("overwrite task");
    }
    let acked: Vec<bool> = acked.lock().unwrap().clone();

    srv.start_again();
    let c = srv.client();
    let (mut kept_old, mut got_new) = (0, 0);
    for i in 0..KEYS {
        let got = match c.get_object().bucket(BUCKET).key(key(i)).send().await {
            Ok(out) => collect_body(out.body).await,
            Err(e) => panic!("after crash: GET {} failed: {:?}", key(i), err_info(&e)),
        };
        if got == new[i] {
            got_new += 1;
        } else if got == old[i] && !acked[i] {
            kept_old += 1;
        } else {
            panic!(
                "after crash: {} has {} bytes (md5 {}); old was {} bytes (md5 {}), new {} bytes (md5 {}), overwrite acknowledged: {}",
                key(i),
                got.len(),
                md5_hex(&got),
                old[i].len(),
                md5_hex(&old[i]),
                new[i].len(),
                md5_hex(&new[i]),
                acked[i]
            );
        }
    }
    eprintln!(
        "after crash: {got_new} keys new, {kept_old} old; {acked_at_kill} overwrites acknowledged and \
         {sets_at_kill} shard sets on disk at the kill ({KEYS} live objects)"
    );

    let clean = eventually(Duration::from_secs(10), || shard_layout_problems(&srv, KEYS).is_none()).await;
    assert!(
        clean,
        "orphans after crash + sweep: {:?}",
        shard_layout_problems(&srv, KEYS)
    );

    // A second, graceful restart must not sweep away anything live.
    srv.restart();
    let c = srv.client();
    for i in 0..KEYS {
        let got = get_bytes(&c, BUCKET, &key(i)).await;
        assert!(
            got == new[i] || got == old[i],
            "{} changed across a clean restart",
            key(i)
        );
    }
    assert_eq!(shard_layout_problems(&srv, KEYS), None, "after clean restart");
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_state_persists() {
    let mut srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "keep").await;
    create_bucket(&c, "also").await;
    let small = random_bytes(12_345);
    let large = random_bytes(3 * MIB + 1);
    put_bytes(&c, "keep", "small", &small).await;
    ok(
        c.put_object()
            .bucket("keep")
            .key("large")
            .content_type("application/x-large")
            .metadata("survives", "restart")
            .body(ByteStream::from(large.clone()))
            .send()
            .await,
        "PUT large",
    );
    let upload_id = ok(
        c.create_multipart_upload().bucket("keep").key("pending").send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .unwrap()
    .to_owned();
    let part1 = random_bytes(5 * MIB);
    let p1 = ok(
        c.upload_part()
            .bucket("keep")
            .key("pending")
            .upload_id(&upload_id)
            .part_number(1)
            .body(ByteStream::from(part1.clone()))
            .send()
            .await,
        "UploadPart 1",
    );

    let status = srv.stop();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    srv.start_again();
    let c = srv.client();

    let names: Vec<String> = ok(c.list_buckets().send().await, "ListBuckets")
        .buckets()
        .iter()
        .map(|b| b.name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["also", "keep"]);
    assert_same_bytes(&get_bytes(&c, "keep", "small").await, &small, "small after restart");
    let got = ok(c.get_object().bucket("keep").key("large").send().await, "GET large");
    assert_eq!(got.content_type(), Some("application/x-large"));
    assert_eq!(
        got.metadata().and_then(|m| m.get("survives")).map(String::as_str),
        Some("restart")
    );
    assert_same_bytes(&collect_body(got.body).await, &large, "large after restart");

    // The upload started before the restart can still be finished.
    let parts = ok(
        c.list_parts()
            .bucket("keep")
            .key("pending")
            .upload_id(&upload_id)
            .send()
            .await,
        "ListParts after restart",
    );
    assert_eq!(parts.parts().len(), 1);
    let part2 = random_bytes(777);
    let p2 = ok(
        c.upload_part()
            .bucket("keep")
            .key("pending")
            .upload_id(&upload_id)
            .part_number(2)
            .body(ByteStream::from(part2.clone()))
            .send()
            .await,
        "UploadPart 2 after restart",
    );
    ok(
        c.complete_multipart_upload()
            .bucket("keep")
            .key("pending")
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .e_tag(p1.e_tag().unwrap())
                            .build(),
                    )
                    .parts(
                        CompletedPart::builder()
                            .part_number(2)
                            .e_tag(p2.e_tag().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await,
        "CompleteMultipartUpload after restart",
    );
    assert_same_bytes(
        &get_bytes(&c, "keep", "pending").await,
        &[part1, part2].concat(),
        "multipart object spanning a restart",
    );
}

#[tokio::test]
async fn second_instance_on_same_data_dir_is_refused() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "locked").await;
    put_bytes(&c, "locked", "k", b"still here").await;

    match srv.try_start_second_instance() {
        Ok(addr) => panic!("a second gateway started on the same data dir and listened on {addr}"),
        Err(failure) => {
            let status = failure
                .exit_status
                .unwrap_or_else(|| panic!("second instance did not exit: {}", failure.reason));
            assert!(!status.success(), "second instance exited with {status}");
        }
    }
    assert_eq!(get_bytes(&c, "locked", "k").await, b"still here");
}
