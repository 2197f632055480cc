//! Azure Blob Storage backends, against the Azurite emulator (npm package `azurite`).
//!
//! Azurite is not part of the Rust toolchain: install it with
//! `npm install --prefix target/azurite azurite@3.37.0` (or point `AZURITE_BLOB_BIN` at an
//! `azurite-blob` executable). Without it these tests print a loud notice and pass vacuously,
//! unless `MLSYSOPS_REQUIRE_AZURITE` is set (scripts/test.sh sets it after installing Azurite).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::date_time::{DateTime, Format};
use base64::Engine as _;
use s3_compat_tests::s3s_fs::free_port;
use s3_compat_tests::*;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Azurite's well-known development account and key.
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

fn azurite_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("AZURITE_BLOB_BIN") {
        return PathBuf::from(bin);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target/azurite/node_modules/.bin/azurite-blob")
}

/// An `azurite-blob` process on a fixed port over a temp dir; killed when dropped.
struct Azurite {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Azurite {
    /// Starts Azurite, or returns `None` (after a loud notice) when it is not installed.
    fn start() -> Option<Azurite> {
        let bin = azurite_binary();
        if !bin.exists() {
            // scripts/test.sh sets this once it installed Azurite: then missing is a failure.
            assert!(
                std::env::var_os("MLSYSOPS_REQUIRE_AZURITE").is_none(),
                "MLSYSOPS_REQUIRE_AZURITE is set but azurite-blob is not at {}",
                bin.display()
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED: azurite-blob not found at {} !!!!!!!!\n\
                 !!!!!!!! install it with: npm install --prefix target/azurite azurite@3.37.0 !!!!!!!!\n",
                bin.display()
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("mlsysops-azurite-")
            .tempdir()
            .expect("azurite temp dir");
        let port = free_port();
        let log = fs::File::create(dir.path().join("azurite.log")).expect("azurite log");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("azurite data dir");
        let mut child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&data)
            .args(["--skipApiVersionCheck", "--loose"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "azurite-blob exited with {status}:\n{}",
                    fs::read_to_string(dir.path().join("azurite.log")).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("azurite-blob did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Azurite {
            dir,
            port,
            child: Some(child),
        })
    }

    /// The blob service URL (without the account).
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends a Shared Key signed request: `path` below the account (e.g. `/c` or `/c/blob`),
    /// `query` as (name, value) pairs.
    async fn request(&self, method: &str, path: &str, query: &[(&str, &str)]) -> RawResponse {
        let date = DateTime::from(SystemTime::now())
            .fmt(Format::HttpDate)
            .expect("format date");
        let mut canon_query: Vec<(String, &str)> = query.iter().map(|(k, v)| (k.to_ascii_lowercase(), *v)).collect();
        canon_query.sort();
        let mut resource = format!("/{ACCOUNT}/{ACCOUNT}{path}");
        for (k, v) in &canon_query {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        // VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
        // If-Match, If-None-Match, If-Unmodified-Since, Range, then headers and resource.
        let to_sign =
            format!("{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n{resource}");
        let key = base64::engine::general_purpose::STANDARD
            .decode(ACCOUNT_KEY)
            .expect("account key");
        let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("{}/{ACCOUNT}{path}?{}", self.url(), qs.join("&"));
        let auth = format!("SharedKey {ACCOUNT}:{signature}");
        raw_request(
            method,
            &url,
            &[
                ("x-ms-date", date.as_str()),
                ("x-ms-version", API_VERSION),
                ("authorization", auth.as_str()),
            ],
            Vec::new(),
        )
        .await
    }

    /// Creates a container (object_store never creates one).
    async fn create_container(&self, name: &str) {
        let resp = self
            .request("PUT", &format!("/{name}"), &[("restype", "container")])
            .await;
        assert_eq!(
            resp.status,
            201,
            "creating Azurite container {name}: {}",
            resp.body_text()
        );
    }

    /// Blob names and sizes in a container.
    async fn list_blobs(&self, container: &str) -> BTreeMap<String, u64> {
        let resp = self
            .request(
                "GET",
                &format!("/{container}"),
                &[("restype", "container"), ("comp", "list")],
            )
            .await;
        assert_eq!(resp.status, 200, "listing container {container}: {}", resp.body_text());
        let text = resp.body_text();
        assert!(
            !text.contains("<NextMarker>") || text.contains("<NextMarker />") || text.contains("<NextMarker/>"),
            "listing of {container} is paged; the test expects few blobs: {text}"
        );
        let mut out = BTreeMap::new();
        for blob in text.split("<Blob>").skip(1) {
            let name = between(blob, "<Name>", "</Name>").unwrap_or_default();
            let len = between(blob, "<Content-Length>", "</Content-Length>")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.insert(name.to_owned(), len);
        }
        out
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- azurite log ---\n{}\n--- end of azurite log ---", self.log());
        }
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut h = Sha256::new();
    h.update(&inner);
    h.update(msg);
    let inner_hash = h.finalize();
    let mut h = Sha256::new();
    h.update(&outer);
    h.update(inner_hash);
    h.finalize().to_vec()
}

#[test]
fn hmac_matches_rfc_4231_case_2() {
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_containers_as_backends() {
    let Some(azurite) = Azurite::start() else { return };
    let containers = ["shards-a", "shards-b", "shards-c"];
    for c in containers {
        azurite.create_container(c).await;
    }
    // Two backends in emulator mode (object_store finds Azurite through
    // AZURITE_BLOB_STORAGE_URL), one through an explicit endpoint, account and key.
    let toml = format!(
        "[[backend]]\nid = \"az-a\"\nkind = \"azure\"\naccount = \"{ACCOUNT}\"\ncontainer = \"shards-a\"\n\
         use_emulator = true\ntimeout_secs = 10\nmax_retries = 1\n\n\
         [[backend]]\nid = \"az-b\"\nkind = \"azure\"\ncontainer = \"shards-b\"\nuse_emulator = true\n\
         prefix = \"gw\"\n\n\
         [[backend]]\nid = \"az-c\"\nkind = \"azure\"\naccount = \"{ACCOUNT}\"\ncontainer = \"shards-c\"\n\
         endpoint = \"{}/{ACCOUNT}\"\naccess_key = \"{ACCOUNT_KEY}\"\n",
        azurite.url()
    );
    let srv = TestServer::start(
        ServerOptions::new()
            .default_policy("ec-2-1")
            .config_toml(toml)
            .env("AZURITE_BLOB_STORAGE_URL", &azurite.url()),
    );
    let view = srv.admin("GET", "/api/v1/redundancy").await.1;
    for b in view["backends"].as_array().expect("backends") {
        assert_eq!(b["consecutive_failures"], 0, "Azurite backend failed its probe: {b}");
    }
    let c = srv.client();
    create_bucket(&c, "data").await;
    let big = random_bytes(3 * MIB + 11);
    put_bytes(&c, "data", "big", &big).await;
    let parts = [random_bytes(5 * MIB), random_bytes(MIB + 1)];
    let up = ok(
        c.create_multipart_upload().bucket("data").key("mp").send().await,
        "CreateMultipartUpload",
    );
    let id = up.upload_id().expect("upload id").to_owned();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(
            c.upload_part()
                .bucket("data")
                .key("mp")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(p.clone()))
                .send()
                .await,
            "UploadPart",
        );
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().expect("etag"))
                .build(),
        );
    }
    ok(
        c.complete_multipart_upload()
            .bucket("data")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await,
        "CompleteMultipartUpload",
    );
    assert_same_bytes(&get_bytes(&c, "data", "big").await, &big, "GET big from Azurite");
    assert_same_bytes(
        &get_bytes(&c, "data", "mp").await,
        &parts.concat(),
        "GET mp from Azurite",
    );
    let out = ok(
        c.get_object()
            .bucket("data")
            .key("big")
            .range(format!("bytes={}-{}", MIB - 5, 2 * MIB + 5))
            .send()
            .await,
        "ranged GET",
    );
    assert_same_bytes(
        &collect_body(out.body).await,
        &big[MIB - 5..=2 * MIB + 5],
        "ranged GET big from Azurite",
    );

    // The shards are blobs: every set has one shard in each container, equal in size.
    let mut by_set: BTreeMap<String, BTreeMap<usize, u64>> = BTreeMap::new();
    for (container, prefix) in [("shards-a", ""), ("shards-b", "gw/"), ("shards-c", "")] {
        let blobs = azurite.list_blobs(container).await;
        let shards: Vec<(String, usize, u64)> = blobs
            .iter()
            .filter_map(|(name, len)| {
                let rest = name.strip_prefix(&format!("{prefix}shards/"))?;
                let (set, idx) = rest.split_once('/')?;
                Some((set.to_owned(), idx.parse().ok()?, *len))
            })
            .collect();
        assert!(
            !shards.is_empty(),
            "no shard blobs under {prefix}shards/ in container {container}: {blobs:?}"
        );
        for (set, idx, len) in shards {
            assert!(
                by_set.entry(set.clone()).or_default().insert(idx, len).is_none(),
                "set {set}: shard {idx} in two containers"
            );
        }
    }
    assert!(by_set.len() >= 3, "expected at least three shard sets: {by_set:?}");
    for (set, shards) in &by_set {
        assert_eq!(
            shards.keys().copied().collect::<BTreeSet<_>>(),
            (0..3).collect(),
            "set {set}: shards {shards:?}"
        );
        let sizes: BTreeSet<u64> = shards.values().copied().collect();
        assert_eq!(sizes.len(), 1, "set {set}: blob sizes differ: {shards:?}");
    }
}
