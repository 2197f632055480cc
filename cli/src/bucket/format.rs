//! The admin API's answers as text for people: tables, summaries of a change, units.

use control_api::{
    MigrationProgress, MigrationState, MigrationThrottle, StoragePolicyChanged, StoragePolicyHistory, StoragePolicyView,
};

use crate::text::{or_dash, pairs as table, time_ms};

/// Fields a storage policy change is summarised by.
#[derive(Clone, Copy)]
enum Field {
    Placement,
    BlockSize,
    Backends,
    Encryption,
    Redundancy,
    MaxLatency,
    MinDownloadSpeed,
    Gdpr,
    AutomaticUpdates,
}

/// The summarised fields, in table order.
const POLICY_FIELDS: [Field; 9] = [
    Field::Placement,
    Field::BlockSize,
    Field::Backends,
    Field::Encryption,
    Field::Redundancy,
    Field::MaxLatency,
    Field::MinDownloadSpeed,
    Field::Gdpr,
    Field::AutomaticUpdates,
];

impl Field {
    fn label(self) -> &'static str {
        match self {
            Field::Placement => "placement",
            Field::BlockSize => "block size",
            Field::Backends => "backends",
            Field::Encryption => "encryption",
            Field::Redundancy => "redundancy",
            Field::MaxLatency => "max latency",
            Field::MinDownloadSpeed => "min download speed",
            Field::Gdpr => "gdpr only",
            Field::AutomaticUpdates => "automatic updates",
        }
    }

    /// The field for people: units where known, `(all)`/`any`/`none` for the open settings.
    fn show(self, p: &StoragePolicyView) -> String {
        match self {
            Field::Placement => format!("{} (k={}, m={})", p.preset, p.k, p.m),
            Field::BlockSize => format_bytes(u64::from(p.block_size)),
            Field::Backends if p.backends.is_empty() => "(all)".into(),
            Field::Backends => p.backends.clone(),
            Field::Encryption => on_off(p.encryption).into(),
            Field::Redundancy => p.redundancy.map_or_else(|| "any".into(), |r| r.to_string()),
            Field::MaxLatency => p.max_latency.map_or_else(|| "none".into(), |ms| format!("{ms} ms")),
            Field::MinDownloadSpeed => p
                .min_download_speed
                .map_or_else(|| "none".into(), |s| format!("{} MiB/s", json_number(s))),
            Field::Gdpr => p.location_restrictions.gdpr.to_string(),
            Field::AutomaticUpdates => p.automatic_updates.to_string(),
        }
    }

    /// Whether the field differs between two views (the value, not only how it is shown).
    fn differs(self, a: &StoragePolicyView, b: &StoragePolicyView) -> bool {
        match self {
            Field::Placement => a.preset != b.preset || (a.k, a.m) != (b.k, b.m),
            Field::BlockSize => a.block_size != b.block_size,
            Field::Backends => a.backends != b.backends,
            Field::Encryption => a.encryption != b.encryption,
            Field::Redundancy => a.redundancy != b.redundancy,
            Field::MaxLatency => a.max_latency != b.max_latency,
            Field::MinDownloadSpeed => a.min_download_speed != b.min_download_speed,
            Field::Gdpr => a.location_restrictions != b.location_restrictions,
            Field::AutomaticUpdates => a.automatic_updates != b.automatic_updates,
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// A number as the API's JSON writes it (`50.0`, not `50`).
fn json_number(v: f64) -> String {
    serde_json::Number::from_f64(v).map_or_else(|| "-".into(), |n| n.to_string())
}

/// A storage policy view as a two-column table, then its warnings.
pub(super) fn format_policy(policy: &StoragePolicyView) -> String {
    let mut rows = vec![("bucket", policy.bucket.clone()), ("epoch", policy.epoch.to_string())];
    rows.extend(POLICY_FIELDS.iter().map(|f| (f.label(), f.show(policy))));
    rows.push(("eligible now", list(policy.eligible.as_deref())));
    rows.push((
        "changed",
        format!("{} by {}", time_ms(Some(policy.changed_ms)), policy.changed_by),
    ));
    rows.push(("reason", or_dash(&policy.reason)));
    let mut out = table(&rows);
    for r in &policy.prefixes {
        let on = if r.backends.is_empty() {
            "(all)"
        } else {
            r.backends.as_str()
        };
        out.push_str(&format!(
            "prefix {}: {} (k={}, m={}) on {on}\n",
            r.prefix, r.preset, r.k, r.m
        ));
    }
    for warning in policy.warnings.iter().flatten() {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// Prefix rules in one line: `archive/=ec-8-2, live/=ec-4-2` (or `none`).
fn prefix_rules(p: &StoragePolicyView) -> String {
    if p.prefixes.is_empty() {
        return "none".into();
    }
    p.prefixes
        .iter()
        .map(|r| format!("{}={}", r.prefix, r.preset))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `storage-policy set`'s summary: what changed and the new epoch, eligible backends, warnings,
/// migration.
pub(super) fn format_set_answer(bucket: &str, old: &StoragePolicyView, answer: &StoragePolicyChanged) -> String {
    let new = &answer.policy;
    if !answer.changed {
        return format!("policy of bucket {bucket} unchanged (epoch {})\n", new.epoch);
    }
    let mut out = format!(
        "policy of bucket {bucket} changed: epoch {} -> {}\n",
        old.epoch, new.epoch
    );
    let mut changes = policy_changes(old, new);
    if old.prefixes != new.prefixes {
        changes.push(format!("prefix rules: {} -> {}", prefix_rules(old), prefix_rules(new)));
    }
    if changes.is_empty() {
        out.push_str("  (no shown field differs: the policy update token or the reason changed)\n");
    }
    for line in changes {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("eligible backends: {}\n", list(new.eligible.as_deref())));
    for warning in new.warnings.iter().flatten() {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out.push_str(&format!("migration: {}\n", migration_brief(&answer.migration)));
    out
}

/// `label: old -> new` for every summarised field that differs.
fn policy_changes(old: &StoragePolicyView, new: &StoragePolicyView) -> Vec<String> {
    POLICY_FIELDS
        .iter()
        .filter(|f| f.differs(old, new))
        .map(|f| format!("{}: {} -> {}", f.label(), f.show(old), f.show(new)))
        .collect()
}

/// Every change of a history, oldest first, with what it changed.
pub(super) fn format_history(history: &StoragePolicyHistory) -> String {
    if history.changes.is_empty() {
        return format!("bucket {}: no policy change recorded\n", history.bucket);
    }
    let mut out = String::new();
    for change in &history.changes {
        let automatic = if change.automatic { " (automatic)" } else { "" };
        let reason = if change.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", change.reason)
        };
        out.push_str(&format!(
            "epoch {}  {}  by {}{automatic}{reason}\n",
            change.epoch,
            time_ms(Some(change.at_ms)),
            change.changed_by
        ));
        for line in policy_changes(&change.old, &change.new) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// A migration view as a few lines.
pub(super) fn format_migration(view: &MigrationProgress) -> String {
    let mut out = format!(
        "migration of bucket {} to epoch {}: {}\n",
        view.bucket, view.target_epoch, view.state
    );
    let rows = [
        ("objects", objects_line(view)),
        ("bytes", bytes_line(view)),
        ("rate", rate_line(view)),
        ("errors", errors_line(view)),
        ("started", time_ms(Some(view.started_ms))),
        ("finished", time_ms(view.finished_ms)),
    ];
    for line in table(&rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// One line on a migration, for `storage-policy set`.
fn migration_brief(view: &MigrationProgress) -> String {
    // A running job with nothing counted yet: a job that finds nothing is "done".
    let counted = view.objects_total + view.objects_remaining > 0;
    if view.state == MigrationState::Running && !counted {
        // The migrator has not counted the bucket's objects for this epoch yet.
        return format!(
            "running to epoch {}, counting the objects to migrate",
            view.target_epoch
        );
    }
    format!(
        "{} to epoch {}, {} objects ({}) to migrate",
        view.state,
        view.target_epoch,
        view.objects_remaining,
        format_bytes(view.bytes_total.saturating_sub(view.bytes_done)),
    )
}

/// The progress bar's message: objects, rate, ETA, errors and the job's state.
pub(super) fn progress_message(view: &MigrationProgress) -> String {
    format!(
        "{}/{} objects, {}, ETA {}, {} errors [{}]",
        view.objects_done,
        view.objects_total,
        format_rate(Some(view.rate_bytes_per_sec)),
        format_eta(view.eta_secs),
        view.errors,
        view.state,
    )
}

fn objects_line(view: &MigrationProgress) -> String {
    format!(
        "{} / {} done, {} remaining ({} re-encoded, {} moved, {} relabelled, {} skipped)",
        view.objects_done,
        view.objects_total,
        view.objects_remaining,
        view.objects_reencoded,
        view.objects_moved,
        view.objects_relabelled,
        view.skipped,
    )
}

fn bytes_line(view: &MigrationProgress) -> String {
    let (done, total) = (view.bytes_done, view.bytes_total);
    let share = if total == 0 {
        String::new()
    } else {
        format!(" ({:.1}%)", done as f64 * 100.0 / total as f64)
    };
    format!("{} / {}{share}", format_bytes(done), format_bytes(total))
}

fn rate_line(view: &MigrationProgress) -> String {
    format!(
        "{}, ETA {}",
        format_rate(Some(view.rate_bytes_per_sec)),
        format_eta(view.eta_secs)
    )
}

fn errors_line(view: &MigrationProgress) -> String {
    match &view.last_error {
        Some(last) => format!("{} (last: {last})", view.errors),
        None => view.errors.to_string(),
    }
}

/// The throttle settings as one line.
pub(super) fn format_throttle(settings: &MigrationThrottle) -> String {
    let rate = match settings.max_mib_per_sec {
        0.0 => "unlimited".to_owned(),
        r => format!("{r} MiB/s"),
    };
    let state = if settings.paused { "paused" } else { "running" };
    format!(
        "migration throttle: {rate}, concurrency {}, {state}",
        settings.concurrency
    )
}

/// A list for people: `(none)` when empty, `-` when not given.
fn list(items: Option<&[String]>) -> String {
    match items {
        None => "-".into(),
        Some([]) => "(none)".into(),
        Some(items) => items.join(", "),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_policy() -> StoragePolicyView {
        serde_json::from_value(json!({
            "bucket": "b", "epoch": 3, "preset": "ec-4-2", "k": 4, "m": 2,
            "block_size": 1048576, "backends": "region=eu,local3", "eligible": ["local0", "local1"],
            "encryption": true, "server_side_encryption": "on", "redundancy": "high",
            "max_latency": 200, "min_download_speed": 50.0,
            "location_restrictions": {"gdpr": false}, "automatic_updates": false,
            "changed_ms": 1764300000000u64, "changed_by": "admin", "reason": "initial",
            "automatic": false,
            "warnings": ["backend local3: p95 GET 250 ms exceeds max_latency 200 ms"]
        }))
        .unwrap()
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
        assert!(!out.contains("prefix "), "no rules, no lines: {out}");
        let mut ruled = sample_policy();
        ruled.prefixes = vec![control_api::PrefixPolicyView {
            prefix: "archive/".into(),
            preset: "ec-8-2".into(),
            k: 8,
            m: 2,
            backends: String::new(),
            eligible: None,
        }];
        let out = format_policy(&ruled);
        assert!(out.contains("prefix archive/: ec-8-2 (k=8, m=2) on (all)\n"), "{out}");
        assert_eq!(prefix_rules(&ruled), "archive/=ec-8-2");
        assert_eq!(prefix_rules(&sample_policy()), "none");
    }

    #[test]
    fn open_settings_read_as_such() {
        let mut p = sample_policy();
        p.backends = String::new();
        p.redundancy = None;
        p.max_latency = None;
        p.eligible = Some(Vec::new());
        p.encryption = false;
        p.warnings = None;
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
        // A view without eligibility (as in the history) and without a reason still prints.
        p.eligible = None;
        p.reason = String::new();
        let out = format_policy(&p);
        assert!(
            out.contains("eligible now        -") && out.contains("reason              -"),
            "{out}"
        );
    }

    #[test]
    fn a_set_answer_says_what_changed_and_the_new_epoch() {
        let old = sample_policy();
        let mut new = sample_policy();
        new.epoch = 4;
        new.preset = "ec-8-4".into();
        new.k = 8;
        new.m = 4;
        new.backends = String::new();
        new.warnings = Some(Vec::new());
        let answer = StoragePolicyChanged {
            changed: true,
            policy: new,
            migration: MigrationProgress {
                state: MigrationState::Running,
                target_epoch: 4,
                objects_remaining: 12,
                bytes_total: 3072,
                bytes_done: 1024,
                ..MigrationProgress::default()
            },
        };
        let out = format_set_answer("b", &old, &answer);
        assert_eq!(
            out,
            "policy of bucket b changed: epoch 3 -> 4\n\
             \x20 placement: ec-4-2 (k=4, m=2) -> ec-8-4 (k=8, m=4)\n\
             \x20 backends: region=eu,local3 -> (all)\n\
             eligible backends: local0, local1\n\
             migration: running to epoch 4, 12 objects (2.0 KiB) to migrate\n"
        );
        let same = StoragePolicyChanged {
            changed: false,
            policy: old.clone(),
            migration: MigrationProgress::default(),
        };
        assert_eq!(
            format_set_answer("b", &old, &same),
            "policy of bucket b unchanged (epoch 3)\n"
        );
    }

    #[test]
    fn history_lists_changes_oldest_first() {
        let old = serde_json::to_value(sample_policy()).unwrap();
        let mut new = old.clone();
        new["encryption"] = json!(false);
        let history = serde_json::from_value(json!({"bucket": "b", "changes": [
            {"epoch": 2, "at_ms": 1764300000000u64, "changed_by": "alice", "automatic": false,
             "reason": "move to EU", "old": old, "new": new},
            {"epoch": 3, "at_ms": 1764300060000u64, "changed_by": "agent", "automatic": true,
             "reason": "", "old": new, "new": new},
        ]}))
        .unwrap();
        assert_eq!(
            format_history(&history),
            "epoch 2  2025-11-28T03:20:00Z  by alice: move to EU\n\
             \x20   encryption: on -> off\n\
             epoch 3  2025-11-28T03:21:00Z  by agent (automatic)\n"
        );
        let empty = serde_json::from_value(json!({"bucket": "b", "changes": []})).unwrap();
        assert_eq!(format_history(&empty), "bucket b: no policy change recorded\n");
    }

    fn sample_migration() -> MigrationProgress {
        serde_json::from_value(json!({
            "bucket": "b", "target_epoch": 3, "state": "running",
            "objects_total": 120, "objects_done": 40,
            "bytes_total": 1000, "bytes_done": 400,
            "objects_reencoded": 30, "objects_moved": 5, "objects_relabelled": 5,
            "objects_remaining": 80, "rate_bytes_per_sec": 1234.5, "eta_secs": 12.3,
            "errors": 0, "last_error": null, "skipped": 0,
            "started_ms": 1764300000000u64, "finished_ms": null
        }))
        .unwrap()
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
        failed.errors = 2;
        failed.last_error = Some("backend local3 down".into());
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
    fn throttle_settings_read_as_one_line() {
        let throttle = |v| serde_json::from_value::<MigrationThrottle>(v).unwrap();
        assert_eq!(
            format_throttle(&throttle(
                json!({"max_mib_per_sec": 64.0, "concurrency": 4, "paused": false})
            )),
            "migration throttle: 64 MiB/s, concurrency 4, running"
        );
        assert_eq!(
            format_throttle(&throttle(
                json!({"max_mib_per_sec": 0.0, "concurrency": 1, "paused": true})
            )),
            "migration throttle: unlimited, concurrency 1, paused"
        );
    }
}
