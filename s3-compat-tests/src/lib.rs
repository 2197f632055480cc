//! Harness for driving a real `mlsysops` process over real HTTP.
//!
//! Every test owns its server: a temp dir holding `data/` (the gateway's data
//! dir) and `server.log` (stdout and stderr of every incarnation of the
//! process), so that a failing test can show what the server said.
//!
//! The modules, by what they hold:
//! - [`process`]: the server process (options, start, stop, kill, restart, its dirs and log);
//! - [`client`]: aws-sdk-s3 clients of a server (path style, virtual-host style);
//! - [`admin`]: the admin API and the `mlsysops admin` CLI;
//! - [`agent`]: `mlsysops agent` processes;
//! - [`layout`]: backend dirs and the shard sets on them;
//! - [`metrics`]: the Prometheus page;
//! - [`raw_http`]: requests sent without the SDK;
//! - [`s3`]: SDK calls and their answers and errors;
//! - [`multipart`]: multipart uploads;
//! - [`sse_c`]: customer-provided keys and their headers;
//! - [`data`]: test data, MD5s and ETags;
//! - [`config`]: TOML config files;
//! - [`wait`]: polling for asynchronous work;
//! - [`s3s_fs`]: s3s-fs servers as remote backends.
//!
//! Everything the tests use is re-exported here, for `use s3_compat_tests::*;`.

pub mod admin;
pub mod agent;
pub mod client;
pub mod config;
pub mod data;
pub mod layout;
pub mod metrics;
pub mod multipart;
pub mod process;
pub mod raw_http;
pub mod s3;
pub mod s3s_fs;
pub mod sse_c;
pub mod wait;

pub use aws_sdk_s3;
pub use client::{RequestLog, REGION};
pub use config::six_local_backends;
pub use data::{assert_same_bytes, etag_of, md5_hex, multipart_etag, random_bytes, MIB};
pub use layout::{layout_problem, set_locations, snapshot_files, wait_for_layout};
pub use metrics::prom_value;
pub use multipart::{put_multipart, Multipart};
pub use process::{binary_path, ServerOptions, SpawnFailure, TestServer, ACCESS_KEY, ADMIN_TOKEN, SECRET_KEY};
pub use raw_http::{raw_request, RawResponse};
pub use s3::{
    collect_body, copy_source, create_bucket, err_info, expect_err, get_bytes, ok, percent_encode, put_bytes,
    url_decode, ErrInfo,
};
pub use s3s_fs::free_port;
pub use sse_c::{SseC, WithCopySourceSseC, WithSseC};
pub use wait::{eventually, until};
