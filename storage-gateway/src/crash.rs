//! Crash points: a test hook that aborts the process at a named step of a write, so that
//! recovery from each step can be tested deterministically
//! (`s3-compat-tests/tests/crash_points.rs`). Not for production use.
//!
//! `MLSYSOPS_CRASH_AT=<point>` is read once, when the server starts; unset, a check costs one
//! load of an initialised cell.

use crate::error::{Error, Result};
use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const ENV: &str = "MLSYSOPS_CRASH_AT";

/// A step of a write at which the process can be made to abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// A new shard set is stored (to the write quorum, synced as configured), not committed.
    AfterShards,
    /// A commit is written to the catalog (not yet synced, nothing reaped, not acknowledged).
    AfterCommit,
    /// The commit is durable as configured; the answer is not sent yet.
    BeforeAck,
    /// The reaper is about to delete a replaced set (its doom is durable as configured).
    BeforeReap,
    /// The reaper deleted a set's shards on one backend, not yet on the others.
    MidReap,
}

impl CrashPoint {
    /// Every crash point.
    pub const ALL: [CrashPoint; 5] = [
        CrashPoint::AfterShards,
        CrashPoint::AfterCommit,
        CrashPoint::BeforeAck,
        CrashPoint::BeforeReap,
        CrashPoint::MidReap,
    ];

    /// The name `MLSYSOPS_CRASH_AT` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterShards => "after-shards",
            CrashPoint::AfterCommit => "after-commit",
            CrashPoint::BeforeAck => "before-ack",
            CrashPoint::BeforeReap => "before-reap",
            CrashPoint::MidReap => "mid-reap",
        }
    }
}

static ARMED: OnceLock<Option<CrashPoint>> = OnceLock::new();

fn parse(value: &str) -> Result<CrashPoint> {
    CrashPoint::ALL.into_iter().find(|p| p.name() == value).ok_or_else(|| {
        let names: Vec<&str> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
        Error::Config(format!("{ENV}={value:?} names no crash point ({})", names.join(", ")))
    })
}

/// Reads `MLSYSOPS_CRASH_AT` (once per process): the armed point, if any; an unknown name is
/// refused.
pub fn arm() -> Result<Option<CrashPoint>> {
    let value = std::env::var(ENV).ok().filter(|v| !v.is_empty());
    let point = value.as_deref().map(parse).transpose()?;
    Ok(*ARMED.get_or_init(|| point))
}

/// Aborts the process here if `point` is armed.
pub(crate) fn point(point: CrashPoint) {
    if *ARMED.get_or_init(|| None) == Some(point) {
        eprintln!("{ENV}={}: aborting the process (test hook)", point.name());
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_are_refused() {
        for p in CrashPoint::ALL {
            assert_eq!(parse(p.name()).unwrap(), p);
        }
        let err = parse("after-lunch").unwrap_err().to_string();
        assert!(
            err.contains("MLSYSOPS_CRASH_AT=\"after-lunch\" names no crash point"),
            "{err}"
        );
    }
}
