//! The read tuner on hand-built worlds, its settings read from a stand-in mechanism.

use super::*;
use crate::framework::{Applied, Mechanism};
use control_api::{Decision, ReadStrategy};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// (id, p95 ms, GET samples, egress $/GiB).
fn world(backends: &[(&str, f64, u64, f64)]) -> World {
    World {
        now_ms: 1,
        period_secs: 10,
        backends: backends
            .iter()
            .map(|&(id, p95, samples, egress)| {
                let mut b = BackendView {
                    id: id.into(),
                    recent_window: "15s".into(),
                    get_p95_ms: Some(p95),
                    get_samples: samples,
                    ..BackendView::default()
                };
                b.labels.egress_per_gib = egress;
                b
            })
            .collect(),
        buckets: Vec::new(),
        principals: Vec::new(),
        nodes: Vec::new(),
        components: Vec::new(),
    }
}

fn tuner() -> ReadTuner {
    ReadTuner::new("gw1-node", ReadTunerConfig::default())
}

/// One period judged with `now` in force.
fn period(t: &mut ReadTuner, w: &World, now: ReadSettings) -> Option<Plan> {
    t.judge(w, now)
}

fn command(p: &Plan) -> ReadSettingsRequest {
    serde_json::from_value(p.command.clone()).unwrap()
}

#[test]
fn a_backend_3x_the_median_turns_hedging_on_explained() {
    let mut t = tuner();
    let w = world(&[
        ("aws-eu", 48.0, 40, 0.0),
        ("gcp-eu", 50.0, 40, 0.0),
        ("slowpoke", 412.0, 12, 0.0),
    ]);
    let p = period(&mut t, &w, ReadSettings::DATA_FIRST).expect("a plan");
    assert_eq!(
        (p.policy.as_str(), p.mechanism.as_str(), p.target.as_str()),
        (NAME, "read_settings", "node/gw1-node/reads")
    );
    assert_eq!(command(&p), ReadSettings::HEDGED.into());
    assert!(p.bucket.is_none() && !p.priority.core);
    // 412 / 50 = 8.24, i.e. 2.75x the 3x threshold: severe enough to act at once.
    assert!(
        (p.priority.severity - (8.24 / 3.0 - 1.0)).abs() < 1e-9,
        "{}",
        p.priority.severity
    );
    let e = &p.explanation;
    assert_eq!(
        e.reason,
        "Backend slowpoke's p95 412 ms is 8.2x the median 50 ms; hedging masks it while the cluster agent \
         drains it, so reads switch to latency with hedging."
    );
    assert!(
        e.trigger.contains("slowpoke") && e.trigger.contains("data-first without hedging"),
        "{}",
        e.trigger
    );
    let slow = e
        .inputs
        .iter()
        .find(|i| i.metric == "get_p95_ms" && i.subject == "backend/slowpoke")
        .unwrap();
    assert_eq!(
        (slow.value, slow.target, slow.window.as_str()),
        (Some(412.0), Some(150.0), "15s")
    );
    assert!(e
        .inputs
        .iter()
        .any(|i| i.metric == "median_get_p95_ms" && i.value == Some(50.0)));
    assert!(e
        .inputs
        .iter()
        .any(|i| i.metric == "get_samples" && i.subject == "backend/slowpoke" && i.value == Some(12.0)));
    assert_eq!(e.options.len(), 4);
    let best = e
        .options
        .iter()
        .max_by(|a, b| a.score.unwrap().total_cmp(&b.score.unwrap()))
        .unwrap();
    assert_eq!(best.option, e.choice);
    assert_eq!(e.choice, "latency with hedging");
    assert_eq!(e.expected[0].before, Some(412.0));
    assert_eq!(e.expected[0].after, Some(50.0));
    // The scheduler can never measure the effect, so it never rolls the change back on it.
    assert_eq!(
        crate::scheduler::measure(&w, &e.expected[0].metric, &e.expected[0].subject),
        None
    );

    // Latency ranking without hedging, or hedging of data shards first: still not enough.
    for half in [
        ReadSettings {
            strategy: ReadStrategy::Latency,
            hedging: false,
        },
        ReadSettings {
            strategy: ReadStrategy::DataFirst,
            hedging: true,
        },
    ] {
        let p = period(&mut t, &w, half).expect("a plan");
        assert_eq!(command(&p), ReadSettings::HEDGED.into());
    }
    // Already hedged by latency: nothing to do.
    assert!(period(&mut t, &w, ReadSettings::HEDGED).is_none());
}

#[test]
fn with_two_backends_the_lower_one_is_the_median() {
    let mut t = tuner();
    let w = world(&[("a", 50.0, 10, 0.0), ("b", 200.0, 10, 0.0)]);
    let p = period(&mut t, &w, ReadSettings::DATA_FIRST).expect("b is 4x a");
    assert!(p
        .explanation
        .reason
        .contains("Backend b's p95 200 ms is 4.0x the median 50 ms"));
}

#[test]
fn below_the_thresholds_nothing_changes() {
    let mut t = tuner();
    // 2.8x: under the factor.
    let w = world(&[("a", 50.0, 40, 0.0), ("b", 50.0, 40, 0.0), ("c", 140.0, 40, 0.0)]);
    assert!(period(&mut t, &w, ReadSettings::DATA_FIRST).is_none());
    // Exactly 3x counts.
    let w = world(&[("a", 50.0, 40, 0.0), ("b", 50.0, 40, 0.0), ("c", 150.0, 40, 0.0)]);
    let p = period(&mut t, &w, ReadSettings::DATA_FIRST).expect("3x is at the threshold");
    assert_eq!(
        p.priority.severity, 0.0,
        "at the threshold: not severe, confirmed over periods"
    );
    // 4x, but 1.5 ms apart: local-disk noise.
    let w = world(&[("a", 0.5, 40, 0.0), ("b", 0.5, 40, 0.0), ("c", 2.0, 40, 0.0)]);
    assert!(period(&mut t, &w, ReadSettings::DATA_FIRST).is_none());
}

#[test]
fn backends_with_too_few_samples_are_not_measured() {
    let mut t = tuner();
    // The slow one has 4 GETs: not measured, so nothing lags.
    let w = world(&[("a", 50.0, 40, 0.0), ("b", 50.0, 40, 0.0), ("c", 900.0, 4, 0.0)]);
    assert!(period(&mut t, &w, ReadSettings::DATA_FIRST).is_none());
    // One measured backend has no median to compare with.
    let w = world(&[("a", 50.0, 40, 0.0), ("c", 900.0, 4, 0.0)]);
    assert!(period(&mut t, &w, ReadSettings::DATA_FIRST).is_none());
    // No samples at all (no p95).
    let mut w = world(&[("a", 50.0, 40, 0.0), ("b", 50.0, 40, 0.0), ("c", 900.0, 40, 0.0)]);
    w.backends[2].get_p95_ms = None;
    assert!(period(&mut t, &w, ReadSettings::DATA_FIRST).is_none());
}

#[test]
fn calm_periods_where_egress_is_charged_turn_hedging_off() {
    let mut t = tuner();
    let calm = world(&[("a", 50.0, 40, 0.0), ("b", 60.0, 40, 0.02), ("c", 74.0, 40, 0.09)]);
    for _ in 0..29 {
        assert!(period(&mut t, &calm, ReadSettings::HEDGED).is_none());
    }
    // One restless period (c at 1.6x the median) starts the count again.
    let restless = world(&[("a", 50.0, 40, 0.0), ("b", 60.0, 40, 0.02), ("c", 97.0, 40, 0.09)]);
    assert!(period(&mut t, &restless, ReadSettings::HEDGED).is_none());
    assert_eq!(t.calm_periods(), 0);
    for _ in 0..29 {
        assert!(period(&mut t, &calm, ReadSettings::HEDGED).is_none());
    }
    let p = period(&mut t, &calm, ReadSettings::HEDGED).expect("30 calm periods");
    assert_eq!(serde_json::to_value(command(&p)).unwrap(), json!({"hedging": false}));
    assert_eq!(p.priority.severity, 0.0);
    let e = &p.explanation;
    assert_eq!(
        e.reason,
        "For 30 periods every backend stayed within 1.5x of the median p95 60 ms (slowest c at 74 ms); hedged \
         reads cost extra egress (up to $0.090/GiB on c) for no latency gain, so hedging is turned off."
    );
    assert_eq!(e.choice, "latency without hedging");
    let calm_input = e.inputs.iter().find(|i| i.metric == "calm_periods").unwrap();
    assert_eq!((calm_input.value, calm_input.target), (Some(30.0), Some(30.0)));
    let priced: Vec<&str> = e
        .inputs
        .iter()
        .filter(|i| i.metric == "egress_per_gib")
        .map(|i| i.subject.as_str())
        .collect();
    assert_eq!(priced, ["backend/b", "backend/c"]);
    // The plan comes up every calm period until it is applied (the scheduler confirms it).
    assert!(period(&mut t, &calm, ReadSettings::HEDGED).is_some());
    // Once off, calm is not counted and nothing more is planned.
    let off = ReadSettings {
        strategy: ReadStrategy::Latency,
        hedging: false,
    };
    assert!(period(&mut t, &calm, off).is_none());
    assert_eq!(t.calm_periods(), 0);
}

#[test]
fn without_egress_prices_hedging_is_never_turned_off() {
    let mut t = tuner();
    let calm = world(&[("a", 50.0, 40, 0.0), ("b", 51.0, 40, 0.0), ("c", 52.0, 40, 0.0)]);
    for _ in 0..200 {
        assert!(period(&mut t, &calm, ReadSettings::HEDGED).is_none());
    }
    assert_eq!(t.calm_periods(), 200);
    // Data first without hedging is left alone while calm, priced or not.
    let priced = world(&[("a", 50.0, 40, 0.1), ("b", 51.0, 40, 0.1), ("c", 52.0, 40, 0.1)]);
    for _ in 0..40 {
        assert!(period(&mut t, &priced, ReadSettings::DATA_FIRST).is_none());
    }
}

#[test]
fn too_little_to_measure_is_no_calm() {
    let mut t = tuner();
    let calm = world(&[("a", 50.0, 40, 0.1), ("b", 51.0, 40, 0.1)]);
    let quiet = world(&[("a", 50.0, 2, 0.1), ("b", 51.0, 2, 0.1)]);
    for _ in 0..20 {
        assert!(period(&mut t, &calm, ReadSettings::HEDGED).is_none());
    }
    assert!(period(&mut t, &quiet, ReadSettings::HEDGED).is_none());
    assert_eq!(t.calm_periods(), 0);
}

#[test]
fn config_fields_default_and_unknown_ones_are_refused() {
    let c: crate::node_policies::NodeConfig = serde_json::from_value(json!({"reads": {"calm_periods": 5}})).unwrap();
    assert_eq!(c.reads.calm_periods, 5);
    assert_eq!(c.reads.slow_factor, 3.0, "unset fields keep their defaults");
    assert!(serde_json::from_value::<ReadTunerConfig>(json!({"calm": 5})).is_err());
    let policies = crate::node_policies::builtin("n", c);
    let m = policies[0].manifest();
    assert_eq!((m.name.as_str(), m.every_periods, m.core), (NAME, 1, false));
    assert_eq!(m.mechanisms, ["read_settings"]);
}

/// Reports fixed settings, or an error body as the real mechanism does when the gateway fails.
struct Stand(Mutex<Value>);

#[async_trait]
impl Mechanism for Stand {
    fn name(&self) -> &str {
        MECHANISM
    }
    async fn apply(&self, _: &Plan) -> Result<Applied> {
        Ok(Applied::Unchanged)
    }
    fn finished(&self, _: &Decision, _: &World) -> bool {
        true
    }
    async fn get_state(&self) -> Value {
        self.0.lock().unwrap().clone()
    }
    async fn get_options(&self) -> Value {
        Value::Null
    }
}

#[tokio::test]
async fn analyze_reads_the_settings_from_the_mechanism() {
    let stand = Arc::new(Stand(Mutex::new(json!({"strategy": "data-first", "hedging": false}))));
    let mut mechanisms: BTreeMap<String, Arc<dyn Mechanism>> = BTreeMap::new();
    mechanisms.insert(MECHANISM.into(), stand.clone());
    let w = world(&[("a", 50.0, 40, 0.0), ("b", 50.0, 40, 0.0), ("c", 412.0, 40, 0.0)]);
    let cx = Ctx {
        world: &w,
        mode: control_api::AgentMode::Heuristic,
        models: None,
        mechanisms: &mechanisms,
    };
    let mut t = tuner();
    assert!(t.analyze(&cx).await.unwrap());
    let plans = t.plan(&cx).await.unwrap();
    assert_eq!(plans.len(), 1);
    assert!(t.plan(&cx).await.unwrap().is_empty(), "a plan is handed out once");

    *stand.0.lock().unwrap() = json!({"strategy": "latency", "hedging": true});
    assert!(!t.analyze(&cx).await.unwrap());

    *stand.0.lock().unwrap() = json!({"error": "gateway: reading the read settings: 500"});
    let err = t.analyze(&cx).await.unwrap_err().to_string();
    assert!(
        err.starts_with("policy read_tuner: the read settings") && err.contains("500"),
        "{err}"
    );

    let none = BTreeMap::new();
    let cx = Ctx {
        mechanisms: &none,
        ..cx
    };
    let err = t.analyze(&cx).await.unwrap_err().to_string();
    assert_eq!(err, "policy read_tuner: the agent has no read_settings mechanism");
}
