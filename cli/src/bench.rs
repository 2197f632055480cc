//! `mlsysops bench`: the load generator against any S3 endpoint.

use anyhow::Context;
use clap::Args;
use loadgen::{BenchConfig, Workload};
use std::path::PathBuf;
use std::time::Duration;

/// `mlsysops bench` flags.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// S3 endpoint URL.
    #[arg(long, env = "MLSYSOPS_BENCH_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    /// Access key id (env AWS_ACCESS_KEY_ID); the secret key is read from AWS_SECRET_ACCESS_KEY
    /// only, never from a flag.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    /// Region to sign for.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// Bucket (created when missing).
    #[arg(long, default_value = "mlsysops-bench")]
    bucket: String,
    /// Key prefix of the run's objects.
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// put, get, mixed, list or multipart.
    #[arg(long, default_value = "put")]
    workload: String,
    /// Object size: 4096, 64KiB, 8MiB, 1GiB, ...
    #[arg(long, default_value = "1MiB")]
    size: String,
    /// Multipart part size.
    #[arg(long, default_value = "8MiB")]
    part_size: String,
    /// Objects prepared for get, mixed and list.
    #[arg(long, default_value_t = 100)]
    objects: usize,
    /// Operations in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds to run (0: until --ops).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many operations.
    #[arg(long)]
    ops: Option<u64>,
    /// Share of GETs in the mixed workload.
    #[arg(long, default_value_t = 0.8)]
    read_ratio: f64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs the benchmark, prints the table on stdout, writes JSON when asked.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let secret_key = std::env::var("AWS_SECRET_ACCESS_KEY")
        .context("AWS_SECRET_ACCESS_KEY must hold the secret key (it is never taken from a flag)")?;
    let duration = Duration::try_from_secs_f64(args.duration)
        .with_context(|| format!("--duration {} is not a number of seconds", args.duration))?;
    let cfg = BenchConfig {
        endpoint: args.endpoint,
        region: args.region,
        access_key: args.access_key,
        secret_key,
        bucket: args.bucket,
        prefix: args.prefix,
        workload: args.workload.parse::<Workload>()?,
        object_size: loadgen::config::parse_size(&args.size)?,
        part_size: loadgen::config::parse_size(&args.part_size)?,
        objects: args.objects,
        concurrency: args.concurrency,
        duration,
        max_ops: args.ops,
        read_ratio: args.read_ratio,
        progress: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let report = rt.block_on(loadgen::run(&cfg))?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let errors: u64 = report.ops.values().map(|o| o.errors).sum();
    if errors > 0 {
        anyhow::bail!("{errors} operations failed");
    }
    Ok(())
}
