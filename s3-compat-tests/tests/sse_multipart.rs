//! Server-side encryption of multipart uploads, and CompleteMultipartUpload racing re-uploads
//! of its parts, through aws-sdk-s3 against the real binary.
//!
//! "No plaintext on any backend" is checked on the bytes of every file under every backend
//! directory: each object's body repeats a 32-byte line naming it, and no file may hold that
//! line. A plaintext upload of the same kind is the control showing that the scan finds
//! plaintext when it is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, ServerSideEncryption};
use s3_compat_tests::*;

/// Length of the line a test body repeats.
const LINE: usize = 32;

/// The 32-byte line the body of object `tag` repeats (`tag` up to 20 bytes).
fn line(tag: &str) -> [u8; LINE] {
    let text = format!("<{tag:^20}>plaintext\n");
    text.as_bytes()
        .try_into()
        .unwrap_or_else(|_| panic!("tag {tag:?} makes a line of {} bytes, not {LINE}", text.len()))
}

/// `len` bytes of [`line`]`(tag)` repeated: any 63 consecutive bytes of it hold the line whole.
fn body(tag: &str, len: usize) -> Vec<u8> {
    line(tag).iter().copied().cycle().take(len).collect()
}

/// Every file under `dir` (recursively) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("listing {}: {e}", d.display()));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("listing {}: {e}", d.display())).path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            // A file reaped while the scan runs held nothing that is still stored.
            let Ok(data) = std::fs::read(&path) else { continue };
            if data.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

fn aes256() -> Option<&'static ServerSideEncryption> {
    Some(&ServerSideEncryption::Aes256)
}

/// A server with plain local backends and no default encryption, and a bucket `plain`.
async fn plain_server() -> (TestServer, aws_sdk_s3::Client) {
    let srv = TestServer::start(ServerOptions::new().encryption("off"));
    let c = srv.client();
    create_bucket(&c, "plain").await;
    (srv, c)
}

#[tokio::test]
async fn sse_s3_multipart_leaves_no_plaintext_on_any_backend() {
    let (srv, c) = plain_server().await;
    let backends = srv.data_dir().join("backends");

    // Control: the same upload without SSE is stored in plaintext, and the scan finds it.
    let control = body("control", 20 * MIB);
    let mut up = Multipart::start(&c, "plain", "control").await;
    up.parts(&control.chunks(5 * MIB).collect::<Vec<_>>()).await;
    let done = up.complete().await;
    assert_eq!(done.server_side_encryption(), None, "control: not encrypted");
    srv.settled().await;
    let found = files_holding(&backends, &line("control"));
    assert!(
        found.len() >= 4,
        "control: the scan found the plaintext line in only {} files: {found:?}",
        found.len()
    );

    // `aws s3 cp --sse AES256` into a bucket without default encryption.
    let sealed = body("sse-s3", 20 * MIB);
    let mut up = Multipart::start_with(&c, "plain", "sealed", |create| {
        create.server_side_encryption(ServerSideEncryption::Aes256)
    })
    .await;
    assert_eq!(
        up.created().server_side_encryption(),
        aes256(),
        "CreateMultipartUpload answers AES256"
    );
    let mut parts: Vec<&[u8]> = sealed.chunks(5 * MIB).collect();
    for (n, part) in (1..).zip(&parts) {
        let out = up.part(n, part).await;
        assert_eq!(out.server_side_encryption(), aes256(), "UploadPart {n} answers AES256");
    }
    // A part copied from the plaintext object is sealed like the others.
    let copied = up.copy_part(5, &copy_source("plain", "control"), "bytes=0-99999").await;
    assert_eq!(
        copied.server_side_encryption(),
        aes256(),
        "UploadPartCopy answers AES256"
    );
    parts.push(&control[..100_000]);
    let want = parts.concat();

    let done = up.complete().await;
    assert_eq!(
        done.server_side_encryption(),
        aes256(),
        "CompleteMultipartUpload answers AES256"
    );
    assert_eq!(done.e_tag(), Some(multipart_etag(&parts).as_str()), "ETag");
    let head = ok(
        c.head_object().bucket("plain").key("sealed").send().await,
        "HeadObject plain/sealed",
    );
    assert_eq!(head.server_side_encryption(), aes256(), "HeadObject answers AES256");
    assert_eq!(head.content_length(), i64::try_from(want.len()).ok(), "HeadObject size");
    let got = ok(
        c.get_object().bucket("plain").key("sealed").send().await,
        "GetObject plain/sealed",
    );
    assert_eq!(got.server_side_encryption(), aes256(), "GetObject answers AES256");
    assert_same_bytes(&collect_body(got.body).await, &want, "GetObject plain/sealed");

    srv.settled().await;
    let leaked = files_holding(&backends, &line("sse-s3"));
    assert!(
        leaked.is_empty(),
        "backend files hold plaintext of the SSE-S3 multipart object: {leaked:?}"
    );
}

#[tokio::test]
async fn sse_c_multipart_needs_the_key_on_every_part_and_every_read() {
    let (srv, c) = plain_server().await;
    let key = SseC::from_seed(21);
    let other = SseC::from_seed(22);
    let sealed = body("sse-c", 12 * MIB);
    let parts: Vec<&[u8]> = sealed.chunks(5 * MIB).collect();

    let mut up = Multipart::start_sse_c(&c, "plain", "sealed", &key).await;
    assert_eq!(
        up.created().sse_customer_key_md5(),
        Some(key.key_md5()),
        "CreateMultipartUpload echoes the key MD5"
    );
    // Refusals come before the body is read; a small body keeps the client from still writing
    // when the server answers.
    let small = || vec![7u8; 1024];
    let no_key = expect_err(up.part_request(1, small()).send().await, 400, Some("InvalidRequest"));
    assert!(
        no_key.message.as_deref().unwrap_or("").contains("SSE-C"),
        "a part without the key: {no_key:?}"
    );
    expect_err(
        up.part_request(1, small()).sse_c(&other).send().await,
        400,
        Some("InvalidArgument"),
    );
    expect_err(
        up.part_request(1, small()).sse_c(&key.with_md5_of(&other)).send().await,
        400,
        Some("InvalidArgument"),
    );
    for (n, part) in (1..).zip(&parts) {
        let out = up.part(n, part).await;
        assert_eq!(out.sse_customer_key_md5(), Some(key.key_md5()), "UploadPart {n}");
        assert_eq!(out.sse_customer_algorithm(), Some(SseC::ALGORITHM), "UploadPart {n}");
        assert_eq!(out.server_side_encryption(), None, "UploadPart {n}: SSE-C, not SSE-S3");
    }
    let done = up.complete().await;
    assert_eq!(done.e_tag(), Some(multipart_etag(&parts).as_str()), "ETag");

    // HEAD answers have no body, hence no error code to check.
    expect_err(c.head_object().bucket("plain").key("sealed").send().await, 400, None);
    expect_err(
        c.head_object().bucket("plain").key("sealed").sse_c(&other).send().await,
        403,
        None,
    );
    expect_err(
        c.get_object().bucket("plain").key("sealed").send().await,
        400,
        Some("InvalidRequest"),
    );
    expect_err(
        c.get_object().bucket("plain").key("sealed").sse_c(&other).send().await,
        403,
        Some("AccessDenied"),
    );
    let head = ok(
        c.head_object().bucket("plain").key("sealed").sse_c(&key).send().await,
        "HeadObject with the key",
    );
    assert_eq!(head.sse_customer_key_md5(), Some(key.key_md5()), "HeadObject");
    assert_eq!(
        head.content_length(),
        i64::try_from(sealed.len()).ok(),
        "HeadObject size"
    );
    let got = ok(
        c.get_object().bucket("plain").key("sealed").sse_c(&key).send().await,
        "GetObject with the key",
    );
    assert_eq!(got.sse_customer_key_md5(), Some(key.key_md5()), "GetObject");
    assert_same_bytes(&collect_body(got.body).await, &sealed, "GetObject with the key");

    // An upload created without SSE-C takes no part with a key.
    let plain_up = Multipart::start(&c, "plain", "open").await;
    expect_err(
        plain_up.part_request(1, small()).sse_c(&key).send().await,
        400,
        Some("InvalidRequest"),
    );
    plain_up.abort().await;

    srv.settled().await;
    let leaked = files_holding(&srv.data_dir().join("backends"), &line("sse-c"));
    assert!(
        leaked.is_empty(),
        "backend files hold plaintext of the SSE-C multipart object: {leaked:?}"
    );
}

#[tokio::test]
async fn kms_requests_are_refused_not_stored_in_plaintext() {
    let (_srv, c) = plain_server().await;
    for sse in [ServerSideEncryption::AwsKms, ServerSideEncryption::AwsKmsDsse] {
        let what = format!("{sse:?}");
        let create = c
            .create_multipart_upload()
            .bucket("plain")
            .key("k")
            .server_side_encryption(sse.clone())
            .send()
            .await;
        let err = expect_err(create, 501, Some("NotImplemented"));
        assert!(
            err.message.as_deref().unwrap_or("").contains("KMS"),
            "CreateMultipartUpload {what}: {err:?}"
        );
        let put = c
            .put_object()
            .bucket("plain")
            .key("k")
            .server_side_encryption(sse)
            .body(ByteStream::from_static(b"secret"))
            .send()
            .await;
        expect_err(put, 501, Some("NotImplemented"));
    }
    let key_id = c
        .create_multipart_upload()
        .bucket("plain")
        .key("k")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .ssekms_key_id("arn:aws:kms:us-east-1:111122223333:key/example")
        .send()
        .await;
    expect_err(key_id, 501, Some("NotImplemented"));
    // A KMS key id without any SSE header: refused, not stored under the bucket's default.
    let put_key_id = c
        .put_object()
        .bucket("plain")
        .key("k")
        .ssekms_key_id("arn:aws:kms:us-east-1:111122223333:key/example")
        .body(ByteStream::from_static(b"secret"))
        .send()
        .await;
    expect_err(put_key_id, 501, Some("NotImplemented"));
    let bogus = c
        .create_multipart_upload()
        .bucket("plain")
        .key("k")
        .server_side_encryption(ServerSideEncryption::from("rot13"))
        .send()
        .await;
    expect_err(bogus, 400, Some("InvalidArgument"));

    let uploads = ok(
        c.list_multipart_uploads().bucket("plain").send().await,
        "ListMultipartUploads",
    );
    assert!(uploads.uploads().is_empty(), "no upload was created: {uploads:?}");
    let objects = ok(c.list_objects_v2().bucket("plain").send().await, "ListObjectsV2");
    assert!(objects.contents().is_empty(), "no object was stored: {objects:?}");
}

/// Completion racing re-uploads of the part it names, round after round: every completed
/// object reads back as the version its ETag names, also after the replaced sets are reaped;
/// a completion that lost the race is InvalidPart and the upload completes on a retry.
#[tokio::test]
async fn complete_racing_part_reuploads_never_yields_an_unreadable_object() {
    const ROUNDS: usize = 30;
    const RACERS: usize = 3;
    /// Re-uploads per racer and round, unless the completion ends the upload first.
    const LAPS: usize = 4;
    // Small parts (a lone part is the last one, so any size is allowed): a re-upload that
    // loses to the completion is refused before its body is read, and a small body keeps the
    // client from still writing when the server answers.
    const PART: usize = 8 * 1024;
    /// Parts uploaded but not named by the completion.
    const FILLERS: usize = 100;
    let srv = TestServer::start(ServerOptions::new());
    let c = srv.client();
    // One shard per set: the race is in the metadata, and the reaper has thousands of filler
    // sets to delete.
    ok(
        c.create_bucket()
            .bucket("race")
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from("replicate-1"))
                    .build(),
            )
            .send()
            .await,
        "CreateBucket race (replicate-1)",
    );
    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut lost = 0;
    for round in 0..ROUNDS {
        let key = format!("k{round:02}");
        // Even rounds re-upload the named bytes (same ETag, a new set), odd ones other bytes.
        let same = round % 2 == 0;
        let first = random_bytes(PART);
        let mut up = Multipart::start(&c, "race", &key).await;
        up.part(1, &first).await;
        // Parts the completion does not name, which it reads and checks with the others: they
        // keep it busy between reading the parts and committing, the window a re-upload must
        // not slip into.
        for batch in (2..2 + FILLERS as i32).collect::<Vec<_>>().chunks(10) {
            let sends: Vec<_> = batch
                .iter()
                .map(|&n| tokio::spawn(up.part_request(n, vec![b'f']).send()))
                .collect();
            for send in sends {
                ok(send.await.expect("a filler part task"), "UploadPart (filler)");
            }
        }
        // Each racer re-uploads part 1 until the upload is gone; it returns what it uploaded.
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let versions: Vec<Vec<u8>> = (0..LAPS)
                    .map(|_| if same { first.clone() } else { random_bytes(PART) })
                    .collect();
                let requests: Vec<_> = versions.iter().map(|v| up.part_request(1, v.clone())).collect();
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    for (request, version) in requests.into_iter().zip(versions) {
                        match request.send().await {
                            Ok(_) => sent.push(version),
                            Err(e) => {
                                let info = err_info(&e);
                                assert_eq!(
                                    (info.status, info.code.as_deref()),
                                    (Some(404), Some("NoSuchUpload")),
                                    "round {round}: racer {i} failed otherwise than losing to the completion: {info:?}"
                                );
                                // The body may have been stored before the upload went.
                                sent.push(version);
                                break;
                            }
                        }
                    }
                    sent
                })
            })
            .collect();
        // Staggered so that the completion lands before, among and after the re-uploads.
        tokio::time::sleep(Duration::from_micros(500 * (round as u64 % 6))).await;
        let completed = up.complete_request(&[(1, up.etag(1))]).send().await;
        let mut versions = vec![first.clone()];
        for racer in racers {
            versions.extend(racer.await.expect("a racer task"));
        }
        let done = match completed {
            Ok(out) => out,
            Err(e) => {
                let info = err_info(&e);
                assert_eq!(
                    (info.status, info.code.as_deref()),
                    (Some(400), Some("InvalidPart")),
                    "round {round}: completion failed otherwise than InvalidPart: {info:?}"
                );
                assert!(
                    !same,
                    "round {round}: re-uploads of the same bytes made the completion fail: {info:?}"
                );
                lost += 1;
                // The upload is intact: completing with the part as listed now succeeds.
                let listed = ok(up.list_parts_request().send().await, "ListParts after InvalidPart");
                let etag = listed.parts()[0].e_tag().expect("a listed part has an ETag").to_owned();
                ok(
                    up.complete_request(&[(1, &etag)]).send().await,
                    &format!("round {round}: completion retried with the listed part"),
                )
            }
        };
        let got = get_bytes(&c, "race", &key).await;
        assert!(
            versions.contains(&got),
            "round {round}: {key} reads as none of the uploaded versions"
        );
        assert_eq!(
            done.e_tag(),
            Some(multipart_etag(&[&got]).as_str()),
            "round {round}: {key}'s ETag names what it reads as"
        );
        stored.insert(key, got);
    }
    println!("{ROUNDS} rounds: {lost} completions lost to a re-upload with other bytes (InvalidPart) and were retried");

    // Once the replaced and unused sets are reaped, every object still reads, and each is one
    // set: nothing named was deleted, nothing unnamed was left.
    srv.settled().await;
    for (key, want) in &stored {
        let got = c.get_object().bucket("race").key(key).send().await;
        let got = ok(got, &format!("GET {key} after reaping"));
        assert_same_bytes(&collect_body(got.body).await, want, &format!("{key} after reaping"));
    }
    let one_set_each = eventually(Duration::from_secs(120), || srv.distinct_shard_sets().len() == ROUNDS).await;
    assert!(
        one_set_each,
        "{} shard sets on the backends for {ROUNDS} one-part objects",
        srv.distinct_shard_sets().len()
    );
}
