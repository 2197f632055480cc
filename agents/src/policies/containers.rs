//! The container placer: chooses, for every app component, the node whose path to the
//! component's buckets is fastest ([`placement::containers`] over the nodes' reported reach),
//! and moves the component when another node has become clearly better. When no node can meet
//! a bucket's targets, moving the container cannot help; the decision says so and names the
//! backends that are slow from every node, which the SLO keeper moves the data off.
//!
//! Plans go to the `container_placement` mechanism, which records the choice where the
//! kube-scheduler extender and the nodeAffinity controller read it.

use super::candidates;
use crate::error::Result;
use crate::framework::{Ctx, Policy, PolicyManifest};
use crate::mechanisms::containers::NAME as MECHANISM;
use crate::plan::{Explanation, Plan, Priority};
use crate::world::{ComponentView, World};
use async_trait::async_trait;
use control_api::{Effect, MetricInput, OptionScore};
use placement::containers::{self, Backend, BucketNeed, Component, NodeScore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The policy's name.
pub const NAME: &str = "container_placement";

/// Settings of the container placer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerConfig {
    /// How much better (score 0..=1) another node must be before a placed component moves:
    /// a restart costs more than a few percent of read latency.
    pub margin: f64,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self { margin: 0.05 }
    }
}

/// The container placer.
pub struct ContainerPlacer {
    config: ContainerConfig,
    period: candidates::Period,
    /// Per `app/component`, the last "no node meets the targets" situation reported, so it is
    /// reported once per change, not every period.
    reported: BTreeMap<String, String>,
}

impl ContainerPlacer {
    /// A placer with `config`.
    #[must_use]
    pub fn new(config: ContainerConfig) -> Self {
        Self {
            config,
            period: candidates::Period::default(),
            reported: BTreeMap::new(),
        }
    }
}

/// The target key of a component.
#[must_use]
pub fn component_target(app: &str, component: &str) -> String {
    format!("app/{app}/{component}")
}

/// What `view` needs of a node, from its buckets' policies, intents and read rates.
#[must_use]
pub fn needs(world: &World, view: &ComponentView) -> Component {
    let buckets = view
        .buckets
        .iter()
        .filter_map(|name| world.buckets.iter().find(|b| &b.name == name))
        .map(|b| {
            let intent = b.intent.clone().unwrap_or_default();
            BucketNeed {
                bucket: b.name.clone(),
                k: b.policy.k,
                eligible: candidates::eligible(world, b),
                reads_per_s: b.reads_per_s,
                max_latency_ms: intent.max_latency.map(|ms| ms as f64),
                min_download_mib_s: intent.min_download_speed,
                gdpr: intent.gdpr,
                min_trust: intent.min_trust,
            }
        })
        .collect();
    Component {
        buckets,
        ..Component::default()
    }
}

/// The backends as the nodes' reach sees them: a node reports each backend's whole GET
/// latency through its gateway, so no backend time is added on top.
#[must_use]
pub fn backends(world: &World) -> BTreeMap<String, Backend> {
    world
        .backends
        .iter()
        .map(|b| {
            (
                b.id.clone(),
                Backend {
                    p95_ms: 0.0,
                    trust: b.trust,
                },
            )
        })
        .collect()
}

fn describe(s: &NodeScore) -> String {
    let reach: Vec<String> = s
        .reach
        .iter()
        .map(|r| match r.latency_ms {
            Some(ms) => {
                let via = r.via.as_deref().map(|v| format!(" (through {v})")).unwrap_or_default();
                match r.bandwidth_mib_s {
                    Some(bw) => format!("{} in {ms:.1} ms{via} at {bw:.0} MiB/s", r.bucket),
                    None => format!("{} in {ms:.1} ms{via}", r.bucket),
                }
            }
            None => format!("{} not at all", r.bucket),
        })
        .collect();
    format!("{} (score {:.2}) reaches {}", s.node, s.score, reach.join(", "))
}

/// The eligible backends of `component`'s missed buckets that are slower than the bucket's
/// latency target from every node in `nodes`, with the fastest node's figure.
fn slow_everywhere(world: &World, component: &Component, ranked: &[NodeScore]) -> Vec<String> {
    let mut out = Vec::new();
    for b in &component.buckets {
        let Some(max) = b.max_latency_ms else { continue };
        for id in &b.eligible {
            let from: Vec<f64> = ranked
                .iter()
                .filter_map(|s| world.nodes.iter().find(|n| n.name == s.node))
                .filter_map(|n| n.rtt_ms.get(id).copied())
                .collect();
            if !from.is_empty() && from.iter().all(|ms| *ms > max) {
                let best = from.iter().copied().fold(f64::INFINITY, f64::min);
                out.push(format!("{id} ({best:.0} ms at best, {} target {max} ms)", b.bucket));
            }
        }
    }
    out
}

fn evaluate(config: &ContainerConfig, reported: &mut BTreeMap<String, String>, world: &World) -> Vec<Plan> {
    let mut plans = Vec::new();
    if world.nodes.is_empty() {
        return plans;
    }
    let backends = backends(world);
    for view in &world.components {
        let key = component_target(&view.app, &view.component);
        let component = needs(world, view);
        if component.buckets.is_empty() {
            continue;
        }
        let (fit, rejected) = containers::filter(&component, &world.nodes);
        let ranked = containers::score(&component, &fit, &backends);
        let current = view
            .preferred
            .as_ref()
            .and_then(|p| ranked.iter().find(|s| &s.node == p));
        let Some(best) = ranked.first() else {
            // No node may run it: say so once; the placement stays (nothing better exists).
            let why: Vec<String> = rejected.iter().map(|r| format!("{}: {}", r.node, r.reason)).collect();
            let situation = format!("no node fits: {}", why.join("; "));
            if reported.get(&key) != Some(&situation) {
                reported.insert(key.clone(), situation.clone());
                tracing::warn!(component = %key, %situation, "container placement");
            }
            continue;
        };
        if view.preferred.is_none() && best.reach.iter().any(|r| r.latency_ms.is_none()) {
            // Not even the best node reports reaching every bucket's data yet (node agents
            // report after their first period): placing now would be a guess.
            continue;
        }
        let moving = match (&view.preferred, current) {
            (None, _) | (Some(_), None) => true,
            (Some(p), Some(cur)) => &best.node != p && best.score >= cur.score + config.margin,
        };
        let all_miss = ranked.iter().all(|s| !s.misses.is_empty());
        let data_must_move = all_miss.then(|| slow_everywhere(world, &component, &ranked));
        let situation = data_must_move
            .as_ref()
            .map(|slow| format!("{}|{}", best.misses.join(";"), slow.join(";")));
        if !moving && (situation.is_none() || reported.get(&key) == situation.as_ref()) {
            if situation.is_none() {
                reported.remove(&key);
            }
            continue;
        }
        if let Some(s) = &situation {
            reported.insert(key.clone(), s.clone());
        }
        let node = if moving { best } else { current.unwrap_or(best) };
        let mut reason = match (&view.preferred, current) {
            (None, _) => format!(
                "{}/{}: placed on {}: {}.",
                view.app,
                view.component,
                node.node,
                describe(node)
            ),
            (Some(p), None) => format!(
                "{}/{}: moved from {p}, which may no longer run it ({}), to {}.",
                view.app,
                view.component,
                rejected
                    .iter()
                    .find(|r| &r.node == p)
                    .map_or("no longer reported", |r| r.reason.as_str()),
                describe(node)
            ),
            (Some(_), Some(cur)) if moving => format!(
                "{}/{}: moved from {} to {}: {}, while {}.",
                view.app,
                view.component,
                cur.node,
                node.node,
                describe(node),
                describe(cur)
            ),
            (Some(_), Some(_)) => format!(
                "{}/{}: stays on {}: {}.",
                view.app,
                view.component,
                node.node,
                describe(node)
            ),
        };
        if let Some(slow) = &data_must_move {
            reason.push_str(&format!(
                " No node meets the targets ({}); moving the container cannot fix that, so the data must move instead: {}.",
                node.misses.join("; "),
                if slow.is_empty() {
                    "no single backend is slow from every node; the SLO keeper weighs the bucket's backends".to_owned()
                } else {
                    format!("backends slow from every node: {}; the SLO keeper drains them", slow.join(", "))
                }
            ));
        }
        let runners_up: Vec<String> = ranked
            .iter()
            .filter(|s| s.node != node.node)
            .take(2)
            .map(|s| s.node.clone())
            .collect();
        let mut plan = Plan::new(
            NAME,
            MECHANISM,
            key.clone(),
            json!({"app": view.app, "component": view.component, "node": node.node, "runners_up": runners_up}),
        );
        plan.bucket = component.buckets.first().map(|b| b.bucket.clone());
        let severity = current.map_or(1.0, |cur| (node.score - cur.score).max(0.0) / cur.score.max(0.01));
        plan.priority = Priority { core: false, severity };
        plan.explanation = Explanation {
            trigger: if moving {
                format!("{} scores {:.2}", node.node, node.score)
            } else {
                "no node meets the buckets' targets".into()
            },
            inputs: node
                .reach
                .iter()
                .map(|r| MetricInput {
                    metric: "reach_latency_ms".into(),
                    subject: format!("node/{}/{}", node.node, r.bucket),
                    value: r.latency_ms,
                    window: "node report".into(),
                    target: component
                        .buckets
                        .iter()
                        .find(|b| b.bucket == r.bucket)
                        .and_then(|b| b.max_latency_ms),
                })
                .collect(),
            options: ranked
                .iter()
                .map(|s| OptionScore {
                    option: s.node.clone(),
                    score: Some(s.score),
                    note: if s.misses.is_empty() {
                        "meets the targets".into()
                    } else {
                        s.misses.join("; ")
                    },
                })
                .chain(rejected.iter().map(|r| OptionScore {
                    option: r.node.clone(),
                    score: None,
                    note: r.reason.clone(),
                }))
                .collect(),
            choice: node.node.clone(),
            reason,
            expected: vec![Effect {
                metric: "placement_score".into(),
                subject: key.clone(),
                before: current.map(|c| c.score),
                after: Some(node.score),
            }],
        };
        plans.push(plan);
    }
    reported.retain(|k, _| {
        world
            .components
            .iter()
            .any(|c| &component_target(&c.app, &c.component) == k)
    });
    plans
}

#[async_trait]
impl Policy for ContainerPlacer {
    fn manifest(&self) -> PolicyManifest {
        PolicyManifest {
            name: NAME.to_owned(),
            core: false,
            metrics: vec![
                "reach_latency_ms".into(),
                "reach_bandwidth_mib_s".into(),
                "trust".into(),
            ],
            every_periods: 1,
            mechanisms: vec![MECHANISM.into()],
            uses_ml: false,
        }
    }

    async fn analyze(&mut self, cx: &Ctx<'_>) -> Result<bool> {
        let (config, reported) = (&self.config, &mut self.reported);
        Ok(self.period.analyze(cx.world, |w| evaluate(config, reported, w)))
    }

    async fn plan(&mut self, cx: &Ctx<'_>) -> Result<Vec<Plan>> {
        let (config, reported) = (&self.config, &mut self.reported);
        Ok(self.period.plans(cx.world, |w| evaluate(config, reported, w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::candidates::testkit::*;
    use control_api::BucketIntent;
    use placement::containers::Node;

    fn node(name: &str, reach: &[(&str, f64)]) -> Node {
        Node {
            name: name.into(),
            cpu_free_millis: 1000,
            memory_free_bytes: 1 << 30,
            rtt_ms: reach.iter().map(|(b, ms)| ((*b).to_owned(), *ms)).collect(),
            bandwidth_mib_s: reach.iter().map(|(b, _)| ((*b).to_owned(), 50.0)).collect(),
            ..Node::default()
        }
    }

    fn world_of(t: i64, nodes: Vec<Node>, preferred: Option<&str>, max_latency: Option<u64>) -> World {
        let intent = BucketIntent {
            max_latency,
            ..BucketIntent::default()
        };
        let backends = ["b1", "b2", "b3"]
            .iter()
            .map(|id| backend(id, 0.02, Some(5.0), 50))
            .collect();
        let mut w = world(t, backends, vec![bucket("photos", 2, 1, &["b1", "b2", "b3"], intent)]);
        w.nodes = nodes;
        w.components = vec![ComponentView {
            app: "photo".into(),
            component: "infer".into(),
            buckets: vec!["photos".into()],
            preferred: preferred.map(str::to_owned),
        }];
        w
    }

    #[test]
    fn a_backend_slow_from_the_placed_node_moves_the_component_with_the_reason() {
        let mut p = ContainerPlacer::new(ContainerConfig::default());
        let fast = [("b1", 5.0), ("b2", 6.0), ("b3", 7.0)];
        let plans = run(
            &mut p,
            &world_of(1, vec![node("a", &fast), node("b", &fast)], None, None),
        );
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].command["node"], "a", "ties go by name");
        assert!(plans[0].explanation.reason.contains("placed on a"));
        // Placed on a, nothing changed: no plan.
        let plans = run(
            &mut p,
            &world_of(2, vec![node("a", &fast), node("b", &fast)], Some("a"), None),
        );
        assert!(plans.is_empty(), "{plans:#?}");
        // b1 is slow from a (its gateway reads data shards first): b is now clearly better.
        let slow = [("b1", 400.0), ("b2", 6.0), ("b3", 7.0)];
        let plans = run(
            &mut p,
            &world_of(3, vec![node("a", &slow), node("b", &fast)], Some("a"), None),
        );
        assert_eq!(plans.len(), 1, "{plans:#?}");
        assert_eq!(plans[0].command["node"], "b");
        assert_eq!(plans[0].target, "app/photo/infer");
        let reason = &plans[0].explanation.reason;
        assert!(reason.contains("moved from a to b"), "{reason}");
        assert!(reason.contains("photos in 400.0 ms (through b1)"), "{reason}");
    }

    #[test]
    fn when_no_node_meets_the_target_the_decision_says_the_data_must_move_once() {
        let mut p = ContainerPlacer::new(ContainerConfig::default());
        let a = [("b1", 300.0), ("b2", 6.0), ("b3", 7.0)];
        let b = [("b1", 350.0), ("b2", 9.0), ("b3", 8.0)];
        let w = |t| world_of(t, vec![node("a", &a), node("b", &b)], Some("a"), Some(100));
        let plans = run(&mut p, &w(1));
        assert_eq!(plans.len(), 1, "{plans:#?}");
        assert_eq!(plans[0].command["node"], "a");
        let reason = &plans[0].explanation.reason;
        assert!(reason.contains("stays on a"), "{reason}");
        assert!(reason.contains("the data must move instead"), "{reason}");
        assert!(reason.contains("b1 (300 ms at best, photos target 100 ms)"), "{reason}");
        // Said once while the situation lasts.
        assert!(run(&mut p, &w(2)).is_empty());
    }
}
