//! `mlsysops bench` against a real gateway: a functional check of every workload (counts,
//! bytes and objects, never timings).

use std::process::Command;

use s3_compat_tests::*;
use serde_json::Value;

/// Runs `mlsysops bench ARGS --json FILE` against `srv`; returns the parsed report.
fn bench(srv: &TestServer, args: &[&str]) -> Value {
    let json = srv
        .data_dir()
        .with_file_name(format!("bench-{}.json", args.join("_").replace('/', "")));
    let out = Command::new(binary_path())
        .arg("bench")
        .args([
            "--endpoint",
            &srv.endpoint(),
            "--access-key",
            ACCESS_KEY,
            "--quiet",
            "--duration",
            "0",
        ])
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .expect("run mlsysops bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("p99 ms"), "bench {args:?} printed no table:\n{stdout}");
    serde_json::from_slice(&std::fs::read(&json).expect("bench JSON report")).expect("valid JSON")
}

async fn count_objects(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> (usize, Vec<i64>) {
    let mut sizes = Vec::new();
    let mut token = None;
    loop {
        let out = ok(
            c.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await,
            "ListObjectsV2",
        );
        sizes.extend(out.contents().iter().map(|o| o.size().unwrap_or(-1)));
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return (sizes.len(), sizes),
        }
    }
}

#[tokio::test]
async fn every_workload_runs_against_the_gateway() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();

    let r = bench(
        &srv,
        &[
            "--workload",
            "put",
            "--size",
            "64KiB",
            "--ops",
            "20",
            "--concurrency",
            "4",
            "--prefix",
            "p/",
        ],
    );
    assert_eq!(r["ops"]["put"]["ok"], 20, "{r}");
    assert_eq!(r["ops"]["put"]["errors"], 0, "{r}");
    assert_eq!(r["ops"]["put"]["bytes"], 20 * 65536, "{r}");
    assert!(r["ops"]["put"]["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{r}");
    let (n, sizes) = count_objects(&c, "mlsysops-bench", "p/put-").await;
    assert_eq!(n, 20, "objects written by the put workload");
    assert!(sizes.iter().all(|s| *s == 65536), "{sizes:?}");

    let r = bench(
        &srv,
        &[
            "--workload",
            "mixed",
            "--size",
            "10KiB",
            "--objects",
            "10",
            "--ops",
            "40",
            "--prefix",
            "m/",
        ],
    );
    let (gets, puts) = (
        r["ops"]["get"]["ok"].as_u64().unwrap_or(0),
        r["ops"]["put"]["ok"].as_u64().unwrap_or(0),
    );
    assert_eq!(gets + puts, 40, "{r}");
    assert!(gets > 0, "a 0.8 read ratio over 40 ops issued no GET: {r}");
    assert_eq!(count_objects(&c, "mlsysops-bench", "m/obj-").await.0, 10);

    let r = bench(
        &srv,
        &[
            "--workload",
            "get",
            "--size",
            "3KiB",
            "--objects",
            "5",
            "--ops",
            "15",
            "--prefix",
            "g/",
        ],
    );
    assert_eq!(r["ops"]["get"]["ok"], 15, "{r}");
    assert_eq!(r["ops"]["get"]["bytes"], 15 * 3072, "{r}");

    let r = bench(
        &srv,
        &[
            "--workload",
            "list",
            "--size",
            "1",
            "--objects",
            "1500",
            "--ops",
            "2",
            "--prefix",
            "l/",
        ],
    );
    // Each list op walks all pages: 1500 keys are two pages of 1000.
    assert_eq!(r["ops"]["list"]["ok"], 4, "{r}");

    let r = bench(
        &srv,
        &[
            "--workload",
            "multipart",
            "--size",
            "6MiB",
            "--part-size",
            "5MiB",
            "--ops",
            "2",
            "--prefix",
            "mp/",
        ],
    );
    assert_eq!(r["ops"]["multipart"]["ok"], 2, "{r}");
    let (n, sizes) = count_objects(&c, "mlsysops-bench", "mp/").await;
    assert_eq!(n, 2, "multipart objects");
    assert!(sizes.iter().all(|s| *s == 6 << 20), "{sizes:?}");
}

#[tokio::test]
async fn bad_arguments_and_failures_are_reported() {
    let srv = TestServer::start(ServerOptions::new());
    let run = |args: &[&str], secret: &str| {
        Command::new(binary_path())
            .arg("bench")
            .args(["--endpoint", &srv.endpoint(), "--access-key", ACCESS_KEY, "--quiet"])
            .args(args)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .expect("run mlsysops bench")
    };
    for (args, want) in [
        (&["--workload", "delete"][..], "unknown workload"),
        (&["--size", "12XB"][..], "unknown unit"),
        (
            &["--workload", "multipart", "--part-size", "1MiB"][..],
            "at least 5 MiB",
        ),
        (&["--concurrency", "0"][..], "concurrency"),
    ] {
        let out = run(args, SECRET_KEY);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
    // A wrong secret: every operation fails, and the exit status says so.
    let out = run(
        &[
            "--workload",
            "put",
            "--size",
            "1KiB",
            "--ops",
            "3",
            "--duration",
            "0",
            "--bucket",
            "wrongkey",
        ],
        "not-the-secret",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "bench with a wrong secret succeeded: {text}");
    assert!(
        text.contains("SignatureDoesNotMatch") || text.contains("creating bucket"),
        "{text}"
    );
}
