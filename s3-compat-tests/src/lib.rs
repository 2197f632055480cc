//! Harness for driving a real `mlsysops` process over real HTTP.
//!
//! Every test owns its server: a temp dir holding `data/` (the gateway's data
//! dir) and `server.log` (stdout and stderr of every incarnation of the
//! process), so that a failing test can show what the server said.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use bytes::Bytes;
use md5::{Digest, Md5};
use rand::RngCore;
use tempfile::TempDir;

pub use aws_sdk_s3;
pub mod s3s_fs;

pub const ACCESS_KEY: &str = "testaccess";
pub const SECRET_KEY: &str = "testsecret-123456";
pub const REGION: &str = "us-east-1";
pub const MIB: usize = 1024 * 1024;

const ENDPOINT_MARKER: &str = "S3 endpoint: ";
const ADMIN_MARKER: &str = "admin endpoint: ";
/// Bearer token of the admin API of every test server.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Command-line knobs of `mlsysops serve`; `None` leaves the server default.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    pub local_backends: Option<usize>,
    pub default_policy: Option<String>,
    pub block_size: Option<u64>,
    pub domain: Option<String>,
    /// Further `--flag value` pairs.
    pub extra: Vec<String>,
    /// Contents of a TOML config file passed with `--config`.
    pub config_toml: Option<String>,
    /// `--encryption auto|on|off`.
    pub encryption: Option<String>,
    /// Extra environment variables for the process (e.g. `MLSYSOPS_MASTER_KEY`).
    pub env: Vec<(String, String)>,
}

impl ServerOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn local_backends(mut self, n: usize) -> Self {
        self.local_backends = Some(n);
        self
    }

    pub fn default_policy(mut self, policy: &str) -> Self {
        self.default_policy = Some(policy.to_owned());
        self
    }

    pub fn block_size(mut self, bytes: u64) -> Self {
        self.block_size = Some(bytes);
        self
    }

    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Adds `--flag value`.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.extra.extend([flag.to_owned(), value.to_string()]);
        self
    }

    /// Serves with this TOML config file.
    pub fn config_toml(mut self, text: impl Into<String>) -> Self {
        self.config_toml = Some(text.into());
        self
    }

    pub fn encryption(mut self, mode: &str) -> Self {
        self.encryption = Some(mode.to_owned());
        self
    }

    /// Sets (or replaces) an environment variable of the server process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(n) = self.local_backends {
            args.extend(["--local-backends".to_owned(), n.to_string()]);
        }
        if let Some(p) = &self.default_policy {
            args.extend(["--default-policy".to_owned(), p.clone()]);
        }
        if let Some(b) = self.block_size {
            args.extend(["--block-size".to_owned(), b.to_string()]);
        }
        if let Some(d) = &self.domain {
            args.extend(["--domain".to_owned(), d.clone()]);
        }
        args.extend(self.extra.iter().cloned());
        if let Some(e) = &self.encryption {
            args.extend(["--encryption".to_owned(), e.clone()]);
        }
        args
    }

    /// Number of backend directories the server will create.
    pub fn backend_count(&self) -> usize {
        self.local_backends.unwrap_or(6)
    }
}

/// Path of the gateway binary: `MLSYSOPS_BIN`, else `<target>/debug/mlsysops`.
pub fn binary_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("MLSYSOPS_BIN") {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("debug").join("mlsysops")
}

type SharedLog = Arc<Mutex<fs::File>>;

struct Running {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

/// Why a spawn did not produce a listening server.
#[derive(Debug)]
pub struct SpawnFailure {
    pub exit_status: Option<ExitStatus>,
    pub reason: String,
}

fn pump<R: Read + Send + 'static>(
    stream: R,
    log: SharedLog,
    tag: String,
    ready: Option<mpsc::Sender<(&'static str, String)>>,
) {
    std::thread::spawn(move || {
        let mut ready = ready;
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "[{tag}] {text}");
            }
            for marker in [ENDPOINT_MARKER, ADMIN_MARKER] {
                if let Some(pos) = text.find(marker) {
                    if let Some(tx) = &ready {
                        let _ = tx.send((marker, text[pos + marker.len()..].trim().to_owned()));
                    }
                    if marker == ADMIN_MARKER {
                        // The admin line comes last: the server is ready.
                        ready = None;
                    }
                }
            }
        }
        // Dropping `ready` here tells the waiter that stdout closed without
        // the endpoint line, i.e. the process is exiting.
    });
}

fn parse_endpoint(url: &str) -> Option<SocketAddr> {
    url.strip_prefix("http://")?.trim_end_matches('/').parse().ok()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_server(data_dir: &Path, opts: &ServerOptions, log: &SharedLog, tag: &str) -> Result<Running, SpawnFailure> {
    let bin = binary_path();
    if !bin.exists() {
        return Err(SpawnFailure {
            exit_status: None,
            reason: format!(
                "gateway binary {} not found: run `cargo build --bin mlsysops` first or set MLSYSOPS_BIN",
                bin.display()
            ),
        });
    }
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(
            f,
            "[harness] starting {tag}: {} serve --data-dir {} {:?}",
            bin.display(),
            data_dir.display(),
            opts.args()
        );
    }
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--s3-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(opts.args());
    if let Some(text) = &opts.config_toml {
        let path = data_dir.with_file_name("config.toml");
        fs::write(&path, text).expect("write config file");
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd
        .env("MLSYSOPS_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("MLSYSOPS_ACCESS_KEY", ACCESS_KEY)
        .env("MLSYSOPS_SECRET_KEY", SECRET_KEY)
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SpawnFailure {
            exit_status: None,
            reason: format!("spawning {}: {e}", bin.display()),
        })?;
    let (tx, rx) = mpsc::channel();
    pump(
        child.stdout.take().expect("stdout piped"),
        log.clone(),
        format!("{tag} out"),
        Some(tx),
    );
    pump(
        child.stderr.take().expect("stderr piped"),
        log.clone(),
        format!("{tag} err"),
        None,
    );
    let mut s3 = None;
    let waited = loop {
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok((ENDPOINT_MARKER, url)) => s3 = Some(url),
            Ok((_, admin)) => break Ok((s3.clone().unwrap_or_default(), admin)),
            Err(e) => break Err(e),
        }
    };
    match waited {
        Ok((url, admin_url)) => match (parse_endpoint(&url), parse_endpoint(&admin_url)) {
            (Some(addr), Some(admin)) => Ok(Running { child, addr, admin }),
            _ => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(SpawnFailure {
                    exit_status: status,
                    reason: format!(
                        "unparseable endpoint lines `{ENDPOINT_MARKER}{url}` / `{ADMIN_MARKER}{admin_url}`"
                    ),
                })
            }
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let status = child.wait().ok();
            Err(SpawnFailure {
                exit_status: status,
                reason: format!("no `{ENDPOINT_MARKER}` line within {READY_TIMEOUT:?}"),
            })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = wait_with_timeout(&mut child, READY_TIMEOUT);
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(SpawnFailure {
                exit_status: status,
                reason: format!("stdout closed before the `{ENDPOINT_MARKER}` line"),
            })
        }
    }
}

/// A gateway process with its own temp dir; killed when dropped.
pub struct TestServer {
    root: TempDir,
    opts: ServerOptions,
    running: Option<Running>,
    addr: SocketAddr,
    admin: SocketAddr,
    log: SharedLog,
    incarnation: u32,
}

impl TestServer {
    pub fn start(opts: ServerOptions) -> TestServer {
        let root = tempfile::Builder::new()
            .prefix("mlsysops-s3-test-")
            .tempdir()
            .expect("create temp dir");
        fs::create_dir_all(root.path().join("data")).expect("create data dir");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.path().join("server.log"))
            .expect("open server log");
        let mut server = TestServer {
            root,
            opts,
            running: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            log: Arc::new(Mutex::new(log)),
            incarnation: 0,
        };
        server.start_again();
        server
    }

    /// Starts the process again on the same data dir (after `stop`/`kill9`).
    pub fn start_again(&mut self) {
        assert!(self.running.is_none(), "server is already running");
        self.incarnation += 1;
        let tag = format!("server#{}", self.incarnation);
        match spawn_server(&self.data_dir(), &self.opts, &self.log, &tag) {
            Ok(running) => {
                self.addr = running.addr;
                self.admin = running.admin;
                self.running = Some(running);
            }
            Err(failure) => panic!(
                "gateway failed to start ({}; exit status {:?})\n--- server log ---\n{}",
                failure.reason,
                failure.exit_status,
                self.log_contents()
            ),
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut running = self.running.take().expect("server is not running");
        let pid = rustix::process::Pid::from_child(&running.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
        match wait_with_timeout(&mut running.child, STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = running.child.kill();
                let _ = running.child.wait();
                panic!(
                    "gateway did not exit within {STOP_TIMEOUT:?} of SIGTERM\n--- server log ---\n{}",
                    self.log_contents()
                );
            }
        }
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        let mut running = self.running.take().expect("server is not running");
        running.child.kill().expect("send SIGKILL");
        running.child.wait().expect("reap killed server");
    }

    /// Graceful stop (which must exit with status 0) and start on the same data.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "gateway exited with {status} after SIGTERM\n--- server log ---\n{}",
            self.log_contents()
        );
        self.start_again();
    }

    /// Tries to run a second process on this server's data dir, which must be
    /// refused while this one holds the metadata lock. A second process that
    /// does come up is killed again; `Ok` carries its address.
    pub fn try_start_second_instance(&self) -> Result<SocketAddr, SpawnFailure> {
        let mut running = spawn_server(&self.data_dir(), &self.opts, &self.log, "intruder")?;
        let _ = running.child.kill();
        let _ = running.child.wait();
        Ok(running.addr)
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Calls the admin API: `method path` with the test token (or `token`); returns the status
    /// and the JSON body.
    pub async fn admin(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        self.admin_with_token(method, path, Some(ADMIN_TOKEN)).await
    }

    /// Like [`Self::admin`] with a chosen bearer token (or none).
    pub async fn admin_with_token(&self, method: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let (status, body) = self.admin_raw(method, path, token).await;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("admin {method} {path}: {status}, body is not JSON ({e}): {body:?}"));
        (status, json)
    }

    /// Calls the admin API and returns the status and the body as text (e.g. `/metrics`).
    pub async fn admin_raw(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        self.admin_send(method, path, token, None, Vec::new()).await
    }

    /// Calls the admin API with a JSON request body (`content-type: application/json`) and the
    /// test token; returns the status and the JSON response body.
    pub async fn admin_json(&self, method: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.admin_json_with_token(method, path, body, Some(ADMIN_TOKEN)).await
    }

    /// Like [`Self::admin_json`] with a chosen bearer token (or none).
    pub async fn admin_json_with_token(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let bytes = serde_json::to_vec(&body).expect("serialize JSON body");
        let (status, text) = self
            .admin_send(method, path, token, Some("application/json"), bytes)
            .await;
        let json = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("admin {method} {path} with body {body}: {status}, response is not JSON ({e}): {text:?}")
        });
        (status, json)
    }

    /// Sends one admin request with an arbitrary body (`content_type`, when given, as its
    /// content type) and returns the status and the response body as text.
    pub async fn admin_send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String) {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(self.admin)
            .await
            .expect("connect to admin port");
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("admin HTTP handshake");
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.admin.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = send
            .send_request(
                req.body(http_body_util::Full::new(Bytes::from(body)))
                    .expect("admin request"),
            )
            .await
            .expect("admin request sent");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("admin body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Address of the admin API (for tools run against it, e.g. `MLSYSOPS_ADMIN_URL`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Polls `GET /api/v1/buckets/{bucket}/migration` until the bucket's migration is `done`
    /// with nothing remaining, and returns that view; panics with the last view on timeout.
    pub async fn wait_migration_done(&self, bucket: &str, timeout: Duration) -> serde_json::Value {
        let path = format!("/api/v1/buckets/{bucket}/migration");
        let deadline = Instant::now() + timeout;
        loop {
            let (status, view) = self.admin("GET", &path).await;
            if status == 200 && view["state"] == "done" && view["objects_remaining"] == 0 {
                return view;
            }
            if Instant::now() >= deadline {
                panic!("migration of bucket {bucket} not done within {timeout:?}; last view: HTTP {status} {view}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no shard of an acknowledged PUT is still being written (a PUT returns at
    /// its write quorum; the last shards may land just after), so that what is on the
    /// backends' disks can be inspected.
    pub async fn settled(&self) {
        for _ in 0..300 {
            let (status, view) = self.admin("GET", "/api/v1/redundancy").await;
            if status == 200 && view["straggling_shards"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("shards of acknowledged writes still in flight after 30 s");
    }

    /// The `/metrics` page (Prometheus text), fetched with the test token.
    pub async fn metrics(&self) -> String {
        let (status, text) = self.admin_raw("GET", "/metrics", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        text
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// The options the next `start_again` uses (the server must be stopped to matter).
    pub fn options_mut(&mut self) -> &mut ServerOptions {
        &mut self.opts
    }

    /// Runs `mlsysops admin <args> --data-dir <data>` with the server's env and waits for
    /// it; its output goes to the server log too.
    pub fn run_admin(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(binary_path())
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {} admin: {e}", binary_path().display()));
        if let Ok(mut f) = self.log.lock() {
            let _ = writeln!(
                f,
                "[admin {args:?}] {}\n[admin out] {}\n[admin err] {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        out
    }

    /// The directory passed as `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Scratch space next to (not inside) the data dir, on the same file system.
    pub fn scratch_dir(&self) -> PathBuf {
        let dir = self.root.path().join("scratch");
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    pub fn backend_dir(&self, i: usize) -> PathBuf {
        self.data_dir().join("backends").join(format!("local{i}"))
    }

    pub fn backend_dirs(&self) -> Vec<PathBuf> {
        (0..self.opts.backend_count()).map(|i| self.backend_dir(i)).collect()
    }

    /// Shard-set directory names on one backend (`<backend>/shards/<set>`).
    pub fn shard_sets(&self, backend: usize) -> BTreeSet<String> {
        shard_sets_in(&self.backend_dir(backend))
    }

    /// Shard sets per backend, indexed like the backends.
    pub fn all_shard_sets(&self) -> Vec<BTreeSet<String>> {
        (0..self.opts.backend_count()).map(|i| self.shard_sets(i)).collect()
    }

    /// Distinct shard sets found on any backend.
    pub fn distinct_shard_sets(&self) -> BTreeSet<String> {
        self.all_shard_sets().into_iter().flatten().collect()
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        self.client_with_credentials(ACCESS_KEY, SECRET_KEY)
    }

    pub fn client_with_credentials(&self, access_key: &str, secret_key: &str) -> Client {
        Client::from_conf(
            base_config(access_key, secret_key)
                .endpoint_url(self.endpoint())
                .force_path_style(true)
                .build(),
        )
    }

    /// A client addressing buckets as `<bucket>.localhost:<port>`. Names under
    /// `localhost` are resolved to 127.0.0.1 by the client itself, and the
    /// returned log holds the URI of every request it transmitted.
    pub fn virtual_host_client(&self) -> (Client, RequestLog) {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_with_resolver(LoopbackResolver);
        let log = RequestLog::default();
        let conf = base_config(ACCESS_KEY, SECRET_KEY)
            .endpoint_url(format!("http://localhost:{}", self.port()))
            .force_path_style(false)
            .http_client(http_client)
            .interceptor(log.clone())
            .build();
        (Client::from_conf(conf), log)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log_contents();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "--- server log ({}), last {} lines ---\n{}\n--- end of server log ---",
                self.log_path().display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

fn base_config(access_key: &str, secret_key: &str) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "s3-compat-tests"))
        // Every error must surface as the server sent it; a retried 503 or
        // 500 would hide the first answer.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(180))
                .build(),
        )
}

#[derive(Debug, Clone)]
struct LoopbackResolver;

impl ResolveDns for LoopbackResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        if name == "localhost" || name.ends_with(".localhost") {
            DnsFuture::ready(Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]))
        } else {
            DnsFuture::ready(Err(ResolveDnsError::new(format!(
                "test resolver only knows *.localhost, not {name}"
            ))))
        }
    }
}

/// URIs of the requests a client sent, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<String>>>);

impl RequestLog {
    pub fn uris(&self) -> Vec<String> {
        self.0.lock().expect("request log").clone()
    }
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0
            .lock()
            .expect("request log")
            .push(context.request().uri().to_owned());
        Ok(())
    }
}

fn shard_sets_in(backend: &Path) -> BTreeSet<String> {
    let dir = backend.join("shards");
    match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("reading {}: {e}", dir.display()),
    }
}

/// Shard set -> the backend indexes holding a directory of it.
pub fn set_locations(srv: &TestServer) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, sets) in srv.all_shard_sets().into_iter().enumerate() {
        for set in sets {
            out.entry(set).or_default().insert(i);
        }
    }
    out
}

/// What is wrong with the layout, if anything: a set on a backend outside `allowed`, a set
/// not on exactly `width` backends, or a number of sets outside `sets`.
pub fn layout_problem(
    srv: &TestServer,
    allowed: &BTreeSet<usize>,
    width: usize,
    sets: std::ops::RangeInclusive<usize>,
) -> Option<String> {
    let locations = set_locations(srv);
    for (set, on) in &locations {
        if !on.is_subset(allowed) {
            return Some(format!("set {set} is on backends {on:?}, allowed are {allowed:?}"));
        }
        if on.len() != width {
            return Some(format!("set {set} is on {} backends {on:?}, want {width}", on.len()));
        }
    }
    if !sets.contains(&locations.len()) {
        return Some(format!("{} shard sets, want {sets:?}: {locations:?}", locations.len()));
    }
    None
}

/// Waits (settling stragglers, then up to 30 s for the reaper) until every shard set is on
/// exactly `width` backends, all within `allowed`, and there are `sets` of them; panics with
/// what is wrong otherwise.
pub async fn wait_for_layout(
    srv: &TestServer,
    allowed: &BTreeSet<usize>,
    width: usize,
    sets: std::ops::RangeInclusive<usize>,
) {
    srv.settled().await;
    let ok = eventually(Duration::from_secs(30), || {
        layout_problem(srv, allowed, width, sets.clone()).is_none()
    })
    .await;
    assert!(
        ok,
        "shard layout: {}",
        layout_problem(srv, allowed, width, sets.clone()).unwrap_or_default()
    );
}

/// Every regular file under `dir` (relative path) with its size and MD5.
pub fn snapshot_files(dir: &Path) -> BTreeMap<String, (u64, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, String)>) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => panic!("reading {}: {e}", dir.display()),
        };
        for entry in entries {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                walk(base, &path, out);
            } else {
                let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let rel = path
                    .strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, (data.len() as u64, md5_hex(&data)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Polls `check` until it returns true or `timeout` passes; returns the last
/// result. For converging on asynchronous server work, not for timing.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The quoted ETag S3 gives a single-PUT object.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// The quoted ETag S3 gives a multipart object: MD5 of the concatenated
/// binary part MD5s, then `-<part count>`.
pub fn multipart_etag<P: AsRef<[u8]>>(parts: &[P]) -> String {
    let mut all = Vec::with_capacity(16 * parts.len());
    for p in parts {
        all.extend_from_slice(&Md5::digest(p.as_ref()));
    }
    format!("\"{}-{}\"", md5_hex(&all), parts.len())
}

/// `x-amz-copy-source` value: the SDK sends it verbatim, so the key must be
/// percent-encoded here (slashes stay as separators).
pub fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", percent_encode(key, true))
}

/// RFC 3986 percent-encoding of everything but unreserved characters (and
/// `/` when `keep_slash`).
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `encoding-type=url` output: `%XX` escapes, and `+` as a space
/// (S3 form-encodes spaces).
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a failed SDK call carried back from the server.
#[derive(Debug, Clone)]
pub struct ErrInfo {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub detail: String,
}

pub fn err_info<E>(err: &SdkError<E, HttpResponse>) -> ErrInfo
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    ErrInfo {
        status: err.raw_response().map(|r| r.status().as_u16()),
        code: err.code().map(str::to_owned),
        message: err.message().map(str::to_owned),
        detail: format!("{}", DisplayErrorContext(err)),
    }
}

/// Asserts `result` failed with HTTP `status` and, when given, S3 error `code`.
#[track_caller]
pub fn expect_err<T, E>(result: Result<T, SdkError<E, HttpResponse>>, status: u16, code: Option<&str>) -> ErrInfo
where
    T: Debug,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(out) => panic!("expected HTTP {status} {code:?}, but the request succeeded: {out:?}"),
        Err(err) => {
            let info = err_info(&err);
            assert_eq!(
                info.status,
                Some(status),
                "expected HTTP {status} {code:?}, got {info:?}"
            );
            if let Some(code) = code {
                assert_eq!(
                    info.code.as_deref(),
                    Some(code),
                    "expected error code {code} (HTTP {status}), got {info:?}"
                );
            }
            info
        }
    }
}

/// Unwraps an SDK result, printing the server's error in full on failure.
#[track_caller]
pub fn ok<T, E>(result: Result<T, SdkError<E, HttpResponse>>, what: &str) -> T
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(v) => v,
        Err(err) => panic!("{what} failed: {:?}", err_info(&err)),
    }
}

pub async fn create_bucket(client: &Client, bucket: &str) {
    ok(
        client.create_bucket().bucket(bucket).send().await,
        &format!("CreateBucket {bucket}"),
    );
}

pub async fn put_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    data: &[u8],
) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    ok(
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data.to_vec()))
            .send()
            .await,
        &format!("PutObject {bucket}/{key} ({} bytes)", data.len()),
    )
}

/// Uploads `parts` as one multipart upload of `bucket/key` and completes it.
pub async fn put_multipart(client: &Client, bucket: &str, key: &str, parts: &[Vec<u8>]) {
    let up = ok(
        client.create_multipart_upload().bucket(bucket).key(key).send().await,
        &format!("CreateMultipartUpload {bucket}/{key}"),
    );
    let id = up.upload_id().expect("upload id").to_owned();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(
            client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(p.clone()))
                .send()
                .await,
            &format!("UploadPart {bucket}/{key} #{n} ({} bytes)", p.len()),
        );
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().expect("part etag"))
                .build(),
        );
    }
    ok(
        client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await,
        &format!("CompleteMultipartUpload {bucket}/{key}"),
    );
}

pub async fn get_bytes(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = ok(
        client.get_object().bucket(bucket).key(key).send().await,
        &format!("GetObject {bucket}/{key}"),
    );
    collect_body(out.body).await
}

pub async fn collect_body(body: ByteStream) -> Vec<u8> {
    body.collect().await.expect("read response body").into_bytes().to_vec()
}

/// Asserts two byte strings are equal without dumping megabytes on failure.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: content differs: got {} bytes (md5 {}), want {} bytes (md5 {}); first differing offset {:?}",
            got.len(),
            md5_hex(got),
            want.len(),
            md5_hex(want),
            first_diff
        );
    }
}

/// A response read off the wire without the SDK in between.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `<Code>` of an S3 XML error body.
    pub fn error_code(&self) -> Option<String> {
        let text = self.body_text();
        let start = text.find("<Code>")? + "<Code>".len();
        let end = text[start..].find("</Code>")? + start;
        Some(text[start..end].to_owned())
    }
}

/// Sends one HTTP/1.1 request to `url` (`http://host:port/path?query`) with
/// exactly the given headers plus `Host`.
pub async fn raw_request(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> RawResponse {
    use http_body_util::{BodyExt, Full};

    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("bad url {url}: {e}"));
    let authority = uri.authority().expect("url has authority").clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("build raw request");
    let resp = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("read raw body").to_bytes();
    RawResponse { status, headers, body }
}

/// A TOML config of six local backends `b0`..`b5` under `root`; `faults[i]`, when present, is
/// the inline `faults` table of backend i (e.g. `latency_ms = 40`).
pub fn six_local_backends<S: AsRef<str>>(root: &Path, faults: &BTreeMap<usize, S>) -> String {
    (0..6)
        .map(|i| {
            let f = faults
                .get(&i)
                .map(|f| format!("faults = {{ {} }}\n", f.as_ref()))
                .unwrap_or_default();
            format!(
                "[[backend]]\nid = \"b{i}\"\nkind = \"local\"\npath = {:?}\n{f}\n",
                root.join(format!("b{i}"))
            )
        })
        .collect()
}

/// The value of the Prometheus sample `name` whose labels include every `label=value` pair of
/// `labels`, summed over the samples that match (e.g. over status codes).
pub fn prom_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if matches {
            let v: f64 = value.trim().split(' ').next().unwrap_or("").parse().ok()?;
            total = Some(total.unwrap_or(0.0) + v);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_matches_s3_definition() {
        let a = b"hello".to_vec();
        let b = b"world".to_vec();
        let mut cat = Md5::digest(&a).to_vec();
        cat.extend_from_slice(&Md5::digest(&b));
        assert_eq!(
            multipart_etag(&[a, b]),
            format!("\"{}-2\"", hex::encode(Md5::digest(&cat)))
        );
    }

    #[test]
    fn url_decoding_handles_plus_and_escapes() {
        assert_eq!(url_decode("with+space"), "with space");
        assert_eq!(url_decode("a%2Bb"), "a+b");
        assert_eq!(url_decode("100%25"), "100%");
        assert_eq!(url_decode("%C3%BC"), "ü");
        assert_eq!(url_decode("trail%"), "trail%");
    }

    #[test]
    fn percent_encoding_keeps_unreserved_and_slash() {
        assert_eq!(percent_encode("a b/ü+%", true), "a%20b/%C3%BC%2B%25");
        assert_eq!(percent_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn endpoint_line_parses() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:4321"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(parse_endpoint("https://127.0.0.1:1"), None);
    }
}
