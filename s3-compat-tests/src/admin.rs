//! The admin API of a test server (bearer token, JSON in and out), the waits built on it
//! (migration done, stragglers settled) and the `mlsysops admin` CLI run on its data dir.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use control_api::{Client, Method, MigrationState};

use crate::process::{binary_path, TestServer, ADMIN_TOKEN};

impl TestServer {
    /// A typed client of this server's admin API (the `control-api` crate's, as the CLI and
    /// the agents use it) with the test token, or with `token` (none: no `Authorization`).
    pub fn admin_client(&self, token: Option<&str>) -> Client {
        Client::at(self.admin_addr(), token.map(str::to_owned)).expect("admin API client")
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
        self.exchange(method, path, token, None).await
    }

    /// Calls the admin API with a JSON request body and the test token; returns the status and
    /// the JSON response body.
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
        let (status, text) = self.exchange(method, path, token, Some(bytes)).await;
        let json = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("admin {method} {path} with body {body}: {status}, response is not JSON ({e}): {text:?}")
        });
        (status, json)
    }

    /// Sends one admin request with an arbitrary body (as `application/json`, malformed or
    /// not) and returns the status and the response body as text.
    pub async fn admin_send(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
        self.exchange(method, path, token, Some(body)).await
    }

    async fn exchange(&self, method: &str, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (u16, String) {
        let m = Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("HTTP method {method:?}: {e}"));
        let (status, text) = self
            .admin_client(token)
            .send_text(m, path, body)
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
        (status.as_u16(), text)
    }

    /// Polls the bucket's migration progress until it is `done` with nothing remaining, and
    /// returns that view; panics with the last view on timeout.
    pub async fn wait_migration_done(&self, bucket: &str, timeout: Duration) -> serde_json::Value {
        let client = self.admin_client(Some(ADMIN_TOKEN));
        let deadline = Instant::now() + timeout;
        loop {
            let view = client.migration(bucket).await;
            if let Ok(v) = &view {
                if v.state == MigrationState::Done && v.objects_remaining == 0 {
                    return serde_json::to_value(v).expect("migration view as JSON");
                }
            }
            if Instant::now() >= deadline {
                panic!("migration of bucket {bucket} not done within {timeout:?}; last view: {view:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no shard of an acknowledged PUT is still being written (a PUT returns at
    /// its write quorum; the last shards may land just after), so that what is on the
    /// backends' disks can be inspected.
    pub async fn settled(&self) {
        let client = self.admin_client(Some(ADMIN_TOKEN));
        for _ in 0..300 {
            if client.redundancy().await.is_ok_and(|r| r.straggling_shards == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("shards of acknowledged writes still in flight after 30 s");
    }

    /// Runs `mlsysops admin <args> --data-dir <data>` with the server's env and waits for
    /// it; its output goes to the server log too.
    pub fn run_admin(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(binary_path())
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(self.options().env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {} admin: {e}", binary_path().display()));
        self.append_log(&format!(
            "[admin {args:?}] {}\n[admin out] {}\n[admin err] {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
        out
    }
}
