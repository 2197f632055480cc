//! Hardening against clients and operator mistakes, against the real binary: a reader that
//! stops reading does not pin shard sets forever; a suffix range of an empty object; error
//! answers that name no backend URL or path; secrets refused when empty or short; private
//! data dirs; and a lost master key file that is not silently replaced.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use s3_compat_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY_FILE: &str = "master-keys.json";

/// How long the server log may lag behind an answer (it is pumped from the process's stderr).
const LOG_WAIT: Duration = Duration::from_secs(10);

/// What the gateway says instead of an internal error's detail.
const INTERNAL_MESSAGE: &str = "We encountered an internal error. Please try again.";
const UNAVAILABLE_MESSAGE: &str =
    "Too few storage backends are reachable to serve this request. Please try again later.";

fn presign_cfg() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(600)).expect("presigning config")
}

// ------------------------------------------------------------------ stalled readers

/// A GET whose client reads the headers and then nothing more: its connection stays open, but
/// after the configured stall timeout the response is abandoned and the object's old shard set,
/// replaced meanwhile, is reaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_releases_its_pins_after_the_stall_timeout() {
    const STALL_SECS: u64 = 3;
    let srv = TestServer::start(
        ServerOptions::new()
            .local_backends(3)
            .default_policy("ec-2-1")
            .flag("--response-stall-secs", STALL_SECS),
    );
    let c = srv.client();
    create_bucket(&c, "stall").await;
    // Larger than what the socket buffers, hyper and the reader's channel hold together
    // (a few 4 MiB windows), so the reader task really waits on the client.
    let big = random_bytes(40 << 20);
    put_bytes(&c, "stall", "k", &big).await;
    let old_sets = srv.distinct_shard_sets();
    assert_eq!(old_sets.len(), 1, "one set for one object: {old_sets:?}");

    let get = c
        .get_object()
        .bucket("stall")
        .key("k")
        .presigned(presign_cfg())
        .await
        .expect("presign GET");
    let uri: http::Uri = get.uri().parse().expect("presigned uri");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window: the server's writes back up quickly.
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut conn = socket.connect(srv.addr()).await.expect("connect");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        uri.path_and_query().expect("path").as_str(),
        uri.authority().expect("authority").as_str()
    );
    conn.write_all(request.as_bytes()).await.expect("send GET");
    let mut head = vec![0u8; 2048];
    let n = conn.read(&mut head).await.expect("read response head");
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "GET answered: {head}");

    // Replace the object while the reader holds its set: the old set must stay while pinned.
    put_bytes(&c, "stall", "k", b"replaced").await;
    let new_sets: Vec<String> = srv.distinct_shard_sets().difference(&old_sets).cloned().collect();
    assert_eq!(new_sets.len(), 1, "the overwrite wrote one new set");
    assert!(
        srv.distinct_shard_sets().is_superset(&old_sets),
        "the old set was deleted under a reader that still streams it"
    );
    // The client keeps the connection open and reads nothing; the stall timeout frees the set.
    let reaped = eventually(Duration::from_secs(STALL_SECS + 20), || {
        srv.distinct_shard_sets().is_disjoint(&old_sets)
    })
    .await;
    assert!(
        reaped,
        "the old set is still on the backends {}s after the stall timeout: a stalled reader pins it forever",
        STALL_SECS + 20
    );
    assert!(
        eventually(LOG_WAIT, || srv
            .log_contents()
            .contains("client read nothing for the stall timeout"))
        .await,
        "the abandoned response should be logged"
    );
    // What the client gets when it reads on: the buffered bytes, then the end of an
    // incomplete response, never the whole object.
    let mut rest = Vec::new();
    let read_on = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut rest)).await;
    if let Ok(Ok(_)) = read_on {
        assert!(
            rest.len() < big.len(),
            "a stalled response was completed after its abort"
        );
    }
    assert_eq!(get_bytes(&c, "stall", "k").await, b"replaced");
}

// ------------------------------------------------------------------ ranges

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suffix_range_of_an_empty_object_is_the_empty_object() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "ranges").await;
    put_bytes(&c, "ranges", "empty", b"").await;
    // AWS answers a suffix range of an empty object with the whole (empty) object, 200.
    let out = ok(
        c.get_object()
            .bucket("ranges")
            .key("empty")
            .range("bytes=-5")
            .send()
            .await,
        "GET bytes=-5 of an empty object",
    );
    assert_eq!(out.content_length(), Some(0));
    assert_eq!(
        out.content_range(),
        None,
        "no byte range can be named in an empty object"
    );
    assert!(collect_body(out.body).await.is_empty());
    // Ranges that select nothing are 416 InvalidRange, as before.
    for range in ["bytes=0-0", "bytes=0-", "bytes=-0"] {
        expect_err(
            c.get_object().bucket("ranges").key("empty").range(range).send().await,
            416,
            Some("InvalidRange"),
        );
    }
    // And the server is still there (a panic in debug builds used to drop the connection).
    put_bytes(&c, "ranges", "three", b"abc").await;
    let out = ok(
        c.get_object()
            .bucket("ranges")
            .key("three")
            .range("bytes=-5")
            .send()
            .await,
        "GET bytes=-5 of a 3-byte object",
    );
    assert_eq!(out.content_range(), Some("bytes 0-2/3"));
    assert_eq!(collect_body(out.body).await, b"abc");
}

// ------------------------------------------------------------------ error messages

/// A presigned request's raw answer (status, and the XML error body).
async fn raw_presigned(c: &aws_sdk_s3::Client, put: bool, bucket: &str, key: &str, body: Vec<u8>) -> RawResponse {
    let req = if put {
        let r = c.put_object().bucket(bucket).key(key).presigned(presign_cfg()).await;
        r.expect("presign PUT")
    } else {
        let r = c.get_object().bucket(bucket).key(key).presigned(presign_cfg()).await;
        r.expect("presign GET")
    };
    let headers: Vec<(&str, &str)> = req.headers().collect();
    raw_request(req.method(), req.uri(), &headers, body).await
}

fn request_id(body: &str) -> Option<String> {
    let start = body.find("<RequestId>")? + "<RequestId>".len();
    let end = body[start..].find("</RequestId>")? + start;
    Some(body[start..end].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_from_backends_name_no_url_or_path() {
    let dirs = tempfile::tempdir().expect("temp dir");
    let dead_port = free_port();
    let dead_url = format!("http://127.0.0.1:{dead_port}");
    let local = |i: usize| dirs.path().join(format!("b{i}"));
    let toml = format!(
        "[[backend]]\nid = \"b0\"\nkind = \"local\"\npath = {:?}\n\n\
         [[backend]]\nid = \"b1\"\nkind = \"local\"\npath = {:?}\n\n\
         [[backend]]\nid = \"remote\"\nkind = \"s3\"\nendpoint = \"{dead_url}\"\nbucket = \"store\"\n\
         access_key = \"x\"\nsecret_key = \"y\"\npath_style = true\ntimeout_secs = 2\nmax_retries = 0\n",
        local(0),
        local(1)
    );
    let srv = TestServer::start(ServerOptions::new().default_policy("ec-2-1").config_toml(toml));
    let c = srv.client();
    let leaks = |body: &str| -> Vec<String> {
        [
            dead_url.as_str(),
            &format!("127.0.0.1:{dead_port}"),
            &dirs.path().display().to_string(),
            &srv.data_dir().display().to_string(),
            "shards/",
            "remote",
        ]
        .iter()
        .filter(|s| body.contains(*s))
        .map(|s| (*s).to_owned())
        .collect()
    };

    // A write that needs the dead backend: 503 with a generic message and an error id.
    create_bucket(&c, "wide").await;
    let resp = raw_presigned(&c, true, "wide", "k", b"hello".to_vec()).await;
    let body = resp.body_text();
    assert_eq!(resp.status, 503, "{body}");
    assert_eq!(resp.error_code().as_deref(), Some("ServiceUnavailable"), "{body}");
    assert!(body.contains(UNAVAILABLE_MESSAGE), "{body}");
    assert!(leaks(&body).is_empty(), "the answer names {:?}: {body}", leaks(&body));
    let id = request_id(&body).expect("an error id in <RequestId>");
    // The log keeps the detail, under the same id.
    assert!(
        eventually(LOG_WAIT, || srv
            .log_contents()
            .lines()
            .any(|l| l.contains(&id) && l.contains("shard set")))
        .await,
        "the log should hold the detail under error id {id}"
    );

    // A read whose shards are gone from the local backends: the detail names their paths.
    ok(
        c.create_bucket()
            .bucket("two")
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from("replicate-2@b0,b1"))
                    .build(),
            )
            .send()
            .await,
        "CreateBucket replicate-2 on the local backends",
    );
    put_bytes(&c, "two", "k", b"hello").await;
    for i in 0..2 {
        let shards = local(i).join("shards");
        if shards.exists() {
            std::fs::remove_dir_all(&shards).expect("remove shards");
        }
    }
    let resp = raw_presigned(&c, false, "two", "k", vec![]).await;
    let body = resp.body_text();
    assert!(resp.status >= 500, "{} {body}", resp.status);
    assert!(
        body.contains(UNAVAILABLE_MESSAGE) || body.contains(INTERNAL_MESSAGE),
        "{body}"
    );
    assert!(leaks(&body).is_empty(), "the answer names {:?}: {body}", leaks(&body));
    assert!(request_id(&body).is_some(), "{body}");
}

// ------------------------------------------------------------------ starting the binary

/// `mlsysops serve` on `data_dir` with exactly the environment given, stdout and stderr piped.
fn serve(data_dir: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(binary_path());
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--s3-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--local-backends",
            "3",
        ])
        .args(["--default-policy", "ec-2-1"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", binary_path().display()))
}

/// Waits for the process to exit (within 30 s) and returns its status and stderr.
fn exit_of(mut child: Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            let mut out = String::new();
            use std::io::Read;
            let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
            let _ = child.stdout.take().expect("stdout").read_to_string(&mut out);
            return (status, format!("{err}{out}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway neither started nor exited within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn empty_or_short_secrets_are_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("access_key = \"someone\"\nsecret_key = \"\"\n", "secret_key", "empty"),
        (
            "access_key = \"someone\"\nsecret_key = \"   \"\n",
            "secret_key",
            "empty",
        ),
        (
            "access_key = \"someone\"\nsecret_key = \"short\"\n",
            "secret_key",
            "at least 16",
        ),
        (
            "access_key = \"someone\"\nsecret_key = \" padded-secret-0123456789 \"\n",
            "secret_key",
            "white space",
        ),
        (
            "access_key = \"\"\nsecret_key = \"long-enough-secret-0123\"\n",
            "access_key",
            "empty",
        ),
        (
            "access_key = \"a/b\"\nsecret_key = \"long-enough-secret-0123\"\n",
            "access_key",
            "'/'",
        ),
        ("admin_token = \"\"\n", "admin_token", "empty"),
        ("admin_token = \"tiny\"\n", "admin_token", "at least 16"),
    ];
    for (i, (toml, names, says)) in cases.iter().enumerate() {
        let config = root.path().join(format!("config{i}.toml"));
        std::fs::write(&config, toml).expect("write config");
        let data = root.path().join(format!("data{i}"));
        let (status, output) = exit_of(serve(&data, Some(&config), &[]));
        assert!(!status.success(), "{toml}: the gateway started:\n{output}");
        assert!(
            output.contains(names) && output.contains(says),
            "{toml}: the error should name {names:?} and say {says:?}:\n{output}"
        );
        assert!(!output.contains("S3 endpoint: "), "{toml}: it served:\n{output}");
    }
    // The same checks hold for the environment, which the harness uses.
    let data = root.path().join("data-env");
    let env = [
        ("MLSYSOPS_ACCESS_KEY", "someone"),
        ("MLSYSOPS_SECRET_KEY", "short"),
        ("MLSYSOPS_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let (status, output) = exit_of(serve(&data, None, &env));
    assert!(!status.success() && output.contains("at least 16"), "{output}");
}

/// Starts the gateway and returns once it serves (its admin endpoint line), or panics with its
/// output.
fn serve_until_ready(data_dir: &Path, env: &[(&str, &str)]) -> Child {
    let mut child = serve(data_dir, None, env);
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut ready = false;
        // Read to the end, also after the ready line: a closed pipe would fail its next print.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !ready && line.contains("admin endpoint: ") {
                ready = true;
                let _ = tx.send(Ok(()));
            }
            lines.push(line);
        }
        if !ready {
            let _ = tx.send(Err(lines.join("\n")));
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => child,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway did not start: {other:?}");
        }
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn a_new_data_dir_and_its_secrets_are_private() {
    let root = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = root.path().join("new").join("data");
    // No keys or token given: the first start generates and keeps them.
    let mut child = serve_until_ready(&data, &[]);
    let modes: Vec<(String, u32, u32)> = [
        ("data dir", data.clone(), 0o700),
        ("meta", data.join("meta"), 0o700),
        ("backends", data.join("backends"), 0o700),
        ("credentials", data.join("credentials.json"), 0o600),
        ("admin token", data.join("admin-token"), 0o600),
        ("master keys", data.join(KEY_FILE), 0o600),
    ]
    .into_iter()
    .map(|(what, path, want)| (what.to_owned(), mode(&path), want))
    .collect();
    let _ = child.kill();
    let _ = child.wait();
    for (what, got, want) in modes {
        assert_eq!(got, want, "{what}: mode {got:o}, want {want:o}");
    }
}

// ------------------------------------------------------------------ master keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_master_key_file_stops_the_start_instead_of_making_a_new_key() {
    let mut srv = TestServer::start(ServerOptions::new().encryption("on"));
    let c = srv.client();
    create_bucket(&c, "sealed").await;
    put_bytes(&c, "sealed", "secret", b"under the master key").await;
    srv.stop();
    let key_file = srv.data_dir().join(KEY_FILE);
    let saved = srv.scratch_dir().join(KEY_FILE);
    std::fs::rename(&key_file, &saved).expect("move the key file away");

    let refused = srv.try_start_second_instance();
    assert!(refused.is_err(), "the gateway started without its master key file");
    let said = |log: &str| log.contains(&format!("{KEY_FILE} is missing")) && log.contains("\"sealed\"");
    assert!(
        eventually(LOG_WAIT, || said(&srv.log_contents())).await,
        "the refusal should say which file is missing and what needs it:\n{}",
        srv.log_contents()
    );
    assert!(!key_file.exists(), "a new key file was written");

    // With the file back, everything reads as before.
    std::fs::rename(&saved, &key_file).expect("restore the key file");
    srv.start_again();
    let c = srv.client();
    assert_eq!(get_bytes(&c, "sealed", "secret").await, b"under the master key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_file_is_made_when_nothing_needs_the_old_one() {
    let mut srv = TestServer::start(ServerOptions::new().encryption("off"));
    let c = srv.client();
    create_bucket(&c, "plain").await;
    // An object written and deleted again leaves nothing that the old key wraps.
    put_bytes(&c, "plain", "gone", b"plaintext").await;
    c.delete_object()
        .bucket("plain")
        .key("gone")
        .send()
        .await
        .expect("delete");
    srv.stop();
    std::fs::remove_file(srv.data_dir().join(KEY_FILE)).expect("remove the key file");
    srv.start_again();
    assert!(srv.data_dir().join(KEY_FILE).exists(), "a new key file should be made");
    let c = srv.client();
    put_bytes(&c, "plain", "k", b"plaintext").await;
    assert_eq!(get_bytes(&c, "plain", "k").await, b"plaintext");
}

/// A plaintext object's shard blocks carry a MAC under a key that the master key wraps
/// (keyed integrity): a lost key file makes it unverifiable, so the start is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_master_key_file_stops_the_start_when_plaintext_objects_need_it() {
    let mut srv = TestServer::start(ServerOptions::new().encryption("off"));
    let c = srv.client();
    create_bucket(&c, "plain").await;
    put_bytes(&c, "plain", "k", b"plaintext").await;
    srv.stop();
    let key_file = srv.data_dir().join(KEY_FILE);
    let saved = srv.scratch_dir().join(KEY_FILE);
    std::fs::rename(&key_file, &saved).expect("move the key file away");
    assert!(
        srv.try_start_second_instance().is_err(),
        "the gateway started without the key that its plaintext objects' MACs need"
    );
    let said = |log: &str| log.contains(&format!("{KEY_FILE} is missing")) && log.contains("MAC key");
    assert!(
        eventually(LOG_WAIT, || said(&srv.log_contents())).await,
        "the refusal should name the file and the object that needs it:\n{}",
        srv.log_contents()
    );
    assert!(!key_file.exists(), "a new key file was written");
    std::fs::rename(&saved, &key_file).expect("restore the key file");
    srv.start_again();
    assert_eq!(get_bytes(&srv.client(), "plain", "k").await, b"plaintext");
}
