//! Storage-aware container placement: which nodes may run a component, and how well each one
//! reaches the data of the buckets the component reads.
//!
//! **Filter.** A node is out when it lacks the component's CPU or memory, a node label the
//! component asks for, `gdpr = true` while a bucket is GDPR-restricted, trust at the component's
//! or a bucket's minimum, or when an anomaly is open on it. Every rejection says why.
//!
//! **Score** (0..=1), per bucket, weighted by the bucket's read rate:
//! - the backends the bucket may use whose trust meets its minimum (`E`);
//! - `lat(n)`: when n's gateway hedges reads, the k-th smallest of rtt(n, e) + p95(e) over `E`
//!   (a hedged GET needs any k shards and waits for the k-th); when it reads data shards first,
//!   the largest, since every object's k data shards are spread over all of `E` and the p95 GET
//!   waits for the slowest backend;
//! - `bw(n)`: the summed bandwidth from n to those k backends (data-first: k times the slowest
//!   link's);
//! - `0.4 · min(1, max_latency / lat) + 0.3 · min(1, bw / min_download)`, with a reference of
//!   50 ms and 100 MiB/s where the bucket states no target; where bandwidth is not measured
//!   (small GETs and audits do not measure it), latency alone stands for both.
//!
//! Then `+ 0.2 · trust(n) + 0.1 · headroom(n)`. A node that cannot reach k backends of a bucket
//! scores 0 on it, and [`NodeScore::misses`] names the targets the node misses, so a caller can
//! weigh moving the data instead.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Latency a bucket without `max_latency` is scored against, ms.
pub const REFERENCE_LATENCY_MS: f64 = 50.0;
/// Bandwidth a bucket without `min_download` is scored against, MiB/s.
pub const REFERENCE_BANDWIDTH_MIB_S: f64 = 100.0;
/// Weights of latency, bandwidth, trust and headroom in a node's score.
pub const WEIGHTS: [f64; 4] = [0.4, 0.3, 0.2, 0.1];

/// A node as placement knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Its name (`kubernetes.io/hostname`).
    pub name: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Allocatable CPU not requested yet, millicores.
    pub cpu_free_millis: u64,
    /// Allocatable memory not requested yet, bytes.
    pub memory_free_bytes: u64,
    /// Allocatable CPU, millicores (for headroom; 0: unknown).
    #[serde(default)]
    pub cpu_millis: u64,
    /// Trust 0..=1 (`None`: not scored; counts as 1).
    #[serde(default)]
    pub trust: Option<f64>,
    /// An open anomaly on it, in words.
    #[serde(default)]
    pub anomaly: Option<String>,
    /// Measured round trip to each backend, ms.
    #[serde(default)]
    pub rtt_ms: BTreeMap<String, f64>,
    /// Measured bandwidth to each backend, MiB/s.
    #[serde(default)]
    pub bandwidth_mib_s: BTreeMap<String, f64>,
    /// Whether the gateway this node reads through hedges reads (any k shards) rather than
    /// reading data shards first.
    #[serde(default)]
    pub hedged: bool,
}

/// A backend as placement knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// p95 GET latency at the backend (excluding the network to it), ms.
    pub p95_ms: f64,
    /// Trust 0..=1 (`None`: not scored; counts as 1).
    #[serde(default)]
    pub trust: Option<f64>,
}

/// A bucket a component reads, with what it must achieve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketNeed {
    /// The bucket.
    pub bucket: String,
    /// Shards a GET needs.
    pub k: u8,
    /// The backends holding its data.
    pub eligible: Vec<String>,
    /// Reads per second (the bucket's weight in the score).
    #[serde(default)]
    pub reads_per_s: f64,
    /// Target p95 GET latency, ms.
    #[serde(default)]
    pub max_latency_ms: Option<f64>,
    /// Target download bandwidth, MiB/s.
    #[serde(default)]
    pub min_download_mib_s: Option<f64>,
    /// Only nodes labelled `gdpr=true` may process its data.
    #[serde(default)]
    pub gdpr: bool,
    /// Lowest trust of a backend (and a node) handling its data.
    #[serde(default)]
    pub min_trust: Option<f64>,
}

/// What a component (container) needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Requested CPU, millicores.
    #[serde(default)]
    pub cpu_millis: u64,
    /// Requested memory, bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Node labels it requires (`key = value`).
    #[serde(default)]
    pub node_labels: BTreeMap<String, String>,
    /// Lowest node trust.
    #[serde(default)]
    pub min_trust: Option<f64>,
    /// The buckets it reads.
    #[serde(default)]
    pub buckets: Vec<BucketNeed>,
}

/// A node the filter left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The node.
    pub node: String,
    /// Why, in words.
    pub reason: String,
}

/// How one node reaches one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    /// The bucket.
    pub bucket: String,
    /// The k-th smallest rtt + p95 over the trusted eligible backends, ms (`None`: fewer than
    /// k reachable).
    pub latency_ms: Option<f64>,
    /// The backend whose path sets that latency (the k-th, or the slowest).
    #[serde(default)]
    pub via: Option<String>,
    /// Summed bandwidth to those k backends, MiB/s (`None`: not measured, and left out of the
    /// score rather than counted as nothing).
    pub bandwidth_mib_s: Option<f64>,
    /// The bucket's part of the score, 0..=1 of its 0.7.
    pub score: f64,
}

/// A node's score with its parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeScore {
    /// The node.
    pub node: String,
    /// 0..=1.
    pub score: f64,
    /// Per bucket.
    pub reach: Vec<Reach>,
    /// Targets the node misses (`bucket: max_latency 100 ms, reached 240 ms`).
    pub misses: Vec<String>,
}

fn trust_of(t: Option<f64>) -> f64 {
    t.unwrap_or(1.0).clamp(0.0, 1.0)
}

/// Nodes that may run `component`, and the others with a reason each.
#[must_use]
pub fn filter<'a>(component: &Component, nodes: &'a [Node]) -> (Vec<&'a Node>, Vec<Rejection>) {
    let mut fit = Vec::new();
    let mut out = Vec::new();
    let gdpr = component.buckets.iter().find(|b| b.gdpr).map(|b| b.bucket.as_str());
    let min_trust = component
        .buckets
        .iter()
        .filter_map(|b| b.min_trust)
        .chain(component.min_trust)
        .fold(None, |acc: Option<f64>, t| Some(acc.map_or(t, |a| a.max(t))));
    for n in nodes {
        let reject = |reason: String| Rejection {
            node: n.name.clone(),
            reason,
        };
        let why = if n.cpu_free_millis < component.cpu_millis {
            Some(format!(
                "{}m CPU free, {}m requested",
                n.cpu_free_millis, component.cpu_millis
            ))
        } else if n.memory_free_bytes < component.memory_bytes {
            Some(format!(
                "{} bytes of memory free, {} requested",
                n.memory_free_bytes, component.memory_bytes
            ))
        } else if let Some((k, v)) = component.node_labels.iter().find(|(k, v)| n.labels.get(*k) != Some(*v)) {
            Some(format!("lacks the label {k}={v}"))
        } else if let Some(bucket) = gdpr.filter(|_| n.labels.get("gdpr").map(String::as_str) != Some("true")) {
            Some(format!(
                "not labelled gdpr=true, and bucket {bucket} is GDPR-restricted"
            ))
        } else if let Some(min) = min_trust.filter(|min| trust_of(n.trust) < *min) {
            Some(format!("trust {:.2} below the minimum {min:.2}", trust_of(n.trust)))
        } else {
            n.anomaly.as_ref().map(|a| format!("an anomaly is open on it: {a}"))
        };
        match why {
            Some(reason) => out.push(reject(reason)),
            None => fit.push(n),
        }
    }
    (fit, out)
}

/// How `node` reaches `bucket` over `backends`.
fn reach(node: &Node, bucket: &BucketNeed, backends: &BTreeMap<String, Backend>) -> (Reach, Vec<String>) {
    let min = bucket.min_trust.unwrap_or(0.0);
    let mut paths: Vec<(f64, Option<f64>, &str)> = bucket
        .eligible
        .iter()
        .filter_map(|id| {
            let b = backends.get(id)?;
            if trust_of(b.trust) < min {
                return None;
            }
            let rtt = node.rtt_ms.get(id)?;
            let bw = node.bandwidth_mib_s.get(id).copied();
            Some((rtt + b.p95_ms, bw, id.as_str()))
        })
        .collect();
    paths.sort_by(|a, b| a.0.total_cmp(&b.0));
    let k = usize::from(bucket.k.max(1));
    let mut misses = Vec::new();
    if paths.len() < k {
        misses.push(format!(
            "{}: reaches {} trusted backends, a GET needs {k}",
            bucket.bucket,
            paths.len()
        ));
        return (
            Reach {
                bucket: bucket.bucket.clone(),
                latency_ms: None,
                via: None,
                bandwidth_mib_s: None,
                score: 0.0,
            },
            misses,
        );
    }
    // Bandwidth counts only where measured on every path it needs.
    let (latency, bandwidth) = if node.hedged {
        (paths[k - 1], paths[..k].iter().map(|p| p.1).sum::<Option<f64>>())
    } else {
        let slowest_link = paths
            .iter()
            .map(|p| p.1)
            .try_fold(f64::INFINITY, |acc, bw| bw.map(|b| acc.min(b)));
        (paths[paths.len() - 1], slowest_link.map(|b| k as f64 * b))
    };
    let via = latency.2.to_owned();
    let latency = latency.0.max(0.001);
    let lat_target = bucket.max_latency_ms.unwrap_or(REFERENCE_LATENCY_MS);
    let bw_target = bucket.min_download_mib_s.unwrap_or(REFERENCE_BANDWIDTH_MIB_S);
    if let Some(max) = bucket.max_latency_ms.filter(|m| latency > *m) {
        misses.push(format!(
            "{}: max_latency {max} ms, reached {latency:.1} ms",
            bucket.bucket
        ));
    }
    if let (Some(min), Some(bw)) = (bucket.min_download_mib_s, bandwidth) {
        if bw < min {
            misses.push(format!(
                "{}: min_download_speed {min} MiB/s, reached {bw:.1} MiB/s",
                bucket.bucket
            ));
        }
    }
    let lat_part = WEIGHTS[0] * (lat_target / latency).min(1.0);
    let score = match bandwidth {
        Some(bw) => (lat_part + WEIGHTS[1] * (bw / bw_target.max(0.001)).min(1.0)) / (WEIGHTS[0] + WEIGHTS[1]),
        None => lat_part / WEIGHTS[0],
    };
    (
        Reach {
            bucket: bucket.bucket.clone(),
            latency_ms: Some(latency),
            via: Some(via),
            bandwidth_mib_s: bandwidth,
            score,
        },
        misses,
    )
}

/// Scores the nodes that passed [`filter`], best first (ties by name).
#[must_use]
pub fn score(component: &Component, nodes: &[&Node], backends: &BTreeMap<String, Backend>) -> Vec<NodeScore> {
    let total_reads: f64 = component.buckets.iter().map(|b| b.reads_per_s.max(0.0)).sum();
    let weight = |b: &BucketNeed| {
        if total_reads > 0.0 {
            b.reads_per_s.max(0.0) / total_reads
        } else {
            1.0 / component.buckets.len().max(1) as f64
        }
    };
    let mut out: Vec<NodeScore> = nodes
        .iter()
        .map(|n| {
            let mut data = 0.0;
            let mut all_reach = Vec::new();
            let mut misses = Vec::new();
            for b in &component.buckets {
                let (r, m) = reach(n, b, backends);
                data += weight(b) * r.score;
                all_reach.push(r);
                misses.extend(m);
            }
            if component.buckets.is_empty() {
                data = 1.0;
            }
            let headroom = if n.cpu_millis > 0 {
                (n.cpu_free_millis.saturating_sub(component.cpu_millis)) as f64 / n.cpu_millis as f64
            } else {
                0.5
            };
            let score = (WEIGHTS[0] + WEIGHTS[1]) * data
                + WEIGHTS[2] * trust_of(n.trust)
                + WEIGHTS[3] * headroom.clamp(0.0, 1.0);
            NodeScore {
                node: n.name.clone(),
                score: score.clamp(0.0, 1.0),
                reach: all_reach,
                misses,
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.node.cmp(&b.node)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, rtt: &[(&str, f64)], gdpr: bool) -> Node {
        Node {
            name: name.into(),
            labels: if gdpr {
                BTreeMap::from([("gdpr".to_owned(), "true".to_owned())])
            } else {
                BTreeMap::new()
            },
            cpu_free_millis: 2000,
            memory_free_bytes: 4 << 30,
            cpu_millis: 4000,
            rtt_ms: rtt.iter().map(|(b, r)| ((*b).to_owned(), *r)).collect(),
            bandwidth_mib_s: rtt.iter().map(|(b, r)| ((*b).to_owned(), 1000.0 / r)).collect(),
            hedged: true,
            ..Node::default()
        }
    }

    fn backends() -> BTreeMap<String, Backend> {
        ["eu1", "eu2", "eu3", "us1", "us2", "us3"]
            .into_iter()
            .map(|id| {
                (
                    id.to_owned(),
                    Backend {
                        p95_ms: 10.0,
                        trust: Some(0.9),
                    },
                )
            })
            .collect()
    }

    fn component(gdpr: bool) -> Component {
        Component {
            cpu_millis: 500,
            memory_bytes: 1 << 30,
            buckets: vec![BucketNeed {
                bucket: "photos".into(),
                k: 2,
                eligible: vec!["eu1".into(), "eu2".into(), "eu3".into()],
                reads_per_s: 50.0,
                max_latency_ms: Some(40.0),
                gdpr,
                min_trust: Some(0.6),
                ..BucketNeed::default()
            }],
            ..Component::default()
        }
    }

    #[test]
    fn the_filter_says_why_each_node_is_out() {
        let mut low = node("low-trust", &[("eu1", 5.0)], true);
        low.trust = Some(0.3);
        let mut sick = node("sick", &[("eu1", 5.0)], true);
        sick.anomaly = Some("malfunction: get_p95_ms 400".into());
        let mut full = node("full", &[("eu1", 5.0)], true);
        full.cpu_free_millis = 100;
        let nodes = vec![
            node("eu-node", &[("eu1", 5.0)], true),
            node("us-node", &[("us1", 5.0)], false),
            low,
            sick,
            full,
        ];
        let (fit, out) = filter(&component(true), &nodes);
        assert_eq!(fit.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["eu-node"]);
        let why: BTreeMap<&str, &str> = out.iter().map(|r| (r.node.as_str(), r.reason.as_str())).collect();
        assert!(why["us-node"].contains("gdpr=true"), "{why:?}");
        assert!(
            why["low-trust"].contains("trust 0.30 below the minimum 0.60"),
            "{why:?}"
        );
        assert!(why["sick"].contains("anomaly"), "{why:?}");
        assert!(why["full"].contains("CPU"), "{why:?}");
        // Without GDPR the US node passes.
        let (fit, _) = filter(&component(false), &nodes);
        assert!(fit.iter().any(|n| n.name == "us-node"));
    }

    #[test]
    fn the_node_nearest_the_buckets_kth_fastest_backend_ranks_first() {
        let near = node("near", &[("eu1", 2.0), ("eu2", 3.0), ("eu3", 50.0)], true);
        // Nearest to one backend, far from the second: a GET waits for its second shard.
        let lopsided = node("lopsided", &[("eu1", 1.0), ("eu2", 60.0), ("eu3", 70.0)], true);
        let far = node("far", &[("eu1", 80.0), ("eu2", 90.0), ("eu3", 95.0)], true);
        let nodes = [near, lopsided, far];
        let refs: Vec<&Node> = nodes.iter().collect();
        let ranked = score(&component(true), &refs, &backends());
        let names: Vec<&str> = ranked.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(names, ["near", "lopsided", "far"], "{ranked:#?}");
        assert_eq!(ranked[0].reach[0].latency_ms, Some(13.0));
        assert!(ranked[0].misses.is_empty());
        assert!(
            ranked[2].misses[0].contains("max_latency 40 ms, reached 100.0 ms"),
            "{:?}",
            ranked[2].misses
        );
    }

    #[test]
    fn without_hedging_one_slow_backend_slows_every_node_that_reaches_it() {
        let mut a = node("a", &[("eu1", 2.0), ("eu2", 3.0), ("eu3", 300.0)], true);
        let mut b = node("b", &[("eu1", 20.0), ("eu2", 20.0), ("eu3", 20.0)], true);
        a.hedged = false;
        b.hedged = false;
        let ranked = score(&component(true), &[&a, &b], &backends());
        assert_eq!(ranked[0].node, "b", "{ranked:#?}");
        assert_eq!(ranked[0].reach[0].latency_ms, Some(30.0));
        assert_eq!(ranked[1].reach[0].latency_ms, Some(310.0));
        assert!(ranked[1].misses[0].contains("max_latency 40 ms, reached 310.0 ms"));
        // Hedged, node a reads around its slow backend and ranks first again.
        a.hedged = true;
        let ranked = score(&component(true), &[&a, &b], &backends());
        assert_eq!(ranked[0].node, "a", "{ranked:#?}");
    }

    #[test]
    fn an_untrusted_backend_does_not_count_as_reachable() {
        let mut b = backends();
        b.get_mut("eu2").unwrap().trust = Some(0.1);
        let n = node("n", &[("eu1", 2.0), ("eu2", 2.0), ("eu3", 200.0)], true);
        let ranked = score(&component(true), &[&n], &b);
        assert_eq!(ranked[0].reach[0].latency_ms, Some(210.0), "{ranked:#?}");
        b.get_mut("eu3").unwrap().trust = Some(0.1);
        let ranked = score(&component(true), &[&n], &b);
        assert_eq!(ranked[0].reach[0].latency_ms, None);
        assert!(ranked[0].misses[0].contains("reaches 1 trusted backends, a GET needs 2"));
    }
}
