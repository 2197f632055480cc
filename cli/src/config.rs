//! Configuration: flags beat env, env beats the TOML file, the file beats defaults.

pub mod agents;
mod limits;

use anyhow::{bail, Context};
use clap::Args;
use control_api::{ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE};
use placement::BucketPolicy;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use storage_gateway::backend::BackendSpec;
use storage_gateway::engine::heal::HealConfig;
use storage_gateway::engine::scrub::ScrubConfig;
use storage_gateway::{AdminConfig, Credentials, GatewayConfig};

/// Name of the generated credentials file inside the data dir.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// `mlsysops serve` flags; each also reads its env var (clap gives the flag precedence).
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "MLSYSOPS_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for metadata, local backends and generated credentials [default: ./data].
    #[arg(long, env = "MLSYSOPS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the S3 API [default: 127.0.0.1:9000].
    #[arg(long, env = "MLSYSOPS_S3_ADDR")]
    s3_addr: Option<SocketAddr>,
    /// Number of local-directory backends under DATA_DIR/backends [default: 6].
    #[arg(long, env = "MLSYSOPS_LOCAL_BACKENDS")]
    local_backends: Option<usize>,
    /// A prepared setup: `multicloud-sim` (six local backends that behave like six clouds in
    /// three regions: injected latency, jitter and bandwidth caps).
    #[arg(long, env = "MLSYSOPS_PROFILE")]
    profile: Option<String>,
    /// Policy of buckets created without a preset: ec-K-M or replicate-N [default: ec-4-2].
    #[arg(long, env = "MLSYSOPS_DEFAULT_POLICY")]
    default_policy: Option<String>,
    /// Plaintext bytes coded at once [default: 1048576].
    #[arg(long, env = "MLSYSOPS_BLOCK_SIZE")]
    block_size: Option<u32>,
    /// Base domain for virtual-host-style requests (repeatable) [default: localhost].
    #[arg(long = "domain", env = "MLSYSOPS_DOMAIN", value_delimiter = ',')]
    domains: Vec<String>,
    /// Address of the admin REST API [default: 127.0.0.1:9001].
    #[arg(long, env = "MLSYSOPS_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// Seconds between healer passes over the repair queue [default: 10].
    #[arg(long, env = "MLSYSOPS_HEAL_INTERVAL_SECS")]
    heal_interval_secs: Option<f64>,
    /// Healer write-rate cap in MiB/s, 0 = none [default: 64].
    #[arg(long, env = "MLSYSOPS_HEAL_RATE_MIB")]
    heal_rate_mib: Option<u64>,
    /// Seconds between scrub passes over every shard [default: 86400].
    #[arg(long, env = "MLSYSOPS_SCRUB_INTERVAL_SECS")]
    scrub_interval_secs: Option<f64>,
    /// Scrubber read-rate cap in MiB/s, 0 = none [default: 32].
    #[arg(long, env = "MLSYSOPS_SCRUB_RATE_MIB")]
    scrub_rate_mib: Option<u64>,
    /// Encrypt new buckets at rest: auto (when any backend is remote), on, off [default: auto].
    #[arg(long, env = "MLSYSOPS_ENCRYPTION")]
    encryption: Option<String>,
    /// OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318) to push metrics and traces to
    /// [default: none; /metrics on the admin port still works].
    #[arg(long, env = "MLSYSOPS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Seconds between OTLP metric pushes [default: 10].
    #[arg(long, env = "MLSYSOPS_OTLP_INTERVAL_SECS")]
    otlp_interval_secs: Option<f64>,
    /// Record telemetry: on, or off (no metrics, no statistics, reads unsteered; for measuring
    /// what telemetry costs) [default: on].
    #[arg(long, env = "MLSYSOPS_TELEMETRY")]
    telemetry: Option<String>,
    /// Key components that form a prefix in per-prefix access counts, 0 = none [default: 1].
    #[arg(long, env = "MLSYSOPS_PREFIX_DEPTH")]
    prefix_depth: Option<usize>,
    /// How GETs pick shards: hedged (predicted fastest first, a lagging shard hedged with one
    /// more) or data-first (data shards first, no hedging) [default: hedged].
    #[arg(long, env = "MLSYSOPS_READ_STRATEGY")]
    read_strategy: Option<String>,
    /// MiB/s the migrator may read when re-encoding or moving objects after a policy change,
    /// 0 = unlimited [default: 64; changeable at run time: PUT /api/v1/migration].
    #[arg(long, env = "MLSYSOPS_MIGRATION_MIB_PER_SEC")]
    migration_mib_per_sec: Option<f64>,
    /// Objects the migrator works on at once, 1..=64 [default: 4].
    #[arg(long, env = "MLSYSOPS_MIGRATION_CONCURRENCY")]
    migration_concurrency: Option<usize>,
    /// Seconds a shard set the metadata does not name must be unchanged before the start-up
    /// sweep moves it to quarantine; 0 = at once [default: 3600].
    #[arg(long, env = "MLSYSOPS_SWEEP_GRACE_SECS")]
    sweep_grace_secs: Option<f64>,
    /// Seconds quarantined shard sets are kept before a start-up sweep deletes them
    /// [default: 604800, 7 days].
    #[arg(long, env = "MLSYSOPS_QUARANTINE_RETENTION_SECS")]
    quarantine_retention_secs: Option<f64>,
    /// Take over backends this metadata cannot vouch for (another deployment's owner marker, a
    /// marker from a later start than this metadata knows, unmarked sets it names none of).
    /// For this start only: a flag, never a file or env setting.
    #[arg(long)]
    adopt: bool,
    /// Start with empty metadata against backends that hold shard sets without an owner
    /// marker. For this start only: a flag, never a file or env setting.
    #[arg(long = "i-know-metadata-is-empty")]
    i_know_metadata_is_empty: bool,
    #[command(flatten)]
    limits: limits::LimitsArgs,
    #[command(flatten)]
    agents: agents::AgentsArgs,
    /// Seconds between audit reads of every healthy backend (a 64 KiB GET that keeps its
    /// latency and bandwidth measured when clients avoid it), 0 = none [default: 5].
    #[arg(long, env = "MLSYSOPS_AUDIT_INTERVAL_SECS")]
    audit_interval_secs: Option<f64>,
    /// Seconds a GET response may wait on a client that reads none of it before it is
    /// abandoned and the object's shard sets are released [default: 60].
    #[arg(long, env = "MLSYSOPS_RESPONSE_STALL_SECS")]
    response_stall_secs: Option<f64>,
    /// When a write is acknowledged: fsync (local shard files, their directories and the
    /// metadata WAL synced first; replaced shards deleted only after that) or relaxed (not
    /// synced: a power loss may lose acknowledged writes) [default: fsync].
    #[arg(long, env = "MLSYSOPS_DURABILITY")]
    durability: Option<String>,
    /// Let the admin API change backends' injected faults (latency, errors, outages, ...) at
    /// run time: every backend gets a fault injector, empty unless it has a `faults` table
    /// [default: false; true with --profile multicloud-sim].
    #[arg(
        long,
        env = "MLSYSOPS_ALLOW_FAULT_INJECTION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    allow_fault_injection: Option<bool>,
}

/// The TOML file: every key optional.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    s3_addr: Option<SocketAddr>,
    local_backends: Option<usize>,
    default_policy: Option<String>,
    block_size: Option<u32>,
    domains: Option<Vec<String>>,
    access_key: Option<String>,
    secret_key: Option<String>,
    admin_addr: Option<SocketAddr>,
    admin_token: Option<String>,
    heal_interval_secs: Option<f64>,
    heal_rate_mib: Option<u64>,
    scrub_interval_secs: Option<f64>,
    scrub_rate_mib: Option<u64>,
    /// `[[backend]]` tables; when present they replace the local default.
    #[serde(default)]
    backend: Vec<BackendSpec>,
    encryption: Option<String>,
    otlp_endpoint: Option<String>,
    otlp_interval_secs: Option<f64>,
    telemetry: Option<String>,
    prefix_depth: Option<usize>,
    read_strategy: Option<String>,
    migration_mib_per_sec: Option<f64>,
    migration_concurrency: Option<usize>,
    sweep_grace_secs: Option<f64>,
    quarantine_retention_secs: Option<f64>,
    /// `[limits]`: what clients may hold of the S3 port.
    #[serde(default)]
    limits: limits::LimitsFile,
    response_stall_secs: Option<f64>,
    durability: Option<String>,
    /// `[agents]`: the in-process agents.
    #[serde(default)]
    agents: agents::AgentsFile,
    audit_interval_secs: Option<f64>,
    allow_fault_injection: Option<bool>,
}

#[derive(Serialize, Deserialize)]
struct StoredCredentials {
    access_key: String,
    secret_key: String,
}

/// Six local backends that behave like six clouds: two providers in each of three regions,
/// with latency, jitter and bandwidth roughly as seen from a client in the EU.
fn multicloud_sim(data_dir: &Path) -> Vec<BackendSpec> {
    /// id, provider, region, latency ms, jitter ms, MiB/s, storage $/GiB-month, egress $/GiB
    type Cloud = (&'static str, &'static str, &'static str, f64, f64, f64, f64, f64);
    const CLOUDS: [Cloud; 6] = [
        ("aws-eu", "aws", "eu", 12.0, 4.0, 80.0, 0.023, 0.09),
        ("gcp-eu", "gcp", "eu", 18.0, 6.0, 60.0, 0.020, 0.12),
        ("aws-us", "aws", "us", 85.0, 12.0, 40.0, 0.023, 0.09),
        ("azure-us", "azure", "us", 95.0, 18.0, 30.0, 0.018, 0.087),
        ("gcp-asia", "gcp", "asia", 170.0, 25.0, 20.0, 0.023, 0.12),
        ("azure-asia", "azure", "asia", 190.0, 35.0, 15.0, 0.020, 0.087),
    ];
    CLOUDS
        .iter()
        .map(|&(id, provider, region, latency_ms, jitter_ms, mib_s, cost, egress)| {
            let mut spec = BackendSpec::local(id, data_dir.join("backends").join(id));
            spec.labels = placement::BackendLabels {
                provider: provider.into(),
                region: region.into(),
                gdpr: region == "eu",
                cost_per_gib_month: cost,
                egress_per_gib: egress,
                bandwidth_mib_s: Some(mib_s),
            };
            spec.faults = Some(storage_gateway::backend::FaultSpec {
                latency_ms,
                jitter_ms,
                bandwidth_mib_s: Some(mib_s),
                ..Default::default()
            });
            spec
        })
        .collect()
}

/// What `resolve` generated on this start (and so may print once).
#[derive(Default)]
pub struct Generated {
    /// The S3 secret key was generated.
    pub credentials: bool,
    /// The admin token was generated.
    pub admin_token: bool,
}

/// How telemetry is recorded and exported (built into a `Telemetry` by `main`, which owns the
/// tracing subscriber that the OTLP span exporter joins).
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Whether anything is recorded.
    pub enabled: bool,
    /// OTLP/HTTP collector base URL.
    pub otlp_endpoint: Option<String>,
    /// Interval of OTLP metric pushes.
    pub otlp_interval: Duration,
    /// Key components per tracked prefix.
    pub prefix_depth: usize,
}

fn interval(secs: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{what} must be a positive number of seconds, got {secs}"))
}

/// A duration of `secs` seconds, zero allowed.
fn secs_or_zero(secs: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .with_context(|| format!("{what} must be a number of seconds >= 0, got {secs}"))
}

fn rate(mib: u64) -> Option<u64> {
    (mib > 0).then(|| mib.saturating_mul(1 << 20))
}

/// Resolves the final configuration and what was generated for it.
pub fn resolve(
    args: ServeArgs,
) -> anyhow::Result<(GatewayConfig, Generated, TelemetrySettings, agents::AgentSettings)> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data"));
    let s3_addr = args
        .s3_addr
        .or(file.s3_addr)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9000)));
    let backends = if let Some(profile) = &args.profile {
        if !file.backend.is_empty() || args.local_backends.is_some() || file.local_backends.is_some() {
            bail!("--profile {profile} brings its own backends: drop local_backends and [[backend]] tables");
        }
        match profile.as_str() {
            "multicloud-sim" => multicloud_sim(&data_dir),
            other => bail!("unknown profile {other:?}: the one profile is multicloud-sim"),
        }
    } else if file.backend.is_empty() {
        let n = args.local_backends.or(file.local_backends).unwrap_or(6);
        if n == 0 {
            bail!("local_backends must be at least 1");
        }
        (0..n)
            .map(|i| BackendSpec::local(format!("local{i}"), data_dir.join("backends").join(format!("local{i}"))))
            .collect()
    } else {
        if args.local_backends.is_some() || file.local_backends.is_some() {
            bail!("local_backends and [[backend]] tables exclude each other: list local directories as [[backend]] tables with kind = \"local\"");
        }
        file.backend
    };
    // The simulation profile exists to be disturbed; elsewhere it takes asking.
    let allow_fault_injection = args
        .allow_fault_injection
        .or(file.allow_fault_injection)
        .unwrap_or(args.profile.as_deref() == Some("multicloud-sim"));
    let policy_name = args
        .default_policy
        .or(file.default_policy)
        .unwrap_or_else(|| "ec-4-2".into());
    let block_size = args
        .block_size
        .or(file.block_size)
        .unwrap_or(placement::policy::DEFAULT_BLOCK_SIZE);
    let default_policy: BucketPolicy = policy_name
        .parse::<BucketPolicy>()
        .and_then(|p| p.with_block_size(block_size))
        .with_context(|| format!("default policy {policy_name:?}"))?;
    default_policy
        .check_backends(backends.len())
        .context("default policy")?;
    let domains = if !args.domains.is_empty() {
        args.domains
    } else {
        file.domains.unwrap_or_else(|| vec!["localhost".into()])
    };
    create_private_dirs(&data_dir, &backends)?;
    let env_ak = std::env::var("MLSYSOPS_ACCESS_KEY").ok().filter(|s| !s.is_empty());
    let env_sk = std::env::var("MLSYSOPS_SECRET_KEY").ok().filter(|s| !s.is_empty());
    let (credentials, generated_credentials) = match (env_ak.or(file.access_key), env_sk.or(file.secret_key)) {
        (Some(access_key), Some(secret_key)) => (Credentials { access_key, secret_key }, false),
        (None, None) => load_or_generate(&data_dir)?,
        _ => bail!("set both MLSYSOPS_ACCESS_KEY and MLSYSOPS_SECRET_KEY (or access_key and secret_key in the file), or neither"),
    };
    check_access_key(&credentials.access_key)?;
    check_secret("secret_key (MLSYSOPS_SECRET_KEY)", &credentials.secret_key)?;
    let admin_addr = args
        .admin_addr
        .or(file.admin_addr)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9001)));
    let env_token = std::env::var(ADMIN_TOKEN_ENV).ok().filter(|s| !s.is_empty());
    let (admin_token, generated_token) = match env_token.or(file.admin_token) {
        Some(t) => (t, false),
        None => load_or_generate_token(&data_dir)?,
    };
    check_secret(&format!("admin_token ({ADMIN_TOKEN_ENV})"), &admin_token)?;
    let heal = HealConfig {
        interval: interval(
            args.heal_interval_secs.or(file.heal_interval_secs).unwrap_or(10.0),
            "heal_interval_secs",
        )?,
        max_bytes_per_sec: rate(args.heal_rate_mib.or(file.heal_rate_mib).unwrap_or(64)),
    };
    let scrub = ScrubConfig {
        interval: interval(
            args.scrub_interval_secs.or(file.scrub_interval_secs).unwrap_or(86400.0),
            "scrub_interval_secs",
        )?,
        max_bytes_per_sec: rate(args.scrub_rate_mib.or(file.scrub_rate_mib).unwrap_or(32)),
    };
    let encryption = args
        .encryption
        .or(file.encryption)
        .map(|e| e.parse())
        .transpose()
        .context("encryption")?
        .unwrap_or_default();
    let master_keys = master_keys_from_env()?;
    let telemetry = TelemetrySettings {
        enabled: match args.telemetry.or(file.telemetry).as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => bail!("telemetry: {other:?} is neither on nor off"),
        },
        otlp_endpoint: args.otlp_endpoint.or(file.otlp_endpoint).filter(|e| !e.is_empty()),
        otlp_interval: interval(
            args.otlp_interval_secs.or(file.otlp_interval_secs).unwrap_or(10.0),
            "otlp_interval_secs",
        )?,
        prefix_depth: args.prefix_depth.or(file.prefix_depth).unwrap_or(1),
    };
    let reads = match args.read_strategy.or(file.read_strategy).as_deref() {
        None | Some("hedged") => control_api::ReadSettings::HEDGED,
        Some("data-first") => control_api::ReadSettings::DATA_FIRST,
        Some(other) => bail!("read_strategy: {other:?} is neither hedged nor data-first"),
    };
    let migration_mib = args
        .migration_mib_per_sec
        .or(file.migration_mib_per_sec)
        .unwrap_or(64.0);
    if !migration_mib.is_finite() || migration_mib < 0.0 {
        bail!("migration_mib_per_sec: {migration_mib} is not a number >= 0 (0 = unlimited)");
    }
    let concurrency = args.migration_concurrency.or(file.migration_concurrency).unwrap_or(4);
    if !(1..=storage_gateway::engine::migrate::MAX_CONCURRENCY).contains(&concurrency) {
        bail!(
            "migration_concurrency: {concurrency} is outside 1..={}",
            storage_gateway::engine::migrate::MAX_CONCURRENCY
        );
    }
    // Checked finite and non-negative above; MiB/s to bytes/s.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let migration = storage_gateway::engine::migrate::MigrationConfig {
        max_bytes_per_sec: (migration_mib > 0.0).then(|| (migration_mib * f64::from(1u32 << 20)).round() as u64),
        concurrency,
    };
    let sweep = storage_gateway::engine::sweep::SweepConfig {
        grace: secs_or_zero(
            args.sweep_grace_secs.or(file.sweep_grace_secs).unwrap_or(3600.0),
            "sweep_grace_secs",
        )?,
        quarantine_retention: secs_or_zero(
            args.quarantine_retention_secs
                .or(file.quarantine_retention_secs)
                .unwrap_or(7.0 * 24.0 * 3600.0),
            "quarantine_retention_secs",
        )?,
        overrides: storage_gateway::engine::ownership::Overrides {
            adopt: args.adopt,
            metadata_is_empty: args.i_know_metadata_is_empty,
        },
    };
    let limits = limits::resolve(args.limits, file.limits)?;
    let agent_settings = agents::resolve(args.agents, file.agents, &data_dir)?;
    let audit = secs_or_zero(
        args.audit_interval_secs.or(file.audit_interval_secs).unwrap_or(5.0),
        "audit_interval_secs",
    )?;
    let audit_interval = (!audit.is_zero()).then_some(audit);
    let response_stall = interval(
        args.response_stall_secs
            .or(file.response_stall_secs)
            .unwrap_or(storage_gateway::s3::DEFAULT_RESPONSE_STALL.as_secs_f64()),
        "response_stall_secs",
    )?;
    let durability: storage_gateway::Durability = args
        .durability
        .or(file.durability)
        .map(|d| d.parse())
        .transpose()?
        .unwrap_or_default();
    if let Some(e) = &telemetry.otlp_endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            bail!("otlp_endpoint {e:?}: expected an http:// or https:// URL of an OTLP/HTTP collector");
        }
    }
    Ok((
        GatewayConfig {
            data_dir,
            s3_addr,
            backends,
            default_policy,
            domains,
            credentials,
            admin: AdminConfig {
                addr: admin_addr,
                token: admin_token,
            },
            heal,
            scrub,
            encryption,
            master_keys,
            telemetry: None,
            reads,
            migration,
            sweep,
            limits,
            response_stall,
            durability,
            audit_interval,
            allow_fault_injection,
        },
        Generated {
            credentials: generated_credentials,
            admin_token: generated_token,
        },
        telemetry,
        agent_settings,
    ))
}

/// Shortest S3 secret key or admin token accepted. Both are bearer secrets that anyone who can
/// reach the ports may guess at; generated ones have 40 random alphanumerics (238 bits).
pub const MIN_SECRET_LEN: usize = 16;

/// A secret from the configuration: not empty, not padded with blanks (a quoting slip in a TOML
/// file or an env file), and at least [`MIN_SECRET_LEN`] characters.
fn check_secret(what: &str, value: &str) -> anyhow::Result<()> {
    if value.trim().is_empty() {
        bail!("{what} is empty: give a secret of at least {MIN_SECRET_LEN} characters, or leave it out to have one generated");
    }
    if value.trim() != value {
        bail!("{what} starts or ends with white space: remove it (clients would sign with a different secret)");
    }
    if value.chars().count() < MIN_SECRET_LEN {
        bail!(
            "{what} has {} characters; at least {MIN_SECRET_LEN} are required (or leave it out to have one generated)",
            value.chars().count()
        );
    }
    Ok(())
}

/// An access key that a SigV4 credential scope can carry: not empty, no '/', blanks or controls.
fn check_access_key(value: &str) -> anyhow::Result<()> {
    if value.is_empty() {
        bail!("access_key (MLSYSOPS_ACCESS_KEY) is empty: give one, or leave both keys out to have them generated");
    }
    if let Some(c) = value.chars().find(|c| *c == '/' || c.is_whitespace() || c.is_control()) {
        bail!("access_key (MLSYSOPS_ACCESS_KEY) holds {c:?}, which a SigV4 credential cannot carry");
    }
    Ok(())
}

/// Creates the data dir, its `meta/` and (when local backends live inside it) `backends/`,
/// readable by the owner only: they hold the metadata, shards, credentials and master keys.
/// Directories that exist are left as they are (an operator's choice), with a warning on
/// stderr when others may read the data dir.
fn create_private_dirs(data_dir: &Path, backends: &[BackendSpec]) -> anyhow::Result<()> {
    let mut dirs = vec![data_dir.to_owned(), data_dir.join("meta")];
    let under_data = data_dir.join("backends");
    if backends.iter().any(|b| {
        b.kind == Some(storage_gateway::backend::BackendKind::Local)
            && b.path.as_ref().is_some_and(|p| p.starts_with(&under_data))
    }) {
        dirs.push(under_data);
    }
    for dir in &dirs {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir)
            .with_context(|| format!("reading {}", data_dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: data dir {} has mode {:o}: other users may read its shards and metadata (chmod 700 it)",
                data_dir.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

/// Master keys from `MLSYSOPS_MASTER_KEY` (with `MLSYSOPS_MASTER_KEY_ID` naming a single
/// bare key), or `None` to use the data dir's key file. Never from a flag or the TOML file:
/// secrets in argv or config files leak too easily.
pub fn master_keys_from_env() -> anyhow::Result<Option<storage_gateway::crypto::KeyRing>> {
    use storage_gateway::crypto::keys::KEY_ENV;
    let Some(value) = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let value = match std::env::var("MLSYSOPS_MASTER_KEY_ID").ok().filter(|v| !v.is_empty()) {
        Some(_) if value.contains(',') => {
            bail!("MLSYSOPS_MASTER_KEY_ID names one key, but {KEY_ENV} lists several: write them as id=key")
        }
        Some(id) => format!("{id}={}", value.trim()),
        None => value,
    };
    Ok(Some(storage_gateway::crypto::KeyRing::from_env(&value)?))
}

fn load_or_generate(data_dir: &Path) -> anyhow::Result<(Credentials, bool)> {
    let path = data_dir.join(CREDENTIALS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let c: StoredCredentials =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        return Ok((
            Credentials {
                access_key: c.access_key,
                secret_key: c.secret_key,
            },
            false,
        ));
    }
    use rand::distributions::{Alphanumeric, DistString};
    let mut rng = rand::thread_rng();
    let c = StoredCredentials {
        access_key: format!("MLS{}", Alphanumeric.sample_string(&mut rng, 17).to_ascii_uppercase()),
        secret_key: Alphanumeric.sample_string(&mut rng, 40),
    };
    write_private(&path, &serde_json::to_vec_pretty(&c)?)?;
    Ok((
        Credentials {
            access_key: c.access_key,
            secret_key: c.secret_key,
        },
        true,
    ))
}

fn load_or_generate_token(data_dir: &Path) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if path.exists() {
        let t = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            bail!("{} is empty: delete it to generate a new admin token", path.display());
        }
        return Ok((t, false));
    }
    use rand::distributions::{Alphanumeric, DistString};
    let t = Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
    write_private(&path, t.as_bytes())?;
    Ok((t, true))
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
