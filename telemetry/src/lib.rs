//! Telemetry of the data plane.
//!
//! - [`Telemetry`]: the one handle the data path records into; it feeds both of the below.
//! - [`stats`]: sliding-window statistics (1 min, 15 min, 1 h) per backend, bucket and principal, the
//!   typed view the agents and the hedged reader decide from.
//! - [`otel`]: OpenTelemetry instruments, exported as Prometheus text and over OTLP, and the
//!   tracing layer that turns spans into OTLP traces.

mod hub;
pub mod otel;
pub mod stats;

pub use hub::Telemetry;

#[cfg(feature = "otlp-receiver")]
pub mod otlp_receiver;
