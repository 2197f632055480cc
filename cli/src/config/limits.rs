//! The `[limits]` table and its flags: what clients may hold of the S3 port.

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use std::time::Duration;
use storage_gateway::limits::LimitsConfig;

/// Flags of the most-tuned limits (the rest are TOML only).
#[derive(Args, Debug, Default)]
pub struct LimitsArgs {
    /// Connections served at once; more are answered 503 SlowDown and closed [default: 1024].
    #[arg(long, env = "MLSYSOPS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request head (also the HTTP/1.1 keep-alive idle time)
    /// [default: 20].
    #[arg(long, env = "MLSYSOPS_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<f64>,
    /// Seconds a connection may sit with no byte moving and no request being worked on
    /// [default: 60].
    #[arg(long, env = "MLSYSOPS_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<f64>,
    /// Seconds a request body may send nothing before it is cut off with RequestTimeout
    /// [default: 30].
    #[arg(long, env = "MLSYSOPS_BODY_TIMEOUT_SECS")]
    body_timeout_secs: Option<f64>,
    /// MiB all PUT/GET bodies in flight may occupy; beyond it requests get 503 SlowDown
    /// [default: a quarter of RAM, at most 1024].
    #[arg(long, env = "MLSYSOPS_BODY_MEMORY_MIB")]
    body_memory_mib: Option<u64>,
}

/// `[limits]` in the TOML file: every key optional.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    max_connections: Option<usize>,
    header_timeout_secs: Option<f64>,
    idle_timeout_secs: Option<f64>,
    body_timeout_secs: Option<f64>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    h2_max_streams: Option<u32>,
    body_memory_mib: Option<u64>,
    body_memory_wait_ms: Option<u64>,
}

/// Flags over the file over the defaults.
pub fn resolve(args: LimitsArgs, file: LimitsFile) -> anyhow::Result<LimitsConfig> {
    let d = LimitsConfig::default();
    let secs = |flag: Option<f64>, key: Option<f64>, default: Duration, name: &str| -> anyhow::Result<Duration> {
        match flag.or(key) {
            Some(s) => super::interval(s, &format!("limits.{name}")),
            None => Ok(default),
        }
    };
    let body_memory_bytes = match args.body_memory_mib.or(file.body_memory_mib) {
        Some(0) => bail!("limits.body_memory_mib must be at least 1"),
        Some(mib) => mib
            .checked_mul(1 << 20)
            .context("limits.body_memory_mib is too large")?,
        None => default_body_memory(),
    };
    let limits = LimitsConfig {
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(d.max_connections),
        header_timeout: secs(
            args.header_timeout_secs,
            file.header_timeout_secs,
            d.header_timeout,
            "header_timeout_secs",
        )?,
        idle_timeout: secs(
            args.idle_timeout_secs,
            file.idle_timeout_secs,
            d.idle_timeout,
            "idle_timeout_secs",
        )?,
        body_timeout: secs(
            args.body_timeout_secs,
            file.body_timeout_secs,
            d.body_timeout,
            "body_timeout_secs",
        )?,
        max_header_bytes: file.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_headers: file.max_headers.unwrap_or(d.max_headers),
        h2_max_streams: file.h2_max_streams.unwrap_or(d.h2_max_streams),
        body_memory_bytes,
        body_memory_wait: file
            .body_memory_wait_ms
            .map_or(d.body_memory_wait, Duration::from_millis),
    };
    limits.check().map_err(anyhow::Error::msg)?;
    Ok(limits)
}

/// A quarter of physical memory, at most [`LimitsConfig::BODY_MEMORY_BYTES`]; that cap when
/// memory cannot be read (not Linux).
fn default_body_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib.saturating_mul(1024))
    });
    let cap = LimitsConfig::BODY_MEMORY_BYTES;
    total.map_or(cap, |t| (t / 4).clamp(64 << 20, cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_nonsense_is_refused() {
        let file: LimitsFile =
            toml::from_str("max_connections = 10\nheader_timeout_secs = 3\nmax_header_bytes = 16384").expect("parses");
        let args = LimitsArgs {
            max_connections: Some(20),
            ..LimitsArgs::default()
        };
        let l = resolve(args, file).expect("valid");
        assert_eq!(l.max_connections, 20);
        assert_eq!(l.header_timeout, Duration::from_secs(3));
        assert_eq!(l.max_header_bytes, 16384);
        assert_eq!(l.idle_timeout, LimitsConfig::IDLE_TIMEOUT);
        assert!(l.body_memory_bytes <= LimitsConfig::BODY_MEMORY_BYTES);

        let bad = |toml: &str| resolve(LimitsArgs::default(), toml::from_str(toml).expect("parses")).is_err();
        assert!(bad("max_header_bytes = 100"));
        assert!(bad("body_timeout_secs = 0"));
        assert!(bad("body_memory_mib = 0"));
        assert!(
            toml::from_str::<LimitsFile>("max_conections = 1").is_err(),
            "a typo is refused"
        );
    }
}
