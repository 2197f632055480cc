//! Backends described by configuration (`[[backend]]` tables) and built with object_store.

use super::Backend;
use crate::error::{Error, Result};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use placement::BackendLabels;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which kind of store a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A local directory.
    Local,
    /// Process memory (tests and demos; lost at exit).
    Memory,
    /// Amazon S3 or any S3-compatible server (MinIO, s3s-fs, another mlsysops).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage (or Azurite).
    Azure,
}

impl BackendKind {
    /// The kind as configured (`local`, `memory`, `s3`, `gcs`, `azure`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Memory => "memory",
            BackendKind::S3 => "s3",
            BackendKind::Gcs => "gcs",
            BackendKind::Azure => "azure",
        }
    }
}

/// One `[[backend]]` table. Which keys apply depends on `kind`; keys that do not apply are
/// refused so that a typo never silently falls back to a default.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Unique id; recorded in manifests, so it must not change while data lives there.
    pub id: String,
    /// The kind of store.
    pub kind: Option<BackendKind>,
    /// local: the directory.
    pub path: Option<PathBuf>,
    /// s3/azure: service URL (e.g. `http://127.0.0.1:9100`); the provider's default if unset.
    pub endpoint: Option<String>,
    /// s3/gcs: bucket name.
    pub bucket: Option<String>,
    /// azure: storage account.
    pub account: Option<String>,
    /// azure: container.
    pub container: Option<String>,
    /// Key prefix inside the bucket/container, so several gateways can share one.
    pub prefix: Option<String>,
    /// s3: signing region [default: us-east-1].
    pub region: Option<String>,
    /// s3: access key id (or azure: account key) given inline.
    pub access_key: Option<String>,
    /// s3: secret key given inline.
    pub secret_key: Option<String>,
    /// Name of the env var holding the access key (or azure account key).
    pub access_key_env: Option<String>,
    /// Name of the env var holding the secret key.
    pub secret_key_env: Option<String>,
    /// s3: path-style requests (`endpoint/bucket/key`) [default: true when an endpoint is set].
    pub path_style: Option<bool>,
    /// gcs: service account JSON file.
    pub service_account_path: Option<PathBuf>,
    /// azure: talk to the Azurite emulator.
    pub use_emulator: Option<bool>,
    /// Per-request timeout of remote kinds, seconds [default: 30].
    pub timeout_secs: Option<u64>,
    /// Retries of a failed remote request [default: 2]; a backend that keeps failing is routed
    /// around by the health tracker instead.
    pub max_retries: Option<usize>,
    /// Labels used by placement.
    #[serde(default)]
    pub labels: BackendLabels,
    /// Faults to inject (latency, bandwidth, errors, outages, bit flips): tests and simulation.
    #[serde(default)]
    pub faults: Option<super::FaultSpec>,
}

impl std::fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("BackendSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("account", &self.account)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key", &redact(&self.access_key))
            .field("secret_key", &redact(&self.secret_key))
            .field("access_key_env", &self.access_key_env)
            .field("secret_key_env", &self.secret_key_env)
            .field("labels", &self.labels)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl BackendSpec {
    /// A local-directory backend.
    #[must_use]
    pub fn local(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            kind: Some(BackendKind::Local),
            path: Some(path.into()),
            labels: BackendLabels {
                provider: "local".into(),
                ..BackendLabels::default()
            },
            ..Self::default()
        }
    }

    fn kind_name(&self) -> &'static str {
        self.kind.map_or("(none)", BackendKind::name)
    }

    fn bad(&self, msg: impl std::fmt::Display) -> Error {
        Error::Config(format!("backend {:?}: {msg}", self.id))
    }

    fn need<'a>(&self, v: &'a Option<String>, key: &str) -> Result<&'a str> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.bad(format!("`{key}` is required for kind {}", self.kind_name())))
    }

    /// Refuses keys that mean nothing for this kind.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        let present = [
            ("path", self.path.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("bucket", self.bucket.is_some()),
            ("account", self.account.is_some()),
            ("container", self.container.is_some()),
            ("prefix", self.prefix.is_some()),
            ("region", self.region.is_some()),
            ("access_key", self.access_key.is_some()),
            ("secret_key", self.secret_key.is_some()),
            ("access_key_env", self.access_key_env.is_some()),
            ("secret_key_env", self.secret_key_env.is_some()),
            ("path_style", self.path_style.is_some()),
            ("service_account_path", self.service_account_path.is_some()),
            ("use_emulator", self.use_emulator.is_some()),
            ("timeout_secs", self.timeout_secs.is_some()),
            ("max_retries", self.max_retries.is_some()),
        ];
        for (key, set) in present {
            if set && !allowed.contains(&key) {
                return Err(self.bad(format!("`{key}` does not apply to kind {}", self.kind_name())));
            }
        }
        Ok(())
    }

    /// A secret given inline or through the named env var.
    fn secret(&self, inline: &Option<String>, env: &Option<String>, key: &str) -> Result<Option<String>> {
        match (inline, env) {
            (Some(_), Some(_)) => Err(self.bad(format!("give `{key}` or `{key}_env`, not both"))),
            (Some(v), None) => Ok(Some(v.clone())),
            (None, Some(name)) => std::env::var(name)
                .map(Some)
                .map_err(|_| self.bad(format!("env var {name:?} named by `{key}_env` is not set"))),
            (None, None) => Ok(None),
        }
    }

    fn client_options(&self) -> ClientOptions {
        let mut o = ClientOptions::new()
            .with_timeout(Duration::from_secs(self.timeout_secs.unwrap_or(30)))
            .with_connect_timeout(Duration::from_secs(5));
        if self.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) {
            o = o.with_allow_http(true);
        }
        o
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: self.max_retries.unwrap_or(2),
            retry_timeout: Duration::from_secs(self.timeout_secs.unwrap_or(30)),
        }
    }

    /// Builds the backend. Nothing is contacted yet: reachability is probed separately, so a
    /// backend that is down at start is marked down instead of failing the start.
    pub fn build(&self) -> Result<Backend> {
        if self.id.is_empty() || self.id.contains('/') {
            return Err(self.bad("`id` must be non-empty and contain no '/'"));
        }
        let kind = self
            .kind
            .ok_or_else(|| self.bad("`kind` is required (local, memory, s3, gcs, azure)"))?;
        if let Some(f) = &self.faults {
            f.validate().map_err(|e| self.bad(e))?;
        }
        const REMOTE: [&str; 3] = ["timeout_secs", "max_retries", "prefix"];
        let store: Arc<dyn ObjectStore> = match kind {
            BackendKind::Local => {
                self.only(&["path"])?;
                let path = self
                    .path
                    .clone()
                    .ok_or_else(|| self.bad("`path` is required for kind local"))?;
                return Backend::local(&self.id, path).map(|b| self.finish(b));
            }
            BackendKind::Memory => {
                self.only(&[])?;
                Arc::new(InMemory::new())
            }
            BackendKind::S3 => {
                self.only(
                    &[
                        &REMOTE[..],
                        &[
                            "endpoint",
                            "bucket",
                            "region",
                            "access_key",
                            "secret_key",
                            "access_key_env",
                            "secret_key_env",
                            "path_style",
                        ],
                    ]
                    .concat(),
                )?;
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(self.need(&self.bucket, "bucket")?)
                    .with_region(self.region.as_deref().unwrap_or("us-east-1"))
                    .with_client_options(self.client_options())
                    .with_retry(self.retry());
                if let Some(e) = &self.endpoint {
                    b = b
                        .with_endpoint(e)
                        .with_virtual_hosted_style_request(!self.path_style.unwrap_or(true));
                }
                let ak = self.secret(&self.access_key, &self.access_key_env, "access_key")?;
                let sk = self.secret(&self.secret_key, &self.secret_key_env, "secret_key")?;
                match (ak, sk) {
                    (Some(ak), Some(sk)) => b = b.with_access_key_id(ak).with_secret_access_key(sk),
                    (None, None) => {
                        // No keys configured: take the standard AWS env credentials if present.
                        for (var, key) in [
                            ("AWS_ACCESS_KEY_ID", object_store::aws::AmazonS3ConfigKey::AccessKeyId),
                            (
                                "AWS_SECRET_ACCESS_KEY",
                                object_store::aws::AmazonS3ConfigKey::SecretAccessKey,
                            ),
                            ("AWS_SESSION_TOKEN", object_store::aws::AmazonS3ConfigKey::Token),
                        ] {
                            if let Ok(v) = std::env::var(var) {
                                b = b.with_config(key, v);
                            }
                        }
                    }
                    _ => return Err(self.bad("give both access and secret key, or neither")),
                }
                Arc::new(b.build().map_err(|e| self.bad(e))?)
            }
            BackendKind::Gcs => {
                self.only(&[&REMOTE[..], &["bucket", "service_account_path"]].concat())?;
                let mut b = GoogleCloudStorageBuilder::new()
                    .with_bucket_name(self.need(&self.bucket, "bucket")?)
                    .with_client_options(self.client_options())
                    .with_retry(self.retry());
                if let Some(p) = &self.service_account_path {
                    b = b.with_service_account_path(p.to_string_lossy());
                }
                Arc::new(b.build().map_err(|e| self.bad(e))?)
            }
            BackendKind::Azure => {
                self.only(
                    &[
                        &REMOTE[..],
                        &[
                            "account",
                            "container",
                            "access_key",
                            "access_key_env",
                            "use_emulator",
                            "endpoint",
                        ],
                    ]
                    .concat(),
                )?;
                let mut b = MicrosoftAzureBuilder::new()
                    .with_container_name(self.need(&self.container, "container")?)
                    .with_client_options(self.client_options())
                    .with_retry(self.retry());
                if let Some(a) = &self.account {
                    b = b.with_account(a);
                }
                if let Some(k) = self.secret(&self.access_key, &self.access_key_env, "access_key")? {
                    b = b.with_access_key(k);
                }
                if self.use_emulator == Some(true) {
                    if self.endpoint.is_some() {
                        // object_store ignores the endpoint in emulator mode (it reads
                        // AZURITE_BLOB_STORAGE_URL): refuse rather than silently misdirect.
                        return Err(self.bad(
                            "give `use_emulator` (address from AZURITE_BLOB_STORAGE_URL, default http://127.0.0.1:10000) or `endpoint`, not both",
                        ));
                    }
                    b = b.with_use_emulator(true);
                }
                if let Some(e) = &self.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                Arc::new(b.build().map_err(|e| self.bad(e))?)
            }
        };
        let store: Arc<dyn ObjectStore> = match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => Arc::new(PrefixStore::new(store, p)),
            _ => store,
        };
        Ok(self.finish(Backend::remote(&self.id, store)))
    }

    /// Kind, labels and faults, common to every kind.
    fn finish(&self, backend: Backend) -> Backend {
        let mut backend = backend.with_labels(self.labels.clone());
        if let Some(kind) = self.kind {
            backend = backend.with_kind(kind);
        }
        match &self.faults {
            Some(f) => backend.with_faults(f.clone()),
            None => backend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library has no TOML dependency; these tests speak JSON, the binary's speak TOML.
    fn parse(text: &str) -> BackendSpec {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn kinds_build_from_their_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ok = [
            format!(r#"{{"id":"l","kind":"local","path":{:?}}}"#, dir.path()),
            r#"{"id":"m","kind":"memory"}"#.to_string(),
            r#"{"id":"s","kind":"s3","endpoint":"http://127.0.0.1:1","bucket":"b","access_key":"a","secret_key":"s","prefix":"gw1/"}"#.to_string(),
            r#"{"id":"g","kind":"gcs","bucket":"b"}"#.to_string(),
            r#"{"id":"z","kind":"azure","account":"devstoreaccount1","container":"c","use_emulator":true}"#.to_string(),
            r#"{"id":"e","kind":"s3","bucket":"b","labels":{"provider":"aws","region":"eu","gdpr":true,"cost_per_gib_month":0.023}}"#.to_string(),
        ];
        for text in &ok {
            let spec = parse(text);
            let b = spec.build().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(b.id(), spec.id);
            assert_eq!(b.labels(), &spec.labels);
        }
    }

    #[test]
    fn wrong_settings_are_refused_with_the_backend_named() {
        let bad = [
            (r#"{"id":"x"}"#, "`kind` is required"),
            (r#"{"id":"x","kind":"local"}"#, "`path` is required"),
            (r#"{"id":"x","kind":"s3"}"#, "`bucket` is required"),
            (r#"{"id":"x","kind":"memory","bucket":"b"}"#, "`bucket` does not apply"),
            (
                r#"{"id":"x","kind":"s3","bucket":"b","access_key":"a"}"#,
                "both access and secret",
            ),
            (
                r#"{"id":"x","kind":"s3","bucket":"b","access_key":"a","access_key_env":"A"}"#,
                "not both",
            ),
            (
                r#"{"id":"x","kind":"s3","bucket":"b","access_key_env":"MLSYSOPS_TEST_SURELY_UNSET","secret_key":"s"}"#,
                "is not set",
            ),
            (r#"{"id":"","kind":"memory"}"#, "`id` must be"),
            (
                r#"{"id":"x","kind":"azure","container":"c","use_emulator":true,"endpoint":"http://h:1"}"#,
                "not both",
            ),
            (r#"{"id":"x","kind":"gcs"}"#, "`bucket` is required for kind gcs"),
        ];
        for (text, want) in bad {
            let err = parse(text).build().expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("backend \""), "{text}: {err}");
        }
        let unknown: Result<BackendSpec, _> =
            serde_json::from_str(r#"{"id":"x","kind":"s3","bucket":"b","regoin":"eu"}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let spec = parse(r#"{"id":"s","kind":"s3","bucket":"b","access_key":"AKIDVISIBLE","secret_key":"TOPSECRET"}"#);
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("TOPSECRET") && !shown.contains("AKIDVISIBLE"),
            "{shown}"
        );
    }
}
