//! `mlsysops trust [SUBJECT]` (trust scores, or one subject with the evidence that moved it) and
//! `mlsysops anomalies [--follow]` (the anomaly detector's verdicts), through the admin API.

use crate::bucket::{explain, ConnArgs};
use crate::decisions::{now_ms, parse_since, Since};
use crate::text::{columns, pairs, time_ms};
use anyhow::anyhow;
use clap::Args;
use control_api::{routes, Client, Method};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// How often `--follow` asks for new verdicts.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// `mlsysops trust` flags.
#[derive(Args)]
pub struct TrustArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// One subject (`backend:b1`, `principal:AKIA...`, `agent:c1`, `node:n1`): its indexes and
    /// the evidence that moved it. Without: every subject.
    subject: Option<String>,
    /// Only subjects of this kind (backend, principal, agent, node).
    #[arg(long)]
    kind: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

/// `mlsysops anomalies` flags.
#[derive(Args)]
pub struct AnomaliesArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Only verdicts on this subject.
    #[arg(long)]
    subject: Option<String>,
    /// Only this class: malfunction, attack or tampering.
    #[arg(long)]
    class: Option<String>,
    /// Only verdicts since: a duration ago (30s, 15m, 2h, 1d) or a Unix time in ms.
    #[arg(long, value_name = "DURATION|MS", value_parser = parse_since)]
    since: Option<Since>,
    /// At most this many (the newest).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Keep asking every 2 s and print each new verdict once, oldest first.
    #[arg(long)]
    follow: bool,
    /// Print the API's JSON (with --follow: one verdict per line).
    #[arg(long)]
    json: bool,
}

/// Runs `mlsysops trust`.
pub fn run_trust(args: TrustArgs) -> anyhow::Result<()> {
    crate::remote::run(&args.conn, |client| trust(client, &args))
}

/// Runs `mlsysops anomalies`.
pub fn run_anomalies(args: AnomaliesArgs) -> anyhow::Result<()> {
    crate::remote::run(&args.conn, |client| anomalies(client, &args))
}

/// GETs `path` (query included) as JSON; a non-2xx answer is an error with the API's message.
async fn get(client: &Client, path: &str) -> anyhow::Result<Value> {
    let (status, body) = client
        .send(Method::GET, path, None)
        .await
        .map_err(explain(client.has_token()))?;
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"].as_str().map_or_else(|| body.to_string(), str::to_owned);
    let hint = if status == control_api::StatusCode::UNAUTHORIZED && !client.has_token() {
        " (no admin token: pass --admin-token or set MLSYSOPS_ADMIN_TOKEN)"
    } else {
        ""
    };
    Err(anyhow!("GET {path}: {status}: {message}{hint}"))
}

/// Percent-encodes one path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn num(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"))
}

fn ms(v: &Value) -> String {
    time_ms(v.as_i64())
}

async fn trust(client: Client, args: &TrustArgs) -> anyhow::Result<()> {
    if let Some(subject) = &args.subject {
        let path = routes::TRUST_SUBJECT.replace("{id}", &encode(subject));
        let view = get(&client, &path).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&view)?);
        } else {
            print!("{}", format_subject(&view));
        }
        return Ok(());
    }
    let path = match &args.kind {
        Some(k) => format!("{}?kind={}", routes::TRUST_SUBJECTS, encode(k)),
        None => routes::TRUST_SUBJECTS.to_owned(),
    };
    let page = get(&client, &path).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        print!("{}", format_subjects(&page));
    }
    Ok(())
}

/// The subjects as a table, lowest score first (what needs a look comes first).
fn format_subjects(page: &Value) -> String {
    let mut subjects: Vec<&Value> = page["subjects"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if subjects.is_empty() {
        return "no trust subjects yet (the agents score backends, principals and agents as evidence comes in)\n"
            .to_owned();
    }
    subjects.sort_by(|a, b| {
        let s = |v: &Value| v["score"].as_f64().unwrap_or(0.0);
        s(a).total_cmp(&s(b))
    });
    let rows: Vec<Vec<String>> = subjects
        .iter()
        .map(|s| {
            vec![
                s["subject"].as_str().unwrap_or("?").to_owned(),
                num(&s["score"]),
                num(&s["indexes"]["identity"]),
                num(&s["indexes"]["behaviour"]),
                num(&s["indexes"]["capability"]),
                s["failures"].as_f64().map_or_else(|| "-".into(), |f| format!("{f:.0}")),
                s["checksum_failures"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |f| format!("{f:.0}")),
                ms(&s["updated_ms"]),
            ]
        })
        .collect();
    columns(
        &[
            "SUBJECT",
            "SCORE",
            "IDENTITY",
            "BEHAVIOUR",
            "CAPABILITY",
            "FAILURES",
            "CHECKSUM",
            "UPDATED",
        ],
        &rows,
    )
}

/// One subject: its score and indexes, then the evidence that moved it, newest first.
fn format_subject(s: &Value) -> String {
    let mut rows = vec![
        ("subject", s["subject"].as_str().unwrap_or("?").to_owned()),
        ("score", num(&s["score"])),
    ];
    if let Some(indexes) = s["indexes"].as_object() {
        for (name, v) in indexes {
            rows.push((name.as_str(), num(v)));
        }
    }
    rows.push(("alpha / beta", format!("{} / {}", num(&s["alpha"]), num(&s["beta"]))));
    rows.push(("updated", ms(&s["updated_ms"])));
    let mut out = pairs(&rows);
    let evidence: Vec<&Value> = s["evidence"]
        .as_array()
        .map(|a| a.iter().rev().collect())
        .unwrap_or_default();
    if !evidence.is_empty() {
        out.push_str("\nevidence (newest first):\n");
        let rows: Vec<Vec<String>> = evidence
            .iter()
            .map(|e| {
                vec![
                    ms(&e["at_ms"]),
                    e["kind"].as_str().unwrap_or("?").to_owned(),
                    e["amount"].as_f64().map_or_else(|| "-".into(), |a| format!("{a}")),
                    format!("{} -> {}", num(&e["score_before"]), num(&e["score_after"])),
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                ]
            })
            .collect();
        out.push_str(&columns(&["AT", "KIND", "AMOUNT", "SCORE", "REASON"], &rows));
    }
    out
}

async fn anomalies(client: Client, args: &AnomaliesArgs) -> anyhow::Result<()> {
    let since = args.since.map(|s| s.to_ms(now_ms()));
    let query = |since: Option<i64>, limit: Option<usize>| {
        let mut q: Vec<String> = Vec::new();
        if let Some(s) = &args.subject {
            q.push(format!("subject={}", encode(s)));
        }
        if let Some(c) = &args.class {
            q.push(format!("class={}", encode(c)));
        }
        if let Some(s) = since {
            q.push(format!("since={s}"));
        }
        if let Some(l) = limit {
            q.push(format!("limit={l}"));
        }
        if q.is_empty() {
            routes::ANOMALIES.to_owned()
        } else {
            format!("{}?{}", routes::ANOMALIES, q.join("&"))
        }
    };
    let page = get(&client, &query(since, args.limit)).await?;
    if !args.follow {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&page)?);
        } else {
            print!("{}", format_anomalies(&page));
        }
        return Ok(());
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut newest = since;
    let mut show = |page: &Value, newest: &mut Option<i64>| -> anyhow::Result<()> {
        let mut fresh: Vec<&Value> = page["anomalies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| seen.insert(v["id"].to_string()))
            .collect();
        fresh.sort_by_key(|v| (v["at_ms"].as_i64().unwrap_or(0), v["id"].to_string()));
        for v in fresh {
            *newest = (*newest).max(v["at_ms"].as_i64());
            if args.json {
                println!("{}", serde_json::to_string(v)?);
            } else {
                print!("{}", anomaly_line(v));
            }
        }
        Ok(())
    };
    show(&page, &mut newest)?;
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let page = get(&client, &query(newest, None)).await?;
        show(&page, &mut newest)?;
    }
}

fn anomaly_line(v: &Value) -> String {
    let deviations: Vec<String> = v["deviations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} {} (baseline {}, z {})",
                d["feature"].as_str().unwrap_or("?"),
                num(&d["value"]),
                num(&d["baseline"]),
                num(&d["z"])
            )
        })
        .collect();
    format!(
        "{}  {}  {}  score {}  {}\n    {}\n",
        ms(&v["at_ms"]),
        v["subject"].as_str().unwrap_or("?"),
        v["class"].as_str().unwrap_or("?"),
        num(&v["score"]),
        v["summary"].as_str().unwrap_or_default(),
        deviations.join("; ")
    )
}

/// The verdicts as lines, newest first, each with the features that deviated most.
fn format_anomalies(page: &Value) -> String {
    let list: Vec<&Value> = page["anomalies"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if list.is_empty() {
        return "no anomalies\n".to_owned();
    }
    list.into_iter().map(anomaly_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subjects_print_lowest_score_first_and_a_subject_with_its_evidence() {
        let page = json!({"subjects": [
            {"subject": "backend:b1", "score": 0.93, "indexes": {"identity": 1.0, "behaviour": 0.9, "capability": 1.0}, "failures": 0.0, "checksum_failures": 0.0, "updated_ms": 0},
            {"subject": "backend:b2", "score": 0.21, "indexes": {"identity": 1.0, "behaviour": 0.1, "capability": 1.0}, "failures": 40.0, "checksum_failures": 40.0, "updated_ms": 0}
        ]});
        let text = format_subjects(&page);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SUBJECT"), "{text}");
        assert!(
            lines[1].starts_with("backend:b2") && lines[1].contains("0.21"),
            "{text}"
        );
        let one = json!({"subject": "backend:b2", "score": 0.21, "indexes": {"behaviour": 0.1}, "alpha": 3.0, "beta": 40.0, "updated_ms": 0,
            "evidence": [{"at_ms": 0, "kind": "checksum_failure", "amount": 4.0, "score_before": 0.5, "score_after": 0.21, "reason": "4 shard blocks failed their checksum"}]});
        let text = format_subject(&one);
        assert!(
            text.contains("checksum_failure") && text.contains("0.50 -> 0.21"),
            "{text}"
        );
        assert_eq!(format_anomalies(&json!({"anomalies": []})), "no anomalies\n");
        let a = json!({"anomalies": [{"id": 1, "subject": "backend:b2", "class": "tampering", "score": 9.0, "at_ms": 0, "summary": "checksum failures",
            "deviations": [{"feature": "checksum_failures_per_s", "value": 4.0, "baseline": 0.0, "z": 40.0}]}]});
        let text = format_anomalies(&a);
        assert!(
            text.contains("tampering") && text.contains("checksum_failures_per_s 4.00 (baseline 0.00, z 40.00)"),
            "{text}"
        );
        assert_eq!(encode("principal:AK/1"), "principal%3AAK%2F1");
    }
}
