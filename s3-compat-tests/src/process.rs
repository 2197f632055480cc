//! The gateway process of a test: its options, spawning it and waiting for its endpoint lines,
//! stopping, killing and restarting it, its temp dir (data dir, scratch space) and its log.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Bearer token of the admin API of every test server.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Access key the test servers accept.
pub const ACCESS_KEY: &str = "testaccess";

/// Secret key of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testsecret-123456";

const ENDPOINT_MARKER: &str = "S3 endpoint: ";

const ADMIN_MARKER: &str = "admin endpoint: ";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Command-line knobs of `mlsysops serve`; `None` leaves the server default.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `--local-backends`.
    pub local_backends: Option<usize>,
    /// `--default-policy`.
    pub default_policy: Option<String>,
    /// `--block-size` in bytes.
    pub block_size: Option<u64>,
    /// `--domain` of virtual-host addressing.
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
    /// All server defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `--local-backends`.
    pub fn local_backends(mut self, n: usize) -> Self {
        self.local_backends = Some(n);
        self
    }

    /// Sets `--default-policy`.
    pub fn default_policy(mut self, policy: &str) -> Self {
        self.default_policy = Some(policy.to_owned());
        self
    }

    /// Sets `--block-size`.
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.block_size = Some(bytes);
        self
    }

    /// Sets `--domain`.
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Adds `--flag value`.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.extra.extend([flag.to_owned(), value.to_string()]);
        self
    }

    /// Adds a `--flag` without a value.
    pub fn switch(mut self, flag: &str) -> Self {
        self.extra.push(flag.to_owned());
        self
    }

    /// Serves with this TOML config file.
    pub fn config_toml(mut self, text: impl Into<String>) -> Self {
        self.config_toml = Some(text.into());
        self
    }

    /// Sets `--encryption`.
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

    /// Sets (`Some`) or removes (`None`) an environment variable of the next start, in place
    /// (through [`TestServer::options_mut`]).
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(n, _)| n != name);
        if let Some(v) = value {
            self.env.push((name.to_owned(), v.to_owned()));
        }
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
    /// How the process exited, if it did.
    pub exit_status: Option<ExitStatus>,
    /// What went wrong.
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
    /// Starts a server with `opts` in a fresh temp dir; panics with its log if it does not come up.
    pub fn start(opts: ServerOptions) -> TestServer {
        let mut server = Self::stopped(opts);
        server.start_again();
        server
    }

    /// Starts a server like [`TestServer::start`], but hands back why it did not come up, with
    /// its log, instead of panicking: for starts that must be refused.
    pub fn try_start(opts: ServerOptions) -> Result<TestServer, (SpawnFailure, String)> {
        let mut server = Self::stopped(opts);
        match server.try_start_again() {
            Ok(()) => Ok(server),
            Err(failure) => Err((failure, server.log_contents())),
        }
    }

    /// A server with its temp dir and log, not started yet.
    fn stopped(opts: ServerOptions) -> TestServer {
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
        TestServer {
            root,
            opts,
            running: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            log: Arc::new(Mutex::new(log)),
            incarnation: 0,
        }
    }

    /// Starts the process again on the same data dir (after `stop`/`kill9`).
    pub fn start_again(&mut self) {
        if let Err(failure) = self.try_start_again() {
            panic!(
                "gateway failed to start ({}; exit status {:?})\n--- server log ---\n{}",
                failure.reason,
                failure.exit_status,
                self.log_contents()
            );
        }
    }

    /// Starts the process again like [`TestServer::start_again`], but says why it did not come
    /// up instead of panicking (the log has the rest).
    pub fn try_start_again(&mut self) -> Result<(), SpawnFailure> {
        assert!(self.running.is_none(), "server is already running");
        self.incarnation += 1;
        let tag = format!("server#{}", self.incarnation);
        let running = spawn_server(&self.data_dir(), &self.opts, &self.log, &tag)?;
        self.addr = running.addr;
        self.admin = running.admin;
        self.running = Some(running);
        Ok(())
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

    /// Waits for the process to end by itself (a crash point: `MLSYSOPS_CRASH_AT`), reaps it
    /// and returns how it ended; panics with the log if it is still running after `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut running = self.running.take().expect("server is not running");
        match wait_with_timeout(&mut running.child, timeout) {
            Some(status) => status,
            None => {
                let _ = running.child.kill();
                let _ = running.child.wait();
                panic!(
                    "gateway still running {timeout:?} after it should have ended by itself\n--- server log ---\n{}",
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

    /// Process id of the running server (for reading its `/proc` entries).
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// Whether the process is up (not stopped or killed).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Address of the S3 endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Port of the S3 endpoint.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Address of the admin API (for tools run against it, e.g. `MLSYSOPS_ADMIN_URL`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// URL of the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The options the server runs with.
    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// The options the next `start_again` uses (the server must be stopped to matter).
    pub fn options_mut(&mut self) -> &mut ServerOptions {
        &mut self.opts
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

    /// Path of the log of every incarnation of the process.
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// The log so far.
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Appends `text` to the server log, for what the harness ran beside the server.
    pub(crate) fn append_log(&self, text: &str) {
        if let Ok(mut f) = self.log.lock() {
            let _ = writeln!(f, "{text}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_line_parses() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:4321"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(parse_endpoint("https://127.0.0.1:1"), None);
    }
}
