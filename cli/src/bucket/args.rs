//! The flags of `mlsysops bucket` and the admin API requests they make.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand, ValueEnum};
use control_api::{
    BackendsField, LocationRestrictions, MigrationThrottleRequest, Redundancy, StoragePolicyRequest, ADMIN_TOKEN_ENV,
};
use std::path::PathBuf;

/// `mlsysops bucket` flags and subcommands.
#[derive(Args)]
pub struct BucketArgs {
    #[command(flatten)]
    pub(super) conn: ConnArgs,
    #[command(subcommand)]
    pub(super) command: BucketCommand,
}

/// Where the admin API is and how to authenticate; accepted before or after the subcommand.
#[derive(Args)]
pub(crate) struct ConnArgs {
    /// Admin REST API of the gateway.
    #[arg(
        long,
        global = true,
        env = "MLSYSOPS_ADMIN_URL",
        default_value = "http://127.0.0.1:9001"
    )]
    pub(crate) admin_url: String,
    /// Admin bearer token [default: the contents of <data-dir>/admin-token].
    #[arg(long, global = true, env = ADMIN_TOKEN_ENV, hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Data dir holding the admin-token file, when no token is given.
    #[arg(long, global = true, env = "MLSYSOPS_DATA_DIR", default_value = "data")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Subcommand)]
pub(super) enum BucketCommand {
    /// Show, change or trace a bucket's storage policy (code, backends, encryption, intent).
    // `policy` was its name before S3 bucket policies (access control) were planned.
    #[command(subcommand, alias = "policy")]
    StoragePolicy(StoragePolicyCommand),
    /// Progress of the migration that brings a bucket's objects to its current storage policy.
    Migration(MigrationArgs),
    /// Show or change the global migration throttle (no flags: show).
    Throttle(ThrottleArgs),
}

#[derive(Subcommand)]
pub(super) enum StoragePolicyCommand {
    /// Print a bucket's storage policy.
    Get(ShowArgs),
    /// Change some fields of a bucket's storage policy (the others keep their values).
    Set(Box<SetArgs>),
    /// Print every change of a bucket's storage policy, oldest first.
    History(ShowArgs),
}

/// A bucket and the output format.
#[derive(Args)]
pub(super) struct ShowArgs {
    /// Bucket name.
    pub(super) bucket: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

/// `mlsysops bucket storage-policy set` flags: each given one becomes a field of the PUT body.
#[derive(Args)]
pub(super) struct SetArgs {
    /// Bucket name.
    pub(super) bucket: String,
    /// Erasure-coding preset: ec-K-M or replicate-N.
    #[arg(long, conflicts_with_all = ["k", "m"])]
    preset: Option<String>,
    /// Data shards.
    #[arg(long)]
    k: Option<u8>,
    /// Parity shards.
    #[arg(long)]
    m: Option<u8>,
    /// Erasure-coding block size: bytes, or with a unit (64KiB, 1MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_block_size)]
    block_size: Option<u32>,
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
    #[arg(long, value_parser = redundancy_parser())]
    redundancy: Option<Limit<Redundancy>>,
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
    pub(super) wait: bool,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    pub(super) json: bool,
}

/// `mlsysops bucket migration` flags.
#[derive(Args)]
pub(super) struct MigrationArgs {
    /// Bucket name.
    pub(super) bucket: String,
    /// Show a progress bar until the migration is done.
    #[arg(long)]
    pub(super) watch: bool,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    pub(super) json: bool,
}

/// `mlsysops bucket throttle` flags.
#[derive(Args)]
pub(super) struct ThrottleArgs {
    /// Migration bandwidth cap in MiB/s (0 = unlimited).
    #[arg(long, value_name = "F", value_parser = parse_non_negative)]
    max_mib_per_sec: Option<f64>,
    /// Objects migrated at once.
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Stop migrating until --resume.
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    /// Migrate again after --pause.
    #[arg(long)]
    resume: bool,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    pub(super) json: bool,
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

/// A limit to set, or to remove (JSON null).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Limit<T> {
    Set(T),
    Unset,
}

impl<T> Limit<T> {
    /// The request field's inner value: `None` lifts the limit.
    fn into_option(self) -> Option<T> {
        match self {
            Limit::Set(v) => Some(v),
            Limit::Unset => None,
        }
    }
}

/// `--redundancy`: the policy's names, and `any` for no constraint.
fn redundancy_parser() -> impl TypedValueParser<Value = Limit<Redundancy>> {
    PossibleValuesParser::new([
        PossibleValue::new("high").help("Survive two backend losses (m >= 2)"),
        PossibleValue::new("one").help("Survive one backend loss (m >= 1)"),
        PossibleValue::new("none").help("No parity required (m = 0)"),
        PossibleValue::new("any").help("Not constrained (JSON null)"),
    ])
    // Only the four names above get here, and three of them parse.
    .map(|s| s.parse().map_or(Limit::Unset, Limit::Set))
}

fn parse_block_size(s: &str) -> Result<u32, String> {
    let bytes = loadgen::config::parse_size(s).map_err(|e| e.to_string())?;
    u32::try_from(bytes).map_err(|_| format!("{s:?} is too large for a block size"))
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

impl SetArgs {
    /// The PUT body: only the fields given on the command line.
    pub(super) fn request(&self) -> StoragePolicyRequest {
        StoragePolicyRequest {
            preset: self.preset.clone(),
            k: self.k,
            m: self.m,
            block_size: self.block_size,
            backends: if self.all_backends {
                Some(BackendsField::Selector(String::new()))
            } else {
                self.backends.as_deref().map(BackendsField::from_text)
            },
            encryption: self.encryption.map(|e| e == Switch::On),
            server_side_encryption: None,
            redundancy: self.redundancy.map(Limit::into_option),
            max_latency: self.max_latency.map(Limit::into_option),
            min_download_speed: self.min_download_speed.map(Limit::into_option),
            location_restrictions: self.gdpr.map(|gdpr| LocationRestrictions { gdpr }),
            policy_update_token: self.token.clone(),
            automatic: self.automatic,
            changed_by: self.changed_by.clone(),
            reason: self.reason.clone(),
            prefixes: None,
        }
    }
}

impl ThrottleArgs {
    /// The PUT body, or `None` when no flag asks for a change (then it is a GET).
    pub(super) fn request(&self) -> Option<MigrationThrottleRequest> {
        let req = MigrationThrottleRequest {
            max_mib_per_sec: self.max_mib_per_sec,
            concurrency: self.concurrency,
            paused: (self.pause || self.resume).then_some(self.pause),
        };
        (!req.is_empty()).then_some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: BucketArgs,
    }

    fn parse(argv: &[&str]) -> Result<BucketArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("bucket").chain(argv.iter().copied())).map(|c| c.args)
    }

    fn set_body(argv: &[&str]) -> Value {
        let mut full = vec!["storage-policy", "set", "b"];
        full.extend_from_slice(argv);
        match parse(&full).unwrap().command {
            BucketCommand::StoragePolicy(StoragePolicyCommand::Set(args)) => {
                serde_json::to_value(args.request()).unwrap()
            }
            _ => panic!("not a set command"),
        }
    }

    fn throttle_of(argv: &[&str]) -> Option<Value> {
        let mut full = vec!["throttle"];
        full.extend_from_slice(argv);
        match parse(&full).unwrap().command {
            BucketCommand::Throttle(args) => args.request().map(|r| serde_json::to_value(r).unwrap()),
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
        let backends_value = |text: &str| serde_json::to_value(BackendsField::from_text(text)).unwrap();
        assert_eq!(backends_value("local0,local1"), json!(["local0", "local1"]));
        assert_eq!(backends_value(" s3a , gcs1 "), json!(["s3a", "gcs1"]));
        assert_eq!(backends_value("local3"), json!(["local3"]));
        assert_eq!(backends_value("region=eu,local3"), json!("region=eu,local3"));
        assert_eq!(backends_value("a,,b"), json!("a,,b"));
        assert_eq!(backends_value(""), json!(""));
        assert_eq!(
            set_body(&["--backends", "local0,local1"]),
            json!({"backends": ["local0", "local1"]})
        );
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
            // Out of the API's range: refused before anything is sent.
            &["storage-policy", "set", "b", "--k", "300"],
            &["storage-policy", "set", "b", "--block-size", "8GiB"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} was accepted");
        }
    }

    #[test]
    fn policy_is_the_old_name_of_storage_policy() {
        for name in ["storage-policy", "policy"] {
            assert!(matches!(
                parse(&[name, "history", "b", "--json"]).unwrap().command,
                BucketCommand::StoragePolicy(StoragePolicyCommand::History(ShowArgs { json: true, .. }))
            ));
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
}
