//! `mlsysops backend`: the backends of a running gateway, and the faults injected into them at
//! run time, through its admin API.

use crate::bucket::{connect, explain, print_view, ConnArgs};
use anyhow::Context;
use clap::{Args, Subcommand};
use control_api::{BackendsView, Faults};
use std::fmt::Write as _;

/// `mlsysops backend` flags and subcommands.
#[derive(Args)]
pub struct BackendArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: BackendCommand,
}

#[derive(Subcommand)]
enum BackendCommand {
    /// List the backends: kind, labels, health, injected faults.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show, set or clear the faults injected into one backend (no flags: show). Setting
    /// replaces the whole spec. Needs a gateway started with --allow-fault-injection.
    Faults(FaultsArgs),
}

#[derive(Args)]
struct FaultsArgs {
    /// Backend id.
    id: String,
    /// Fixed delay added to every call, milliseconds.
    #[arg(long)]
    latency_ms: Option<f64>,
    /// Mean of an exponentially distributed extra delay per call, milliseconds.
    #[arg(long)]
    jitter_ms: Option<f64>,
    /// Cap on bytes moved per second, MiB/s.
    #[arg(long)]
    bandwidth_mib_s: Option<f64>,
    /// Probability (0..=1) that a call fails.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Probability (0..=1) that a read comes back with one bit flipped.
    #[arg(long)]
    bitflip_rate: Option<f64>,
    /// Inject nothing from now on.
    #[arg(
        long,
        conflicts_with_all = ["latency_ms", "jitter_ms", "bandwidth_mib_s", "error_rate", "bitflip_rate"]
    )]
    clear: bool,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

impl FaultsArgs {
    /// The spec the flags describe, `None` when no fault flag was given.
    fn spec(&self) -> Option<Faults> {
        let given = [
            self.latency_ms,
            self.jitter_ms,
            self.bandwidth_mib_s,
            self.error_rate,
            self.bitflip_rate,
        ];
        given.iter().any(Option::is_some).then(|| Faults {
            latency_ms: self.latency_ms.unwrap_or(0.0),
            jitter_ms: self.jitter_ms.unwrap_or(0.0),
            bandwidth_mib_s: self.bandwidth_mib_s,
            error_rate: self.error_rate.unwrap_or(0.0),
            bitflip_rate: self.bitflip_rate.unwrap_or(0.0),
            ..Faults::default()
        })
    }
}

/// Runs a backend command; failures print `error: ...` on stderr and exit with status 1.
pub fn run(args: BackendArgs) -> anyhow::Result<()> {
    if let Err(e) = run_command(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn run_command(args: BackendArgs) -> anyhow::Result<()> {
    let client = connect(&args.conn)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let explain = explain(client.has_token());
    rt.block_on(async move {
        match args.command {
            BackendCommand::List { json } => {
                let view = client.backends().await.map_err(explain)?;
                print_view(&view, json, format_backends)
            }
            BackendCommand::Faults(a) => {
                let answer = if a.clear {
                    client.clear_backend_faults(&a.id).await
                } else if let Some(spec) = a.spec() {
                    client.set_backend_faults(&a.id, &spec).await
                } else {
                    client.backend_faults(&a.id).await
                };
                let faults = answer.map_err(explain)?;
                print_view(&faults, a.json, |f| format!("{}: {}\n", a.id, describe(Some(f))))
            }
        }
    })
}

/// One line per backend.
fn format_backends(view: &BackendsView) -> String {
    let mut out = format!(
        "{:<12} {:<7} {:<9} {:<8} {:<5} {:>9} {:>7}  {:<10} FAULTS\n",
        "ID", "KIND", "PROVIDER", "REGION", "GDPR", "$/GIB-MO", "EGRESS", "HEALTH"
    );
    for b in &view.backends {
        let l = &b.labels;
        let health = if b.suspect {
            format!("suspect({})", b.consecutive_failures)
        } else if b.consecutive_failures > 0 {
            format!("failing({})", b.consecutive_failures)
        } else {
            "ok".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<12} {:<7} {:<9} {:<8} {:<5} {:>9} {:>7}  {:<10} {}",
            b.id,
            b.kind,
            l.provider,
            l.region,
            if l.gdpr { "yes" } else { "no" },
            l.cost_per_gib_month,
            l.egress_per_gib,
            health,
            describe(b.faults.as_ref())
        );
    }
    if !view.fault_injection {
        out.push_str("(fault injection is off: faults cannot be changed at run time)\n");
    }
    out
}

/// A fault spec in a few words.
fn describe(f: Option<&Faults>) -> String {
    let Some(f) = f else { return "-".to_owned() };
    if f.is_empty() {
        return "none".to_owned();
    }
    let mut parts = Vec::new();
    if f.latency_ms > 0.0 {
        parts.push(format!("latency {}ms", f.latency_ms));
    }
    if f.jitter_ms > 0.0 {
        parts.push(format!("jitter {}ms", f.jitter_ms));
    }
    if let Some(b) = f.bandwidth_mib_s {
        parts.push(format!("{b} MiB/s"));
    }
    if f.error_rate > 0.0 {
        parts.push(format!("errors {}", f.error_rate));
    }
    if f.bitflip_rate > 0.0 {
        parts.push(format!("bitflips {}", f.bitflip_rate));
    }
    if !f.outages.is_empty() {
        parts.push(format!("{} outage windows", f.outages.len()));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_described_in_a_few_words() {
        assert_eq!(describe(None), "-");
        assert_eq!(describe(Some(&Faults::default())), "none");
        let f = Faults {
            latency_ms: 300.0,
            error_rate: 0.5,
            bandwidth_mib_s: Some(20.0),
            ..Faults::default()
        };
        assert_eq!(describe(Some(&f)), "latency 300ms, 20 MiB/s, errors 0.5");
    }
}
