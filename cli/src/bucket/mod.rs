//! `mlsysops bucket`: buckets' storage policies and their migrations through the gateway's
//! admin REST API, with the typed client of `control_api`.

mod args;
mod format;

pub use args::BucketArgs;
// Shared with the other admin-API command families (app, intent, agents, decisions).
pub(crate) use args::ConnArgs;

use anyhow::{anyhow, bail, Context};
use args::{BucketCommand, MigrationArgs, SetArgs, ShowArgs, StoragePolicyCommand, ThrottleArgs};
use control_api::{Client, ClientError, MigrationProgress, MigrationState, StatusCode, Url};
use format::{format_history, format_migration, format_policy, format_set_answer, format_throttle, progress_message};
use serde::Serialize;
use std::time::Duration;

/// How often `--watch` and `--wait` ask for the migration state.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Polls a finished job of an older epoch may be seen before `--wait` stops anyway: a change that
/// leaves nothing to migrate might never start a job of its own.
const STALE_DONE_POLLS: u32 = 10;
/// Said after a 401 when no token was sent at all.
const NO_TOKEN_HINT: &str = " (no admin token: use --admin-token, MLSYSOPS_ADMIN_TOKEN or <data-dir>/admin-token)";

/// Runs a bucket command; failures print `error: ...` on stderr and exit with status 1.
pub fn run(args: BucketArgs) -> anyhow::Result<()> {
    if let Err(e) = run_command(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn run_command(args: BucketArgs) -> anyhow::Result<()> {
    let client = connect(&args.conn)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    rt.block_on(async move {
        match args.command {
            BucketCommand::StoragePolicy(StoragePolicyCommand::Get(a)) => policy_get(&client, &a).await,
            BucketCommand::StoragePolicy(StoragePolicyCommand::Set(a)) => policy_set(&client, &a).await,
            BucketCommand::StoragePolicy(StoragePolicyCommand::History(a)) => policy_history(&client, &a).await,
            BucketCommand::Migration(a) => migration(&client, &a).await,
            BucketCommand::Throttle(a) => throttle(&client, &a).await,
        }
    })
}

/// The admin client the connection flags describe.
pub(crate) fn connect(conn: &ConnArgs) -> anyhow::Result<Client> {
    let base = admin_base(&conn.admin_url)?;
    let token = control_api::admin_token(conn.admin_token.as_deref(), &conn.data_dir)?;
    Ok(Client::new(base, token)?)
}

/// A client error for a person: a 401 when no token was sent says where one comes from.
pub(crate) fn explain(has_token: bool) -> impl Fn(ClientError) -> anyhow::Error {
    move |e| match e {
        ClientError::Api {
            status: StatusCode::UNAUTHORIZED,
            ..
        } if !has_token => anyhow!("{e}{NO_TOKEN_HINT}"),
        other => other.into(),
    }
}

async fn policy_get(client: &Client, args: &ShowArgs) -> anyhow::Result<()> {
    let policy = client
        .storage_policy(&args.bucket)
        .await
        .map_err(explain(client.has_token()))?;
    print_view(&policy, args.json, format_policy)
}

async fn policy_history(client: &Client, args: &ShowArgs) -> anyhow::Result<()> {
    let history = client
        .storage_policy_history(&args.bucket)
        .await
        .map_err(explain(client.has_token()))?;
    print_view(&history, args.json, format_history)
}

async fn policy_set(client: &Client, args: &SetArgs) -> anyhow::Result<()> {
    let change = args.request();
    if change.is_empty() {
        bail!("nothing to change: give at least one policy flag (see `mlsysops bucket storage-policy set --help`)");
    }
    let explain = explain(client.has_token());
    // The view before the change is what lets the summary say what changed.
    let old = if args.json {
        None
    } else {
        Some(client.storage_policy(&args.bucket).await.map_err(&explain)?)
    };
    let answer = client
        .set_storage_policy(&args.bucket, &change)
        .await
        .map_err(&explain)?;
    match &old {
        Some(old) => print!("{}", format_set_answer(&args.bucket, old, &answer)),
        None => print_json(&answer)?,
    }
    if !args.wait || !answer.changed {
        return Ok(());
    }
    let last = follow_migration(client, &args.bucket, Some(answer.policy.epoch)).await?;
    finish_migration(&last, args.json)
}

async fn migration(client: &Client, args: &MigrationArgs) -> anyhow::Result<()> {
    if !args.watch {
        let view = client
            .migration(&args.bucket)
            .await
            .map_err(explain(client.has_token()))?;
        return print_view(&view, args.json, format_migration);
    }
    let last = follow_migration(client, &args.bucket, None).await?;
    finish_migration(&last, args.json)
}

async fn throttle(client: &Client, args: &ThrottleArgs) -> anyhow::Result<()> {
    let settings = match args.request() {
        Some(change) => client.set_migration_throttle(&change).await,
        None => client.migration_throttle().await,
    }
    .map_err(explain(client.has_token()))?;
    print_view(&settings, args.json, |v| format!("{}\n", format_throttle(v)))
}

/// Polls the bucket's migration under a progress bar until it has settled; returns the last view.
async fn follow_migration(client: &Client, bucket: &str, epoch: Option<u64>) -> anyhow::Result<MigrationProgress> {
    // Hidden by indicatif itself when stderr is not a terminal, so scripts get only the summary.
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    let style =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let mut stale = 0;
    loop {
        let view = match client.migration(bucket).await {
            Ok(v) => v,
            Err(e) => {
                bar.abandon();
                return Err(explain(client.has_token())(e));
            }
        };
        bar.set_length(view.bytes_total);
        bar.set_position(view.bytes_done);
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
fn finish_migration(view: &MigrationProgress, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(view)?;
    } else {
        print!("{}", format_migration(view));
    }
    if view.errors > 0 {
        let last = view.last_error.as_deref().unwrap_or("no message");
        bail!(
            "the migration finished with {} failed objects (last: {last})",
            view.errors
        );
    }
    Ok(())
}

/// Whether a migration needs no more watching: done or idle, and (when a policy epoch is waited
/// for) a job for that epoch, or an older finished job seen long enough that none is coming.
fn settled(view: &MigrationProgress, epoch: Option<u64>, stale_polls: u32) -> bool {
    match view.state {
        MigrationState::Idle => true,
        MigrationState::Done => !is_stale_done(view, epoch) || stale_polls >= STALE_DONE_POLLS,
        MigrationState::Running | MigrationState::Paused => false,
    }
}

/// A finished job whose target is older than the epoch waited for: the new one may not have started.
fn is_stale_done(view: &MigrationProgress, epoch: Option<u64>) -> bool {
    view.state == MigrationState::Done && epoch.is_some_and(|e| view.target_epoch < e)
}

/// Prints an answer as the API's JSON (`json`) or as the text `human` makes of it.
pub(crate) fn print_view<T: Serialize>(v: &T, json: bool, human: impl Fn(&T) -> String) -> anyhow::Result<()> {
    if json {
        print_json(v)
    } else {
        print!("{}", human(v));
        Ok(())
    }
}

/// Pretty JSON with the keys sorted, as this command has always printed the API's answers.
pub(crate) fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let value = serde_json::to_value(v)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_get_a_scheme_and_must_be_http() {
        assert_eq!(admin_base("127.0.0.1:9001").unwrap().as_str(), "http://127.0.0.1:9001/");
        assert_eq!(
            admin_base(" https://proxy/admin/ ").unwrap().as_str(),
            "https://proxy/admin/"
        );
        assert!(admin_base("ftp://x").is_err());
        assert!(admin_base("http://").is_err());
    }

    fn error_message(status: StatusCode, body: &[u8], no_token: bool) -> String {
        format!("{:#}", explain(!no_token)(ClientError::from_answer(status, body)))
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
        let msg = error_message(StatusCode::UNAUTHORIZED, br#"{"error":"wrong admin token"}"#, false);
        assert_eq!(msg, "401 Unauthorized: wrong admin token");
    }

    #[test]
    fn waiting_stops_when_the_job_for_the_epoch_is_done() {
        let view = |state: &str, target: u64| MigrationProgress {
            state: state.parse().unwrap(),
            target_epoch: target,
            ..MigrationProgress::default()
        };
        assert!(!settled(&view("running", 4), Some(4), 0));
        assert!(!settled(&view("paused", 4), Some(4), 0));
        assert!(settled(&view("done", 4), Some(4), 0));
        assert!(settled(&view("idle", 0), Some(4), 0));
        // The previous job's "done" is not the new one's...
        assert!(!settled(&view("done", 3), Some(4), 0));
        // ...unless no new job shows up for a while.
        assert!(settled(&view("done", 3), Some(4), STALE_DONE_POLLS));
        assert!(settled(&view("done", 3), None, 0));
    }
}
