//! `mlsysops intent`: what a bucket must achieve (the agents choose the code and backends that
//! do it), through the northbound API.

mod format;

use crate::bucket::{explain, print_json, ConnArgs};
use clap::{Args, Subcommand, ValueEnum};
use control_api::{BucketIntent, Client, ClientError, Redundancy, StatusCode};
use format::format_intent;

/// `mlsysops intent` flags and subcommands.
#[derive(Args)]
pub struct IntentArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: IntentCommand,
}

#[derive(Subcommand)]
enum IntentCommand {
    /// Print a bucket's intent.
    Get(GetArgs),
    /// Change a bucket's intent: the flags given change, the others keep their value.
    Set(Box<SetArgs>),
}

#[derive(Args)]
struct GetArgs {
    /// Bucket name.
    bucket: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `mlsysops intent set` flags; "none" (or "any") lifts a constraint.
#[derive(Args)]
struct SetArgs {
    /// Bucket name.
    bucket: String,
    /// Backend losses to survive: high (2), one (1), none (0), any (not constrained).
    #[arg(long, value_name = "high|one|none|any", value_parser = parse_redundancy)]
    redundancy: Option<Limit<Redundancy>>,
    /// Highest acceptable p95 GET latency of a backend holding the bucket, ms.
    #[arg(long, value_name = "MS", value_parser = parse_latency)]
    max_latency: Option<Limit<u64>>,
    /// Lowest acceptable download bandwidth of a backend holding the bucket, MiB/s.
    #[arg(long, value_name = "MIBPS", value_parser = parse_positive)]
    min_download_speed: Option<Limit<f64>>,
    /// Data only on backends labelled gdpr=true.
    #[arg(long, value_name = "true|false")]
    gdpr: Option<bool>,
    /// Encrypt at rest (any: keep what the bucket has).
    #[arg(long, value_enum)]
    encryption: Option<Switch>,
    /// Highest acceptable storage overhead (k+m)/k, at least 1.
    #[arg(long, value_name = "RATIO", value_parser = parse_overhead)]
    max_overhead: Option<Limit<f64>>,
    /// Highest acceptable storage cost per GiB and month.
    #[arg(long, value_name = "COST", value_parser = parse_cost)]
    max_cost: Option<Limit<f64>>,
    /// Lowest trust score (0 to 1) of a backend holding the bucket.
    #[arg(long, value_name = "SCORE", value_parser = parse_trust)]
    min_trust: Option<Limit<f64>>,
    /// The cluster agents that may hold the bucket, comma-separated ("any": every one).
    #[arg(long, value_name = "ID,ID|any", value_parser = parse_clusters)]
    clusters: Option<Limit<Clusters>>,
    /// The bucket's policy_update_token, which the agents present to change its storage policy.
    #[arg(long)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A constraint to set, or to lift.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Limit<T> {
    Set(T),
    Unset,
}

impl<T> Limit<T> {
    fn into_option(self) -> Option<T> {
        match self {
            Limit::Set(v) => Some(v),
            Limit::Unset => None,
        }
    }
}

/// `--encryption`.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Switch {
    /// Encrypt.
    #[value(alias = "true")]
    On,
    /// Do not encrypt.
    #[value(alias = "false")]
    Off,
    /// Keep what the bucket has.
    #[value(alias = "none")]
    Any,
}

fn is_unset(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "none" | "any" | "null" | "unset"
    )
}

fn parse_redundancy(s: &str) -> Result<Limit<Redundancy>, String> {
    // "none" is a redundancy (m may be 0); only "any" lifts the constraint.
    match s.trim().to_ascii_lowercase().as_str() {
        "any" | "null" | "unset" => Ok(Limit::Unset),
        _ => s
            .parse()
            .map(Limit::Set)
            .map_err(|_| format!("{s:?}: expected high, one, none or any")),
    }
}

fn parse_latency(s: &str) -> Result<Limit<u64>, String> {
    if is_unset(s) {
        return Ok(Limit::Unset);
    }
    match s.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(Limit::Set(v)),
        _ => Err(format!(
            "{s:?} is not a positive whole number of milliseconds (or \"none\")"
        )),
    }
}

/// A finite number in `range`, or "none".
fn parse_number(s: &str, ok: impl Fn(f64) -> bool, what: &str) -> Result<Limit<f64>, String> {
    if is_unset(s) {
        return Ok(Limit::Unset);
    }
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(Limit::Set(v)),
        _ => Err(format!("{s:?} is not {what} (or \"none\")")),
    }
}

fn parse_positive(s: &str) -> Result<Limit<f64>, String> {
    parse_number(s, |v| v > 0.0, "a positive number")
}

fn parse_overhead(s: &str) -> Result<Limit<f64>, String> {
    parse_number(s, |v| v >= 1.0, "a number of at least 1")
}

fn parse_cost(s: &str) -> Result<Limit<f64>, String> {
    parse_number(s, |v| v >= 0.0, "a non-negative number")
}

/// A list of cluster agent ids.
#[derive(Clone, Debug, PartialEq)]
struct Clusters(Vec<String>);

fn parse_clusters(s: &str) -> Result<Limit<Clusters>, String> {
    if s == "any" || s == "none" {
        return Ok(Limit::Unset);
    }
    let ids: Vec<String> = s.split(',').map(|c| c.trim().to_owned()).collect();
    if ids.iter().any(String::is_empty) {
        return Err(format!("{s:?}: expected cluster agent ids separated by commas, or any"));
    }
    Ok(Limit::Set(Clusters(ids)))
}

fn parse_trust(s: &str) -> Result<Limit<f64>, String> {
    parse_number(s, |v| (0.0..=1.0).contains(&v), "a number from 0 to 1")
}

impl SetArgs {
    /// `current` with the flags given applied.
    fn apply(&self, mut intent: BucketIntent) -> BucketIntent {
        fn set<T: Copy>(field: &mut Option<T>, flag: Option<Limit<T>>) {
            if let Some(limit) = flag {
                *field = limit.into_option();
            }
        }
        set(&mut intent.redundancy, self.redundancy);
        set(&mut intent.max_latency, self.max_latency);
        set(&mut intent.min_download_speed, self.min_download_speed);
        set(&mut intent.max_overhead, self.max_overhead);
        set(&mut intent.max_cost_per_gib_month, self.max_cost);
        set(&mut intent.min_trust, self.min_trust);
        if let Some(gdpr) = self.gdpr {
            intent.gdpr = gdpr;
        }
        match &self.clusters {
            Some(Limit::Set(Clusters(ids))) => intent.clusters.clone_from(ids),
            Some(Limit::Unset) => intent.clusters.clear(),
            None => {}
        }
        match self.encryption {
            Some(Switch::On) => intent.encryption = Some(true),
            Some(Switch::Off) => intent.encryption = Some(false),
            Some(Switch::Any) => intent.encryption = None,
            None => {}
        }
        if let Some(token) = &self.token {
            intent.policy_update_token = Some(token.clone());
        }
        intent
    }

    /// Whether no flag asks for a change.
    fn is_empty(&self) -> bool {
        self.redundancy.is_none()
            && self.max_latency.is_none()
            && self.min_download_speed.is_none()
            && self.gdpr.is_none()
            && self.encryption.is_none()
            && self.max_overhead.is_none()
            && self.max_cost.is_none()
            && self.min_trust.is_none()
            && self.clusters.is_none()
            && self.token.is_none()
    }
}

/// Runs an intent command.
pub fn run(args: IntentArgs) -> anyhow::Result<()> {
    crate::remote::run(&args.conn, |client| command(client, args.command))
}

async fn command(client: Client, command: IntentCommand) -> anyhow::Result<()> {
    let explain = explain(client.has_token());
    match command {
        IntentCommand::Get(a) => {
            let view = client.bucket_intent(&a.bucket).await.map_err(explain)?;
            if a.json {
                return print_json(&view);
            }
            print!("{}", format_intent(&view));
        }
        IntentCommand::Set(a) => {
            if a.is_empty() {
                anyhow::bail!("nothing to change: give at least one intent flag (see `mlsysops intent set --help`)");
            }
            // A bucket without an intent yet starts from none; the token never comes back from
            // the API, so it is sent only when given.
            let current = match client.bucket_intent(&a.bucket).await {
                Ok(view) => view.intent,
                Err(ClientError::Api {
                    status: StatusCode::NOT_FOUND,
                    ..
                }) => BucketIntent::default(),
                Err(e) => return Err(explain(e)),
            };
            let view = client
                .set_bucket_intent(&a.bucket, &a.apply(current))
                .await
                .map_err(explain)?;
            if a.json {
                return print_json(&view);
            }
            print!("intent of bucket {} set\n{}", view.bucket, format_intent(&view));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: IntentArgs,
    }

    fn parse(argv: &[&str]) -> Result<IntentArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("intent").chain(argv.iter().copied())).map(|c| c.args)
    }

    /// The body `intent set b ARGV` sends over `current`.
    fn applied(current: &BucketIntent, argv: &[&str]) -> Value {
        let mut full = vec!["set", "b"];
        full.extend_from_slice(argv);
        match parse(&full).unwrap().command {
            IntentCommand::Set(a) => serde_json::to_value(a.apply(current.clone())).unwrap(),
            IntentCommand::Get(_) => panic!("not set"),
        }
    }

    #[test]
    fn every_flag_reaches_its_field() {
        let body = applied(
            &BucketIntent::default(),
            &[
                "--redundancy",
                "high",
                "--max-latency",
                "100",
                "--min-download-speed",
                "20.5",
                "--gdpr",
                "true",
                "--encryption",
                "on",
                "--max-overhead",
                "1.5",
                "--max-cost",
                "0.02",
                "--min-trust",
                "0.7",
                "--clusters",
                "edge-1, edge-2",
                "--token",
                "t0ken",
            ],
        );
        assert_eq!(
            body,
            json!({"redundancy": "high", "max_latency": 100, "min_download_speed": 20.5, "gdpr": true,
                   "encryption": true, "max_overhead": 1.5, "max_cost_per_gib_month": 0.02, "min_trust": 0.7,
                   "clusters": ["edge-1", "edge-2"], "policy_update_token": "t0ken"})
        );
        let placed = BucketIntent {
            clusters: vec!["edge-1".into()],
            ..BucketIntent::default()
        };
        assert_eq!(applied(&placed, &["--clusters", "any"]), json!({}));
        assert!(parse(&["set", "b", "--clusters", "a,,b"]).is_err());
    }

    #[test]
    fn flags_not_given_keep_their_value_and_none_lifts() {
        let current = BucketIntent {
            redundancy: Some(Redundancy::One),
            max_latency: Some(50),
            encryption: Some(true),
            gdpr: true,
            ..BucketIntent::default()
        };
        assert_eq!(
            applied(&current, &["--max-latency", "80"]),
            json!({"redundancy": "one", "max_latency": 80, "gdpr": true, "encryption": true})
        );
        assert_eq!(
            applied(
                &current,
                &[
                    "--max-latency",
                    "none",
                    "--redundancy",
                    "any",
                    "--encryption",
                    "any",
                    "--gdpr",
                    "false"
                ]
            ),
            json!({})
        );
        assert_eq!(applied(&current, &["--redundancy", "none"])["redundancy"], "none");
    }

    #[test]
    fn bad_flags_are_refused() {
        for argv in [
            &["set", "b", "--redundancy", "two"][..],
            &["set", "b", "--max-latency", "0"],
            &["set", "b", "--max-latency", "fast"],
            &["set", "b", "--min-download-speed", "-1"],
            &["set", "b", "--min-download-speed", "NaN"],
            &["set", "b", "--max-overhead", "0.9"],
            &["set", "b", "--max-cost", "-0.1"],
            &["set", "b", "--min-trust", "1.1"],
            &["set", "b", "--encryption", "maybe"],
            &["set", "b", "--gdpr", "perhaps"],
            &["get"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} accepted");
        }
        match parse(&["set", "b"]).unwrap().command {
            IntentCommand::Set(a) => assert!(a.is_empty()),
            IntentCommand::Get(_) => panic!("not set"),
        }
    }
}
