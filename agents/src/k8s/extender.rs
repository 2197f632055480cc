//! The kube-scheduler extender protocol: `filter` and `prioritize` over the nodes
//! kube-scheduler proposes for a pod, judged by [`placement::containers`].
//!
//! Wire format: the upstream Go types (`k8s.io/kube-scheduler/extender/v1`) carry no JSON tags, so
//! their keys are the Go field names (PascalCase); `Pod` and `Node` inside are ordinary
//! Kubernetes objects (camelCase). kube-scheduler sends either the full `Nodes` or, with
//! `nodeCacheCapable: true`, only `NodeNames`; the answer uses the same form.
//!
//! Pods are ours when they carry [`APP_LABEL`] and [`COMPONENT_LABEL`]; any other pod passes
//! `filter` untouched and gets score 0 everywhere, so the extender never blocks scheduling of
//! workloads it knows nothing about.

use k8s_openapi::api::core::v1::{Node as K8sNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use placement::containers::{self, Backend, Component, Node};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The pod label naming its MLSysOps application.
pub const APP_LABEL: &str = "mlsysops.eu/app";
/// The pod label naming its component within the application.
pub const COMPONENT_LABEL: &str = "mlsysops.eu/component";
/// Highest score `prioritize` gives (kube-scheduler's `MaxExtenderPriority`).
pub const MAX_EXTENDER_PRIORITY: i64 = 10;

/// A `v1.NodeList` as kube-scheduler sends it (`kind` and `apiVersion` may be empty or absent,
/// which `k8s_openapi::List` would refuse).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct NodeList {
    /// List metadata.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The nodes.
    #[serde(default)]
    pub items: Vec<K8sNode>,
}

/// What kube-scheduler POSTs to `filter` and `prioritize`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderArgs {
    /// The pod being scheduled.
    pub pod: Pod,
    /// Candidate nodes (`nodeCacheCapable: false`).
    #[serde(default)]
    pub nodes: Option<NodeList>,
    /// Candidate node names (`nodeCacheCapable: true`).
    #[serde(default)]
    pub node_names: Option<Vec<String>>,
}

/// The answer to `filter`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderFilterResult {
    /// The nodes that passed (when the request carried `Nodes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeList>,
    /// The names of the nodes that passed (when the request carried `NodeNames`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_names: Option<Vec<String>>,
    /// Nodes that failed, with why; kube-scheduler may retry them after preemption.
    pub failed_nodes: BTreeMap<String, String>,
    /// Nodes that failed for reasons preemption cannot change.
    pub failed_and_unresolvable_nodes: BTreeMap<String, String>,
    /// Why the whole call failed (empty: it did not).
    pub error: String,
}

/// One node's score from `prioritize`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority {
    /// The node's name.
    pub host: String,
    /// 0..=[`MAX_EXTENDER_PRIORITY`].
    pub score: i64,
}

/// What the extender knows beyond the request: each component's needs, the nodes' measured
/// reach to the backends and their trust, and the backends themselves.
pub trait Knowledge {
    /// The component `component` of app `app`, if known.
    fn component(&self, app: &str, component: &str) -> Option<Component>;
    /// What is measured of node `name` (reach, trust, anomaly); `None`: nothing.
    fn node(&self, name: &str) -> Option<Node>;
    /// The backends, by id.
    fn backends(&self) -> BTreeMap<String, Backend>;
}

/// The pod's (app, component), when it is one of ours.
fn ours(pod: &Pod) -> Option<(String, String)> {
    let labels = pod.metadata.labels.as_ref()?;
    Some((labels.get(APP_LABEL)?.clone(), labels.get(COMPONENT_LABEL)?.clone()))
}

/// The candidates as placement nodes: what the request says (name, labels) over what is
/// measured (reach, trust, anomaly). kube-scheduler has already checked resources, so they
/// are not checked again.
fn candidates(args: &ExtenderArgs, known: &dyn Knowledge) -> Vec<Node> {
    let from_k8s = |n: &K8sNode| {
        let name = n.metadata.name.clone().unwrap_or_default();
        let mut node = known.node(&name).unwrap_or_default();
        node.name = name;
        // The API server's labels are the node's; what its node agent says of itself (a
        // `gdpr` label it claims) counts only where kube-scheduler sends names alone.
        node.labels = n
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        node
    };
    match (&args.nodes, &args.node_names) {
        (Some(list), _) => list.items.iter().map(from_k8s).collect(),
        (None, Some(names)) => names
            .iter()
            .map(|name| {
                let mut node = known.node(name).unwrap_or_default();
                name.clone_into(&mut node.name);
                node
            })
            .collect(),
        (None, None) => Vec::new(),
    }
}

/// The `filter` verb.
#[must_use]
pub fn filter(args: &ExtenderArgs, known: &dyn Knowledge) -> ExtenderFilterResult {
    let pass_all = || ExtenderFilterResult {
        nodes: args.nodes.clone(),
        node_names: args.node_names.clone(),
        ..ExtenderFilterResult::default()
    };
    let Some((app, comp)) = ours(&args.pod) else {
        return pass_all();
    };
    let Some(mut component) = known.component(&app, &comp) else {
        // An app deployed to Kubernetes before its descriptor reached us: no reason to refuse.
        return pass_all();
    };
    component.cpu_millis = 0;
    component.memory_bytes = 0;
    let nodes = candidates(args, known);
    let (fit, rejected) = containers::filter(&component, &nodes);
    let passed: Vec<String> = fit.iter().map(|n| n.name.clone()).collect();
    let failed = rejected.into_iter().map(|r| (r.node, r.reason)).collect();
    ExtenderFilterResult {
        nodes: args.nodes.as_ref().map(|list| NodeList {
            items: list
                .items
                .iter()
                .filter(|n| n.metadata.name.as_ref().is_some_and(|name| passed.contains(name)))
                .cloned()
                .collect(),
            metadata: list.metadata.clone(),
        }),
        node_names: args.node_names.as_ref().map(|_| passed.clone()),
        // Trust, labels and anomalies do not change by preempting pods.
        failed_and_unresolvable_nodes: failed,
        ..ExtenderFilterResult::default()
    }
}

/// The `prioritize` verb: every candidate with a score, the best reaching the buckets' data
/// highest.
#[must_use]
pub fn prioritize(args: &ExtenderArgs, known: &dyn Knowledge) -> Vec<HostPriority> {
    let nodes = candidates(args, known);
    let zero = || {
        nodes
            .iter()
            .map(|n| HostPriority {
                host: n.name.clone(),
                score: 0,
            })
            .collect()
    };
    let Some((app, comp)) = ours(&args.pod) else {
        return zero();
    };
    let Some(mut component) = known.component(&app, &comp) else {
        return zero();
    };
    component.cpu_millis = 0;
    component.memory_bytes = 0;
    let refs: Vec<&Node> = nodes.iter().collect();
    let scored = containers::score(&component, &refs, &known.backends());
    let mut out: Vec<HostPriority> = scored
        .iter()
        .map(|s| HostPriority {
            host: s.node.clone(),
            score: (s.score * MAX_EXTENDER_PRIORITY as f64).round() as i64,
        })
        .collect();
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use placement::containers::BucketNeed;
    use serde_json::json;

    struct Known;

    impl Knowledge for Known {
        fn component(&self, app: &str, component: &str) -> Option<Component> {
            (app == "photo-ai" && component == "tagger").then(|| Component {
                buckets: vec![BucketNeed {
                    bucket: "photos".into(),
                    k: 2,
                    eligible: vec!["eu1".into(), "eu2".into(), "eu3".into()],
                    reads_per_s: 10.0,
                    max_latency_ms: Some(40.0),
                    gdpr: true,
                    min_trust: Some(0.6),
                    ..BucketNeed::default()
                }],
                ..Component::default()
            })
        }

        fn node(&self, name: &str) -> Option<Node> {
            let rtt: &[(&str, f64)] = match name {
                "near" => &[("eu1", 2.0), ("eu2", 3.0), ("eu3", 4.0)],
                "far" => &[("eu1", 60.0), ("eu2", 70.0), ("eu3", 80.0)],
                "shady" => &[("eu1", 1.0), ("eu2", 1.0), ("eu3", 1.0)],
                _ => return None,
            };
            Some(Node {
                trust: Some(if name == "shady" { 0.2 } else { 0.9 }),
                rtt_ms: rtt.iter().map(|(b, r)| ((*b).to_owned(), *r)).collect(),
                bandwidth_mib_s: rtt.iter().map(|(b, r)| ((*b).to_owned(), 1000.0 / r)).collect(),
                labels: BTreeMap::from([("gdpr".to_owned(), "true".to_owned())]),
                ..Node::default()
            })
        }

        fn backends(&self) -> BTreeMap<String, Backend> {
            ["eu1", "eu2", "eu3"]
                .into_iter()
                .map(|id| {
                    (
                        id.to_owned(),
                        Backend {
                            p95_ms: 8.0,
                            trust: Some(0.9),
                        },
                    )
                })
                .collect()
        }
    }

    fn pod() -> serde_json::Value {
        json!({"metadata": {"name": "tagger-7d9", "namespace": "default",
            "labels": {"mlsysops.eu/app": "photo-ai", "mlsysops.eu/component": "tagger"}},
            "spec": {"containers": [{"name": "tagger", "image": "tagger:1"}]}})
    }

    fn node(name: &str, gdpr: bool) -> serde_json::Value {
        let labels = if gdpr { json!({"gdpr": "true"}) } else { json!({}) };
        json!({"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}})
    }

    #[test]
    fn filter_with_node_names_fails_untrusted_nodes_with_a_reason() {
        let args: ExtenderArgs =
            serde_json::from_value(json!({"Pod": pod(), "NodeNames": ["near", "far", "shady"]})).unwrap();
        let res = filter(&args, &Known);
        assert_eq!(
            res.node_names.as_deref(),
            Some(&["near".to_owned(), "far".to_owned()][..])
        );
        assert!(res.nodes.is_none());
        assert!(
            res.failed_and_unresolvable_nodes["shady"].contains("trust 0.20"),
            "{res:?}"
        );
        let wire = serde_json::to_value(&res).unwrap();
        assert_eq!(
            wire,
            json!({"NodeNames": ["near", "far"], "FailedNodes": {},
                "FailedAndUnresolvableNodes": {"shady": res.failed_and_unresolvable_nodes["shady"]}, "Error": ""})
        );
    }

    #[test]
    fn filter_with_full_nodes_drops_nodes_without_the_gdpr_label() {
        let args: ExtenderArgs = serde_json::from_value(json!({"Pod": pod(),
            "Nodes": {"items": [node("near", true), node("elsewhere", false), node("far", false)]}}))
        .unwrap();
        let res = filter(&args, &Known);
        let kept: Vec<_> = res
            .nodes
            .as_ref()
            .unwrap()
            .items
            .iter()
            .map(|n| n.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(kept, ["near"]);
        assert!(
            res.failed_and_unresolvable_nodes["elsewhere"].contains("gdpr=true"),
            "{res:?}"
        );
        // `far`'s node agent says it is labelled gdpr; the API server's labels say it is not.
        assert!(
            res.failed_and_unresolvable_nodes["far"].contains("gdpr=true"),
            "{res:?}"
        );
        // The kept node goes back as kube-scheduler sent it (k8s-openapi adds its kind and
        // apiVersion, which kube-scheduler accepts).
        let mut sent = node("near", true);
        sent["apiVersion"] = json!("v1");
        sent["kind"] = json!("Node");
        assert_eq!(serde_json::to_value(&res.nodes.unwrap().items[0]).unwrap(), sent);
    }

    #[test]
    fn prioritize_ranks_the_node_nearest_the_data_highest_and_foreign_pods_get_zero() {
        let args: ExtenderArgs = serde_json::from_value(json!({"Pod": pod(), "NodeNames": ["near", "far"]})).unwrap();
        let scores = prioritize(&args, &Known);
        let near = scores.iter().find(|h| h.host == "near").unwrap().score;
        let far = scores.iter().find(|h| h.host == "far").unwrap().score;
        assert!(near > far && near <= MAX_EXTENDER_PRIORITY, "{scores:?}");
        assert_eq!(
            serde_json::to_value(&scores[0]).unwrap()["Host"],
            json!(scores[0].host),
            "PascalCase on the wire"
        );
        let mut foreign = pod();
        foreign["metadata"]["labels"] = json!({"app": "nginx"});
        let args: ExtenderArgs = serde_json::from_value(json!({"Pod": foreign, "NodeNames": ["near", "far"]})).unwrap();
        assert!(prioritize(&args, &Known).iter().all(|h| h.score == 0));
        assert_eq!(filter(&args, &Known).node_names.unwrap().len(), 2);
    }

    #[test]
    fn malformed_args_are_a_decode_error_not_a_panic() {
        for bad in [json!({"NodeNames": "near"}), json!({"Pod": 5}), json!([1, 2])] {
            assert!(serde_json::from_value::<ExtenderArgs>(bad).is_err());
        }
    }
}
