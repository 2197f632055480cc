//! The S3 port against clients that try to hold the gateway's resources without
//! authenticating, or hold more than their share once authenticated, and against the weaker
//! ways of signing: the real binary over real sockets, requests written by hand where the SDK
//! would refuse to send them.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::date_time::{DateTime, Format};
use base64::Engine as _;
use s3_compat_tests::*;
use serde_json::Value;
use sha2::Digest;

// ---------------------------------------------------------------------------------------
// Signing by hand: SigV4 headers and presigned URLs with any expiry, and SigV2.

/// HMAC (RFC 2104) over a 64-byte-block hash (SHA-1 and SHA-256 both are).
fn hmac<D: Digest>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        D::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = D::new().chain_update(&ipad).chain_update(msg).finalize();
    D::new().chain_update(&opad).chain_update(inner).finalize().to_vec()
}

fn now_secs() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("secs")
}

/// (`20250102T030405Z`, `20250102`) of a Unix time.
fn amz_date(secs: i64) -> (String, String) {
    let iso = DateTime::from_secs(secs).fmt(Format::DateTime).expect("format");
    let amz: String = iso.chars().filter(|c| *c != '-' && *c != ':').collect();
    let date = amz[..8].to_owned();
    (amz, date)
}

/// Hex of the SigV4 signature of `string_to_sign` made on `date`.
fn sigv4(date: &str, string_to_sign: &str) -> String {
    let k_date = hmac::<sha2::Sha256>(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    let k_region = hmac::<sha2::Sha256>(&k_date, REGION.as_bytes());
    let k_service = hmac::<sha2::Sha256>(&k_region, b"s3");
    let k_signing = hmac::<sha2::Sha256>(&k_service, b"aws4_request");
    hex::encode(hmac::<sha2::Sha256>(&k_signing, string_to_sign.as_bytes()))
}

fn string_to_sign(amz: &str, scope: &str, canonical: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    )
}

/// Path and query of a presigned GET of `path` signed at `signed_at`, valid `expires` seconds.
fn presigned_get(host: &str, path: &str, signed_at: i64, expires: u64) -> String {
    let (amz, date) = amz_date(signed_at);
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let credential = format!("{ACCESS_KEY}/{scope}");
    // Sorted by name, as the canonical query wants.
    let query = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", amz.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", percent_encode(v, false)))
    .collect::<Vec<_>>()
    .join("&");
    let canonical = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let signature = sigv4(&date, &string_to_sign(&amz, &scope, &canonical));
    format!("{path}?{query}&X-Amz-Signature={signature}")
}

/// The head of a SigV4-signed request with an unsigned payload of `content_length` bytes.
fn signed_head(method: &str, host: &str, path: &str, content_length: usize) -> String {
    let (amz, date) = amz_date(now_secs());
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz}\n\n{signed}\nUNSIGNED-PAYLOAD"
    );
    let signature = sigv4(&date, &string_to_sign(&amz, &scope, &canonical));
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: {amz}\r\n\
         content-length: {content_length}\r\nauthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, \
         SignedHeaders={signed}, Signature={signature}\r\n\r\n"
    )
}

// ---------------------------------------------------------------------------------------
// Raw sockets.

/// Reads one response off `s` (head, and a body of its content-length) or until EOF or
/// `timeout`; returns the text read and whether the connection was closed by the server.
fn read_response(s: &mut TcpStream, timeout: Duration) -> (String, bool) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&got).into_owned(), false);
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return (text.into_owned(), false);
            }
        }
    }
}

/// The status code of a raw response text.
fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

/// The server's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

// ---------------------------------------------------------------------------------------
// Bodies before authentication.

/// What streaming a form POST did.
struct Streamed {
    sent: u64,
    response: String,
    max_rss_kib: u64,
    elapsed: Duration,
}

/// Streams an anonymous multipart/form-data POST with a `file_len`-byte file (generated on
/// the fly) to `addr`, reading the answer meanwhile and sampling the server's memory.
fn stream_form_post(addr: SocketAddr, pid: u32, bucket: &str, file_len: u64) -> Streamed {
    const BOUNDARY: &str = "hardening-boundary-7f3a";
    let preamble = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nbig\r\n--{BOUNDARY}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"big\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let epilogue = format!("\r\n--{BOUNDARY}--\r\n");
    let total = preamble.len() as u64 + file_len + epilogue.len() as u64;
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut reader = s.try_clone().expect("clone socket");
    let read = std::thread::spawn(move || read_response(&mut reader, Duration::from_secs(60)).0);
    let head = format!(
        "POST /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {total}\r\n\r\n{preamble}"
    );
    let mut sent = 0u64;
    let mut max_rss_kib = rss_kib(pid);
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("write timeout");
    if s.write_all(head.as_bytes()).is_ok() {
        let chunk = vec![b'z'; 1 << 20];
        while sent < file_len && start.elapsed() < Duration::from_secs(120) {
            let n = chunk.len().min(usize::try_from(file_len - sent).unwrap_or(usize::MAX));
            if s.write_all(&chunk[..n]).is_err() {
                break;
            }
            sent += n as u64;
            if sent.is_multiple_of(32 << 20) {
                max_rss_kib = max_rss_kib.max(rss_kib(pid));
            }
        }
        if sent == file_len {
            let _ = s.write_all(epilogue.as_bytes());
        }
    }
    let response = read.join().expect("reader thread");
    max_rss_kib = max_rss_kib.max(rss_kib(pid));
    Streamed {
        sent,
        response,
        max_rss_kib,
        elapsed: start.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_form_post_of_a_gib_is_refused_without_being_read() {
    let srv = TestServer::start(ServerOptions::new());
    create_bucket(&srv.client(), "forms").await;
    let pid = srv.pid().expect("running");
    let before = rss_kib(pid);

    // A small one first: the answer is an S3 XML error, and the connection is closed.
    let small = raw_request(
        "POST",
        &format!("{}/forms", srv.endpoint()),
        &[("content-type", "multipart/form-data; boundary=xyz")],
        b"--xyz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--xyz--\r\n".to_vec(),
    )
    .await;
    assert_eq!(small.status, 501, "{}", small.body_text());
    assert_eq!(
        small.error_code().as_deref(),
        Some("NotImplemented"),
        "{}",
        small.body_text()
    );
    assert_eq!(small.header("connection"), Some("close"));

    let addr = srv.addr();
    const GIB: u64 = 1 << 30;
    let run = tokio::task::spawn_blocking(move || stream_form_post(addr, pid, "forms", GIB))
        .await
        .expect("streaming thread");
    eprintln!(
        "form POST: server RSS {before} KiB before, at most {} KiB while streaming; {} bytes taken, answered in {:?}",
        run.max_rss_kib, run.sent, run.elapsed
    );
    assert!(
        run.max_rss_kib < 200 << 10,
        "server RSS reached {} KiB (from {before} KiB) while a form POST streamed",
        run.max_rss_kib
    );
    assert!(run.sent < GIB, "the server took the whole GiB ({} bytes)", run.sent);
    assert!(run.elapsed < Duration::from_secs(30), "took {:?}", run.elapsed);
    assert_eq!(status_of(&run.response), Some(501), "answer: {:?}", run.response);
    assert!(run.response.contains("<Code>NotImplemented</Code>"), "{}", run.response);
    // The server is fine afterwards.
    ok(
        srv.client().list_buckets().send().await,
        "ListBuckets after the form POST",
    );
}

// ---------------------------------------------------------------------------------------
// Slow clients.

/// Whether the server has closed `s` (non-blocking).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // Whatever the server said before closing (nothing, today) is read and dropped.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_half_a_head_or_nothing_are_closed_at_the_header_timeout() {
    const CONNECTIONS: usize = 300;
    let srv = TestServer::start(ServerOptions::new().flag("--header-timeout-secs", 2));
    let start = Instant::now();
    // Most to the S3 port, some to the admin port (it runs the same loop).
    let mut open: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|i| {
            let addr = if i % 30 == 7 { srv.admin_addr() } else { srv.addr() };
            let mut s = TcpStream::connect(addr).expect("connect");
            // One in ten sends nothing at all (the protocol is never known).
            if i % 10 != 0 {
                s.write_all(b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nX-Half: ")
                    .expect("half a head");
            }
            s.set_nonblocking(true).expect("non-blocking");
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = open.iter_mut().map(closed).filter(|c| *c).count();
    assert_eq!(early, 0, "{early} connections closed before the timeout could pass");
    while !open.is_empty() && start.elapsed() < Duration::from_secs(15) {
        open.retain_mut(|s| !closed(s));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{CONNECTIONS} slow connections closed within {:?}", start.elapsed());
    assert!(
        open.is_empty(),
        "{} of {CONNECTIONS} slow connections still open after {:?} (header timeout 2 s)",
        open.len(),
        start.elapsed()
    );
    ok(
        srv.client().list_buckets().send().await,
        "ListBuckets after the slow clients",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_that_stalls_is_cut_off_and_stores_nothing() {
    let srv = TestServer::start(ServerOptions::new().flag("--body-timeout-secs", 2));
    let c = srv.client();
    create_bucket(&c, "slow").await;
    let host = srv.addr().to_string();

    // The hand-made signature is right: a whole body is stored.
    let mut s = TcpStream::connect(srv.addr()).expect("connect");
    s.write_all(signed_head("PUT", &host, "/slow/whole", 5).as_bytes())
        .expect("head");
    s.write_all(b"hello").expect("body");
    let (answer, _) = read_response(&mut s, Duration::from_secs(20));
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    assert_eq!(get_bytes(&c, "slow", "whole").await, b"hello");

    // 64 KiB of a declared MiB, then nothing.
    let mut s = TcpStream::connect(srv.addr()).expect("connect");
    s.write_all(signed_head("PUT", &host, "/slow/stalled", 1 << 20).as_bytes())
        .expect("head");
    s.write_all(&vec![7u8; 64 << 10]).expect("some body");
    let start = Instant::now();
    let (answer, _) = read_response(&mut s, Duration::from_secs(30));
    let waited = start.elapsed();
    assert_eq!(status_of(&answer), Some(400), "{answer}");
    assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(15),
        "cut off after {waited:?} (body timeout 2 s)"
    );
    let (_, closed) = read_response(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection of a cut-off body stays open");
    expect_err(c.head_object().bucket("slow").key("stalled").send().await, 404, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_answered_slow_down_and_closed_at_once() {
    let srv = TestServer::start(
        ServerOptions::new()
            .flag("--max-connections", 4)
            .flag("--header-timeout-secs", 60),
    );
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(srv.addr()).expect("connect"))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    let mut extra = TcpStream::connect(srv.addr()).expect("connect");
    let (answer, closed) = read_response(&mut extra, Duration::from_secs(10));
    assert_eq!(status_of(&answer), Some(503), "{answer:?}");
    assert!(answer.contains("<Code>SlowDown</Code>"), "{answer}");
    let (_, closed_after) = read_response(&mut extra, Duration::from_secs(5));
    assert!(closed || closed_after, "the refused connection stays open");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        start.elapsed()
    );

    // A slot frees when a held connection goes.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let mut s = TcpStream::connect(srv.addr()).expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("request");
        let status = status_of(&read_response(&mut s, Duration::from_secs(10)).0);
        if status != Some(503) || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Served: an anonymous ListBuckets is refused by authentication, not by the cap.
    assert_eq!(status, Some(403));
}

// ---------------------------------------------------------------------------------------
// Memory for bodies.

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_body_memory_budget_answers_slow_down_until_it_frees() {
    let srv = TestServer::start(ServerOptions::new().flag("--body-memory-mib", 1));
    let c = srv.client();
    create_bucket(&c, "mem").await;
    let big = random_bytes(32 << 20);
    put_bytes(&c, "mem", "big", &big).await;

    // A GET whose client reads the head and then nothing: its body holds the whole budget.
    let host = srv.addr().to_string();
    let mut stalled = TcpStream::connect(srv.addr()).expect("connect");
    stalled
        .write_all(signed_head("GET", &host, "/mem/big", 0).as_bytes())
        .expect("GET");
    let mut head = [0u8; 512];
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let n = stalled.read(&mut head).expect("response head");
    assert_eq!(status_of(&String::from_utf8_lossy(&head[..n])), Some(200));

    expect_err(
        c.put_object()
            .bucket("mem")
            .key("small")
            .body(ByteStream::from(vec![1u8; 1000]))
            .send()
            .await,
        503,
        Some("SlowDown"),
    );
    expect_err(
        c.get_object().bucket("mem").key("big").send().await,
        503,
        Some("SlowDown"),
    );
    // Requests without bodies are not held back.
    ok(
        c.head_object().bucket("mem").key("big").send().await,
        "HEAD beside the stalled GET",
    );

    // The stalled client goes: its memory is given back.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let put = c
            .put_object()
            .bucket("mem")
            .key("small")
            .body(ByteStream::from(vec![1u8; 1000]))
            .send()
            .await;
        match put {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(err_info(&e).code.as_deref(), Some("SlowDown"), "{:?}", err_info(&e));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("budget not given back: {:?}", err_info(&e)),
        }
    }
    assert_same_bytes(&get_bytes(&c, "mem", "big").await, &big, "mem/big");
}

// ---------------------------------------------------------------------------------------
// Signatures.

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_beyond_a_week_or_expired_are_refused() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "pre").await;
    put_bytes(&c, "pre", "k", b"presigned").await;
    let host = srv.addr().to_string();
    let get = |path_and_query: String| {
        let url = format!("{}{path_and_query}", srv.endpoint());
        async move { raw_request("GET", &url, &[], Vec::new()).await }
    };

    // The hand-made URLs are right: an hour, and exactly a week, work.
    for expires in [3600, 604_800] {
        let r = get(presigned_get(&host, "/pre/k", now_secs(), expires)).await;
        assert_eq!(r.status, 200, "{expires} s: {}", r.body_text());
        assert_eq!(&r.body[..], b"presigned");
    }
    let r = get(presigned_get(&host, "/pre/k", now_secs(), 8 * 24 * 3600)).await;
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert_eq!(r.error_code().as_deref(), Some("AuthorizationQueryParametersError"));
    // Signed two hours ago for one hour.
    let r = get(presigned_get(&host, "/pre/k", now_secs() - 7200, 3600)).await;
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert_eq!(r.error_code().as_deref(), Some("AccessDenied"), "{}", r.body_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigv2_is_refused_however_well_signed() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "sigv2").await;
    put_bytes(&c, "sigv2", "k", b"secret").await;

    // A correct SigV2 header signature (a captured one replays as is).
    let date = DateTime::from_secs(now_secs()).fmt(Format::HttpDate).expect("date");
    let string_to_sign = format!("GET\n\n\n{date}\n/sigv2/k");
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac::<sha1::Sha1>(SECRET_KEY.as_bytes(), string_to_sign.as_bytes()));
    let auth = format!("AWS {ACCESS_KEY}:{signature}");
    let r = raw_request(
        "GET",
        &format!("{}/sigv2/k", srv.endpoint()),
        &[("date", &date), ("authorization", &auth)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert_eq!(r.error_code().as_deref(), Some("InvalidRequest"), "{}", r.body_text());
    assert!(r.body_text().contains("AWS4-HMAC-SHA256"), "{}", r.body_text());

    // A SigV2 presigned URL.
    let expires = now_secs() + 3600;
    let string_to_sign = format!("GET\n\n\n{expires}\n/sigv2/k");
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac::<sha1::Sha1>(SECRET_KEY.as_bytes(), string_to_sign.as_bytes()));
    let url = format!(
        "{}/sigv2/k?AWSAccessKeyId={ACCESS_KEY}&Expires={expires}&Signature={}",
        srv.endpoint(),
        percent_encode(&signature, false)
    );
    let r = raw_request("GET", &url, &[], Vec::new()).await;
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert_eq!(r.error_code().as_deref(), Some("InvalidRequest"), "{}", r.body_text());
}

// ---------------------------------------------------------------------------------------
// Telemetry.

/// The parts of a bucket's 1-minute statistics that requests move.
async fn bucket_counters(srv: &TestServer, bucket: &str) -> Value {
    let (status, stats) = srv.admin("GET", &format!("/api/v1/telemetry/buckets/{bucket}")).await;
    assert_eq!(status, 200, "{stats}");
    let w = stats["windows"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["window"] == "1m"))
        .unwrap_or_else(|| panic!("no 1m window in {stats}"))
        .clone();
    serde_json::json!({
        "by_operation": w["by_operation"],
        "reads": w["reads"],
        "writes": w["writes"],
        "errors": w["errors"],
        "bytes_in": w["bytes_in"],
        "hot_prefixes": w["hot_prefixes"],
    })
}

/// The counters once one `operation` is recorded (requests are recorded as their response
/// ends, a moment after the client has it).
async fn settled_counters(srv: &TestServer, bucket: &str, operation: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counters = bucket_counters(srv, bucket).await;
        if counters["by_operation"][operation]["count"] == 1 {
            return counters;
        }
        assert!(Instant::now() < deadline, "{operation} never recorded: {counters}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_requests_do_not_move_a_buckets_statistics() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "tel").await;
    put_bytes(&c, "tel", "a/k", b"data").await;
    let before = settled_counters(&srv, "tel", "PutObject").await;

    let base = srv.endpoint();
    for i in 0..10 {
        for (method, path) in [
            ("GET", format!("/tel/a/k{i}")),
            ("PUT", format!("/tel/hot{i}/x")),
            ("GET", "/tel?list-type=2".to_owned()),
            ("DELETE", "/tel/a/k".to_owned()),
        ] {
            let r = raw_request(method, &format!("{base}{path}"), &[], b"x".to_vec()).await;
            assert_eq!(r.status, 403, "anonymous {method} {path}: {}", r.body_text());
        }
    }
    // A declared length is not believed without a signature.
    let r = raw_request(
        "PUT",
        &format!("{base}/tel/a/big"),
        &[("x-amz-decoded-content-length", "1000000000000")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body_text());
    let after = bucket_counters(&srv, "tel").await;
    assert_eq!(before, after, "anonymous requests moved the bucket's statistics");

    // They are counted, under one label and no bucket.
    let text = srv.metrics().await;
    let anonymous = prom_value(
        &text,
        "http_server_request_duration_seconds_count",
        &[("rpc_method", "anonymous")],
    );
    assert_eq!(anonymous, Some(41.0), "{text}");
    let anonymous_bytes = prom_value(
        &text,
        "mlsysops_s3_request_body_bytes_total",
        &[("rpc_method", "anonymous")],
    );
    // (Their bodies are never read: nothing at all, rather than the declared terabyte.)
    assert!(
        anonymous_bytes.unwrap_or(0.0) < 1000.0,
        "anonymous bytes in: {anonymous_bytes:?}\n{text}"
    );
    assert!(
        !text.contains("hot0/"),
        "an anonymous prefix reached the metrics:\n{text}"
    );

    // An authenticated request still moves them.
    get_bytes(&c, "tel", "a/k").await;
    settled_counters(&srv, "tel", "GetObject").await;
}
