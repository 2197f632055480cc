//! Harness for `s3s-fs`, a real S3 server that stores objects as plain files, used as the
//! remote backends of a gateway under test.
//!
//! Every server owns a temp dir holding `root/` (the directory it serves: one subdirectory per
//! bucket, one file per object) and `s3s-fs.log` (stdout and stderr of every incarnation), and
//! a fixed port, so that it can be killed and started again on the same data and address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Credentials every s3s-fs server of the tests accepts.
pub const S3S_ACCESS_KEY: &str = "s3sfs-access";
pub const S3S_SECRET_KEY: &str = "s3sfs-secret-0123456789";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the s3s-fs binary: `S3S_FS_BIN`, else `<workspace>/target/tools/bin/s3s-fs`.
pub fn s3s_fs_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("S3S_FS_BIN") {
        return PathBuf::from(bin);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target/tools/bin/s3s-fs")
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0 and released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// One s3s-fs process on a fixed port over a fixed root; killed when dropped.
pub struct S3sFs {
    name: String,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    incarnation: u32,
}

impl S3sFs {
    /// Starts a server named `name` (used in messages) on a free port, with `buckets`
    /// created as directories of its root.
    pub fn start(name: &str, buckets: &[&str]) -> S3sFs {
        let bin = s3s_fs_binary();
        assert!(
            bin.exists(),
            "s3s-fs binary {} not found: install it with `source scripts/lib.sh && ensure_s3s_fs` \
             (scripts/lib.sh: ensure_s3s_fs) or point S3S_FS_BIN at one",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("mlsysops-s3sfs-{name}-"))
            .tempdir()
            .expect("create s3s-fs temp dir");
        let mut server = S3sFs {
            name: name.to_owned(),
            dir,
            port: free_port(),
            child: None,
            incarnation: 0,
        };
        for bucket in buckets {
            server.create_bucket_dir(bucket);
        }
        server.start_again();
        server
    }

    /// Creates `bucket` as a directory of the root (s3s-fs's notion of a bucket).
    pub fn create_bucket_dir(&self, bucket: &str) {
        fs::create_dir_all(self.root().join(bucket)).expect("create s3s-fs bucket dir");
    }

    /// Starts the process again on the same root and port (after `kill`).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "s3s-fs {} is already running", self.name);
        fs::create_dir_all(self.root()).expect("create s3s-fs root");
        self.incarnation += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open s3s-fs log");
        let _ = writeln!(
            &log,
            "[harness] starting {} incarnation {} on port {}",
            self.name, self.incarnation, self.port
        );
        let err_log = log.try_clone().expect("clone s3s-fs log handle");
        let mut child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3S_ACCESS_KEY, "--secret-key", S3S_SECRET_KEY])
            .arg(self.root())
            .env(
                "RUST_LOG",
                std::env::var("S3S_FS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", s3s_fs_binary().display()));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "s3s-fs {} exited with {status} before listening on port {}\n--- s3s-fs log ---\n{}",
                    self.name,
                    self.port,
                    self.log_contents()
                );
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "s3s-fs {} did not listen on port {} within {READY_TIMEOUT:?}\n--- s3s-fs log ---\n{}",
                    self.name,
                    self.port,
                    self.log_contents()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// SIGKILL, and reaps the process (its port is closed once it is gone).
    pub fn kill(&mut self) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("s3s-fs {} is not running", self.name));
        child.kill().expect("kill s3s-fs");
        child.wait().expect("reap s3s-fs");
    }

    /// Kill and start again on the same root and port.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The directory the server serves.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("s3s-fs.log")
    }

    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Regular files under `<root>/<bucket>/<prefix>` (relative to the bucket dir, `/`
    /// separated) with their sizes.
    pub fn files(&self, bucket: &str, prefix: &str) -> BTreeMap<String, u64> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
            let entries = match fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) => panic!("reading {}: {e}", dir.display()),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => walk(base, &path, out),
                    Ok(t) if t.is_file() => {
                        let rel = path.strip_prefix(base).expect("under base");
                        let rel = rel
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join("/");
                        out.insert(rel, entry.metadata().map(|m| m.len()).unwrap_or(0));
                    }
                    _ => {}
                }
            }
        }
        let base = self.root().join(bucket);
        let mut out = BTreeMap::new();
        walk(&base, &base.join(prefix), &mut out);
        out
    }

    /// Shard objects `shards/<set>/<index>` under `<bucket>/<prefix>`: set -> index -> size.
    pub fn shards(&self, bucket: &str, prefix: &str) -> BTreeMap<String, BTreeMap<usize, u64>> {
        let mut out: BTreeMap<String, BTreeMap<usize, u64>> = BTreeMap::new();
        let dir = if prefix.is_empty() {
            "shards".to_owned()
        } else {
            format!("{}/shards", prefix.trim_end_matches('/'))
        };
        for (rel, size) in self.files(bucket, &dir) {
            let tail = rel.strip_prefix(&format!("{dir}/")).unwrap_or(&rel);
            let mut parts = tail.split('/');
            if let (Some(set), Some(idx), None) = (parts.next(), parts.next(), parts.next()) {
                if let Ok(idx) = idx.parse() {
                    out.entry(set.to_owned()).or_default().insert(idx, size);
                }
            }
        }
        out
    }

    /// A `[[backend]]` table of kind s3 for this server. `timeout_secs` and `max_retries` are
    /// small so that a killed server fails calls fast.
    pub fn backend_table(&self, id: &str, bucket: &str, prefix: Option<&str>) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "[[backend]]");
        let _ = writeln!(t, "id = {id:?}");
        let _ = writeln!(t, "kind = \"s3\"");
        let _ = writeln!(t, "endpoint = {:?}", self.endpoint());
        let _ = writeln!(t, "bucket = {bucket:?}");
        if let Some(p) = prefix {
            let _ = writeln!(t, "prefix = {p:?}");
        }
        let _ = writeln!(t, "region = \"us-east-1\"");
        let _ = writeln!(t, "access_key = {S3S_ACCESS_KEY:?}");
        let _ = writeln!(t, "secret_key = {S3S_SECRET_KEY:?}");
        let _ = writeln!(t, "path_style = true");
        let _ = writeln!(t, "timeout_secs = 10");
        let _ = writeln!(t, "max_retries = 1");
        let _ = writeln!(t, "labels = {{ provider = \"s3s-fs\", region = \"test\" }}");
        t
    }
}

/// `[[backend]]` tables for `servers`, ids `ids[i]`, all storing into `bucket`.
pub fn backends_toml(servers: &[&S3sFs], ids: &[&str], bucket: &str) -> String {
    assert_eq!(servers.len(), ids.len(), "one id per server");
    servers
        .iter()
        .zip(ids)
        .map(|(s, id)| s.backend_table(id, bucket, None))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log_contents();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- s3s-fs {} log ({}), last {} lines ---\n{}\n--- end of s3s-fs log ---",
                self.name,
                self.log_path().display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}
