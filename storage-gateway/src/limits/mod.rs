//! What a client may hold of the gateway, before and while it is served: connections, time to
//! send a request head, idle time, the pace of a request body, HTTP/2 streams and header sizes,
//! and the memory request and response bodies occupy.
//!
//! - [`connections`]: the connection cap and the per-connection watchdog (time to the first
//!   request, idle time), over an I/O wrapper that notes when bytes move.
//! - [`body`]: a request body that fails when the client stops sending.
//! - [`listener`]: the accept loop both ports run, with hyper's header, stream and timeout
//!   limits.
//! - [`memory`]: a budget in bytes shared by every PUT and GET body in flight; a request that
//!   cannot get its share within a short wait is answered `503 SlowDown`.

pub mod body;
pub mod connections;
pub mod listener;
pub mod memory;

use std::time::Duration;

/// Limits on clients of the S3 port; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Connections served at once; beyond it a new connection is answered `503 SlowDown` and
    /// closed at once.
    pub max_connections: usize,
    /// Time a client has to send a complete request head, counted from when the connection
    /// starts waiting for it (on HTTP/1.1 also the idle time between requests).
    pub header_timeout: Duration,
    /// A connection on which no byte moved for this long, with no request being worked on,
    /// is closed (idle HTTP/2 connections; clients that stopped reading a response).
    pub idle_timeout: Duration,
    /// A request body that delivers nothing for this long while the gateway waits for it
    /// fails with `RequestTimeout`, and the connection is closed.
    pub body_timeout: Duration,
    /// Largest request head in bytes (HTTP/1.1: the read buffer; HTTP/2: the header list).
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1.1 request.
    pub max_headers: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_streams: u32,
    /// Bytes all PUT and GET bodies in flight may occupy together.
    pub body_memory_bytes: u64,
    /// How long a request waits for its share of `body_memory_bytes` before `503 SlowDown`.
    pub body_memory_wait: Duration,
}

impl LimitsConfig {
    /// Default of [`Self::max_connections`].
    pub const MAX_CONNECTIONS: usize = 1024;
    /// Default of [`Self::header_timeout`].
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
    /// Default of [`Self::idle_timeout`].
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default of [`Self::body_timeout`].
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default of [`Self::max_header_bytes`].
    pub const MAX_HEADER_BYTES: usize = 64 << 10;
    /// The smallest [`Self::max_header_bytes`] hyper accepts.
    pub const MIN_HEADER_BYTES: usize = 8 << 10;
    /// Default of [`Self::max_headers`] (hyper's own default).
    pub const MAX_HEADERS: usize = 100;
    /// Default of [`Self::h2_max_streams`].
    pub const H2_MAX_STREAMS: u32 = 100;
    /// Default of [`Self::body_memory_bytes`] (the binary lowers it to a quarter of RAM on
    /// smaller machines).
    pub const BODY_MEMORY_BYTES: u64 = 1 << 30;
    /// Default of [`Self::body_memory_wait`].
    pub const BODY_MEMORY_WAIT: Duration = Duration::from_secs(1);

    /// Refuses values the server could not run with.
    ///
    /// # Errors
    /// Names the first setting out of range.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("limits: {name} must be more than 0 seconds"));
        }
        if self.max_connections == 0 {
            return Err("limits: max_connections must be at least 1".into());
        }
        if self.max_header_bytes < Self::MIN_HEADER_BYTES || u32::try_from(self.max_header_bytes).is_err() {
            return Err(format!(
                "limits: max_header_bytes must be between {} and {}, got {}",
                Self::MIN_HEADER_BYTES,
                u32::MAX,
                self.max_header_bytes
            ));
        }
        if self.max_headers == 0 || self.h2_max_streams == 0 {
            return Err("limits: max_headers and h2_max_streams must be at least 1".into());
        }
        if self.body_memory_bytes < memory::UNIT {
            return Err(format!(
                "limits: body_memory_bytes must be at least {} bytes",
                memory::UNIT
            ));
        }
        Ok(())
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: Self::MAX_CONNECTIONS,
            header_timeout: Self::HEADER_TIMEOUT,
            idle_timeout: Self::IDLE_TIMEOUT,
            body_timeout: Self::BODY_TIMEOUT,
            max_header_bytes: Self::MAX_HEADER_BYTES,
            max_headers: Self::MAX_HEADERS,
            h2_max_streams: Self::H2_MAX_STREAMS,
            body_memory_bytes: Self::BODY_MEMORY_BYTES,
            body_memory_wait: Self::BODY_MEMORY_WAIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_their_own_check_and_nonsense_does_not() {
        assert_eq!(LimitsConfig::default().check(), Ok(()));
        let bad = [
            LimitsConfig {
                max_connections: 0,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                header_timeout: Duration::ZERO,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                max_header_bytes: 100,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                body_memory_bytes: 1,
                ..LimitsConfig::default()
            },
        ];
        for b in bad {
            assert!(b.check().is_err(), "{b:?} passed");
        }
    }
}
