//! Bitrot on local backends: reads serve around it, the scrubber finds every bad block, the
//! healer rewrites the damaged shards byte for byte, and the admin counters say so.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use s3_compat_tests::*;
use serde_json::Value;

const BLOCK: usize = 64 * 1024;
const OBJECTS: usize = 4;
/// Blocks per object: every object is exactly this many full blocks.
const BLOCKS: usize = 32;
/// Damaged shard blocks per object (one shard per block): 4 x 25 = 100 in all.
const DAMAGED_PER_OBJECT: usize = 25;

/// Every shard file under a directory of backends: set -> [(backend dir name, shard index, path)].
fn shards_under(root: &std::path::Path) -> BTreeMap<String, Vec<(String, usize, PathBuf)>> {
    let mut out: BTreeMap<String, Vec<(String, usize, PathBuf)>> = BTreeMap::new();
    for backend in fs::read_dir(root).expect("backends root") {
        let backend = backend.expect("entry");
        let Ok(sets) = fs::read_dir(backend.path().join("shards")) else {
            continue;
        };
        for set in sets {
            let set = set.expect("entry");
            for shard in fs::read_dir(set.path()).expect("set dir") {
                let shard = shard.expect("entry");
                let idx: usize = shard.file_name().to_string_lossy().parse().expect("shard index");
                out.entry(set.file_name().to_string_lossy().into_owned())
                    .or_default()
                    .push((backend.file_name().to_string_lossy().into_owned(), idx, shard.path()));
            }
        }
    }
    out
}

/// Shard files of every set of the server's local backends: set -> shard index -> path.
fn shard_files(srv: &TestServer) -> BTreeMap<String, BTreeMap<usize, PathBuf>> {
    shards_under(&srv.data_dir().join("backends"))
        .into_iter()
        .map(|(set, shards)| (set, shards.into_iter().map(|(_, idx, path)| (idx, path)).collect()))
        .collect()
}

async fn admin_json(srv: &TestServer, method: &str, path: &str) -> Value {
    let (status, body) = srv.admin(method, path).await;
    assert_eq!(status, 200, "admin {method} {path}: {body}");
    body
}

#[tokio::test]
async fn bitrot_in_100_shard_blocks_is_read_around_scrubbed_and_healed() {
    // The background healer is held off (its first pass runs at start, on an empty queue),
    // so the scrubber sees every damaged block before anything is repaired.
    let srv = TestServer::start(
        ServerOptions::new()
            .block_size(BLOCK as u64)
            .encryption("on")
            .flag("--heal-interval-secs", 3600)
            .flag("--heal-rate-mib", 0)
            .flag("--scrub-rate-mib", 0),
    );
    let c = srv.client();
    create_bucket(&c, "rot").await;
    let objects: Vec<Vec<u8>> = (0..OBJECTS).map(|_| random_bytes(BLOCKS * BLOCK)).collect();
    for (i, data) in objects.iter().enumerate() {
        put_bytes(&c, "rot", &format!("o{i}"), data).await;
    }
    srv.settled().await;

    let files = shard_files(&srv);
    assert_eq!(files.len(), OBJECTS, "one shard set per object: {files:?}");
    let originals: BTreeMap<PathBuf, Vec<u8>> = files
        .values()
        .flat_map(|m| m.values())
        .map(|p| (p.clone(), fs::read(p).expect("read shard")))
        .collect();

    // Block j of set s loses shard (j + s) % 6: every block keeps five good shards, and every
    // shard index (data and parity) is hit.
    let mut damaged_shards = 0;
    for (s, shards) in files.values().enumerate() {
        assert_eq!(shards.len(), 6, "set {s} has {} shards", shards.len());
        let mut hit = std::collections::BTreeSet::new();
        for j in 0..DAMAGED_PER_OBJECT {
            let idx = (j + s) % 6;
            let path = &shards[&idx];
            let mut bytes = fs::read(path).expect("read shard");
            let stride = bytes.len() / BLOCKS;
            assert_eq!(bytes.len() % BLOCKS, 0, "shard {path:?} is not {BLOCKS} equal blocks");
            let at = j * stride + 7 + j;
            bytes[at] ^= 0x5a;
            fs::write(path, &bytes).expect("write damaged shard");
            hit.insert(idx);
        }
        damaged_shards += hit.len();
    }

    for (i, data) in objects.iter().enumerate() {
        assert_same_bytes(
            &get_bytes(&c, "rot", &format!("o{i}")).await,
            data,
            &format!("o{i} with bitrot"),
        );
    }
    let ranged = ok(
        c.get_object()
            .bucket("rot")
            .key("o1")
            .range(format!("bytes={}-{}", BLOCK - 10, 3 * BLOCK + 10))
            .send()
            .await,
        "range GET with bitrot",
    );
    assert_same_bytes(
        &collect_body(ranged.body).await,
        &objects[1][BLOCK - 10..=3 * BLOCK + 10],
        "range with bitrot",
    );

    let scrub = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(scrub["shards"], OBJECTS * 6, "scrub pass: {scrub}");
    assert_eq!(scrub["queued"], damaged_shards, "scrub pass: {scrub}");
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(
        view["scrubber"]["corrupt_blocks"],
        OBJECTS * DAMAGED_PER_OBJECT,
        "{view}"
    );
    assert_eq!(view["scrubber"]["blocks_checked"], OBJECTS * 6 * BLOCKS, "{view}");
    assert_eq!(view["repair_queue"], damaged_shards, "{view}");
    assert_eq!(view["buckets"]["rot"]["degraded"], OBJECTS, "{view}");
    assert_eq!(view["buckets"]["rot"]["full"], 0, "{view}");

    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(heal["repaired"], damaged_shards, "heal pass: {heal}");
    assert_eq!(heal["failed"], 0, "heal pass: {heal}");
    for (path, want) in &originals {
        let got = fs::read(path).expect("read healed shard");
        assert!(&got == want, "shard {path:?} differs from its original after healing");
    }
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(view["repair_queue"], 0, "{view}");
    assert_eq!(view["buckets"]["rot"]["full"], OBJECTS, "{view}");
    assert_eq!(view["healer"]["shards_repaired"], damaged_shards, "{view}");
    let again = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(again["queued"], 0, "scrub after healing: {again}");
    for (i, data) in objects.iter().enumerate() {
        assert_same_bytes(
            &get_bytes(&c, "rot", &format!("o{i}")).await,
            data,
            &format!("o{i} healed"),
        );
    }
}

#[tokio::test]
async fn a_deleted_shard_is_rebuilt_by_the_background_healer() {
    let srv = TestServer::start(ServerOptions::new().flag("--heal-interval-secs", 0.2));
    let c = srv.client();
    create_bucket(&c, "gone").await;
    let data = random_bytes(3 * MIB + 5);
    put_bytes(&c, "gone", "k", &data).await;
    srv.settled().await;
    let files = shard_files(&srv);
    let (_, shards) = files.iter().next().expect("one set");
    let victim = shards[&0].clone();
    let original = fs::read(&victim).expect("read shard 0");
    fs::remove_file(&victim).expect("delete shard 0");
    // The read notices the missing data shard, serves from parity, and queues the repair.
    assert_same_bytes(&get_bytes(&c, "gone", "k").await, &data, "GET with a shard gone");
    let back = eventually(std::time::Duration::from_secs(20), || {
        fs::read(&victim).is_ok_and(|b| b == original)
    })
    .await;
    assert!(
        back,
        "shard {victim:?} was not rebuilt within 20 s\n{}",
        srv.log_contents()
    );
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(view["repair_queue"], 0, "{view}");
    assert_eq!(view["buckets"]["gone"]["full"], 1, "{view}");
}

#[tokio::test]
async fn the_admin_api_wants_its_token() {
    let srv = TestServer::start(ServerOptions::new());
    let (status, body) = srv.admin_with_token("GET", "/api/v1/redundancy", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| m.contains("Bearer")), "{body}");
    let (status, body) = srv.admin_with_token("POST", "/api/v1/scrub", Some("wrong")).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = srv.admin("GET", "/api/v1/nope").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = srv.admin("GET", "/api/v1/redundancy").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backends"].as_array().map(Vec::len), Some(6), "{body}");
}

/// `[[backend]]` tables for local backends `l{i}` under `root`, for each i in `ids`.
fn local_backends_toml(root: &std::path::Path, ids: &[usize]) -> String {
    ids.iter()
        .map(|i| {
            format!(
                "[[backend]]\nid = \"l{i}\"\nkind = \"local\"\npath = {:?}\n\n",
                root.join(format!("l{i}"))
            )
        })
        .collect()
}

/// Shard files per set under `root`, as "backend:index".
fn shards_by_set(root: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    shards_under(root)
        .into_iter()
        .map(|(set, shards)| {
            (
                set,
                shards.into_iter().map(|(b, idx, _)| format!("{b}:{idx}")).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn shards_of_a_removed_backend_are_rebuilt_on_another_and_recorded() {
    let root = tempfile::tempdir().expect("temp dir");
    let all: Vec<usize> = (0..7).collect();
    let mut srv = TestServer::start(
        ServerOptions::new()
            .config_toml(local_backends_toml(root.path(), &all))
            .flag("--heal-interval-secs", 3600)
            .flag("--heal-rate-mib", 0),
    );
    let c = srv.client();
    create_bucket(&c, "moved").await;
    let mut objects = BTreeMap::new();
    for i in 0..6 {
        let data = random_bytes(i * MIB / 2 + 17);
        put_bytes(&c, "moved", &format!("o{i}"), &data).await;
        objects.insert(format!("o{i}"), data);
    }
    // An upload still in progress: its parts are owned by the upload until completed.
    let upload = ok(
        c.create_multipart_upload().bucket("moved").key("mp").send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .expect("upload id")
    .to_owned();
    let parts = [random_bytes(5 * MIB), random_bytes(MIB + 1)];
    let mut etags = Vec::new();
    for (n, p) in parts.iter().enumerate() {
        let out = ok(
            c.upload_part()
                .bucket("moved")
                .key("mp")
                .upload_id(&upload)
                .part_number(n as i32 + 1)
                .body(p.clone().into())
                .send()
                .await,
            "UploadPart",
        );
        etags.push(out.e_tag().expect("part etag").to_owned());
    }

    srv.settled().await;
    let before = shards_by_set(root.path());
    assert_eq!(before.len(), 8, "six objects and two parts: {before:?}");
    // Remove the backend holding the most shards.
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for shards in before.values() {
        for s in shards {
            *per_backend.entry(s.split(':').next().unwrap().to_owned()).or_default() += 1;
        }
    }
    let (gone, lost) = per_backend
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(b, n)| (b.clone(), *n))
        .unwrap();
    let gone_idx: usize = gone[1..].parse().unwrap();
    srv.stop();
    let kept: Vec<usize> = all.iter().copied().filter(|&i| i != gone_idx).collect();
    srv.options_mut().config_toml = Some(local_backends_toml(root.path(), &kept));
    fs::remove_dir_all(root.path().join(&gone)).expect("remove the backend's data");
    srv.start_again();
    let c = srv.client();
    for (k, data) in &objects {
        assert_same_bytes(
            &get_bytes(&c, "moved", k).await,
            data,
            &format!("{k} with {gone} removed"),
        );
    }

    let scrub = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(scrub["queued"], lost, "scrub with {gone} removed: {scrub}");
    let heal = admin_json(&srv, "POST", "/api/v1/heal").await;
    assert_eq!(heal["repaired"], lost, "heal with {gone} removed: {heal}");
    let view = admin_json(&srv, "GET", "/api/v1/redundancy").await;
    assert_eq!(view["repair_queue"], 0, "{view}");
    assert_eq!(view["buckets"]["moved"]["full"], objects.len(), "{view}");

    let after = shards_by_set(root.path());
    for (set, shards) in &after {
        let mut homes: Vec<&str> = shards.iter().map(|s| s.split(':').next().unwrap()).collect();
        homes.sort_unstable();
        homes.dedup();
        assert_eq!(shards.len(), 6, "set {set} after the move: {shards:?}");
        assert_eq!(homes.len(), 6, "set {set} has two shards on one backend: {shards:?}");
    }
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());

    // The moves are in the metadata: they survive a restart and the parts complete.
    srv.restart();
    let c = srv.client();
    let completed = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(
            etags
                .iter()
                .enumerate()
                .map(|(n, e)| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(n as i32 + 1)
                        .e_tag(e)
                        .build()
                })
                .collect(),
        ))
        .build();
    ok(
        c.complete_multipart_upload()
            .bucket("moved")
            .key("mp")
            .upload_id(&upload)
            .multipart_upload(completed)
            .send()
            .await,
        "CompleteMultipartUpload",
    );
    objects.insert("mp".into(), parts.concat());
    for (k, data) in &objects {
        assert_same_bytes(&get_bytes(&c, "moved", k).await, data, &format!("{k} after the move"));
    }
    let again = admin_json(&srv, "POST", "/api/v1/scrub").await;
    assert_eq!(again["queued"], 0, "scrub after the move: {again}");
}
