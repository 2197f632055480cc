//! The gateway over remote S3 backends: six real s3s-fs servers (killed and restarted under
//! it), another mlsysops gateway as the backend of this one, and backends that are
//! misconfigured or unreachable at start. Real processes, real HTTP, real files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use s3_compat_tests::s3s_fs::{backends_toml, free_port, S3sFs};
use s3_compat_tests::*;
use serde_json::Value;

/// The gateway's bucket in these tests.
const BUCKET: &str = "data";
/// The bucket (directory) on every s3s-fs server that the gateway stores shards in.
const STORE: &str = "store";
/// Recovery after restarting backends waits out the circuit breaker, whose backoff grows to
/// tens of seconds while a backend stays down.
const RECOVERY: Duration = Duration::from_secs(90);

/// Pause between polls of a converging check.
const POLL: Duration = Duration::from_millis(250);

/// How long the server log may lag behind an answer (it is pumped from the process's stderr).
const LOG_WAIT: Duration = Duration::from_secs(10);

/// GET as a result: the body, or what the server answered.
async fn try_get(c: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, ErrInfo> {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => match out.body.collect().await {
            Ok(b) => Ok(b.into_bytes().to_vec()),
            Err(e) => Err(ErrInfo {
                status: None,
                code: None,
                message: None,
                detail: format!("reading body: {e}"),
            }),
        },
        Err(e) => Err(err_info(&e)),
    }
}

/// Keys whose GET is not (yet) byte-identical to `want`, with why.
async fn unreadable(c: &Client, bucket: &str, want: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (key, data) in want {
        match try_get(c, bucket, key).await {
            Ok(got) if got == *data => {}
            Ok(got) => bad.push(format!(
                "{key}: {} bytes (md5 {}), want {} bytes (md5 {})",
                got.len(),
                md5_hex(&got),
                data.len(),
                md5_hex(data)
            )),
            Err(e) => bad.push(format!("{key}: {:?} {:?} {:?}", e.status, e.code, e.message)),
        }
    }
    bad
}

async fn assert_all_read(c: &Client, bucket: &str, want: &BTreeMap<String, Vec<u8>>, when: &str) {
    for (key, data) in want {
        let got = get_bytes(c, bucket, key).await;
        assert_same_bytes(&got, data, &format!("{when}: GET {bucket}/{key}"));
    }
}

/// `GET /api/v1/redundancy`, which must answer 200.
async fn redundancy(srv: &TestServer) -> Value {
    let (status, body) = srv.admin("GET", "/api/v1/redundancy").await;
    assert_eq!(status, 200, "GET /api/v1/redundancy: {body}");
    body
}

fn backend_view<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["id"] == id))
        .unwrap_or_else(|| panic!("backend {id} missing from the admin view: {view}"))
}

fn count(v: &Value, what: &str) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{what} is not a count: {v}"))
}

/// Every bucket of the view at full redundancy, and nothing queued.
fn all_full(view: &Value) -> bool {
    view["repair_queue"] == 0
        && view["buckets"]
            .as_object()
            .is_some_and(|bs| bs.values().all(|b| b["degraded"] == 0 && b["unreadable"] == 0))
}

fn s3s_fs_options(servers: &[&S3sFs], ids: &[&str], policy: &str) -> ServerOptions {
    ServerOptions::new()
        .default_policy(policy)
        .config_toml(backends_toml(servers, ids, STORE))
        .flag("--heal-interval-secs", 1)
        .flag("--heal-rate-mib", 0)
}

// ------------------------------------------------------------- six s3s-fs backends

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_s3s_fs_backends_lose_three_servers_and_heal() {
    let ids = ["fs0", "fs1", "fs2", "fs3", "fs4", "fs5"];
    let mut fs: Vec<S3sFs> = ids.iter().map(|id| S3sFs::start(id, &[STORE])).collect();
    let srv = TestServer::start(s3s_fs_options(&fs.iter().collect::<Vec<_>>(), &ids, "ec-4-2"));
    let c = srv.client();
    create_bucket(&c, BUCKET).await;

    // ---- all six up: round trips of multi-block objects
    let mut objects: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, len) in [("empty", 0), ("one-mib-plus-one", MIB + 1), ("five-mib", 5 * MIB)] {
        let data = random_bytes(len);
        put_bytes(&c, BUCKET, key, &data).await;
        objects.insert(key.to_owned(), data);
    }
    let parts = vec![random_bytes(5 * MIB), random_bytes(2 * MIB + 3)];
    put_multipart(&c, BUCKET, "multipart", &parts).await;
    objects.insert("multipart".to_owned(), parts.concat());
    assert_all_read(&c, BUCKET, &objects, "all backends up").await;
    srv.settled().await;

    // The shards are files on the s3s-fs roots: every set has one shard on each server, the
    // six indices distinct and the six files of equal length.
    let per_server: Vec<BTreeMap<String, BTreeMap<usize, u64>>> = fs.iter().map(|f| f.shards(STORE, "")).collect();
    let sets: BTreeSet<String> = per_server.iter().flat_map(|s| s.keys().cloned()).collect();
    assert!(
        sets.len() >= 4,
        "expected at least 4 shard sets (1 MiB+1, 5 MiB, two multipart parts) under <root>/{STORE}/shards, found {sets:?}"
    );
    for set in &sets {
        let mut indices = BTreeSet::new();
        let mut sizes = BTreeSet::new();
        for (f, shards) in fs.iter().zip(&per_server) {
            let here = shards
                .get(set)
                .unwrap_or_else(|| panic!("set {set}: no shard on s3s-fs {} ({})", f.name(), f.root().display()));
            assert_eq!(here.len(), 1, "set {set}: s3s-fs {} holds shards {here:?}", f.name());
            indices.extend(here.keys().copied());
            sizes.extend(here.values().copied());
        }
        assert_eq!(
            indices,
            (0..6).collect(),
            "set {set}: shard indices over the six servers"
        );
        assert_eq!(sizes.len(), 1, "set {set}: shard files differ in length: {sizes:?}");
    }
    // ...and none of them is in the gateway's own data dir.
    let local: Vec<String> = snapshot_files(&srv.data_dir())
        .into_keys()
        .filter(|p| p.contains("shards/") || p.starts_with("backends/"))
        .collect();
    assert!(local.is_empty(), "shard files in the gateway's data dir: {local:?}");

    // ---- fs0 down: reads and writes go on; the missing shard is queued
    fs[0].kill();
    assert_all_read(&c, BUCKET, &objects, "fs0 down").await;
    for (key, len) in [("degraded-a", 3 * MIB + 5), ("degraded-b", MIB)] {
        let data = random_bytes(len);
        put_bytes(&c, BUCKET, key, &data).await;
        objects.insert(key.to_owned(), data);
    }
    assert_all_read(&c, BUCKET, &objects, "fs0 down, after degraded writes").await;
    let view = redundancy(&srv).await;
    assert!(
        count(&view["repair_queue"], "repair_queue") >= 2,
        "two PUTs with fs0 down must queue their fs0 shards: {view}"
    );
    assert!(
        count(&view["buckets"][BUCKET]["degraded"], "degraded") >= 2,
        "two objects written with fs0 down must count as degraded: {view}"
    );
    let down = backend_view(&view, "fs0");
    assert!(
        count(&down["consecutive_failures"], "consecutive_failures") >= 1 && down["last_error"].is_string(),
        "the admin view should show fs0 failing: {down}"
    );
    // Sets whose fs0 shard was never written, with the length of their other shards.
    let missing: BTreeMap<String, u64> = fs[1]
        .shards(STORE, "")
        .into_iter()
        .filter(|(set, _)| !per_server[0].contains_key(set))
        .map(|(set, shards)| (set, *shards.values().next().expect("a shard")))
        .collect();
    assert_eq!(
        missing.len(),
        2,
        "expected exactly the two sets written while fs0 was down to lack their fs0 shard: {missing:?}"
    );

    // ---- fs1 down too: everything still reads, but a write has no quorum (5 of 6)
    fs[1].kill();
    assert_all_read(&c, BUCKET, &objects, "fs0 and fs1 down").await;
    let refused = expect_err(
        c.put_object()
            .bucket(BUCKET)
            .key("no-quorum")
            .body(ByteStream::from(random_bytes(MIB + 7)))
            .send()
            .await,
        503,
        Some("ServiceUnavailable"),
    );
    // The client gets a generic message; the log names the shard counts.
    let msg = refused.message.clone().unwrap_or_default();
    assert!(
        !msg.contains("needed"),
        "internal detail sent to the client: {refused:?}"
    );
    assert!(
        eventually(LOG_WAIT, || srv.log_contents().lines().any(|l| l.contains("5 needed")
            && l.contains("of 6")
            && l.contains("error_id")))
        .await,
        "the log of the 503 of a PUT without write quorum should name the shard counts (of 6, 5 needed)"
    );

    // ---- fs2 down too: three of six shards left, k = 4: reads fail with a clear 503
    fs[2].kill();
    for key in objects.keys().filter(|k| !objects[*k].is_empty()) {
        let err = expect_err(
            c.get_object().bucket(BUCKET).key(key).send().await,
            503,
            Some("ServiceUnavailable"),
        );
        let msg = err.message.clone().unwrap_or_default();
        assert!(!msg.contains("needed"), "internal detail sent to the client: {err:?}");
        assert!(
            eventually(LOG_WAIT, || srv
                .log_contents()
                .lines()
                .any(|l| l.contains(key.as_str())
                    && l.contains("of 6 shards")
                    && l.contains("4 needed")))
            .await,
            "GET {key} with three servers down: the log should name the shard counts (of 6 shards, 4 needed)"
        );
    }
    // The gateway is still up and answering.
    let listed = ok(
        c.list_objects_v2().bucket(BUCKET).send().await,
        "ListObjectsV2 with three backends down",
    );
    let names: BTreeSet<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        objects.keys().cloned().collect(),
        "listing with three backends down"
    );
    redundancy(&srv).await;

    // ---- all three back, on the same roots and ports: everything reads and heals
    for f in &mut fs[..3] {
        f.start_again();
    }
    let deadline = Instant::now() + RECOVERY;
    let last = loop {
        let bad = unreadable(&c, BUCKET, &objects).await;
        if bad.is_empty() || Instant::now() >= deadline {
            break bad;
        }
        tokio::time::sleep(POLL).await;
    };
    assert!(
        last.is_empty(),
        "within {RECOVERY:?} of restarting fs0..fs2 some objects still do not read back: {last:#?}\nbackends: {}",
        redundancy(&srv).await["backends"]
    );
    let deadline = Instant::now() + RECOVERY;
    let view = loop {
        let view = redundancy(&srv).await;
        if all_full(&view) || Instant::now() >= deadline {
            break view;
        }
        tokio::time::sleep(POLL).await;
    };
    assert!(
        all_full(&view),
        "within {RECOVERY:?} of restarting fs0..fs2 the repair queue did not drain: {view:#}"
    );
    assert_eq!(
        view["buckets"][BUCKET]["full"],
        objects.len(),
        "every object at full redundancy: {view:#}"
    );
    let repaired = count(&view["healer"]["shards_repaired"], "healer.shards_repaired");
    assert!(
        repaired >= missing.len() as u64,
        "healer reports {repaired} shards repaired, but {} were missing: {view:#}",
        missing.len()
    );
    let on_fs0 = fs[0].shards(STORE, "");
    for (set, len) in &missing {
        let shards = on_fs0.get(set).unwrap_or_else(|| {
            panic!(
                "set {set}: rebuilt shard not on fs0 ({}): {on_fs0:?}",
                fs[0].root().display()
            )
        });
        assert_eq!(shards.len(), 1, "set {set}: fs0 holds {shards:?}");
        let got = *shards.values().next().expect("a shard");
        assert_eq!(
            got, *len,
            "set {set}: rebuilt shard on fs0 is {got} bytes, its siblings {len}"
        );
    }
    assert_all_read(&c, BUCKET, &objects, "after healing").await;
    // The rebuilt shards are real: with fs1 and fs2 down again, the objects written while fs0
    // was down can only be decoded with their fs0 shard (4 of fs0, fs3, fs4, fs5).
    fs[1].kill();
    fs[2].kill();
    assert_all_read(
        &c,
        BUCKET,
        &objects,
        "after healing, fs1 and fs2 down (needs fs0's rebuilt shards)",
    )
    .await;
}

// ------------------------------------------------------------- a gateway as the backend

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_gateway_serves_as_the_s3_backend() {
    let backing = TestServer::start(ServerOptions::new());
    let bc = backing.client();
    create_bucket(&bc, "backing").await;
    let prefixes = ["gw-a", "gw-b", "gw-c"];
    let toml: String = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "[[backend]]\nid = \"chain{i}\"\nkind = \"s3\"\nendpoint = {:?}\nbucket = \"backing\"\nprefix = {p:?}\n\
                 region = {REGION:?}\naccess_key = {ACCESS_KEY:?}\nsecret_key = {SECRET_KEY:?}\npath_style = true\n\
                 timeout_secs = 30\nmax_retries = 1\n\n",
                backing.endpoint()
            )
        })
        .collect();
    let front = TestServer::start(ServerOptions::new().default_policy("ec-2-1").config_toml(toml));
    let c = front.client();
    create_bucket(&c, BUCKET).await;

    let big = random_bytes(3 * MIB + 17);
    put_bytes(&c, BUCKET, "big", &big).await;
    let parts = vec![random_bytes(5 * MIB), random_bytes(MIB + 1)];
    put_multipart(&c, BUCKET, "multipart", &parts).await;
    assert_same_bytes(&get_bytes(&c, BUCKET, "big").await, &big, "GET big through the chain");
    assert_same_bytes(
        &get_bytes(&c, BUCKET, "multipart").await,
        &parts.concat(),
        "GET multipart through the chain",
    );
    // A range across a block boundary.
    let (from, to) = (MIB - 1000, 2 * MIB + 999);
    let out = ok(
        c.get_object()
            .bucket(BUCKET)
            .key("big")
            .range(format!("bytes={from}-{to}"))
            .send()
            .await,
        "ranged GET big",
    );
    assert_same_bytes(
        &collect_body(out.body).await,
        &big[from..=to],
        "ranged GET big through the chain",
    );

    // The shards are objects of `backing` on the second gateway, under the three prefixes.
    let mut by_set: BTreeMap<String, BTreeMap<usize, (String, i64)>> = BTreeMap::new();
    for p in prefixes {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = ok(
                bc.list_objects_v2()
                    .bucket("backing")
                    .prefix(format!("{p}/"))
                    .set_continuation_token(token.take())
                    .send()
                    .await,
                &format!("ListObjectsV2 backing/{p}/"),
            );
            keys.extend(
                page.contents()
                    .iter()
                    .map(|o| (o.key().unwrap_or_default().to_owned(), o.size().unwrap_or(-1))),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        let shards: Vec<_> = keys
            .iter()
            .filter_map(|(k, size)| {
                let rest = k.strip_prefix(&format!("{p}/shards/"))?;
                let (set, idx) = rest.split_once('/')?;
                Some((set.to_owned(), idx.parse::<usize>().ok()?, *size))
            })
            .collect();
        assert!(
            !shards.is_empty(),
            "no shard objects under backing/{p}/shards/: {keys:?}"
        );
        for (set, idx, size) in shards {
            let prev = by_set.entry(set.clone()).or_default().insert(idx, (p.to_owned(), size));
            assert!(prev.is_none(), "set {set}: shard {idx} stored under two prefixes");
        }
    }
    assert!(
        by_set.len() >= 3,
        "expected at least three shard sets (big, two multipart parts): {by_set:?}"
    );
    for (set, shards) in &by_set {
        assert_eq!(
            shards.keys().copied().collect::<Vec<_>>(),
            vec![0, 1, 2],
            "set {set}: shard indices under the prefixes: {shards:?}"
        );
        let owners: BTreeSet<&str> = shards.values().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            owners.len(),
            3,
            "set {set}: the three shards share prefixes: {shards:?}"
        );
        let sizes: BTreeSet<i64> = shards.values().map(|(_, s)| *s).collect();
        assert_eq!(sizes.len(), 1, "set {set}: shard objects differ in size: {shards:?}");
    }
}

// ------------------------------------------------------------- configuration and start-up

/// Runs `mlsysops serve` with `toml` and `args`, expecting it to exit; returns its exit
/// success and its output.
fn serve_expecting_exit(toml: &str, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).expect("write config");
    let data: PathBuf = dir.path().join("data");
    let mut child = Command::new(binary_path())
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--s3-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .args(args)
        .env("MLSYSOPS_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("MLSYSOPS_ACCESS_KEY", ACCESS_KEY)
        .env("MLSYSOPS_SECRET_KEY", SECRET_KEY)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("out.log")).expect("out log"))
        .stderr(std::fs::File::create(dir.path().join("err.log")).expect("err log"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", binary_path().display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mlsysops") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mlsysops serve with a bad config did not exit within 30 s\n--- stdout ---\n{}\n--- stderr ---\n{}",
                std::fs::read_to_string(dir.path().join("out.log")).unwrap_or_default(),
                std::fs::read_to_string(dir.path().join("err.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(dir.path().join("out.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("err.log")).unwrap_or_default();
    (status.success(), out)
}

#[test]
fn bad_backend_configuration_is_refused_naming_the_backend() {
    let memory = "[[backend]]\nid = \"mem1\"\nkind = \"memory\"\n\n[[backend]]\nid = \"mem2\"\nkind = \"memory\"\n\n";
    let cases = [
        (
            "s3 without bucket",
            "[[backend]]\nid = \"broken-s3\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\n",
            vec!["broken-s3", "`bucket` is required"],
        ),
        (
            "key that does not apply to the kind",
            "[[backend]]\nid = \"broken-mem\"\nkind = \"memory\"\nbucket = \"b\"\n",
            vec!["broken-mem", "`bucket` does not apply"],
        ),
        (
            "misspelt key",
            "[[backend]]\nid = \"typo\"\nkind = \"s3\"\nbukcet = \"b\"\n",
            vec!["bukcet"],
        ),
        (
            "duplicate id",
            "[[backend]]\nid = \"mem1\"\nkind = \"memory\"\n",
            vec!["mem1", "configured twice"],
        ),
    ];
    for (what, table, wants) in cases {
        let toml = format!("{memory}{table}");
        let (success, out) = serve_expecting_exit(&toml, &["--default-policy", "ec-2-1"]);
        assert!(!success, "{what}: mlsysops serve exited successfully\n{out}");
        for want in wants {
            assert!(
                out.contains(want),
                "{what}: the start-up error should mention {want:?}:\n{out}"
            );
        }
        assert!(
            !out.contains("S3 endpoint: "),
            "{what}: the gateway must not start serving:\n{out}"
        );
    }
}

/// Three s3s-fs backends and a fourth on a port nobody listens on.
fn with_unreachable_backend() -> (Vec<S3sFs>, TestServer) {
    let ids = ["fs0", "fs1", "fs2"];
    let fs: Vec<S3sFs> = ids.iter().map(|id| S3sFs::start(id, &[STORE])).collect();
    let dead_port = free_port();
    let dead = format!(
        "[[backend]]\nid = \"nowhere\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{dead_port}\"\n\
         bucket = {STORE:?}\naccess_key = \"x\"\nsecret_key = \"y\"\npath_style = true\ntimeout_secs = 5\nmax_retries = 0\n"
    );
    let toml = format!("{}\n{dead}", backends_toml(&fs.iter().collect::<Vec<_>>(), &ids, STORE));
    let srv = TestServer::start(
        ServerOptions::new()
            .default_policy("ec-2-1")
            .config_toml(toml)
            .flag("--heal-interval-secs", 1)
            .flag("--heal-rate-mib", 0),
    );
    (fs, srv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backend_at_start_is_reported_not_fatal() {
    let (_fs, srv) = with_unreachable_backend();
    let log = srv.log_contents();
    assert!(
        log.lines()
            .any(|l| l.contains("backend=nowhere") && l.contains("marked down")),
        "the log should report the unreachable backend as marked down:\n{log}"
    );
    let view = redundancy(&srv).await;
    let dead = backend_view(&view, "nowhere");
    assert!(
        count(&dead["consecutive_failures"], "consecutive_failures") >= 1 && dead["last_error"].is_string(),
        "the unreachable backend should show its failed probe: {dead}"
    );
    for id in ["fs0", "fs1", "fs2"] {
        let b = backend_view(&view, id);
        assert!(
            b["suspect"] == false && b["consecutive_failures"] == 0,
            "reachable backend {id} shown unhealthy: {b}"
        );
    }
    // Any call to it makes it suspect again (the breaker's window is short, so poll for it
    // while calls keep trying it).
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    let shown = loop {
        i += 1;
        let _ = c
            .put_object()
            .bucket(BUCKET)
            .key(format!("probe-{i}"))
            .body(ByteStream::from(vec![7u8; 1000]))
            .send()
            .await;
        let shown = backend_view(&redundancy(&srv).await, "nowhere").clone();
        if shown["suspect"] == true || Instant::now() >= deadline {
            break shown;
        }
        tokio::time::sleep(POLL).await;
    };
    assert!(
        shown["suspect"] == true,
        "the unreachable backend never showed as suspect: {shown}"
    );
    // Still serving.
    ok(c.list_buckets().send().await, "ListBuckets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_route_around_a_backend_unreachable_at_start() {
    let (_fs, srv) = with_unreachable_backend();
    let c = srv.client();
    create_bucket(&c, BUCKET).await;
    // ec-2-1 needs three of the four backends; with one unreachable every object still has
    // three healthy ones to go to. Eight keys: rendezvous placement puts about three quarters
    // of them on the unreachable backend.
    let mut failed = Vec::new();
    let mut objects = BTreeMap::new();
    for i in 0..8 {
        let key = format!("obj-{i}");
        let data = random_bytes(MIB + 100 * i);
        match c
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
        {
            Ok(_) => {
                objects.insert(key, data);
            }
            Err(e) => {
                let e = err_info(&e);
                failed.push(format!("PUT {key}: {:?} {:?} {:?}", e.status, e.code, e.message));
            }
        }
    }
    for (key, data) in &objects {
        match try_get(&c, BUCKET, key).await {
            Ok(got) if got == *data => {}
            Ok(got) => failed.push(format!("GET {key}: {} bytes, want {}", got.len(), data.len())),
            Err(e) => failed.push(format!("GET {key}: {:?} {:?} {:?}", e.status, e.code, e.message)),
        }
    }
    assert!(
        failed.is_empty(),
        "with one of four backends unreachable, ec-2-1 writes and reads should succeed; {} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
