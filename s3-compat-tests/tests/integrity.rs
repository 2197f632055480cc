//! A hostile backend rewrites shards and recomputes their CRC32C, so only a keyed check can
//! tell. In a plaintext bucket the keyed MAC of each shard block catches it; in an encrypted
//! bucket authenticating the decoded block does. Either way the GET (and a range GET) is served
//! from the other shards, the rewritten shard is queued, the scrubber finds it (plaintext), and
//! the healer puts back the very bytes that were written. Beyond what the parity covers, the
//! GET fails; it never returns bytes that are not the object's.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use s3_compat_tests::*;
use serde_json::Value;
use storage_gateway::codec::{verify_shard_block, Layout, CHECKSUM_LEN};
use storage_gateway::records::TAG_LEN;

const BLOCK: u64 = 64 * 1024;
/// Three full blocks and a short one.
const SIZE: usize = 3 * BLOCK as usize + 1000;
const FORGED_METRIC: &str = "mlsysops_integrity_forged_shard_blocks_total";
const REAUTHENTICATED_METRIC: &str = "mlsysops_integrity_reauthenticated_blocks_total";

/// A 4+2 server on six local backends with the background healer held off (its first pass
/// runs at start, on an empty queue), so each test decides when repairs happen.
fn server(encryption: &str) -> TestServer {
    TestServer::start(
        ServerOptions::new()
            .block_size(BLOCK)
            .encryption(encryption)
            .flag("--heal-interval-secs", 3600)
            .flag("--heal-rate-mib", 0)
            .flag("--scrub-rate-mib", 0),
    )
}

/// The stored layout of an object of `SIZE` bytes in a 4+2 set: keyed (a plaintext set, with
/// a MAC per shard block) or sealed (an encrypted set, each block grown by its GCM tag).
fn layout(encrypted: bool) -> Layout {
    let plain = Layout {
        k: 4,
        m: 2,
        block_size: BLOCK,
        size: SIZE as u64,
        keyed: !encrypted,
    };
    if !encrypted {
        return plain;
    }
    let tag = TAG_LEN as u64;
    Layout {
        block_size: BLOCK + tag,
        size: SIZE as u64 + tag * plain.blocks(),
        ..plain
    }
}

/// Puts `data` as `bucket/key` and returns the id of the one shard set that appeared.
async fn put_new_set(srv: &TestServer, c: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let before = srv.distinct_shard_sets();
    put_bytes(c, bucket, key, data).await;
    srv.settled().await;
    let new: Vec<String> = srv.distinct_shard_sets().difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "one new shard set for {key}: {new:?}");
    new[0].clone()
}

/// Where shard `idx` of `set` is on the local backends.
fn shard_path(srv: &TestServer, set: &str, idx: usize) -> PathBuf {
    srv.backend_dirs()
        .into_iter()
        .map(|d| d.join("shards").join(set).join(idx.to_string()))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("shard {idx} of set {set} is on no backend"))
}

/// Every shard file of `set` with its bytes.
fn shard_files(srv: &TestServer, set: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    (0..6)
        .map(|i| {
            let p = shard_path(srv, set, i);
            let bytes = fs::read(&p).expect("read shard");
            (p, bytes)
        })
        .collect()
}

/// Rewrites blocks `blocks` of the shard file at `path` as a hostile backend could: other
/// payload bytes, whatever trails them before the CRC32C left alone (a keyed MAC it cannot
/// recompute without the key), and the CRC32C recomputed, so the checksum holds.
fn forge(path: &Path, layout: &Layout, blocks: impl IntoIterator<Item = u64>) {
    let mut bytes = fs::read(path).expect("read shard");
    assert_eq!(
        bytes.len() as u64,
        layout.shard_object_len(),
        "{path:?} has the layout's length"
    );
    for j in blocks {
        let start = layout.shard_offset(j) as usize;
        let end = start + layout.stored_len(j) as usize;
        let payload_end = end - layout.trailer_len() as usize;
        let crc_at = end - CHECKSUM_LEN as usize;
        for b in &mut bytes[start..payload_end] {
            *b = b.wrapping_add(0x5b);
        }
        let crc = crc32c::crc32c(&bytes[start..crc_at]);
        bytes[crc_at..end].copy_from_slice(&crc.to_le_bytes());
        let block = bytes::Bytes::copy_from_slice(&bytes[start..end]);
        assert!(verify_shard_block(&block).is_some(), "the forged block's CRC32C holds");
    }
    fs::write(path, &bytes).expect("write forged shard");
}

async fn admin_json(srv: &TestServer, method: &str, path: &str) -> Value {
    let (status, body) = srv.admin(method, path).await;
    assert_eq!(status, 200, "admin {method} {path}: {body}");
    body
}

async fn get_range(c: &aws_sdk_s3::Client, bucket: &str, key: &str, first: usize, last: usize) -> Vec<u8> {
    let out = ok(
        c.get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={first}-{last}"))
            .send()
            .await,
        &format!("GetObject {bucket}/{key} bytes={first}-{last}"),
    );
    collect_body(out.body).await
}

#[tokio::test]
async fn a_plaintext_shard_rewritten_with_a_valid_crc_is_read_around_scrubbed_and_healed() {
    let srv = server("off");
    let c = srv.client();
    create_bucket(&c, "plain").await;
    let whole = random_bytes(SIZE);
    let whole_set = put_new_set(&srv, &c, "plain", "whole", &whole).await;
    let one = random_bytes(SIZE);
    let one_set = put_new_set(&srv, &c, "plain", "one", &one).await;
    let originals: BTreeMap<PathBuf, Vec<u8>> = shard_files(&srv, &whole_set)
        .into_iter()
        .chain(shard_files(&srv, &one_set))
        .collect();
    let l = layout(false);

    // Every block of data shard 0 of one object; block 2 of data shard 1 of the other. Data
    // shards are what a healthy read asks for first.
    forge(&shard_path(&srv, &whole_set, 0), &l, 0..l.blocks());
    forge(&shard_path(&srv, &one_set, 1), &l, [2]);

    assert_same_bytes(
        &get_bytes(&c, "plain", "whole").await,
        &whole,
        "GET around a forged shard",
    );
    let (first, last) = (2 * BLOCK as usize + 10, 2 * BLOCK as usize + 500);
    assert_same_bytes(
        &get_range(&c, "plain", "one", first, last).await,
        &one[first..=last],
        "range GET over a forged block",
    );
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(view["repair_queue"], 2, "both forged shards queued: {view}");
    assert_eq!(view["buckets"]["plain"]["degraded"], 2, "{view}");
    let log = srv.log_contents();
    assert!(
        log.contains("keyed MAC mismatch in 4 blocks") && log.contains("keyed MAC mismatch in 1 blocks"),
        "the log says what was found: {log}"
    );
    let read_found = prom_value(&srv.metrics().await, FORGED_METRIC, &[]).unwrap_or_default();
    assert!(read_found >= 5.0, "{FORGED_METRIC} = {read_found} after the reads");

    // The scrubber finds both without any read: five forged blocks, no CRC32C failure.
    let scrub = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(
        (scrub["shards"].as_u64(), scrub["queued"].as_u64()),
        (Some(12), Some(2)),
        "{scrub}"
    );
    let scrub_found = prom_value(&srv.metrics().await, FORGED_METRIC, &[]).unwrap_or_default() - read_found;
    assert_eq!(scrub_found, 5.0, "forged blocks the scrubber found");
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(
        view["scrubber"]["corrupt_blocks"], 0,
        "every forged CRC32C held: {view}"
    );

    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(
        (heal["repaired"].as_u64(), heal["failed"].as_u64()),
        (Some(2), Some(0)),
        "{heal}"
    );
    for (path, want) in &originals {
        assert!(
            &fs::read(path).expect("read shard") == want,
            "{path:?} differs from what was written"
        );
    }
    let again = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(again["queued"], 0, "scrub after healing: {again}");
    assert_same_bytes(&get_bytes(&c, "plain", "whole").await, &whole, "whole, healed");
    assert_same_bytes(&get_bytes(&c, "plain", "one").await, &one, "one, healed");
}

#[tokio::test]
async fn plaintext_shards_forged_beyond_the_parity_fail_the_get_and_nothing_wrong_is_served() {
    let srv = server("off");
    let c = srv.client();
    create_bucket(&c, "plain").await;
    let data = random_bytes(SIZE);
    let set = put_new_set(&srv, &c, "plain", "obj", &data).await;
    let l = layout(false);
    // Block 1 of three shards of a 4+2 set: one more than the parity covers.
    for idx in [0, 2, 5] {
        forge(&shard_path(&srv, &set, idx), &l, [1]);
    }
    let forged_files = shard_files(&srv, &set);

    let e = expect_err(
        c.get_object().bucket("plain").key("obj").send().await,
        503,
        Some("ServiceUnavailable"),
    );
    // Clients get the generic sentence; the detail is in the log (errors name no backend path).
    let msg = e.message.unwrap_or_default();
    assert!(!msg.contains("shard"), "internal detail reached the client: {msg}");
    assert!(
        eventually(std::time::Duration::from_secs(10), || srv
            .log_contents()
            .contains("only 3 of 6 shards readable"))
        .await,
        "the log should say how many shards were readable:\n{}",
        srv.log_contents()
    );
    expect_err(
        c.get_object()
            .bucket("plain")
            .key("obj")
            .range(format!("bytes={}-{}", BLOCK + 1, BLOCK + 2))
            .send()
            .await,
        503,
        Some("ServiceUnavailable"),
    );
    // Blocks the forgery does not touch still read.
    let (first, last) = (2 * BLOCK as usize, SIZE - 1);
    assert_same_bytes(
        &get_range(&c, "plain", "obj", first, last).await,
        &data[first..],
        "blocks 2 and 3",
    );
    // Nothing can be rebuilt from three good shards, and nothing is written from forged ones.
    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(heal["repaired"], 0, "{heal}");
    assert_eq!(
        shard_files(&srv, &set),
        forged_files,
        "the healer wrote over shards it could not rebuild"
    );
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(view["buckets"]["plain"]["unreadable"], 1, "{view}");
}

#[tokio::test]
async fn an_encrypted_shard_rewritten_with_a_valid_crc_is_read_around_and_healed() {
    let srv = server("on");
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let data = random_bytes(SIZE);
    let set = put_new_set(&srv, &c, "enc", "obj", &data).await;
    let originals = shard_files(&srv, &set);
    let l = layout(true);
    // Flipped ciphertext in every block of data shard 0, CRC32C fixed: only the GCM tag of the
    // decoded block can tell.
    forge(&shard_path(&srv, &set, 0), &l, 0..l.blocks());

    assert_same_bytes(&get_bytes(&c, "enc", "obj").await, &data, "GET around a forged shard");
    let (first, last) = (BLOCK as usize - 5, BLOCK as usize + 5);
    assert_same_bytes(
        &get_range(&c, "enc", "obj", first, last).await,
        &data[first..=last],
        "range GET over forged blocks",
    );
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(view["repair_queue"], 1, "the forged shard queued: {view}");
    let log = srv.log_contents();
    assert!(
        log.contains("4 blocks disagree with their authenticated decoding"),
        "the log says what was found: {log}"
    );
    let metrics = srv.metrics().await;
    let reauthenticated = prom_value(&metrics, REAUTHENTICATED_METRIC, &[]);
    assert!(
        reauthenticated >= Some(4.0),
        "{REAUTHENTICATED_METRIC} = {reauthenticated:?}"
    );

    // The healer has no data key: it rebuilds the queued shard from the other five, which must
    // agree with one another, and puts back exactly what was written.
    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(
        (heal["repaired"].as_u64(), heal["failed"].as_u64()),
        (Some(1), Some(0)),
        "{heal}"
    );
    assert_eq!(
        shard_files(&srv, &set),
        originals,
        "the healed shards are the ones written"
    );
    assert_same_bytes(&get_bytes(&c, "enc", "obj").await, &data, "healed");
}

#[tokio::test]
async fn mac_keys_follow_a_master_key_rotation() {
    // The MAC keys of plaintext sets are wrapped by the master key, in the manifest and in the
    // set record: `rotate-key --retire-old` must rewrap both, or the old key's retirement would
    // leave every plaintext object unverifiable (and so unreadable).
    let mut srv = server("off");
    let c = srv.client();
    create_bucket(&c, "plain").await;
    let data = random_bytes(SIZE);
    let set = put_new_set(&srv, &c, "plain", "obj", &data).await;
    srv.stop();
    let out = srv.run_admin(&["rotate-key", "--retire-old"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rotate-key failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rewrapped 2 copies of shard MAC keys (1 set records)"),
        "unexpected report: {stdout}"
    );
    srv.start_again();
    let c = srv.client();
    assert_same_bytes(&get_bytes(&c, "plain", "obj").await, &data, "after rotation");
    // The scrubber and healer read the set record's copy: still a MAC they can check.
    let l = layout(false);
    forge(&shard_path(&srv, &set, 3), &l, [0]);
    let scrub = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(
        (scrub["shards"].as_u64(), scrub["queued"].as_u64()),
        (Some(6), Some(1)),
        "{scrub}"
    );
    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(
        (heal["repaired"].as_u64(), heal["failed"].as_u64()),
        (Some(1), Some(0)),
        "{heal}"
    );
    assert_same_bytes(&get_bytes(&c, "plain", "obj").await, &data, "healed after rotation");
}

#[tokio::test]
async fn the_healer_writes_nothing_from_shards_that_disagree() {
    // An encrypted set with one shard rewritten (valid CRC32C, not yet found) and another lost.
    // The healer has no data key: rebuilding the lost shard from the rewritten one would make
    // the damage permanent, so it must notice the disagreement and write nothing until a read
    // has authenticated the blocks and named the rewritten shard.
    let srv = server("on");
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let data = random_bytes(SIZE);
    let set = put_new_set(&srv, &c, "enc", "obj", &data).await;
    let originals = shard_files(&srv, &set);
    forge(&shard_path(&srv, &set, 0), &layout(true), [1]);
    let lost = shard_path(&srv, &set, 5);
    fs::remove_file(&lost).expect("remove shard 5");

    let scrub = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(scrub["queued"], 1, "the lost shard, not the rewritten one: {scrub}");
    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(
        (heal["repaired"].as_u64(), heal["failed"].as_u64()),
        (Some(0), Some(1)),
        "{heal}"
    );
    assert!(!lost.exists(), "a shard was rebuilt from a rewritten one");
    assert!(
        eventually(std::time::Duration::from_secs(10), || srv
            .log_contents()
            .contains("disagrees with the block decoded from the other shards"))
        .await,
        "the log says why nothing was written:\n{}",
        srv.log_contents()
    );

    // A GET authenticates block 1, names shard 0, and then both rebuild to what was written.
    assert_same_bytes(&get_bytes(&c, "enc", "obj").await, &data, "GET around both");
    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(
        (heal["repaired"].as_u64(), heal["failed"].as_u64()),
        (Some(2), Some(0)),
        "{heal}"
    );
    assert_eq!(
        shard_files(&srv, &set),
        originals,
        "the healed shards are the ones written"
    );
}
