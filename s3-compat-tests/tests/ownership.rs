//! Who may sweep which backend: the owner markers, the start-up refusals and their overrides,
//! the grace period, quarantine instead of deletion (local and remote), restore from
//! quarantine, and its retention. Every check is on the real files the backends hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use s3_compat_tests::s3s_fs::{backends_toml, S3sFs};
use s3_compat_tests::*;

const BUCKET: &str = "owned";
const STORE: &str = "store";

/// A gateway on six local backends `b0`..`b5` under `root`, shared by whoever uses the same
/// root.
fn on_shared_backends(root: &Path) -> ServerOptions {
    ServerOptions::new()
        .default_policy("ec-4-2")
        .config_toml(six_local_backends(root, &BTreeMap::<usize, &str>::new()))
}

async fn put_objects(c: &Client, n: usize) -> Vec<(String, Vec<u8>)> {
    create_bucket(c, BUCKET).await;
    let objects: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("k{i}"), random_bytes(100_000 + 77_777 * i)))
        .collect();
    for (k, data) in &objects {
        put_bytes(c, BUCKET, k, data).await;
    }
    objects
}

async fn assert_all_read(c: &Client, objects: &[(String, Vec<u8>)], when: &str) {
    for (k, data) in objects {
        assert_same_bytes(&get_bytes(c, BUCKET, k).await, data, &format!("{when}: {k}"));
    }
}

/// The deployment id in a backend's owner marker.
fn owner_of(backend: &Path) -> String {
    let path = backend.join(".mlsysops/owner.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    v["deployment_id"].as_str().expect("deployment_id").to_owned()
}

/// The files of a snapshot under some `shards/` directory.
fn shard_files(snap: &BTreeMap<String, (u64, String)>) -> BTreeMap<String, (u64, String)> {
    snap.iter()
        .filter(|(p, _)| p.contains("shards/"))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

/// The files of a snapshot in quarantine, named as they were under `shards/`
/// (`[B/].mlsysops/quarantine/RUN/SET/I` -> `[B/]shards/SET/I`).
fn quarantined_files(snap: &BTreeMap<String, (u64, String)>) -> BTreeMap<String, (u64, String)> {
    const Q: &str = ".mlsysops/quarantine/";
    snap.iter()
        .filter_map(|(p, v)| {
            let at = p.find(Q)?;
            let (_run, set_and_index) = p[at + Q.len()..].split_once('/')?;
            Some((format!("{}shards/{set_and_index}", &p[..at]), v.clone()))
        })
        .collect()
}

fn refused(res: Result<TestServer, (SpawnFailure, String)>, what: &str) -> String {
    match res {
        Ok(_) => panic!("{what}: the gateway started"),
        Err((failure, log)) => {
            let status = failure
                .exit_status
                .unwrap_or_else(|| panic!("{what}: the gateway did not exit ({})\n{log}", failure.reason));
            assert!(!status.success(), "{what}: exit status {status}\n{log}");
            log
        }
    }
}

fn assert_says(log: &str, wants: &[&str], what: &str) {
    for want in wants {
        assert!(log.contains(want), "{what}: the message does not say {want:?}\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_backends_is_refused_and_takes_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(on_shared_backends(root.path()));
    let objects = put_objects(&first.client(), 6).await;
    first.settled().await;
    first.stop();
    let first_id = owner_of(&root.path().join("b0"));
    let before = snapshot_files(root.path());
    let shards_before = shard_files(&before);
    assert!(shards_before.len() >= 6 * 6, "{shards_before:?}");

    // Empty data dir, same backends: refused, and not one byte changed.
    let log = refused(
        TestServer::try_start(on_shared_backends(root.path())),
        "a second gateway with empty metadata",
    );
    assert_says(
        &log,
        &[
            "refusing to start",
            "backend \"b0\"",
            "backend \"b5\"",
            &first_id,
            "shard set(s)",
            "--adopt",
        ],
        "second gateway",
    );
    assert_eq!(
        snapshot_files(root.path()),
        before,
        "a refused start changed the backends"
    );
    // Saying the metadata is empty is not enough: the backends are another deployment's.
    let log = refused(
        TestServer::try_start(on_shared_backends(root.path()).switch("--i-know-metadata-is-empty")),
        "a second gateway with --i-know-metadata-is-empty",
    );
    assert_says(&log, &[&first_id, "--adopt"], "second gateway, wrong override");
    assert_eq!(
        snapshot_files(root.path()),
        before,
        "a refused start changed the backends"
    );

    // Adopted: the markers are the second one's; under the default grace period (1 h) every
    // set is too young to be swept.
    let mut second = TestServer::start(on_shared_backends(root.path()).switch("--adopt"));
    let second_id = owner_of(&root.path().join("b3"));
    assert_ne!(second_id, first_id);
    assert_eq!(
        shard_files(&snapshot_files(root.path())),
        shards_before,
        "young sets were touched"
    );
    second.stop();

    // Without a grace period the sets it does not name go to quarantine, byte for byte.
    *second.options_mut() = on_shared_backends(root.path()).flag("--sweep-grace-secs", 0);
    second.start_again();
    second.stop();
    let after = snapshot_files(root.path());
    assert_eq!(shard_files(&after), BTreeMap::new(), "shards left under shards/");
    assert_eq!(
        quarantined_files(&after),
        shards_before,
        "quarantine differs from what was swept"
    );

    // The first gateway finds its backends taken, and says by whom.
    let failure = first
        .try_start_again()
        .expect_err("the first gateway started on taken backends");
    assert!(failure.exit_status.is_some_and(|s| !s.success()), "{failure:?}");
    assert_says(&first.log_contents(), &[&second_id, "--adopt"], "first gateway");
    // Taking them back restores its sets from quarantine.
    *first.options_mut() = on_shared_backends(root.path()).switch("--adopt");
    first.start_again();
    assert_eq!(owner_of(&root.path().join("b0")), first_id);
    assert_all_read(&first.client(), &objects, "after adopting back").await;
    assert_eq!(
        shard_files(&snapshot_files(root.path())),
        shards_before,
        "restored shards"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmarked_backends_are_kept_by_the_metadata_that_names_them() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(on_shared_backends(root.path()));
    let objects = put_objects(&first.client(), 4).await;
    first.settled().await;
    first.stop();
    // As a build before owner markers left them.
    let unmark = || {
        for i in 0..6 {
            std::fs::remove_file(root.path().join(format!("b{i}/.mlsysops/owner.json"))).expect("remove marker");
        }
    };
    unmark();
    let before = snapshot_files(root.path());

    let log = refused(
        TestServer::try_start(on_shared_backends(root.path())),
        "empty metadata on unmarked backends",
    );
    assert_says(
        &log,
        &["backend \"b2\"", "this metadata is empty", "--i-know-metadata-is-empty"],
        "empty metadata",
    );
    assert_eq!(
        snapshot_files(root.path()),
        before,
        "a refused start changed the backends"
    );

    // The metadata that names the sets upgrades in place: markers written, nothing lost.
    first.start_again();
    let first_id = owner_of(&root.path().join("b0"));
    assert_all_read(&first.client(), &objects, "after the upgrade").await;
    first.stop();
    assert_eq!(shard_files(&snapshot_files(root.path())), shard_files(&before));

    // Told the metadata is empty on purpose, a new gateway starts and (all sets being young)
    // moves nothing.
    unmark();
    let mut second = TestServer::start(on_shared_backends(root.path()).switch("--i-know-metadata-is-empty"));
    assert_ne!(owner_of(&root.path().join("b0")), first_id);
    second.stop();
    assert_eq!(shard_files(&snapshot_files(root.path())), shard_files(&before));
}

/// Copies shard set `set` to a new set id on every backend dir in `backends` (`<b>/shards/`):
/// what a crash between writing shards and recording them would leave. Returns the new id.
fn make_orphan(backends: &[PathBuf], set: &str) -> String {
    let orphan = random_set_id();
    for b in backends {
        let from = b.join("shards").join(set);
        let to = b.join("shards").join(&orphan);
        std::fs::create_dir_all(&to).expect("create orphan dir");
        for entry in std::fs::read_dir(&from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
            let entry = entry.expect("dir entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy shard");
        }
    }
    orphan
}

/// A random version-4 UUID in its text form, as set ids are written.
fn random_set_id() -> String {
    let h = hex::encode(random_bytes(16));
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Sets the modification time of `dir` and everything directly in it to `age` ago.
fn age_dir(dir: &Path, age: Duration) {
    let t = SystemTime::now() - age;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(t))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    std::fs::File::open(dir)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
}

/// Whether every backend holds `set` under `shards/` (`Some(true)`), none does
/// (`Some(false)`), or some do (`None`).
fn everywhere(srv: &TestServer, set: &str) -> Option<bool> {
    let on: Vec<bool> = srv.all_shard_sets().iter().map(|s| s.contains(set)).collect();
    if on.iter().all(|&x| x) {
        Some(true)
    } else if on.iter().all(|&x| !x) {
        Some(false)
    } else {
        None
    }
}

/// On how many of the server's backends some quarantine run holds shards of `set`. (Looks at
/// directories only, so it can run while the server moves files.)
fn in_quarantine(srv: &TestServer, set: &str) -> usize {
    srv.backend_dirs()
        .iter()
        .filter(|b| {
            let runs = std::fs::read_dir(b.join(".mlsysops/quarantine")).into_iter().flatten();
            runs.flatten().any(|run| {
                std::fs::read_dir(run.path().join(set))
                    .map(|mut files| files.next().is_some())
                    .unwrap_or(false)
            })
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_orphans_wait_out_the_grace_period_then_go_to_quarantine() {
    let mut srv = TestServer::start(ServerOptions::new().default_policy("ec-4-2"));
    let c = srv.client();
    let objects = put_objects(&c, 3).await;
    srv.settled().await;
    srv.stop();
    let live = srv.distinct_shard_sets();
    let some_set = live.iter().next().expect("a set").clone();
    let dirs = srv.backend_dirs();

    // A fresh orphan is younger than the default grace period (1 h): kept.
    let old = make_orphan(&dirs, &some_set);
    srv.start_again();
    assert_eq!(everywhere(&srv, &old), Some(true), "a young orphan was swept");
    srv.stop();

    // Once it is two hours old it goes to quarantine, on every backend; a new orphan made now
    // is kept at start and moved once it is older than the (15 s) grace period, at run time.
    for d in &dirs {
        age_dir(&d.join("shards").join(&old), Duration::from_secs(7200));
    }
    let young = make_orphan(&dirs, &some_set);
    let made = std::time::Instant::now();
    *srv.options_mut() = srv.options().clone().flag("--sweep-grace-secs", 15);
    srv.start_again();
    assert_eq!(everywhere(&srv, &old), Some(false), "the old orphan is still there");
    assert_eq!(
        in_quarantine(&srv, &old),
        6,
        "the old orphan is not in quarantine everywhere"
    );
    if made.elapsed() < Duration::from_secs(12) {
        assert_eq!(
            everywhere(&srv, &young),
            Some(true),
            "the young orphan was swept at start"
        );
    }
    let moved = eventually(Duration::from_secs(60), || in_quarantine(&srv, &young) == 6).await;
    assert!(moved, "the young orphan was not quarantined once it came of age");
    assert_eq!(everywhere(&srv, &young), Some(false));
    assert_eq!(srv.distinct_shard_sets(), live, "live sets changed");
    assert_all_read(&srv.client(), &objects, "after the sweeps").await;
    srv.stop();

    // A retention of 0 lets the next start delete the quarantine.
    *srv.options_mut() = srv.options().clone().flag("--quarantine-retention-secs", 0);
    srv.start_again();
    for d in &dirs {
        let q = snapshot_files(&d.join(".mlsysops/quarantine"));
        assert!(
            q.is_empty(),
            "{}: quarantine left after its retention: {q:?}",
            d.display()
        );
    }
    assert_eq!(srv.distinct_shard_sets(), live, "live sets changed");
    assert_all_read(&srv.client(), &objects, "after the quarantine was emptied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_orphans_are_moved_to_quarantine_not_deleted() {
    let ids = ["fs0", "fs1", "fs2"];
    let fs: Vec<S3sFs> = ids.iter().map(|id| S3sFs::start(id, &[STORE])).collect();
    let refs: Vec<&S3sFs> = fs.iter().collect();
    let opts = ServerOptions::new()
        .default_policy("ec-2-1")
        .config_toml(backends_toml(&refs, &ids, STORE));
    let mut srv = TestServer::start(opts.clone());
    let c = srv.client();
    let objects = put_objects(&c, 3).await;
    srv.settled().await;
    srv.stop();
    for f in &fs {
        let marker = f.files(STORE, ".mlsysops");
        assert!(marker.contains_key(".mlsysops/owner.json"), "{}: {marker:?}", f.name());
    }

    // An orphan on every server: a copy of a live set under a new id, two hours old.
    let live = fs[0].shards(STORE, "");
    let set = live.keys().next().expect("a set").clone();
    let buckets: Vec<PathBuf> = fs.iter().map(|f| f.root().join(STORE)).collect();
    let orphan = make_orphan(&buckets, &set);
    let mut want = BTreeMap::new();
    for (f, b) in fs.iter().zip(&buckets) {
        age_dir(&b.join("shards").join(&orphan), Duration::from_secs(7200));
        let files = snapshot_files(&b.join("shards").join(&orphan));
        assert!(!files.is_empty());
        want.insert(f.name().to_owned(), files);
    }

    srv.start_again();
    for (f, b) in fs.iter().zip(&buckets) {
        assert!(
            !f.shards(STORE, "").contains_key(&orphan),
            "{}: the orphan is still under shards/",
            f.name()
        );
        let q = quarantined_files(&snapshot_files(b));
        let got: BTreeMap<String, (u64, String)> = q
            .into_iter()
            .filter_map(|(p, v)| Some((p.strip_prefix(&format!("shards/{orphan}/"))?.to_owned(), v)))
            .collect();
        assert_eq!(&got, &want[f.name()], "{}: quarantined copy differs", f.name());
        assert_eq!(f.shards(STORE, "").len(), live.len(), "{}: live sets changed", f.name());
    }
    assert_all_read(&srv.client(), &objects, "after the remote sweep").await;
}
