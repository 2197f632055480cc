//! `mlsysops decisions` (the agents' decision log, optionally followed) and `mlsysops why
//! BUCKET` (a bucket's storage policy, its intent and the decisions that shaped it).

mod format;
mod why;

use crate::bucket::{explain, print_json, ConnArgs};
use anyhow::Context;
use clap::Args;
use control_api::{Client, ClientError, Decision, StatusCode};
use format::{decision_line, format_decisions};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use why::{format_why, why_paragraph};

/// How often `--follow` asks for new decisions.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);
/// How far back `--follow` remembers decision ids, ms: a decision seen once is not printed again
/// even if the log's `since` boundary returns it on the next poll.
const FOLLOW_MEMORY_MS: i64 = 10 * 60 * 1000;

/// `mlsysops decisions` flags.
#[derive(Args)]
pub struct DecisionsArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Only the decisions about this bucket.
    #[arg(long)]
    bucket: Option<String>,
    /// Only decisions made since: a duration ago (30s, 15m, 2h, 1d) or a Unix time in ms.
    #[arg(long, value_name = "DURATION|MS", value_parser = parse_since)]
    since: Option<Since>,
    /// At most this many (the newest).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Keep asking every 2 s and print each new decision once, oldest first.
    #[arg(long)]
    follow: bool,
    /// Print the API's JSON (with --follow: one decision per line).
    #[arg(long)]
    json: bool,
}

/// `mlsysops why` flags.
#[derive(Args)]
pub struct WhyArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Bucket name.
    bucket: String,
    /// How many of the bucket's decisions to show (the newest).
    #[arg(long, value_name = "N", default_value_t = 10)]
    limit: usize,
    /// Print the API's answers as one JSON object (storage_policy, intent, decisions, why).
    #[arg(long)]
    json: bool,
}

/// The start of a window of the log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Since {
    /// So long before now.
    Ago(Duration),
    /// A Unix time, ms.
    At(i64),
}

impl Since {
    /// The Unix ms it stands for, `now_ms` being now.
    pub(crate) fn to_ms(self, now_ms: i64) -> i64 {
        match self {
            Since::At(ms) => ms,
            Since::Ago(d) => now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// `15m`, `2h`, `1d`, `30s`, `500ms`: a duration ago; a plain number: a Unix time in ms.
pub(crate) fn parse_since(s: &str) -> Result<Since, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return if ms >= 0 {
            Ok(Since::At(ms))
        } else {
            Err(format!("{s:?}: a Unix time in ms cannot be negative"))
        };
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration (30s, 15m, 2h, 1d) or a Unix time in ms"))?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h or d)")),
    };
    n.checked_mul(ms_per_unit)
        .map(|ms| Since::Ago(Duration::from_millis(ms)))
        .ok_or_else(|| format!("{s:?}: too long"))
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Runs `mlsysops decisions`.
pub fn run_decisions(args: DecisionsArgs) -> anyhow::Result<()> {
    crate::remote::run(&args.conn, |client| decisions(client, &args))
}

/// Runs `mlsysops why`.
pub fn run_why(args: WhyArgs) -> anyhow::Result<()> {
    crate::remote::run(&args.conn, |client| why(client, &args))
}

async fn decisions(client: Client, args: &DecisionsArgs) -> anyhow::Result<()> {
    let explain = explain(client.has_token());
    let since = args.since.map(|s| s.to_ms(now_ms()));
    let page = client
        .decisions(args.bucket.as_deref(), since, args.limit)
        .await
        .map_err(&explain)?;
    if !args.follow {
        if args.json {
            return print_json(&page);
        }
        print!("{}", format_decisions(&page.decisions));
        return Ok(());
    }
    let mut follower = Follower::default();
    for d in follower.fresh(&page.decisions) {
        print_followed(d, args.json)?;
    }
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let page = client
            .decisions(args.bucket.as_deref(), follower.since().or(since), None)
            .await
            .map_err(&explain)?;
        for d in follower.fresh(&page.decisions) {
            print_followed(d, args.json)?;
        }
    }
}

fn print_followed(d: &Decision, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let line = if json {
        serde_json::to_string(d)?
    } else {
        decision_line(d)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to stdout")?;
    // Followed output is read as it comes, often through a pipe.
    out.flush().context("writing to stdout")
}

/// What `--follow` has printed: each decision once, oldest first.
#[derive(Default)]
struct Follower {
    seen: HashMap<String, i64>,
    newest_ms: Option<i64>,
}

impl Follower {
    /// The decisions of `page` not printed before, oldest first; remembers them.
    fn fresh<'a>(&mut self, page: &'a [Decision]) -> Vec<&'a Decision> {
        let mut new: Vec<&Decision> = page.iter().filter(|d| !self.seen.contains_key(&d.id)).collect();
        new.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
        for d in &new {
            self.seen.insert(d.id.clone(), d.at_ms);
            self.newest_ms = Some(self.newest_ms.map_or(d.at_ms, |n| n.max(d.at_ms)));
        }
        if let Some(newest) = self.newest_ms {
            self.seen.retain(|_, at| *at >= newest - FOLLOW_MEMORY_MS);
        }
        new
    }

    /// Where the next poll starts: the newest decision printed (inclusive; repeats are dropped).
    fn since(&self) -> Option<i64> {
        self.newest_ms
    }
}

async fn why(client: Client, args: &WhyArgs) -> anyhow::Result<()> {
    let explain = explain(client.has_token());
    let policy = client.storage_policy(&args.bucket).await.map_err(&explain)?;
    let intent = match client.bucket_intent(&args.bucket).await {
        Ok(view) => Some(view),
        Err(ClientError::Api {
            status: StatusCode::NOT_FOUND,
            ..
        }) => None,
        Err(e) => return Err(explain(e)),
    };
    let page = client
        .decisions(Some(&args.bucket), None, Some(args.limit))
        .await
        .map_err(&explain)?;
    if args.json {
        return print_json(&json!({
            "storage_policy": policy,
            "intent": intent,
            "decisions": page.decisions,
            "why": why_paragraph(&policy, &page.decisions),
        }));
    }
    print!("{}", format_why(&policy, intent.as_ref(), &page.decisions));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn since_is_a_duration_ago_or_unix_ms() {
        assert_eq!(parse_since("1764300000000"), Ok(Since::At(1_764_300_000_000)));
        assert_eq!(parse_since("15m"), Ok(Since::Ago(Duration::from_secs(900))));
        assert_eq!(parse_since("2h"), Ok(Since::Ago(Duration::from_secs(7200))));
        assert_eq!(parse_since("1d"), Ok(Since::Ago(Duration::from_secs(86_400))));
        assert_eq!(parse_since("30s"), Ok(Since::Ago(Duration::from_secs(30))));
        assert_eq!(parse_since("500ms"), Ok(Since::Ago(Duration::from_millis(500))));
        for bad in ["", "-5", "5y", "m", "1.5h", "99999999999999999999d"] {
            assert!(parse_since(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Since::Ago(Duration::from_secs(60)).to_ms(100_000), 40_000);
        assert_eq!(Since::At(7).to_ms(100_000), 7);
    }

    fn decision(id: &str, at_ms: i64) -> Decision {
        let mut d = format::tests::decision();
        d.id = id.into();
        d.at_ms = at_ms;
        d
    }

    #[test]
    fn following_prints_each_decision_once_oldest_first() {
        let mut f = Follower::default();
        assert_eq!(f.since(), None);
        // Pages come newest first.
        let first = [decision("c", 30), decision("b", 20), decision("a", 20)];
        let ids: Vec<_> = f.fresh(&first).iter().map(|d| d.id.clone()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(f.since(), Some(30));
        // The next poll returns the boundary decision again, and a new one.
        let second = [decision("d", 40), decision("c", 30)];
        let ids: Vec<_> = f.fresh(&second).iter().map(|d| d.id.clone()).collect();
        assert_eq!(ids, ["d"]);
        assert!(f.fresh(&second).is_empty());
        // Long-past ids are forgotten, so memory stays bounded.
        f.fresh(&[decision("late", 40 + FOLLOW_MEMORY_MS + 1)]);
        assert!(!f.seen.contains_key("a") && f.seen.contains_key("late"));
    }

    #[derive(Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Decisions(DecisionsArgs),
        Why(WhyArgs),
    }

    #[test]
    fn flags_parse() {
        let cli = TestCli::try_parse_from([
            "x",
            "decisions",
            "--bucket",
            "photos",
            "--since",
            "1h",
            "--limit",
            "5",
            "--follow",
            "--json",
        ])
        .unwrap();
        let Cmd::Decisions(a) = cli.cmd else {
            panic!("not decisions")
        };
        assert_eq!(
            (a.bucket.as_deref(), a.since, a.limit, a.follow, a.json),
            (
                Some("photos"),
                Some(Since::Ago(Duration::from_secs(3600))),
                Some(5),
                true,
                true
            )
        );
        let cli = TestCli::try_parse_from(["x", "why", "photos"]).unwrap();
        let Cmd::Why(a) = cli.cmd else { panic!("not why") };
        assert_eq!((a.bucket.as_str(), a.limit, a.json), ("photos", 10, false));
        assert!(TestCli::try_parse_from(["x", "why"]).is_err());
        assert!(TestCli::try_parse_from(["x", "decisions", "--since", "yesterday"]).is_err());
    }
}
