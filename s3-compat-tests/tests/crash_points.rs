//! Crash points: the gateway aborts itself (`MLSYSOPS_CRASH_AT`, a test hook: as abrupt as
//! kill -9) at each step of a PUT, an overwrite, a delete, a part re-upload and a completion.
//! After a restart and its startup sweep, every acknowledged write reads back, the interrupted
//! one is either wholly done or not at all (as the step implies), and no shard set is left on
//! any backend that nothing names. Also: both `--durability` settings start, serve and are
//! reported, and a wrong one is refused.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use s3_compat_tests::*;

const CRASH_ENV: &str = "MLSYSOPS_CRASH_AT";
const BUCKET: &str = "crashpoints";
const SIGABRT: i32 = 6;

/// Points at which nothing was committed yet: the write must not have happened.
const BEFORE_COMMIT: &[&str] = &["after-shards"];
/// Points at which no answer can have been sent.
const UNANSWERED: &[&str] = &["after-shards", "after-commit", "before-ack"];
/// Every step of a write that replaces something.
const ALL_POINTS: &[&str] = &["after-shards", "after-commit", "before-ack", "before-reap", "mid-reap"];
/// Every step of a write that replaces nothing (no reaping).
const NO_REAP: &[&str] = &["after-shards", "after-commit", "before-ack"];
/// Every step of a commit that writes no shards.
const NO_SHARDS: &[&str] = &["after-commit", "before-ack", "before-reap", "mid-reap"];

/// The interrupted operation.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// PUT of a new key.
    PutNew,
    /// PUT over an existing key: its old set is reaped.
    Overwrite,
    /// DELETE of an existing key: its set is reaped.
    Delete,
    /// UploadPart of a part number uploaded before: the old part's set is reaped.
    ReplacePart,
    /// CompleteMultipartUpload over an existing key, leaving a part out: the old version's
    /// set and the unused part's are reaped.
    Complete,
}

/// What must be on the server: objects with their bytes and their number of shard sets, and
/// the sets of parts of uploads in progress.
#[derive(Default)]
struct Model {
    objects: BTreeMap<String, (Vec<u8>, usize)>,
    pending_part_sets: usize,
}

impl Model {
    fn sets(&self) -> usize {
        self.objects.values().map(|(_, n)| n).sum::<usize>() + self.pending_part_sets
    }
}

/// What an operation's setup left for it and for the check.
struct Setup {
    old: Option<Vec<u8>>,
    new: Vec<u8>,
    upload: Option<Multipart>,
}

async fn put(c: &Client, key: &str, data: &[u8]) -> bool {
    c.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .is_ok()
}

async fn get(c: &Client, key: &str) -> Option<Vec<u8>> {
    match c.get_object().bucket(BUCKET).key(key).send().await {
        Ok(out) => Some(collect_body(out.body).await),
        Err(e) => {
            let info = err_info(&e);
            assert_eq!(info.code.as_deref(), Some("NoSuchKey"), "GET {key}: {info:?}");
            None
        }
    }
}

impl Op {
    fn points(self) -> &'static [&'static str] {
        match self {
            Op::PutNew => NO_REAP,
            Op::Overwrite | Op::ReplacePart => ALL_POINTS,
            Op::Delete | Op::Complete => NO_SHARDS,
        }
    }

    /// Prepares the operation on a server without a crash point.
    async fn setup(self, c: &Client, key: &str, model: &mut Model) -> Setup {
        let old = random_bytes(150_000);
        let new = random_bytes(MIB + 777);
        match self {
            Op::PutNew => Setup {
                old: None,
                new,
                upload: None,
            },
            Op::Overwrite | Op::Delete => {
                put_bytes(c, BUCKET, key, &old).await;
                model.objects.insert(key.to_owned(), (old.clone(), 1));
                Setup {
                    old: Some(old),
                    new,
                    upload: None,
                }
            }
            Op::ReplacePart => {
                let mut upload = Multipart::start(c, BUCKET, key).await;
                upload.part(1, &old).await;
                model.pending_part_sets += 1;
                Setup {
                    old: Some(old),
                    new,
                    upload: Some(upload),
                }
            }
            Op::Complete => {
                put_bytes(c, BUCKET, key, &old).await;
                model.objects.insert(key.to_owned(), (old.clone(), 1));
                let mut upload = Multipart::start(c, BUCKET, key).await;
                upload.part(1, &new).await;
                upload.part(2, &random_bytes(1000)).await;
                model.pending_part_sets += 2;
                Setup {
                    old: Some(old),
                    new,
                    upload: Some(upload),
                }
            }
        }
    }

    /// Runs the operation on the armed server; whether it was acknowledged.
    async fn run(self, c: &Client, key: &str, setup: &mut Setup) -> bool {
        match self {
            Op::PutNew | Op::Overwrite => put(c, key, &setup.new).await,
            Op::Delete => c.delete_object().bucket(BUCKET).key(key).send().await.is_ok(),
            Op::ReplacePart => {
                let upload = setup.upload.as_mut().expect("upload");
                upload.reconnect(c);
                upload.part_request(1, setup.new.clone()).send().await.is_ok()
            }
            Op::Complete => {
                let upload = setup.upload.as_mut().expect("upload");
                upload.reconnect(c);
                let etag = upload.etag(1).to_owned();
                upload.complete_request(&[(1, &etag)]).send().await.is_ok()
            }
        }
    }

    /// Checks the key after the restart (the write happened iff `done`) and brings the model
    /// to what is on the server now.
    async fn check(self, c: &Client, key: &str, setup: &mut Setup, done: bool, model: &mut Model, case: &str) {
        let got = get(c, key).await;
        match self {
            Op::PutNew | Op::Overwrite => {
                let want = if done { Some(&setup.new) } else { setup.old.as_ref() };
                assert_eq!(got.as_ref().map(Vec::len), want.map(Vec::len), "{case}: {key} length");
                assert!(got.as_ref() == want, "{case}: {key} has other bytes than expected");
                match want {
                    Some(w) => model.objects.insert(key.to_owned(), (w.clone(), 1)),
                    None => model.objects.remove(key),
                };
            }
            Op::Delete => {
                if done {
                    assert!(
                        got.is_none(),
                        "{case}: {key} still there after its delete was committed"
                    );
                    model.objects.remove(key);
                } else {
                    assert!(got.as_ref() == setup.old.as_ref(), "{case}: {key} changed");
                }
            }
            Op::ReplacePart => {
                assert!(got.is_none(), "{case}: {key} exists before its upload completed");
                // Completing the upload shows which part 1 it kept.
                let upload = setup.upload.as_mut().expect("upload");
                upload.reconnect(c);
                let parts = ok(upload.list_parts_request().send().await, "ListParts");
                let etags: Vec<&str> = parts.parts().iter().filter_map(|p| p.e_tag()).collect();
                let want = if done {
                    &setup.new
                } else {
                    setup.old.as_ref().expect("old part")
                };
                assert_eq!(etags, [etag_of(want).as_str()], "{case}: part 1 after restart");
                ok(
                    upload.complete_request(&[(1, etags[0])]).send().await,
                    "CompleteMultipartUpload after restart",
                );
                assert_same_bytes(&get_bytes(c, BUCKET, key).await, want, case);
                model.pending_part_sets -= 1;
                model.objects.insert(key.to_owned(), (want.clone(), 1));
            }
            Op::Complete => {
                assert!(done, "every crash point of a completion is after its commit");
                assert!(
                    got.as_ref() == Some(&setup.new),
                    "{case}: {key} is not the completed upload"
                );
                let upload = setup.upload.as_ref().expect("upload");
                let listed = ok(
                    c.list_multipart_uploads().bucket(BUCKET).send().await,
                    "ListMultipartUploads",
                );
                assert!(
                    listed.uploads().iter().all(|u| u.upload_id() != Some(upload.id())),
                    "{case}: the completed upload is still listed"
                );
                model.pending_part_sets -= 2;
                model.objects.insert(key.to_owned(), (setup.new.clone(), 1));
            }
        }
    }
}

/// What is wrong with the shard sets on the six backends, if anything: every set must be on
/// every backend (4+2 over six), as exactly one non-empty shard file, and there must be `want`.
fn leaks(srv: &TestServer, want: usize) -> Option<String> {
    let sets = srv.all_shard_sets();
    if sets.iter().any(|s| s.len() != want) || sets.windows(2).any(|w| w[0] != w[1]) {
        let counts: Vec<usize> = sets.iter().map(|s| s.len()).collect();
        return Some(format!(
            "shard sets per backend {counts:?}, want the same {want} on each"
        ));
    }
    for (i, backend_sets) in sets.iter().enumerate() {
        for set in backend_sets {
            let dir = srv.backend_dir(i).join("shards").join(set);
            let files: Vec<(String, u64)> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| {
                            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                            (e.file_name().to_string_lossy().into_owned(), len)
                        })
                        .collect()
                })
                .unwrap_or_default();
            if files.len() != 1 || files[0].1 == 0 || files[0].0.contains('#') {
                return Some(format!("{} holds {files:?}, want one non-empty shard", dir.display()));
            }
        }
    }
    None
}

/// Runs each of `ops` to each of its crash points on one server under `durability`, with
/// objects written before any crash that must survive them all.
async fn crash_at_every_point(durability: &str, ops: &[Op]) {
    let mut srv = TestServer::start(
        ServerOptions::new()
            .flag("--durability", durability)
            .flag("--sweep-grace-secs", 0),
    );
    let mut c = srv.client();
    create_bucket(&c, BUCKET).await;
    let mut model = Model::default();
    for (key, size) in [("keep/small", 1234), ("keep/large", 3 * MIB + 5)] {
        let data = random_bytes(size);
        put_bytes(&c, BUCKET, key, &data).await;
        model.objects.insert(key.to_owned(), (data, 1));
    }
    let cases = ops.iter().flat_map(|&op| op.points().iter().map(move |&p| (op, p)));
    for (n, (op, point)) in cases.enumerate() {
        let case = format!("{op:?} crashed at {point} (--durability {durability})");
        let key = format!("case/{n:02}");
        let mut setup = op.setup(&c, &key, &mut model).await;
        // Nothing left for the reaper: a start armed with a reaper's point must not abort
        // in its startup sweep.
        srv.settled().await;
        let quiet = eventually(Duration::from_secs(20), || leaks(&srv, model.sets()).is_none()).await;
        assert!(quiet, "{case}: before the crash: {:?}", leaks(&srv, model.sets()));

        srv.stop();
        srv.options_mut().set_env(CRASH_ENV, Some(point));
        srv.start_again();
        c = srv.client();
        let acked = op.run(&c, &key, &mut setup).await;
        let status = srv.wait_for_exit(Duration::from_secs(60));
        assert_eq!(
            status.signal(),
            Some(SIGABRT),
            "{case}: the process ended with {status}"
        );
        if UNANSWERED.contains(&point) {
            assert!(!acked, "{case}: answered before the process died");
        }

        srv.options_mut().set_env(CRASH_ENV, None);
        srv.start_again();
        c = srv.client();
        let done = !BEFORE_COMMIT.contains(&point);
        op.check(&c, &key, &mut setup, done, &mut model, &case).await;
        for (k, (data, _)) in &model.objects {
            assert_same_bytes(&get_bytes(&c, BUCKET, k).await, data, &format!("{case}: {k}"));
        }
        // The startup sweep ran before the server answered: nothing to wait for.
        assert_eq!(leaks(&srv, model.sets()), None, "{case}: after restart");
    }
}

#[tokio::test]
async fn crash_at_each_step_of_put_overwrite_and_delete_loses_and_leaks_nothing() {
    crash_at_every_point("fsync", &[Op::PutNew, Op::Overwrite, Op::Delete]).await;
}

#[tokio::test]
async fn crash_at_each_step_of_part_reupload_and_completion_loses_and_leaks_nothing() {
    crash_at_every_point("fsync", &[Op::ReplacePart, Op::Complete]).await;
}

#[tokio::test]
async fn relaxed_durability_also_survives_a_crash_of_the_process() {
    crash_at_every_point("relaxed", &[Op::PutNew, Op::Overwrite]).await;
}

/// The Prometheus name of the count of metadata WAL syncs.
const WAL_SYNCS: &str = "mlsysops_meta_wal_syncs_total";

#[tokio::test]
async fn both_durability_settings_serve_and_are_reported() {
    for (opts, want) in [
        (ServerOptions::new().flag("--durability", "relaxed"), "relaxed"),
        (ServerOptions::new().config_toml("durability = \"fsync\"\n"), "fsync"),
        (ServerOptions::new(), "fsync"),
    ] {
        let srv = TestServer::start(opts);
        let c = srv.client();
        create_bucket(&c, BUCKET).await;
        for i in 0..3 {
            let data = random_bytes(10_000 + i);
            put_bytes(&c, BUCKET, "k", &data).await;
            assert_same_bytes(&get_bytes(&c, BUCKET, "k").await, &data, want);
        }
        let log = srv.log_contents();
        assert!(
            log.contains(&format!("durability={want}")),
            "the log does not report durability={want}:\n{log}"
        );
        let syncs = prom_value(&srv.metrics().await, WAL_SYNCS, &[]);
        if want == "fsync" {
            assert!(syncs.is_some_and(|n| n >= 1.0), "{want}: {WAL_SYNCS} = {syncs:?}");
        } else {
            assert_eq!(syncs, Some(0.0), "{want}: no WAL sync when relaxed");
        }
    }
}

#[test]
fn an_unknown_durability_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(binary_path())
        .args(["serve", "--durability", "sometimes", "--data-dir"])
        .arg(dir.path())
        .args(["--s3-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .output()
        .expect("run the gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with --durability sometimes");
    assert!(
        stderr.contains("\"sometimes\" is neither fsync nor relaxed"),
        "stderr: {stderr}"
    );
}
