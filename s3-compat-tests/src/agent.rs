//! `mlsysops agent` processes (one agent tier each) beside a test's gateway.

use crate::process::{binary_path, ADMIN_TOKEN};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// One `mlsysops agent` process; killed when dropped.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    /// Starts `mlsysops agent <args>`, logging to `log` (appended), and waits for the lines
    /// naming the addresses it listens on (`agent link: `, `northbound API: `).
    pub fn start(args: &[String], log: &Path, expect: &[&str]) -> (AgentProcess, Vec<String>) {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("agent log");
        let mut child = Command::new(binary_path())
            .arg("agent")
            .args(args)
            .env("MLSYSOPS_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn mlsysops agent");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut found = Vec::new();
        for prefix in expect {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "agent exited before printing {prefix:?}: {}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                })
                .expect("agent stdout");
            let addr = line
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"));
            found.push(addr.to_owned());
        }
        (AgentProcess { child }, found)
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
