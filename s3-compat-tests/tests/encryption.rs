//! Encryption at rest, master keys and SSE-C, through aws-sdk-s3 against the real binary.
//!
//! The central claim, "backends hold no plaintext", is checked on the bytes of every file
//! under the backends, with an unencrypted bucket as the control that proves the scan would
//! find plaintext if it were there.

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use md5::Digest;
use s3_compat_tests::*;

const WINDOW: usize = 64;
const KEY_FILE: &str = "master-keys.json";

/// How long the server log may lag behind an answer (it is pumped from the process's stderr).
const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// 1 MiB of big-endian u32 counters: every 64-byte window of it is distinct.
fn counter_pattern(len: usize) -> Vec<u8> {
    (0..len / 4).flat_map(|i| (i as u32).to_be_bytes()).collect()
}

/// Number of places in files under `dir` where a 64-byte window of `pattern` (taken at
/// 64-byte stride) appears. Any run of 127 plaintext bytes contains such a window.
fn plaintext_windows(dir: &Path, pattern: &[u8]) -> usize {
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for off in (0..=pattern.len() - WINDOW).step_by(WINDOW) {
        let k = u64::from_le_bytes(pattern[off..off + 8].try_into().unwrap());
        index.entry(k).or_default().push(off);
    }
    let mut found = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let data = std::fs::read(&path).unwrap_or_default();
            if data.len() < WINDOW {
                continue;
            }
            for i in 0..=data.len() - WINDOW {
                let k = u64::from_le_bytes(data[i..i + 8].try_into().unwrap());
                if let Some(offs) = index.get(&k) {
                    if offs.iter().any(|&o| data[i..i + WINDOW] == pattern[o..o + WINDOW]) {
                        found += 1;
                    }
                }
            }
        }
    }
    found
}

/// An SSE-C key: (base64 key, base64 MD5).
fn customer_key(seed: u8) -> (String, String) {
    let key = [seed; 32];
    (b64(&key), b64(&md5::Md5::digest(key)))
}

fn sse_s3() -> Option<&'static ServerSideEncryption> {
    Some(&ServerSideEncryption::Aes256)
}

async fn get_range(c: &Client, bucket: &str, key: &str, range: &str) -> Vec<u8> {
    let out = ok(
        c.get_object().bucket(bucket).key(key).range(range).send().await,
        &format!("GetObject {bucket}/{key} {range}"),
    );
    collect_body(out.body).await
}

fn key_file(srv: &TestServer) -> serde_json_lite::KeyFile {
    serde_json_lite::read(&srv.data_dir().join(KEY_FILE))
}

/// Just enough JSON handling for the key file, without a JSON dependency in the harness.
mod serde_json_lite {
    use std::path::Path;

    pub struct KeyFile {
        pub ids: Vec<String>,
        pub text: String,
    }

    pub fn read(path: &Path) -> KeyFile {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ids = text
            .split("\"id\"")
            .skip(1)
            .map(|rest| rest.split('"').nth(1).expect("id value").to_owned())
            .collect();
        KeyFile { ids, text }
    }
}

// ---------------------------------------------------------------- no plaintext on backends

#[tokio::test]
async fn backends_hold_no_window_of_the_plaintext() {
    let pattern = counter_pattern(MIB);

    // Control: the same scan finds the pattern in an unencrypted bucket's shards.
    let plain = TestServer::start(ServerOptions::new().encryption("off"));
    let c = plain.client();
    create_bucket(&c, "control").await;
    let put = put_bytes(&c, "control", "pattern", &pattern).await;
    assert_eq!(put.server_side_encryption(), None);
    let found = plaintext_windows(&plain.data_dir().join("backends"), &pattern);
    assert!(
        found >= pattern.len() / WINDOW / 2,
        "control: the scan found only {found} plaintext windows in an unencrypted bucket's shards"
    );

    let srv = TestServer::start(ServerOptions::new().encryption("on"));
    let c = srv.client();
    create_bucket(&c, "secret").await;
    let put = put_bytes(&c, "secret", "pattern", &pattern).await;
    assert_eq!(put.server_side_encryption(), sse_s3());
    // Replicas would be whole copies of the block: they must be ciphertext too.
    ok(
        c.create_bucket()
            .bucket("mirrored")
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from("replicate-3"))
                    .build(),
            )
            .send()
            .await,
        "CreateBucket mirrored",
    );
    put_bytes(&c, "mirrored", "pattern", &pattern).await;
    let (key, md5) = customer_key(9);
    ok(
        c.put_object()
            .bucket("secret")
            .key("sse-c")
            .body(ByteStream::from(pattern.clone()))
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key)
            .sse_customer_key_md5(&md5)
            .send()
            .await,
        "PutObject SSE-C",
    );
    srv.settled().await;
    assert_eq!(srv.distinct_shard_sets().len(), 3);
    assert_eq!(
        plaintext_windows(&srv.data_dir().join("backends"), &pattern),
        0,
        "a backend holds plaintext of an encrypted object"
    );
    assert_same_bytes(
        &get_bytes(&c, "secret", "pattern").await,
        &pattern,
        "GET secret/pattern",
    );
    assert_same_bytes(
        &get_bytes(&c, "mirrored", "pattern").await,
        &pattern,
        "GET mirrored/pattern",
    );
}

// ---------------------------------------------------------------- round trips

#[tokio::test]
async fn encrypted_round_trips_at_block_boundaries_and_ranges() {
    const BS: usize = 4096;
    let srv = TestServer::start(ServerOptions::new().encryption("on").block_size(BS as u64));
    let c = srv.client();
    create_bucket(&c, "enc").await;
    for size in [0, 1, BS - 1, BS, BS + 1, 3 * BS, 3 * BS + 17] {
        let data = random_bytes(size);
        let key = format!("size-{size}");
        put_bytes(&c, "enc", &key, &data).await;
        assert_same_bytes(&get_bytes(&c, "enc", &key).await, &data, &key);
        let head = ok(c.head_object().bucket("enc").key(&key).send().await, "HeadObject");
        assert_eq!(head.content_length(), Some(size as i64));
        assert_eq!(head.server_side_encryption(), sse_s3());
        assert_eq!(head.e_tag(), Some(etag_of(&data).as_str()));
    }

    // 24 full blocks and one of 1696 bytes; every stored block carries a 16-byte tag, so
    // a shard block of a full block is (4096 + 16) / 4 = 1028 -> 1088 aligned, + 4 CRC.
    let data = random_bytes(100_000);
    let before = srv.distinct_shard_sets();
    put_bytes(&c, "enc", "big", &data).await;
    srv.settled().await;
    let after = srv.distinct_shard_sets();
    let set = after.difference(&before).next().expect("new shard set").clone();
    for dir in srv.backend_dirs() {
        let set_dir = dir.join("shards").join(&set);
        for f in std::fs::read_dir(&set_dir).unwrap() {
            let len = f.unwrap().metadata().unwrap().len();
            assert_eq!(len, 24 * (1088 + 4) + ((1696u64 + 16) / 4).div_ceil(64) * 64 + 4);
        }
    }
    for (a, b) in [
        (0usize, 0usize),
        (BS - 10, BS + 10),
        (BS, 2 * BS - 1),
        (1, 99_998),
        (5 * BS - 1, 9 * BS + 1),
        (99_999, 99_999),
        (98_000, 99_999),
    ] {
        let got = get_range(&c, "enc", "big", &format!("bytes={a}-{b}")).await;
        assert_same_bytes(&got, &data[a..=b], &format!("range {a}-{b}"));
    }
    let got = get_range(&c, "enc", "big", "bytes=-5000").await;
    assert_same_bytes(&got, &data[95_000..], "suffix range");
}

#[tokio::test]
async fn multipart_and_part_copy_with_encryption() {
    let srv = TestServer::start(ServerOptions::new().encryption("on"));
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let source = random_bytes(3 * MIB + 5);
    put_bytes(&c, "enc", "source", &source).await;
    let parts = [random_bytes(5 * MIB), random_bytes(5 * MIB + 3)];
    let up = ok(
        c.create_multipart_upload().bucket("enc").key("mp").send().await,
        "CreateMultipartUpload",
    );
    assert_eq!(up.server_side_encryption(), sse_s3());
    let id = up.upload_id().unwrap().to_owned();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(
            c.upload_part()
                .bucket("enc")
                .key("mp")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(p.clone()))
                .send()
                .await,
            "UploadPart",
        );
        assert_eq!(out.server_side_encryption(), sse_s3());
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let copied = ok(
        c.upload_part_copy()
            .bucket("enc")
            .key("mp")
            .upload_id(&id)
            .part_number(3)
            .copy_source(copy_source("enc", "source"))
            .copy_source_range("bytes=1000-2000999")
            .send()
            .await,
        "UploadPartCopy",
    );
    done.push(
        CompletedPart::builder()
            .part_number(3)
            .e_tag(copied.copy_part_result().unwrap().e_tag().unwrap())
            .build(),
    );
    ok(
        c.complete_multipart_upload()
            .bucket("enc")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await,
        "CompleteMultipartUpload",
    );
    let mut want = parts.concat();
    want.extend_from_slice(&source[1000..2_001_000]);
    assert_same_bytes(&get_bytes(&c, "enc", "mp").await, &want, "multipart object");
    let a = 5 * MIB - 100;
    let b = 10 * MIB + 200;
    let got = get_range(&c, "enc", "mp", &format!("bytes={a}-{b}")).await;
    assert_same_bytes(&got, &want[a..=b], "range across parts");
}

#[tokio::test]
async fn copies_between_encrypted_and_plain_buckets() {
    let mut srv = TestServer::start(ServerOptions::new().encryption("off"));
    let c = srv.client();
    create_bucket(&c, "plain").await;
    srv.stop();
    // Buckets keep the setting they were created with: only new buckets change.
    srv.options_mut().encryption = Some("on".into());
    srv.start_again();
    let c2 = srv.client();
    create_bucket(&c2, "enc").await;
    let data = random_bytes(2 * MIB + 77);
    let put = put_bytes(&c2, "plain", "a", &data).await;
    assert_eq!(put.server_side_encryption(), None, "plain bucket became encrypted");

    let out = ok(
        c2.copy_object()
            .bucket("enc")
            .key("b")
            .copy_source(copy_source("plain", "a"))
            .send()
            .await,
        "CopyObject plain -> enc",
    );
    assert_eq!(out.server_side_encryption(), sse_s3());
    let out = ok(
        c2.copy_object()
            .bucket("plain")
            .key("c")
            .copy_source(copy_source("enc", "b"))
            .send()
            .await,
        "CopyObject enc -> plain",
    );
    assert_eq!(out.server_side_encryption(), None);
    for (bucket, key, sse) in [("plain", "a", None), ("enc", "b", sse_s3()), ("plain", "c", None)] {
        assert_same_bytes(&get_bytes(&c2, bucket, key).await, &data, &format!("{bucket}/{key}"));
        let head = ok(c2.head_object().bucket(bucket).key(key).send().await, "HeadObject");
        assert_eq!(head.server_side_encryption(), sse, "{bucket}/{key}");
        assert_eq!(head.e_tag(), Some(etag_of(&data).as_str()));
    }
    // A request can ask for SSE-S3 in a plain bucket.
    let out = ok(
        c2.put_object()
            .bucket("plain")
            .key("asked")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        "PutObject with x-amz-server-side-encryption",
    );
    assert_eq!(out.server_side_encryption(), sse_s3());
    assert_same_bytes(&get_bytes(&c2, "plain", "asked").await, &data, "plain/asked");
    let _ = c;
}

#[tokio::test]
async fn bucket_encryption_switches_new_objects() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "switch").await;
    let e = expect_err(
        c.get_bucket_encryption().bucket("switch").send().await,
        404,
        Some("ServerSideEncryptionConfigurationNotFoundError"),
    );
    assert!(e.message.is_some());
    let data = counter_pattern(256 * 1024);
    put_bytes(&c, "switch", "before", &data).await;
    let per_plain_object = plaintext_windows(&srv.data_dir().join("backends"), &data);
    assert!(
        per_plain_object >= data.len() / WINDOW,
        "control found {per_plain_object}"
    );

    let config = |alg: ServerSideEncryption| {
        ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(
                        ServerSideEncryptionByDefault::builder()
                            .sse_algorithm(alg)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
            .unwrap()
    };
    expect_err(
        c.put_bucket_encryption()
            .bucket("switch")
            .server_side_encryption_configuration(config(ServerSideEncryption::AwsKms))
            .send()
            .await,
        501,
        Some("NotImplemented"),
    );
    ok(
        c.put_bucket_encryption()
            .bucket("switch")
            .server_side_encryption_configuration(config(ServerSideEncryption::Aes256))
            .send()
            .await,
        "PutBucketEncryption",
    );
    let got = ok(
        c.get_bucket_encryption().bucket("switch").send().await,
        "GetBucketEncryption",
    );
    let rule = &got.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm(),
        &ServerSideEncryption::Aes256
    );
    let put = put_bytes(&c, "switch", "after", &data).await;
    assert_eq!(put.server_side_encryption(), sse_s3());

    ok(
        c.delete_bucket_encryption().bucket("switch").send().await,
        "DeleteBucketEncryption",
    );
    expect_err(c.get_bucket_encryption().bucket("switch").send().await, 404, None);
    let put = put_bytes(&c, "switch", "later", &data).await;
    assert_eq!(put.server_side_encryption(), None);

    // Existing objects keep how they were stored; all read back.
    for (key, sse) in [("before", None), ("after", sse_s3()), ("later", None)] {
        let head = ok(c.head_object().bucket("switch").key(key).send().await, "HeadObject");
        assert_eq!(head.server_side_encryption(), sse, "{key}");
        assert_same_bytes(&get_bytes(&c, "switch", key).await, &data, key);
    }
    // Two plaintext objects show the pattern (in data shards, and with this pattern in
    // parity too); the encrypted one adds nothing.
    let windows = plaintext_windows(&srv.data_dir().join("backends"), &data);
    assert_eq!(windows, 2 * per_plain_object, "the encrypted object shows plaintext");
}

#[tokio::test]
async fn altered_ciphertext_is_refused_not_returned() {
    let srv = TestServer::start(ServerOptions::new().encryption("on").block_size(4096));
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let data = random_bytes(3 * 4096);
    put_bytes(&c, "enc", "obj", &data).await;
    srv.settled().await;
    // Flip a bit in block 1 of three shards and fix each shard block's CRC32C, as a backend
    // that rewrites data on purpose would: only the GCM tag can notice. One rewritten shard is
    // read around (tests/integrity.rs); three are more than the parity of 4+2 covers.
    let set = srv.distinct_shard_sets().into_iter().next().unwrap();
    for idx in ["0", "2", "4"] {
        let shard = srv
            .backend_dirs()
            .into_iter()
            .map(|d| d.join("shards").join(&set).join(idx))
            .find(|p| p.exists())
            .expect("the shard on some backend");
        let mut bytes = std::fs::read(&shard).unwrap();
        let stored = 1088 + 4; // (4096 + 16) / 4 = 1028 -> 1088 aligned, + CRC
        let block = &mut bytes[stored..2 * stored];
        block[10] ^= 0x01;
        let crc = crc32c::crc32c(&block[..stored - 4]);
        block[stored - 4..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&shard, &bytes).unwrap();
    }

    let e = expect_err(
        c.get_object().bucket("enc").key("obj").send().await,
        500,
        Some("InternalError"),
    );
    // The client gets a generic message; the log says what failed.
    assert!(
        !e.message.unwrap_or_default().contains("block"),
        "internal detail sent to the client"
    );
    assert!(
        eventually(LOG_WAIT, || srv.log_contents().lines().any(|l| l.contains("block 1")
            && l.contains("failed authentication")
            && l.contains("error_id")))
        .await,
        "the log should say which block failed authentication"
    );
    // Blocks the change does not touch still read.
    assert_same_bytes(
        &get_range(&c, "enc", "obj", "bytes=0-4095").await,
        &data[..4096],
        "block 0",
    );
    assert_same_bytes(
        &get_range(&c, "enc", "obj", "bytes=8192-12287").await,
        &data[8192..],
        "block 2",
    );
}

// ---------------------------------------------------------------- master keys

#[tokio::test]
async fn master_key_survives_restart_and_rotation() {
    let mut srv = TestServer::start(ServerOptions::new().encryption("on"));
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let one = random_bytes(MIB + 3);
    put_bytes(&c, "enc", "one", &one).await;
    let parts = [random_bytes(5 * MIB), random_bytes(1000)];
    let up = ok(
        c.create_multipart_upload().bucket("enc").key("mp").send().await,
        "Create",
    );
    let id = up.upload_id().unwrap().to_owned();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let out = ok(
            c.upload_part()
                .bucket("enc")
                .key("mp")
                .upload_id(&id)
                .part_number(i as i32 + 1)
                .body(ByteStream::from(p.clone()))
                .send()
                .await,
            "UploadPart",
        );
        done.push(
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    ok(
        c.complete_multipart_upload()
            .bucket("enc")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await,
        "Complete",
    );
    // An upload still in progress: its part's key lives in the parts table.
    let open = ok(
        c.create_multipart_upload().bucket("enc").key("open").send().await,
        "Create",
    );
    let open_id = open.upload_id().unwrap().to_owned();
    let open_part = random_bytes(4321);
    let p1 = ok(
        c.upload_part()
            .bucket("enc")
            .key("open")
            .upload_id(&open_id)
            .part_number(1)
            .body(ByteStream::from(open_part.clone()))
            .send()
            .await,
        "UploadPart open",
    );

    srv.restart();
    let c = srv.client();
    assert_same_bytes(&get_bytes(&c, "enc", "one").await, &one, "after restart");

    // A running gateway holds the metadata store: rotation must refuse, not corrupt.
    let out = srv.run_admin(&["rotate-key"]);
    assert!(!out.status.success(), "rotate-key ran against a live gateway");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locked"), "unclear error: {err}");
    let before = key_file(&srv);
    assert_eq!(before.ids.len(), 1, "a refused rotation changed the key file");

    srv.stop();
    let out = srv.run_admin(&["rotate-key", "--retire-old"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rotate-key failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rewrapped 4 data keys (2 object manifests, 1 multipart parts)"),
        "unexpected report: {stdout}"
    );
    let after = key_file(&srv);
    assert_eq!(after.ids.len(), 1, "old key not retired: {:?}", after.ids);
    assert_ne!(after.ids, before.ids);
    assert!(!after.text.contains(&before.ids[0]));

    // Only the new key exists now, and everything still reads.
    srv.start_again();
    let c = srv.client();
    assert_same_bytes(&get_bytes(&c, "enc", "one").await, &one, "after rotation");
    assert_same_bytes(
        &get_bytes(&c, "enc", "mp").await,
        &parts.concat(),
        "multipart after rotation",
    );
    ok(
        c.complete_multipart_upload()
            .bucket("enc")
            .key("open")
            .upload_id(&open_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .e_tag(p1.e_tag().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await,
        "Complete after rotation",
    );
    assert_same_bytes(
        &get_bytes(&c, "enc", "open").await,
        &open_part,
        "part rewrapped in flight",
    );

    // A second rotation has nothing old to rewrap but the new writes' keys.
    put_bytes(&c, "enc", "two", &one).await;
    srv.stop();
    let out = srv.run_admin(&["rotate-key"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("rewrapped 5 data keys"),
        "{stdout}"
    );
    assert_eq!(key_file(&srv).ids.len(), 2, "without --retire-old the old key stays");
}

#[tokio::test]
async fn wrong_or_missing_master_key_is_a_clear_error() {
    let mut srv = TestServer::start(ServerOptions::new().encryption("on"));
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let data = random_bytes(300_000);
    put_bytes(&c, "enc", "obj", &data).await;
    srv.stop();

    // Same id, other key bytes: unwrapping fails and must say so, never return garbage.
    let path = srv.data_dir().join(KEY_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let real_key = text
        .split("\"key\"")
        .nth(1)
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_owned();
    std::fs::write(&path, text.replace(&real_key, &b64(&[0x42; 32]))).unwrap();
    srv.start_again();
    let c = srv.client();
    let e = expect_err(
        c.get_object().bucket("enc").key("obj").send().await,
        500,
        Some("InternalError"),
    );
    assert!(
        !e.message.unwrap_or_default().contains("unwrap"),
        "internal detail sent to the client"
    );
    assert!(
        eventually(LOG_WAIT, || srv
            .log_contents()
            .lines()
            .any(|l| l.contains("does not unwrap")
                && l.contains("enc/obj")
                && l.contains("error_id")))
        .await,
        "the log should say which object's key does not unwrap"
    );
    expect_err(
        c.get_object().bucket("enc").key("obj").range("bytes=5-10").send().await,
        500,
        Some("InternalError"),
    );
    // The process lives on and serves everything else.
    let fresh = random_bytes(5000);
    put_bytes(&c, "enc", "fresh", &fresh).await;
    assert_same_bytes(&get_bytes(&c, "enc", "fresh").await, &fresh, "write under the new key");
    assert!(srv.is_running());
    srv.stop();

    // The key file lost: no new key is made over objects that need the old one; the start is
    // refused naming the missing file (hardening_misc.rs has the whole story).
    std::fs::remove_file(&path).unwrap();
    assert!(srv.try_start_second_instance().is_err(), "started without the key file");
    assert!(
        eventually(LOG_WAIT, || srv
            .log_contents()
            .contains(&format!("{KEY_FILE} is missing")))
        .await,
        "the refusal should name the missing key file"
    );
}

#[tokio::test]
async fn master_keys_from_the_environment_rotate() {
    let k1 = b64(&[1; 32]);
    let k2 = b64(&[2; 32]);
    let mut srv = TestServer::start(ServerOptions::new().encryption("on").env("MLSYSOPS_MASTER_KEY", &k1));
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let data = random_bytes(70_000);
    put_bytes(&c, "enc", "obj", &data).await;
    assert!(
        !srv.data_dir().join(KEY_FILE).exists(),
        "env keys must not create the key file"
    );

    // New key first (active), old key kept for reading; then rewrap and drop the old one.
    srv.stop();
    *srv.options_mut() = srv
        .options()
        .clone()
        .env("MLSYSOPS_MASTER_KEY", &format!("new={k2},{k1}"));
    srv.start_again();
    assert_same_bytes(
        &get_bytes(&srv.client(), "enc", "obj").await,
        &data,
        "old key still listed",
    );
    srv.stop();
    let out = srv.run_admin(&["rotate-key"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("rewrapped 1 data keys"),
        "{stdout}"
    );
    *srv.options_mut() = srv.options().clone().env("MLSYSOPS_MASTER_KEY", &format!("new={k2}"));
    srv.start_again();
    assert_same_bytes(
        &get_bytes(&srv.client(), "enc", "obj").await,
        &data,
        "after env rotation",
    );

    srv.stop();
    *srv.options_mut() = srv.options().clone().env("MLSYSOPS_MASTER_KEY", &b64(&[3; 32]));
    srv.start_again();
    expect_err(
        srv.client().get_object().bucket("enc").key("obj").send().await,
        500,
        Some("InternalError"),
    );
    assert!(
        eventually(LOG_WAIT, || srv
            .log_contents()
            .lines()
            .any(|l| l.contains("\"new\"") && l.contains("error_id")))
        .await,
        "the log should name the missing key id"
    );
}

// ---------------------------------------------------------------- SSE-C

#[tokio::test]
async fn sse_c_needs_the_right_key() {
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    create_bucket(&c, "ssec").await;
    let (ka, ma) = customer_key(1);
    let (kb, mb) = customer_key(2);
    let data = counter_pattern(MIB);
    let put = ok(
        c.put_object()
            .bucket("ssec")
            .key("o")
            .body(ByteStream::from(data.clone()))
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        "PutObject SSE-C",
    );
    assert_eq!(put.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(put.sse_customer_key_md5(), Some(ma.as_str()));
    assert_eq!(
        plaintext_windows(&srv.data_dir().join("backends"), &data),
        0,
        "SSE-C shards hold plaintext"
    );

    let got = ok(
        c.get_object()
            .bucket("ssec")
            .key("o")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        "GetObject right key",
    );
    assert_eq!(got.sse_customer_key_md5(), Some(ma.as_str()));
    assert_same_bytes(&collect_body(got.body).await, &data, "SSE-C GET");
    let got = ok(
        c.get_object()
            .bucket("ssec")
            .key("o")
            .range("bytes=1048000-1048575")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        "ranged GetObject right key",
    );
    assert_same_bytes(&collect_body(got.body).await, &data[1_048_000..], "SSE-C range");

    expect_err(
        c.get_object()
            .bucket("ssec")
            .key("o")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&kb)
            .sse_customer_key_md5(&mb)
            .send()
            .await,
        403,
        Some("AccessDenied"),
    );
    expect_err(
        c.get_object().bucket("ssec").key("o").send().await,
        400,
        Some("InvalidRequest"),
    );
    expect_err(
        c.get_object()
            .bucket("ssec")
            .key("o")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&mb)
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );

    let head = ok(
        c.head_object()
            .bucket("ssec")
            .key("o")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        "HeadObject right key",
    );
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(head.sse_customer_key_md5(), Some(ma.as_str()));
    expect_err(c.head_object().bucket("ssec").key("o").send().await, 400, None);
    expect_err(
        c.head_object()
            .bucket("ssec")
            .key("o")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&kb)
            .sse_customer_key_md5(&mb)
            .send()
            .await,
        403,
        None,
    );

    // A key sent for an object stored without one is refused, not ignored.
    put_bytes(&c, "ssec", "plain", b"hello").await;
    expect_err(
        c.get_object()
            .bucket("ssec")
            .key("plain")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        400,
        Some("InvalidRequest"),
    );

    // Copy: the source key opens, the destination key seals.
    expect_err(
        c.copy_object()
            .bucket("ssec")
            .key("copy")
            .copy_source(copy_source("ssec", "o"))
            .send()
            .await,
        400,
        Some("InvalidRequest"),
    );
    ok(
        c.copy_object()
            .bucket("ssec")
            .key("copy")
            .copy_source(copy_source("ssec", "o"))
            .copy_source_sse_customer_algorithm("AES256")
            .copy_source_sse_customer_key(&ka)
            .copy_source_sse_customer_key_md5(&ma)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&kb)
            .sse_customer_key_md5(&mb)
            .send()
            .await,
        "CopyObject re-keyed",
    );
    let got = ok(
        c.get_object()
            .bucket("ssec")
            .key("copy")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&kb)
            .sse_customer_key_md5(&mb)
            .send()
            .await,
        "GetObject copy with new key",
    );
    assert_same_bytes(&collect_body(got.body).await, &data, "re-keyed copy");
    expect_err(
        c.get_object()
            .bucket("ssec")
            .key("copy")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        403,
        Some("AccessDenied"),
    );
}

#[tokio::test]
async fn sse_c_multipart_upload() {
    let srv = TestServer::start(ServerOptions::new().encryption("on"));
    let c = srv.client();
    create_bucket(&c, "ssec").await;
    let (ka, ma) = customer_key(5);
    let (kb, mb) = customer_key(6);
    let up = ok(
        c.create_multipart_upload()
            .bucket("ssec")
            .key("mp")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        "CreateMultipartUpload SSE-C",
    );
    assert_eq!(up.sse_customer_key_md5(), Some(ma.as_str()));
    let id = up.upload_id().unwrap().to_owned();
    let parts = [random_bytes(5 * MIB), random_bytes(777)];
    let part = |n: i32, body: Vec<u8>| {
        c.upload_part()
            .bucket("ssec")
            .key("mp")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(body))
    };
    // Refusals come before the body is read; a small body keeps the client from still
    // writing when the server answers and closes (EPIPE instead of the 400).
    expect_err(part(1, vec![1; 1024]).send().await, 400, Some("InvalidRequest"));
    expect_err(
        part(1, vec![1; 1024])
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&kb)
            .sse_customer_key_md5(&mb)
            .send()
            .await,
        400,
        Some("InvalidArgument"),
    );
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(
            part(n, p.clone())
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&ka)
                .sse_customer_key_md5(&ma)
                .send()
                .await,
            "UploadPart SSE-C",
        );
        assert_eq!(out.sse_customer_key_md5(), Some(ma.as_str()));
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    ok(
        c.complete_multipart_upload()
            .bucket("ssec")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await,
        "Complete SSE-C upload",
    );
    let got = ok(
        c.get_object()
            .bucket("ssec")
            .key("mp")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ka)
            .sse_customer_key_md5(&ma)
            .send()
            .await,
        "GET SSE-C multipart",
    );
    assert_same_bytes(&collect_body(got.body).await, &parts.concat(), "SSE-C multipart");
    expect_err(
        c.get_object().bucket("ssec").key("mp").send().await,
        400,
        Some("InvalidRequest"),
    );
}

// ---------------------------------------------------------------- measurement

/// PUT and GET MiB/s of one large object, encrypted and not, on the same server and run.
/// Not a regular test (slow, and timing on shared machines is noise); run with
/// `cargo test -p s3-compat-tests --test encryption throughput -- --ignored --nocapture`
/// (`MLSYSOPS_BENCH_MIB` sets the size, default 256).
#[tokio::test]
#[ignore]
async fn throughput_encrypted_vs_plain() {
    let mib: usize = std::env::var("MLSYSOPS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let srv = TestServer::start(ServerOptions::new().encryption("off"));
    let c = srv.client();
    create_bucket(&c, "plain").await;
    create_bucket(&c, "crypt").await;
    ok(
        c.put_bucket_encryption()
            .bucket("crypt")
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(ServerSideEncryption::Aes256)
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "PutBucketEncryption",
    );
    let data = bytes::Bytes::from(random_bytes(mib * MIB));
    let rate = |d: std::time::Duration| mib as f64 / d.as_secs_f64();
    for round in 1..=2 {
        for bucket in ["plain", "crypt"] {
            let t = std::time::Instant::now();
            ok(
                c.put_object()
                    .bucket(bucket)
                    .key("big")
                    .body(ByteStream::from(data.clone()))
                    .send()
                    .await,
                "PUT big",
            );
            let put = t.elapsed();
            let t = std::time::Instant::now();
            let out = ok(c.get_object().bucket(bucket).key("big").send().await, "GET big");
            let mut body = out.body;
            let mut n = 0usize;
            while let Some(chunk) = body.try_next().await.expect("body") {
                n += chunk.len();
            }
            let get = t.elapsed();
            assert_eq!(n, data.len());
            eprintln!(
                "round {round} {bucket:>5}: PUT {:7.1} MiB/s  GET {:7.1} MiB/s ({mib} MiB)",
                rate(put),
                rate(get)
            );
        }
    }
}
