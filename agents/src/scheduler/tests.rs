//! The scheduler's rules, over a real decision log (RocksDB in a temp dir) and a mechanism
//! that records what it is asked to do.

use super::*;
use crate::store::Store;
use crate::world::{BackendView, BucketView};
use async_trait::async_trait;
use control_api::{MigrationProgress, MigrationState, StoragePolicyView};
use serde_json::{json, Value};
use std::sync::Mutex;

/// Applies by recording; answers Pending for commands with `"pending": true`; a decision is
/// finished once its bucket's migration in the world reached its epoch.
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<Value>>,
}

#[async_trait]
impl Mechanism for Recorder {
    fn name(&self) -> &str {
        "storage_policy"
    }
    async fn apply(&self, plan: &Plan) -> crate::error::Result<Applied> {
        let mut a = self.applied.lock().unwrap();
        a.push(plan.command.clone());
        let epoch = Some(a.len() as u64 + 1);
        let undo = Some(json!({"undo": a.len()}));
        Ok(if plan.command["pending"] == json!(true) {
            Applied::Pending { epoch, undo }
        } else {
            Applied::Done { epoch, undo }
        })
    }
    fn finished(&self, d: &Decision, world: &World) -> bool {
        let b = d.bucket.as_deref().and_then(|b| world.bucket(b));
        b.and_then(|b| b.migration.as_ref())
            .is_some_and(|m| Some(m.target_epoch) >= d.epoch && m.state == MigrationState::Done)
    }
    async fn get_state(&self) -> Value {
        Value::Null
    }
    async fn get_options(&self) -> Value {
        Value::Null
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    log: DecisionLog,
    sched: Scheduler,
    mech: Arc<Recorder>,
    mechs: BTreeMap<String, Arc<dyn Mechanism>>,
}

fn rig(cfg: SchedulerConfig) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let log = DecisionLog::new(Store::open(dir.path()).unwrap());
    let mech = Arc::new(Recorder::default());
    let mut mechs: BTreeMap<String, Arc<dyn Mechanism>> = BTreeMap::new();
    mechs.insert("storage_policy".into(), mech.clone());
    Rig {
        sched: Scheduler::new("test-cluster", cfg, log.clone()),
        _dir: dir,
        log,
        mech,
        mechs,
    }
}

fn quick() -> SchedulerConfig {
    SchedulerConfig {
        cooldown_secs: 0,
        confirm_periods: 1,
        ..SchedulerConfig::default()
    }
}

fn plan(policy: &str, bucket: &str, cmd: Value, core: bool, severity: f64) -> Plan {
    let mut p = Plan::new(policy, "storage_policy", Plan::bucket_target(bucket), cmd);
    p.bucket = Some(bucket.into());
    p.priority = Priority { core, severity };
    p.explanation.reason = format!("{policy} wants {bucket}");
    p
}

fn policy_view(bucket: &str, eligible: &[&str]) -> StoragePolicyView {
    serde_json::from_value(json!({
        "bucket": bucket, "epoch": 1, "preset": "ec-2-1", "k": 2, "m": 1, "block_size": 1048576,
        "backends": "", "eligible": eligible, "encryption": false, "server_side_encryption": "off",
        "redundancy": null, "max_latency": null, "min_download_speed": null,
        "location_restrictions": {"gdpr": false}, "automatic_updates": true,
        "changed_ms": 0, "changed_by": "t", "automatic": false, "reason": ""
    }))
    .unwrap()
}

fn world(bucket: &str, migration: Option<(u64, MigrationState)>, p95: &[(&str, f64)]) -> World {
    let migration = migration.map(|(epoch, state)| {
        let mut m: MigrationProgress = serde_json::from_value(json!({
            "bucket": bucket, "target_epoch": 0, "state": "idle",
            "objects_total": 0, "objects_done": 0, "bytes_total": 0, "bytes_done": 0,
            "objects_reencoded": 0, "objects_moved": 0, "objects_relabelled": 0,
            "objects_remaining": 0, "rate_bytes_per_sec": 0.0, "eta_secs": null,
            "errors": 0, "last_error": null, "skipped": 0, "started_ms": 0, "finished_ms": null
        }))
        .unwrap();
        m.target_epoch = epoch;
        m.state = state;
        m
    });
    let ids: Vec<&str> = p95.iter().map(|(id, _)| *id).collect();
    World {
        now_ms: now_ms(),
        period_secs: 0,
        backends: p95
            .iter()
            .map(|(id, v)| BackendView {
                id: (*id).into(),
                get_p95_ms: Some(*v),
                ..BackendView::default()
            })
            .collect(),
        buckets: vec![BucketView {
            name: bucket.into(),
            policy: policy_view(bucket, &ids),
            intent: None,
            token: None,
            reads_per_s: 0.0,
            writes_per_s: 0.0,
            reads_per_s_1h: 0.0,
            read_bytes_per_s_1h: 0.0,
            bytes: None,
            prefixes: Vec::new(),
            migration,
        }],
        principals: Vec::new(),
        nodes: Vec::new(),
        components: Vec::new(),
    }
}

fn status_of(ds: &[Decision], policy: &str) -> Vec<DecisionStatus> {
    ds.iter().filter(|d| d.policy == policy).map(|d| d.status).collect()
}

#[tokio::test]
async fn colliding_plans_rank_core_then_severity_and_the_loser_says_why() {
    let mut r = rig(quick());
    let w = world("b", None, &[]);
    let plans = vec![
        plan("cost", "b", json!({"k": 4}), false, 0.0),
        plan("slo", "b", json!({"k": 2}), false, 2.0),
        plan("other-bucket", "c", json!({"k": 3}), false, 0.0),
    ];
    let ds = r.sched.run_period(plans, &w, &r.mechs).await.unwrap();
    assert_eq!(status_of(&ds, "slo"), [DecisionStatus::Applied]);
    // A plan for another bucket is not a collision (upstream locks per mechanism).
    assert_eq!(status_of(&ds, "other-bucket"), [DecisionStatus::Applied]);
    let cost = ds.iter().find(|d| d.policy == "cost").unwrap();
    assert_eq!(cost.status, DecisionStatus::Superseded);
    let slo_id = &ds.iter().find(|d| d.policy == "slo").unwrap().id;
    assert!(
        cost.status_reason.contains(slo_id.as_str()) && cost.status_reason.contains("severity 2.00"),
        "{}",
        cost.status_reason
    );
    // Core outranks any severity.
    let plans = vec![
        plan("slo", "b", json!({"k": 5}), false, 9.0),
        plan("reprotect", "b", json!({"k": 6}), true, 0.0),
    ];
    let ds = r.sched.run_period(plans, &w, &r.mechs).await.unwrap();
    assert_eq!(status_of(&ds, "reprotect"), [DecisionStatus::Applied]);
    assert_eq!(status_of(&ds, "slo"), [DecisionStatus::Superseded]);
    assert_eq!(r.mech.applied.lock().unwrap().len(), 3);
    // Everything is in the log, newest first, filterable by bucket.
    assert_eq!(r.log.list(Some("b"), None, 100).unwrap().len(), 4);
    assert_eq!(r.log.list(Some("c"), None, 100).unwrap().len(), 1);
}

#[tokio::test]
async fn a_pending_plan_holds_its_target_until_the_migration_finishes() {
    let mut r = rig(quick());
    let ds = r
        .sched
        .run_period(
            vec![plan("slo", "b", json!({"pending": true}), false, 2.0)],
            &world("b", None, &[]),
            &r.mechs,
        )
        .await
        .unwrap();
    assert_eq!(ds[0].status, DecisionStatus::Pending);
    let epoch = ds[0].epoch.unwrap();
    // Still migrating: a newer plan for the bucket waits; a core one passes.
    let running = world("b", Some((epoch, MigrationState::Running)), &[]);
    let ds = r
        .sched
        .run_period(vec![plan("cost", "b", json!({"k": 9}), false, 5.0)], &running, &r.mechs)
        .await
        .unwrap();
    assert_eq!(ds[0].status, DecisionStatus::Superseded);
    assert!(
        ds[0].status_reason.contains("held by pending plan"),
        "{}",
        ds[0].status_reason
    );
    assert_eq!(r.sched.held().unwrap().len(), 1);
    // A restarted scheduler over the same log holds it too.
    let mut again = Scheduler::new("test-cluster", quick(), r.log.clone());
    let ds = again
        .run_period(vec![plan("cost", "b", json!({"k": 9}), false, 5.0)], &running, &r.mechs)
        .await
        .unwrap();
    assert_eq!(ds[0].status, DecisionStatus::Superseded);
    // Finished: the hold ends and the pending decision becomes applied.
    let done = world("b", Some((epoch, MigrationState::Done)), &[]);
    let ds = r
        .sched
        .run_period(vec![plan("cost", "b", json!({"k": 9}), false, 5.0)], &done, &r.mechs)
        .await
        .unwrap();
    let statuses: Vec<_> = ds.iter().map(|d| (d.policy.as_str(), d.status)).collect();
    assert_eq!(
        statuses,
        [("slo", DecisionStatus::Applied), ("cost", DecisionStatus::Applied)]
    );
    assert!(r.sched.held().unwrap().is_empty());
}

#[tokio::test]
async fn a_signal_hovering_at_the_threshold_changes_a_bucket_at_most_once_per_cooldown() {
    let mut r = rig(SchedulerConfig {
        cooldown_secs: 3600,
        confirm_periods: 2,
        ..SchedulerConfig::default()
    });
    let w = world("b", None, &[]);
    let drain = || plan("slo", "b", json!({"backends": ["a", "b"]}), false, 0.1);
    let readmit = || plan("slo", "b", json!({"backends": ["a", "b", "c"]}), false, 0.1);
    // Flapping every period: never two sightings in a row, never applied.
    for i in 0..6 {
        let p = if i % 2 == 0 { drain() } else { readmit() };
        let ds = r.sched.run_period(vec![p], &w, &r.mechs).await.unwrap();
        assert_eq!(ds[0].status, DecisionStatus::Dampened, "period {i}");
        assert!(ds[0].status_reason.contains("hysteresis"), "{}", ds[0].status_reason);
    }
    assert!(r.mech.applied.lock().unwrap().is_empty());
    // Persisting (its reason quotes a new measurement every period, the plan is the same):
    // applied at the second sighting, then the cool-down holds every other change.
    let measured = |ms: u32| {
        plan(
            "slo",
            "b",
            json!({"backends": ["a", "b"], "reason": format!("p95 {ms} ms")}),
            false,
            0.1,
        )
    };
    r.sched.run_period(vec![measured(110)], &w, &r.mechs).await.unwrap();
    let ds = r.sched.run_period(vec![measured(112)], &w, &r.mechs).await.unwrap();
    assert_eq!(ds[0].status, DecisionStatus::Applied);
    for _ in 0..4 {
        let ds = r.sched.run_period(vec![readmit()], &w, &r.mechs).await.unwrap();
        assert_eq!(ds[0].status, DecisionStatus::Dampened);
        assert!(ds[0].status_reason.contains("cool-down"), "{}", ds[0].status_reason);
    }
    assert_eq!(r.mech.applied.lock().unwrap().len(), 1);
    // A severe violation passes the cool-down (and acts at its first sighting).
    let ds = r
        .sched
        .run_period(
            vec![plan("slo", "b", json!({"backends": ["a"]}), false, 2.0)],
            &w,
            &r.mechs,
        )
        .await
        .unwrap();
    assert_eq!(ds[0].status, DecisionStatus::Applied, "{}", ds[0].status_reason);
    // A severe violation acts at its first sighting (here without a cool-down).
    let mut r = rig(SchedulerConfig {
        cooldown_secs: 0,
        ..SchedulerConfig::default()
    });
    let ds = r
        .sched
        .run_period(vec![plan("slo", "b", json!({"k": 1}), false, 2.0)], &w, &r.mechs)
        .await
        .unwrap();
    assert_eq!(ds[0].status, DecisionStatus::Applied);
}

#[tokio::test]
async fn dry_run_explains_and_applies_nothing() {
    let mut r = rig(SchedulerConfig {
        dry_run: true,
        ..quick()
    });
    let ds = r
        .sched
        .run_period(
            vec![plan("slo", "b", json!({"k": 1}), false, 3.0)],
            &world("b", None, &[]),
            &r.mechs,
        )
        .await
        .unwrap();
    assert_eq!(ds[0].status, DecisionStatus::DryRun);
    assert_eq!(ds[0].reason, "slo wants b");
    assert!(r.mech.applied.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_change_that_made_things_worse_is_rolled_back_and_says_so() {
    let mut r = rig(SchedulerConfig {
        observe_after_periods: 0,
        ..quick()
    });
    let mut p = plan("cost", "b", json!({"k": 4}), false, 0.0);
    p.explanation.expected = vec![Effect {
        metric: "worst_get_p95_ms".into(),
        subject: "bucket/b".into(),
        before: Some(50.0),
        after: Some(50.0),
    }];
    let fine = world("b", None, &[("x", 40.0), ("y", 50.0)]);
    let ds = r.sched.run_period(vec![p], &fine, &r.mechs).await.unwrap();
    let id = ds[0].id.clone();
    // The next period finds the bucket's worst backend at 200 ms: undone.
    let worse = world("b", None, &[("x", 40.0), ("y", 200.0)]);
    let ds = r.sched.run_period(Vec::new(), &worse, &r.mechs).await.unwrap();
    let rollback = ds.iter().find(|d| d.policy == "rollback").expect("a rollback decision");
    assert_eq!(rollback.status, DecisionStatus::Applied);
    assert_eq!(rollback.rollback_of.as_deref(), Some(id.as_str()));
    assert_eq!(rollback.command, json!({"undo": 1}));
    assert!(
        rollback
            .reason
            .contains("worst_get_p95_ms of bucket/b went from 50.0 to 200.0"),
        "{}",
        rollback.reason
    );
    let orig = r.log.get(&id).unwrap();
    assert_eq!(orig.status, DecisionStatus::RolledBack);
    assert_eq!(orig.observed[0].after, Some(200.0));
    // A rollback is not itself rolled back, and a change that helped stays.
    let ds = r.sched.run_period(Vec::new(), &worse, &r.mechs).await.unwrap();
    assert!(ds.iter().all(|d| d.policy != "rollback" || !d.observed.is_empty()));
    assert_eq!(r.mech.applied.lock().unwrap().len(), 2);
}
