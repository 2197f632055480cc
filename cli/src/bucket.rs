//! `mlsysops bucket`: bucket policies and policy migrations through the gateway's admin REST API.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `--watch` and `--wait` ask for the migration state.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Polls a finished job of an older epoch may be seen before `--wait` stops anyway: a change that
/// leaves nothing to migrate might never start a job of its own.
const STALE_DONE_POLLS: u32 = 10;
/// Where `mlsysops serve` writes a generated admin token in its data dir.
const ADMIN_TOKEN_FILE: &str = "admin-token";

/// `mlsysops bucket` flags and subcommands.
#[derive(Args)]
pub struct BucketArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: BucketCommand,
}

/// Where the admin API is and how to authenticate; accepted before or after the subcommand.
#[derive(Args)]
struct ConnArgs {
    /// Admin REST API of the gateway.
    #[arg(
        long,
        global = true,
        env = "MLSYSOPS_ADMIN_URL",
        default_value = "http://127.0.0.1:9001"
    )]
    admin_url: String,
    /// Admin bearer token [default: the contents of <data-dir>/admin-token].
    #[arg(long, global = true, env = "MLSYSOPS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Data dir holding the admin-token file, when no token is given.
    #[arg(long, global = true, env = "MLSYSOPS_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Show, change or trace a bucket's placement policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Progress of the migration that brings a bucket's objects to its current policy.
    Migration(MigrationArgs),
    /// Show or change the global migration throttle (no flags: show).
    Throttle(ThrottleArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print a bucket's policy.
    Get(ShowArgs),
    /// Change some fields of a bucket's policy (the others keep their values).
    Set(Box<SetArgs>),
    /// Print every change of a bucket's policy, oldest first.
    History(ShowArgs),
}

/// A bucket and the output format.
#[derive(Args)]
struct ShowArgs {
    /// Bucket name.
    bucket: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `mlsysops bucket policy set` flags: each given one becomes a field of the PUT body.
#[derive(Args)]
struct SetArgs {
    /// Bucket name.
    bucket: String,
    /// Erasure-coding preset: ec-K-M or replicate-N.
    #[arg(long, conflicts_with_all = ["k", "m"])]
    preset: Option<String>,
    /// Data shards.
    #[arg(long)]
    k: Option<u32>,
    /// Parity shards.
    #[arg(long)]
    m: Option<u32>,
    /// Erasure-coding block size: bytes, or with a unit (64KiB, 1MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_block_size)]
    block_size: Option<u64>,
    /// Eligible backends: a selector (region=eu,gdpr=true) or backend ids (local0,local1).
    #[arg(long, value_name = "SELECTOR_OR_COMMA_IDS")]
    backends: Option<String>,
    /// Every backend is eligible.
    #[arg(long, conflicts_with = "backends")]
    all_backends: bool,
    /// Encrypt new objects at rest.
    #[arg(long, value_enum)]
    encryption: Option<Switch>,
    /// Losses the bucket must survive: high (2), one (1), none (0), any (not constrained).
    #[arg(long, value_enum)]
    redundancy: Option<Redundancy>,
    /// Highest acceptable backend latency in ms ("none" removes the limit).
    #[arg(long, value_name = "MS", value_parser = parse_latency)]
    max_latency: Option<Limit<u64>>,
    /// Lowest acceptable download speed in MiB/s ("none" removes the limit).
    #[arg(long, value_name = "MIBPS", value_parser = parse_speed)]
    min_download_speed: Option<Limit<f64>>,
    /// Only backends labelled gdpr=true are eligible.
    #[arg(long, value_name = "true|false")]
    gdpr: Option<bool>,
    /// Policy update token: sets it ("" clears it), or with --automatic proves the agent may change the policy.
    #[arg(long)]
    token: Option<String>,
    /// The change is made by an agent (needs --token).
    #[arg(long)]
    automatic: bool,
    /// Who makes the change [server default: admin, or agent with --automatic].
    #[arg(long, value_name = "WHO")]
    changed_by: Option<String>,
    /// Why, kept in the policy history.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Follow the migration the change starts until it is done.
    #[arg(long)]
    wait: bool,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `mlsysops bucket migration` flags.
#[derive(Args)]
struct MigrationArgs {
    /// Bucket name.
    bucket: String,
    /// Show a progress bar until the migration is done.
    #[arg(long)]
    watch: bool,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `mlsysops bucket throttle` flags.
#[derive(Args)]
struct ThrottleArgs {
    /// Migration bandwidth cap in MiB/s (0 = unlimited).
    #[arg(long, value_name = "F", value_parser = parse_non_negative)]
    max_mib_per_sec: Option<f64>,
    /// Objects migrated at once.
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// Stop migrating until --resume.
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    /// Migrate again after --pause.
    #[arg(long)]
    resume: bool,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// on or off.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Switch {
    /// Enabled.
    #[value(alias = "true")]
    On,
    /// Disabled.
    #[value(alias = "false")]
    Off,
}

/// Redundancy constraint of a policy.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Redundancy {
    /// Survive two backend losses (m >= 2).
    High,
    /// Survive one backend loss (m >= 1).
    One,
    /// No parity required (m = 0).
    #[value(name = "none")]
    Zero,
    /// Not constrained (JSON null).
    Any,
}

/// A limit to set, or to remove (JSON null).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Limit<T> {
    Set(T),
    Unset,
}

fn parse_block_size(s: &str) -> Result<u64, String> {
    loadgen::config::parse_size(s).map_err(|e| e.to_string())
}

fn parse_latency(s: &str) -> Result<Limit<u64>, String> {
    if is_none(s) {
        return Ok(Limit::Unset);
    }
    s.trim()
        .parse()
        .map(Limit::Set)
        .map_err(|_| format!("{s:?} is not a whole number of milliseconds (or \"none\")"))
}

fn parse_speed(s: &str) -> Result<Limit<f64>, String> {
    if is_none(s) {
        return Ok(Limit::Unset);
    }
    parse_non_negative(s).map(Limit::Set)
}

/// JSON has no NaN or infinity, so those are refused here rather than sent as null.
fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a non-negative number")),
    }
}

fn is_none(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "none" | "null" | "unset")
}

/// Runs a bucket command; failures print `error: ...` on stderr and exit with status 1.
pub fn run(args: BucketArgs) -> anyhow::Result<()> {
    if let Err(e) = run_command(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn run_command(args: BucketArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    rt.block_on(async move {
        match args.command {
            BucketCommand::Policy(PolicyCommand::Get(a)) => policy_get(&client, &a).await,
            BucketCommand::Policy(PolicyCommand::Set(a)) => policy_set(&client, &a).await,
            BucketCommand::Policy(PolicyCommand::History(a)) => policy_history(&client, &a).await,
            BucketCommand::Migration(a) => migration(&client, &a).await,
            BucketCommand::Throttle(a) => throttle(&client, &a).await,
        }
    })
}

async fn policy_get(client: &AdminClient, args: &ShowArgs) -> anyhow::Result<()> {
    let policy = client.get(&policy_path(&args.bucket)).await?;
    print_view(&policy, args.json, format_policy)
}

async fn policy_history(client: &AdminClient, args: &ShowArgs) -> anyhow::Result<()> {
    let mut path = policy_path(&args.bucket);
    path.push("history".to_owned());
    let history = client.get(&path).await?;
    print_view(&history, args.json, format_history)
}

async fn policy_set(client: &AdminClient, args: &SetArgs) -> anyhow::Result<()> {
    let body = policy_body(args);
    if body.as_object().is_some_and(Map::is_empty) {
        bail!("nothing to change: give at least one policy flag (see `mlsysops bucket policy set --help`)");
    }
    let path = policy_path(&args.bucket);
    // The view before the change is what lets the summary say what changed.
    let old = if args.json {
        None
    } else {
        Some(client.get(&path).await?)
    };
    let answer = client.send(Method::PUT, &path, Some(&body)).await?;
    match &old {
        Some(old) => print!("{}", format_set_answer(&args.bucket, old, &answer)),
        None => print_json(&answer)?,
    }
    let changed = answer.get("changed").and_then(Value::as_bool).unwrap_or(false);
    if !args.wait || !changed {
        return Ok(());
    }
    let epoch = answer.pointer("/policy/epoch").and_then(Value::as_u64);
    let last = follow_migration(client, &args.bucket, epoch).await?;
    finish_migration(&last, args.json)
}

async fn migration(client: &AdminClient, args: &MigrationArgs) -> anyhow::Result<()> {
    if !args.watch {
        let view = client.get(&migration_path(&args.bucket)).await?;
        return print_view(&view, args.json, format_migration);
    }
    let last = follow_migration(client, &args.bucket, None).await?;
    finish_migration(&last, args.json)
}

async fn throttle(client: &AdminClient, args: &ThrottleArgs) -> anyhow::Result<()> {
    let path = ["api", "v1", "migration"].map(str::to_owned);
    let settings = match throttle_body(args) {
        Some(body) => client.send(Method::PUT, &path, Some(&body)).await?,
        None => client.get(&path).await?,
    };
    print_view(&settings, args.json, |v| format!("{}\n", format_throttle(v)))
}

/// Polls the bucket's migration under a progress bar until it has settled; returns the last view.
async fn follow_migration(client: &AdminClient, bucket: &str, epoch: Option<u64>) -> anyhow::Result<Value> {
    let path = migration_path(bucket);
    // Hidden by indicatif itself when stderr is not a terminal, so scripts get only the summary.
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    let style =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let mut stale = 0;
    loop {
        let view = match client.get(&path).await {
            Ok(v) => v,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        bar.set_length(uint(&view, "/bytes_total").unwrap_or(0));
        bar.set_position(uint(&view, "/bytes_done").unwrap_or(0));
        bar.set_message(progress_message(&view));
        if settled(&view, epoch, stale) {
            bar.finish_and_clear();
            return Ok(view);
        }
        if is_stale_done(&view, epoch) {
            stale += 1;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Prints the final migration view; a job that ended with failed objects is an error.
fn finish_migration(view: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(view)?;
    } else {
        print!("{}", format_migration(view));
    }
    let errors = uint(view, "/errors").unwrap_or(0);
    if errors > 0 {
        let last = text(view, "/last_error").unwrap_or_else(|| "no message".into());
        bail!("the migration finished with {errors} failed objects (last: {last})");
    }
    Ok(())
}

/// Whether a migration needs no more watching: done or idle, and (when a policy epoch is waited
/// for) a job for that epoch, or an older finished job seen long enough that none is coming.
fn settled(view: &Value, epoch: Option<u64>, stale_polls: u32) -> bool {
    match view.get("state").and_then(Value::as_str) {
        Some("idle") => true,
        Some("done") => !is_stale_done(view, epoch) || stale_polls >= STALE_DONE_POLLS,
        _ => false,
    }
}

/// A finished job whose target is older than the epoch waited for: the new one may not have started.
fn is_stale_done(view: &Value, epoch: Option<u64>) -> bool {
    let target = uint(view, "/target_epoch");
    view.get("state").and_then(Value::as_str) == Some("done") && matches!((epoch, target), (Some(e), Some(t)) if t < e)
}

/// The PUT body for `policy set`: only the fields given on the command line.
fn policy_body(args: &SetArgs) -> Value {
    let mut body = Map::new();
    let mut put = |key: &str, value: Value| {
        body.insert(key.to_owned(), value);
    };
    if let Some(preset) = &args.preset {
        put("preset", json!(preset));
    }
    if let Some(k) = args.k {
        put("k", json!(k));
    }
    if let Some(m) = args.m {
        put("m", json!(m));
    }
    if let Some(size) = args.block_size {
        put("block_size", json!(size));
    }
    if args.all_backends {
        put("backends", json!(""));
    } else if let Some(backends) = &args.backends {
        put("backends", backends_value(backends));
    }
    if let Some(enc) = args.encryption {
        put("encryption", json!(enc == Switch::On));
    }
    if let Some(r) = args.redundancy {
        put("redundancy", redundancy_value(r));
    }
    if let Some(limit) = args.max_latency {
        put("max_latency", limit_value(limit));
    }
    if let Some(limit) = args.min_download_speed {
        put("min_download_speed", limit_value(limit));
    }
    if let Some(gdpr) = args.gdpr {
        put("location_restrictions", json!({ "gdpr": gdpr }));
    }
    if let Some(token) = &args.token {
        put("policy_update_token", json!(token));
    }
    if args.automatic {
        put("automatic", json!(true));
    }
    if let Some(who) = &args.changed_by {
        put("changed_by", json!(who));
    }
    if let Some(reason) = &args.reason {
        put("reason", json!(reason));
    }
    Value::Object(body)
}

/// Plain backend ids go as a list, so the server can name an unknown one; anything with a label
/// term (or malformed) goes as selector text for the server to parse and judge.
fn backends_value(text: &str) -> Value {
    let terms: Vec<&str> = text.split(',').map(str::trim).collect();
    let plain_ids = !text.trim().is_empty() && terms.iter().all(|t| !t.is_empty() && !t.contains('='));
    if plain_ids {
        json!(terms)
    } else {
        json!(text.trim())
    }
}

fn redundancy_value(r: Redundancy) -> Value {
    match r {
        Redundancy::High => json!("high"),
        Redundancy::One => json!("one"),
        Redundancy::Zero => json!("none"),
        Redundancy::Any => Value::Null,
    }
}

fn limit_value<T: Into<Value>>(limit: Limit<T>) -> Value {
    match limit {
        Limit::Set(v) => v.into(),
        Limit::Unset => Value::Null,
    }
}

/// The PUT body for `throttle`, or `None` when no flag asks for a change (then it is a GET).
fn throttle_body(args: &ThrottleArgs) -> Option<Value> {
    let mut body = Map::new();
    if let Some(rate) = args.max_mib_per_sec {
        body.insert("max_mib_per_sec".into(), json!(rate));
    }
    if let Some(n) = args.concurrency {
        body.insert("concurrency".into(), json!(n));
    }
    if args.pause || args.resume {
        body.insert("paused".into(), json!(args.pause));
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

/// Fields a policy change is summarised by, with their labels.
const POLICY_FIELDS: [(&str, &str); 9] = [
    ("placement", "/preset"),
    ("block size", "/block_size"),
    ("backends", "/backends"),
    ("encryption", "/encryption"),
    ("redundancy", "/redundancy"),
    ("max latency", "/max_latency"),
    ("min download speed", "/min_download_speed"),
    ("gdpr only", "/location_restrictions/gdpr"),
    ("automatic updates", "/automatic_updates"),
];

/// A policy view as a two-column table, then its warnings.
fn format_policy(policy: &Value) -> String {
    let mut rows = vec![
        ("bucket", text(policy, "/bucket").unwrap_or_else(|| "-".into())),
        ("epoch", show(policy, "/epoch")),
    ];
    rows.extend(POLICY_FIELDS.iter().map(|(label, ptr)| (*label, show(policy, ptr))));
    rows.push(("eligible now", show(policy, "/eligible")));
    rows.push(("changed", changed_line(policy, "/changed_ms")));
    rows.push((
        "reason",
        text(policy, "/reason")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "-".into()),
    ));
    let mut out = table(&rows);
    for warning in strings(policy, "/warnings") {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// `policy set`'s summary: what changed and the new epoch, eligible backends, warnings, migration.
fn format_set_answer(bucket: &str, old: &Value, answer: &Value) -> String {
    let new = answer.get("policy").unwrap_or(&Value::Null);
    if !answer.get("changed").and_then(Value::as_bool).unwrap_or(false) {
        return format!("policy of bucket {bucket} unchanged (epoch {})\n", show(new, "/epoch"));
    }
    let mut out = format!(
        "policy of bucket {bucket} changed: epoch {} -> {}\n",
        show(old, "/epoch"),
        show(new, "/epoch")
    );
    let changes = policy_changes(old, new);
    if changes.is_empty() {
        out.push_str("  (no shown field differs: the policy update token or the reason changed)\n");
    }
    for line in changes {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("eligible backends: {}\n", show(new, "/eligible")));
    for warning in strings(new, "/warnings") {
        out.push_str(&format!("warning: {warning}\n"));
    }
    if let Some(m) = answer.get("migration") {
        out.push_str(&format!("migration: {}\n", migration_brief(m)));
    }
    out
}

/// `label: old -> new` for every summarised field that differs.
fn policy_changes(old: &Value, new: &Value) -> Vec<String> {
    POLICY_FIELDS
        .iter()
        .filter(|(_, ptr)| old.pointer(ptr) != new.pointer(ptr) || (*ptr == "/preset" && km(old) != km(new)))
        .map(|(label, ptr)| format!("{label}: {} -> {}", show(old, ptr), show(new, ptr)))
        .collect()
}

/// Every change of a history, oldest first, with what it changed.
fn format_history(history: &Value) -> String {
    let changes = history
        .get("changes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if changes.is_empty() {
        return format!(
            "bucket {}: no policy change recorded\n",
            text(history, "/bucket").unwrap_or_else(|| "-".into())
        );
    }
    let mut out = String::new();
    for change in changes {
        out.push_str(&history_header(change));
        let old = change.get("old").unwrap_or(&Value::Null);
        let new = change.get("new").unwrap_or(&Value::Null);
        for line in policy_changes(old, new) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

fn history_header(change: &Value) -> String {
    let automatic = if change.get("automatic").and_then(Value::as_bool).unwrap_or(false) {
        " (automatic)"
    } else {
        ""
    };
    let reason = match text(change, "/reason") {
        Some(r) if !r.is_empty() => format!(": {r}"),
        _ => String::new(),
    };
    format!(
        "epoch {}  {}  by {}{automatic}{reason}\n",
        show(change, "/epoch"),
        time_ms(change, "/at_ms"),
        text(change, "/changed_by").unwrap_or_else(|| "-".into())
    )
}

/// A migration view as a few lines.
fn format_migration(view: &Value) -> String {
    let mut out = format!(
        "migration of bucket {} to epoch {}: {}\n",
        text(view, "/bucket").unwrap_or_else(|| "-".into()),
        show(view, "/target_epoch"),
        text(view, "/state").unwrap_or_else(|| "unknown".into()),
    );
    let rows = [
        ("objects", objects_line(view)),
        ("bytes", bytes_line(view)),
        ("rate", rate_line(view)),
        ("errors", errors_line(view)),
        ("started", time_ms(view, "/started_ms")),
        ("finished", time_ms(view, "/finished_ms")),
    ];
    for line in table(&rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// One line on a migration, for `policy set`.
fn migration_brief(view: &Value) -> String {
    // A running job with nothing counted yet: a job that finds nothing is "done".
    let counted = uint(view, "/objects_total").unwrap_or(0) + uint(view, "/objects_remaining").unwrap_or(0) > 0;
    if text(view, "/state").as_deref() == Some("running") && !counted {
        // The migrator has not counted the bucket's objects for this epoch yet.
        return format!(
            "running to epoch {}, counting the objects to migrate",
            show(view, "/target_epoch")
        );
    }
    format!(
        "{} to epoch {}, {} objects ({}) to migrate",
        text(view, "/state").unwrap_or_else(|| "unknown".into()),
        show(view, "/target_epoch"),
        uint(view, "/objects_remaining").unwrap_or(0),
        format_bytes(
            uint(view, "/bytes_total")
                .unwrap_or(0)
                .saturating_sub(uint(view, "/bytes_done").unwrap_or(0))
        ),
    )
}

/// The progress bar's message: objects, rate, ETA, errors and the job's state.
fn progress_message(view: &Value) -> String {
    format!(
        "{}/{} objects, {}, ETA {}, {} errors [{}]",
        uint(view, "/objects_done").unwrap_or(0),
        uint(view, "/objects_total").unwrap_or(0),
        format_rate(num(view, "/rate_bytes_per_sec")),
        format_eta(num(view, "/eta_secs")),
        uint(view, "/errors").unwrap_or(0),
        text(view, "/state").unwrap_or_else(|| "unknown".into()),
    )
}

fn objects_line(view: &Value) -> String {
    format!(
        "{} / {} done, {} remaining ({} re-encoded, {} moved, {} relabelled, {} skipped)",
        uint(view, "/objects_done").unwrap_or(0),
        uint(view, "/objects_total").unwrap_or(0),
        uint(view, "/objects_remaining").unwrap_or(0),
        uint(view, "/objects_reencoded").unwrap_or(0),
        uint(view, "/objects_moved").unwrap_or(0),
        uint(view, "/objects_relabelled").unwrap_or(0),
        uint(view, "/skipped").unwrap_or(0),
    )
}

fn bytes_line(view: &Value) -> String {
    let done = uint(view, "/bytes_done").unwrap_or(0);
    let total = uint(view, "/bytes_total").unwrap_or(0);
    let share = if total == 0 {
        String::new()
    } else {
        format!(" ({:.1}%)", done as f64 * 100.0 / total as f64)
    };
    format!("{} / {}{share}", format_bytes(done), format_bytes(total))
}

fn rate_line(view: &Value) -> String {
    format!(
        "{}, ETA {}",
        format_rate(num(view, "/rate_bytes_per_sec")),
        format_eta(num(view, "/eta_secs"))
    )
}

fn errors_line(view: &Value) -> String {
    let errors = uint(view, "/errors").unwrap_or(0);
    match text(view, "/last_error") {
        Some(last) => format!("{errors} (last: {last})"),
        None => errors.to_string(),
    }
}

/// The throttle settings as one line.
fn format_throttle(settings: &Value) -> String {
    let rate = match num(settings, "/max_mib_per_sec") {
        Some(0.0) => "unlimited".to_owned(),
        Some(r) => format!("{r} MiB/s"),
        None => "-".to_owned(),
    };
    let state = match settings.get("paused").and_then(Value::as_bool) {
        Some(true) => "paused",
        Some(false) => "running",
        None => "-",
    };
    format!(
        "migration throttle: {rate}, concurrency {}, {state}",
        show(settings, "/concurrency")
    )
}

/// A field for people: units where known, `-` when absent, `(all)`/`any` for the open settings.
fn show(v: &Value, ptr: &str) -> String {
    let field = v.pointer(ptr).unwrap_or(&Value::Null);
    match (ptr, field) {
        ("/preset", Value::Null) => km(v).map_or_else(|| "-".into(), |(k, m)| format!("k={k}, m={m}")),
        ("/preset", Value::String(p)) => match km(v) {
            Some((k, m)) => format!("{p} (k={k}, m={m})"),
            None => p.clone(),
        },
        ("/block_size", Value::Number(n)) => n.as_u64().map_or_else(|| n.to_string(), format_bytes),
        ("/backends", Value::String(s)) if s.is_empty() => "(all)".into(),
        ("/encryption", Value::Bool(b)) => if *b { "on" } else { "off" }.into(),
        ("/redundancy", Value::Null) => "any".into(),
        ("/max_latency", Value::Number(n)) => format!("{n} ms"),
        ("/min_download_speed", Value::Number(n)) => format!("{n} MiB/s"),
        ("/max_latency" | "/min_download_speed", Value::Null) => "none".into(),
        (_, Value::Array(items)) if items.is_empty() => "(none)".into(),
        (_, Value::Array(items)) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        _ => plain(field),
    }
}

/// A JSON scalar without quotes; `-` for null.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn km(v: &Value) -> Option<(u64, u64)> {
    Some((uint(v, "/k")?, uint(v, "/m")?))
}

fn changed_line(policy: &Value, ptr: &str) -> String {
    match text(policy, "/changed_by") {
        Some(who) => format!("{} by {who}", time_ms(policy, ptr)),
        None => time_ms(policy, ptr),
    }
}

/// Rows as `label  value` with the values aligned.
fn table<L: AsRef<str>>(rows: &[(L, String)]) -> String {
    let width = rows.iter().map(|(l, _)| l.as_ref().len()).max().unwrap_or(0);
    rows.iter()
        .map(|(l, v)| format!("{:width$}  {v}\n", l.as_ref()))
        .collect()
}

fn uint(v: &Value, ptr: &str) -> Option<u64> {
    v.pointer(ptr).and_then(Value::as_u64)
}

fn num(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn text(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(Value::as_str).map(str::to_owned)
}

fn strings(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(plain).collect())
        .unwrap_or_default()
}

/// A Unix-ms timestamp field as UTC RFC 3339 to the second; `-` when absent.
fn time_ms(v: &Value, ptr: &str) -> String {
    let Some(ms) = v.pointer(ptr).and_then(Value::as_i64) else {
        return "-".into();
    };
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Bytes in binary units with one decimal (plain bytes under 1 KiB).
fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn format_rate(bytes_per_sec: Option<f64>) -> String {
    match bytes_per_sec {
        Some(r) if r.is_finite() && r >= 0.0 => format!("{}/s", format_bytes(r as u64)),
        _ => "-/s".into(),
    }
}

/// Seconds left, as `45s`, `3m05s`, `2h07m` or `1d04h`; `-` when unknown.
fn format_eta(secs: Option<f64>) -> String {
    let Some(secs) = secs.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".into();
    };
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Prints an answer as the API's JSON (`json`) or as the text `human` makes of it.
fn print_view(v: &Value, json: bool, human: impl Fn(&Value) -> String) -> anyhow::Result<()> {
    if json {
        print_json(v)
    } else {
        print!("{}", human(v));
        Ok(())
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn policy_path(bucket: &str) -> Vec<String> {
    ["api", "v1", "buckets", bucket, "policy"].map(str::to_owned).to_vec()
}

fn migration_path(bucket: &str) -> Vec<String> {
    ["api", "v1", "buckets", bucket, "migration"]
        .map(str::to_owned)
        .to_vec()
}

/// The admin API over HTTP with the bearer token.
struct AdminClient {
    http: reqwest::Client,
    base: Url,
    // Never printed: reqwest marks the bearer header sensitive, and this type has no Debug.
    token: Option<String>,
}

impl AdminClient {
    fn new(conn: &ConnArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Self {
            http,
            base: admin_base(&conn.admin_url)?,
            token: admin_token(conn.admin_token.as_deref(), &conn.data_dir)?,
        })
    }

    async fn get(&self, path: &[String]) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }

    /// Sends a request; a non-2xx answer becomes the error `<status>: <message>`.
    async fn send(&self, method: Method, path: &[String], body: Option<&Value>) -> anyhow::Result<Value> {
        let url = endpoint(&self.base, path);
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.without_url()).context(format!("cannot reach the admin API at {url}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            bail!("{}", error_message(status, &bytes, self.token.is_none()));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the answer of {url} is not JSON"))
    }
}

/// `<status>: <the JSON "error" message>`, with the body text when it is not the API's JSON.
fn error_message(status: StatusCode, body: &[u8], no_token: bool) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| text(&v, "/error"))
        .unwrap_or_else(|| {
            let raw = String::from_utf8_lossy(body);
            raw.trim().chars().take(200).collect()
        });
    let hint = if status == StatusCode::UNAUTHORIZED && no_token {
        " (no admin token: use --admin-token, MLSYSOPS_ADMIN_TOKEN or <data-dir>/admin-token)"
    } else {
        ""
    };
    format!("{status}: {message}{hint}")
}

/// The admin URL, `http://` assumed when no scheme is given (serve prints `host:port`).
fn admin_base(text: &str) -> anyhow::Result<Url> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).with_context(|| format!("--admin-url {text:?} is not a URL"))?;
    if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
        bail!("--admin-url {text:?} must be an http:// or https:// URL");
    }
    Ok(url)
}

/// `base` with the path segments appended, each percent-encoded (bucket names come from users).
fn endpoint(base: &Url, segments: &[String]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The token from the flag or environment, else from `<data-dir>/admin-token` when it exists.
fn admin_token(given: Option<&str>, data_dir: &Path) -> anyhow::Result<Option<String>> {
    if let Some(token) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(token.to_owned()));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading the admin token from {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: BucketArgs,
    }

    fn parse(argv: &[&str]) -> Result<BucketArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("bucket").chain(argv.iter().copied())).map(|c| c.args)
    }

    fn set_body(argv: &[&str]) -> Value {
        let mut full = vec!["policy", "set", "b"];
        full.extend_from_slice(argv);
        match parse(&full).unwrap().command {
            BucketCommand::Policy(PolicyCommand::Set(args)) => policy_body(&args),
            _ => panic!("not a set command"),
        }
    }

    fn throttle_of(argv: &[&str]) -> Option<Value> {
        let mut full = vec!["throttle"];
        full.extend_from_slice(argv);
        match parse(&full).unwrap().command {
            BucketCommand::Throttle(args) => throttle_body(&args),
            _ => panic!("not a throttle command"),
        }
    }

    #[test]
    fn only_given_flags_reach_the_body() {
        assert_eq!(set_body(&[]), json!({}));
        assert_eq!(set_body(&["--preset", "ec-8-4"]), json!({"preset": "ec-8-4"}));
        assert_eq!(set_body(&["--k", "8", "--m", "4"]), json!({"k": 8, "m": 4}));
        assert_eq!(set_body(&["--m", "3"]), json!({"m": 3}));
    }

    #[test]
    fn every_flag_maps_to_its_contract_field() {
        let body = set_body(&[
            "--block-size",
            "1MiB",
            "--backends",
            "region=eu",
            "--encryption",
            "on",
            "--redundancy",
            "high",
            "--max-latency",
            "200",
            "--min-download-speed",
            "50.5",
            "--gdpr",
            "true",
            "--token",
            "secret",
            "--automatic",
            "--changed-by",
            "agent-7",
            "--reason",
            "move to EU",
        ]);
        assert_eq!(
            body,
            json!({
                "block_size": 1048576,
                "backends": "region=eu",
                "encryption": true,
                "redundancy": "high",
                "max_latency": 200,
                "min_download_speed": 50.5,
                "location_restrictions": {"gdpr": true},
                "policy_update_token": "secret",
                "automatic": true,
                "changed_by": "agent-7",
                "reason": "move to EU",
            })
        );
    }

    #[test]
    fn clearing_values_become_null_or_empty() {
        assert_eq!(set_body(&["--all-backends"]), json!({"backends": ""}));
        assert_eq!(set_body(&["--redundancy", "any"]), json!({"redundancy": null}));
        assert_eq!(set_body(&["--redundancy", "none"]), json!({"redundancy": "none"}));
        assert_eq!(set_body(&["--max-latency", "none"]), json!({"max_latency": null}));
        assert_eq!(
            set_body(&["--min-download-speed", "none"]),
            json!({"min_download_speed": null})
        );
        assert_eq!(set_body(&["--token", ""]), json!({"policy_update_token": ""}));
        assert_eq!(
            set_body(&["--encryption", "off", "--gdpr", "false"]),
            json!({"encryption": false, "location_restrictions": {"gdpr": false}})
        );
        assert_eq!(set_body(&["--block-size", "65536"]), json!({"block_size": 65536}));
    }

    #[test]
    fn backend_ids_go_as_a_list_and_selectors_as_text() {
        assert_eq!(backends_value("local0,local1"), json!(["local0", "local1"]));
        assert_eq!(backends_value(" s3a , gcs1 "), json!(["s3a", "gcs1"]));
        assert_eq!(backends_value("local3"), json!(["local3"]));
        assert_eq!(backends_value("region=eu,local3"), json!("region=eu,local3"));
        assert_eq!(backends_value("a,,b"), json!("a,,b"));
        assert_eq!(backends_value(""), json!(""));
    }

    #[test]
    fn bad_or_conflicting_flags_are_refused_without_panicking() {
        for argv in [
            &["policy", "set", "b", "--preset", "ec-8-4", "--k", "8"][..],
            &["policy", "set", "b", "--backends", "x", "--all-backends"],
            &["policy", "set", "b", "--encryption", "maybe"],
            &["policy", "set", "b", "--redundancy", "two"],
            &["policy", "set", "b", "--max-latency", "-5"],
            &["policy", "set", "b", "--min-download-speed", "NaN"],
            &["policy", "set", "b", "--min-download-speed", "-1"],
            &["policy", "set", "b", "--block-size", "1XB"],
            &["policy", "set", "b", "--gdpr", "perhaps"],
            &["policy", "set", "b", "--k", "-1"],
            &["throttle", "--pause", "--resume"],
            &["throttle", "--max-mib-per-sec", "inf"],
            &["policy", "get"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} was accepted");
        }
    }

    #[test]
    fn connection_flags_go_anywhere_and_have_defaults() {
        let args = parse(&["policy", "get", "b"]).unwrap();
        assert_eq!(args.conn.admin_url, "http://127.0.0.1:9001");
        assert_eq!(args.conn.data_dir, PathBuf::from("data"));
        let args = parse(&["policy", "get", "b", "--admin-url", "http://h:1", "--admin-token", "t"]).unwrap();
        assert_eq!(args.conn.admin_url, "http://h:1");
        assert_eq!(args.conn.admin_token.as_deref(), Some("t"));
        let args = parse(&["--admin-url", "http://h:2", "migration", "b", "--watch"]).unwrap();
        assert_eq!(args.conn.admin_url, "http://h:2");
    }

    #[test]
    fn throttle_without_flags_is_a_get() {
        assert_eq!(throttle_of(&[]), None);
        assert_eq!(throttle_of(&["--json"]), None);
        assert_eq!(throttle_of(&["--pause"]), Some(json!({"paused": true})));
        assert_eq!(throttle_of(&["--resume"]), Some(json!({"paused": false})));
        assert_eq!(
            throttle_of(&["--max-mib-per-sec", "0", "--concurrency", "8"]),
            Some(json!({"max_mib_per_sec": 0.0, "concurrency": 8}))
        );
    }

    #[test]
    fn urls_are_built_with_encoded_segments() {
        let base = admin_base("http://127.0.0.1:9001").unwrap();
        assert_eq!(
            endpoint(&base, &policy_path("b")).as_str(),
            "http://127.0.0.1:9001/api/v1/buckets/b/policy"
        );
        assert_eq!(
            endpoint(&base, &migration_path("a/b?c")).as_str(),
            "http://127.0.0.1:9001/api/v1/buckets/a%2Fb%3Fc/migration"
        );
        let prefixed = admin_base("https://proxy/admin/").unwrap();
        assert_eq!(
            endpoint(&prefixed, &policy_path("b")).as_str(),
            "https://proxy/admin/api/v1/buckets/b/policy"
        );
        assert_eq!(admin_base("127.0.0.1:9001").unwrap().as_str(), "http://127.0.0.1:9001/");
        assert!(admin_base("ftp://x").is_err());
        assert!(admin_base("http://").is_err());
    }

    #[test]
    fn the_token_comes_from_the_flag_then_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("mlsysops-bucket-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(admin_token(None, &dir).unwrap(), None);
        std::fs::write(dir.join(ADMIN_TOKEN_FILE), "from-file\n").unwrap();
        assert_eq!(admin_token(None, &dir).unwrap().as_deref(), Some("from-file"));
        assert_eq!(admin_token(Some("flag"), &dir).unwrap().as_deref(), Some("flag"));
        assert_eq!(admin_token(Some(""), &dir).unwrap().as_deref(), Some("from-file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_carry_status_and_the_api_message() {
        let msg = error_message(StatusCode::NOT_FOUND, br#"{"error":"no such bucket b"}"#, false);
        assert_eq!(msg, "404 Not Found: no such bucket b");
        let msg = error_message(StatusCode::BAD_GATEWAY, b"<html>bad</html>", false);
        assert_eq!(msg, "502 Bad Gateway: <html>bad</html>");
        let msg = error_message(StatusCode::UNAUTHORIZED, br#"{"error":"missing token"}"#, true);
        assert!(
            msg.starts_with("401 Unauthorized: missing token (no admin token"),
            "{msg}"
        );
    }

    fn sample_policy() -> Value {
        json!({
            "bucket": "b", "epoch": 3, "preset": "ec-4-2", "k": 4, "m": 2,
            "block_size": 1048576, "backends": "region=eu,local3", "eligible": ["local0", "local1"],
            "encryption": true, "server_side_encryption": "on", "redundancy": "high",
            "max_latency": 200, "min_download_speed": 50.0,
            "location_restrictions": {"gdpr": false}, "automatic_updates": false,
            "changed_ms": 1764300000000u64, "changed_by": "admin", "reason": "initial",
            "warnings": ["backend local3: p95 GET 250 ms exceeds max_latency 200 ms"]
        })
    }

    #[test]
    fn a_policy_reads_as_a_table() {
        let out = format_policy(&sample_policy());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "bucket              b");
        assert_eq!(lines[1], "epoch               3");
        for want in [
            "placement           ec-4-2 (k=4, m=2)",
            "block size          1.0 MiB",
            "backends            region=eu,local3",
            "encryption          on",
            "redundancy          high",
            "max latency         200 ms",
            "min download speed  50.0 MiB/s",
            "gdpr only           false",
            "automatic updates   false",
            "eligible now        local0, local1",
            "changed             2025-11-28T03:20:00Z by admin",
            "reason              initial",
            "warning: backend local3: p95 GET 250 ms exceeds max_latency 200 ms",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn open_settings_read_as_such() {
        let mut p = sample_policy();
        p["backends"] = json!("");
        p["redundancy"] = Value::Null;
        p["max_latency"] = Value::Null;
        p["eligible"] = json!([]);
        p["encryption"] = json!(false);
        p.as_object_mut().unwrap().remove("warnings");
        let out = format_policy(&p);
        for want in [
            "backends            (all)",
            "redundancy          any",
            "max latency         none",
            "eligible now        (none)",
            "encryption          off",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(!out.contains("warning"));
        // A view missing fields still prints, with dashes.
        assert!(format_policy(&json!({})).contains("epoch               -"));
    }

    #[test]
    fn a_set_answer_says_what_changed_and_the_new_epoch() {
        let old = sample_policy();
        let mut new = sample_policy();
        new["epoch"] = json!(4);
        new["preset"] = json!("ec-8-4");
        new["k"] = json!(8);
        new["m"] = json!(4);
        new["backends"] = json!("");
        new["warnings"] = json!([]);
        let answer = json!({
            "changed": true, "policy": new,
            "migration": {"state": "running", "target_epoch": 4, "objects_remaining": 12,
                          "bytes_total": 3072, "bytes_done": 1024}
        });
        let out = format_set_answer("b", &old, &answer);
        assert_eq!(
            out,
            "policy of bucket b changed: epoch 3 -> 4\n\
             \x20 placement: ec-4-2 (k=4, m=2) -> ec-8-4 (k=8, m=4)\n\
             \x20 backends: region=eu,local3 -> (all)\n\
             eligible backends: local0, local1\n\
             migration: running to epoch 4, 12 objects (2.0 KiB) to migrate\n"
        );
        let same = json!({"changed": false, "policy": old});
        assert_eq!(
            format_set_answer("b", &old, &same),
            "policy of bucket b unchanged (epoch 3)\n"
        );
    }

    #[test]
    fn history_lists_changes_oldest_first() {
        let old = sample_policy();
        let mut new = sample_policy();
        new["encryption"] = json!(false);
        let history = json!({"bucket": "b", "changes": [
            {"epoch": 2, "at_ms": 1764300000000u64, "changed_by": "alice", "automatic": false,
             "reason": "move to EU", "old": old, "new": new},
            {"epoch": 3, "at_ms": 1764300060000u64, "changed_by": "agent", "automatic": true,
             "reason": "", "old": new, "new": new},
        ]});
        assert_eq!(
            format_history(&history),
            "epoch 2  2025-11-28T03:20:00Z  by alice: move to EU\n\
             \x20   encryption: on -> off\n\
             epoch 3  2025-11-28T03:21:00Z  by agent (automatic)\n"
        );
        assert_eq!(
            format_history(&json!({"bucket": "b", "changes": []})),
            "bucket b: no policy change recorded\n"
        );
    }

    fn sample_migration() -> Value {
        json!({
            "bucket": "b", "target_epoch": 3, "state": "running",
            "objects_total": 120, "objects_done": 40,
            "bytes_total": 1000, "bytes_done": 400,
            "objects_reencoded": 30, "objects_moved": 5, "objects_relabelled": 5,
            "objects_remaining": 80, "rate_bytes_per_sec": 1234.5, "eta_secs": 12.3,
            "errors": 0, "last_error": null, "skipped": 0,
            "started_ms": 1764300000000u64, "finished_ms": null
        })
    }

    #[test]
    fn a_migration_reads_as_a_few_lines() {
        assert_eq!(
            format_migration(&sample_migration()),
            "migration of bucket b to epoch 3: running\n\
             \x20 objects   40 / 120 done, 80 remaining (30 re-encoded, 5 moved, 5 relabelled, 0 skipped)\n\
             \x20 bytes     400 B / 1000 B (40.0%)\n\
             \x20 rate      1.2 KiB/s, ETA 12s\n\
             \x20 errors    0\n\
             \x20 started   2025-11-28T03:20:00Z\n\
             \x20 finished  -\n"
        );
        let mut failed = sample_migration();
        failed["errors"] = json!(2);
        failed["last_error"] = json!("backend local3 down");
        assert!(format_migration(&failed).contains("errors    2 (last: backend local3 down)"));
        assert_eq!(
            progress_message(&sample_migration()),
            "40/120 objects, 1.2 KiB/s, ETA 12s, 0 errors [running]"
        );
    }

    #[test]
    fn etas_and_sizes_read_naturally() {
        assert_eq!(format_eta(None), "-");
        assert_eq!(format_eta(Some(f64::NAN)), "-");
        assert_eq!(format_eta(Some(-1.0)), "-");
        assert_eq!(format_eta(Some(0.2)), "0s");
        assert_eq!(format_eta(Some(59.4)), "59s");
        assert_eq!(format_eta(Some(185.0)), "3m05s");
        assert_eq!(format_eta(Some(7620.0)), "2h07m");
        assert_eq!(format_eta(Some(100_800.0)), "1d04h");
        assert_eq!(format_eta(Some(1e300)), format_eta(Some(u64::MAX as f64)));
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(5 << 30), "5.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(format_rate(Some(0.0)), "0 B/s");
        assert_eq!(format_rate(None), "-/s");
    }

    #[test]
    fn waiting_stops_when_the_job_for_the_epoch_is_done() {
        let view = |state: &str, target: u64| json!({"state": state, "target_epoch": target});
        assert!(!settled(&view("running", 4), Some(4), 0));
        assert!(!settled(&view("paused", 4), Some(4), 0));
        assert!(settled(&view("done", 4), Some(4), 0));
        assert!(settled(&view("idle", 0), Some(4), 0));
        // The previous job's "done" is not the new one's...
        assert!(!settled(&view("done", 3), Some(4), 0));
        // ...unless no new job shows up for a while.
        assert!(settled(&view("done", 3), Some(4), STALE_DONE_POLLS));
        assert!(settled(&view("done", 3), None, 0));
        assert!(!settled(&json!({}), None, 0));
    }

    #[test]
    fn throttle_settings_read_as_one_line() {
        assert_eq!(
            format_throttle(&json!({"max_mib_per_sec": 64.0, "concurrency": 4, "paused": false})),
            "migration throttle: 64 MiB/s, concurrency 4, running"
        );
        assert_eq!(
            format_throttle(&json!({"max_mib_per_sec": 0.0, "concurrency": 1, "paused": true})),
            "migration throttle: unlimited, concurrency 1, paused"
        );
    }
}
