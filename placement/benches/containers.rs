//! The cost of one extender call at cluster scale: filter and score 5000 nodes for a component
//! reading two buckets over 12 backends (each node reaching every backend), as `filter` then
//! `prioritize` do. Run: `cargo bench -p placement --bench containers`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use placement::containers::{filter, score, Backend, BucketNeed, Component, Node};

const NODES: usize = 5000;
const BACKENDS: usize = 12;

fn fixture() -> (Component, Vec<Node>, BTreeMap<String, Backend>) {
    let ids: Vec<String> = (0..BACKENDS).map(|i| format!("b{i}")).collect();
    let backends = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                Backend {
                    p95_ms: 0.0,
                    trust: Some(0.9),
                },
            )
        })
        .collect();
    let nodes = (0..NODES)
        .map(|n| Node {
            name: format!("node-{n}"),
            labels: BTreeMap::from([("gdpr".to_owned(), (n % 2 == 0).to_string())]),
            cpu_free_millis: 4000,
            memory_free_bytes: 8 << 30,
            cpu_millis: 8000,
            trust: Some(0.5 + (n % 5) as f64 / 10.0),
            // Deterministic spread: each node near a different few backends.
            rtt_ms: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), 1.0 + ((n * 7 + i * 13) % 97) as f64))
                .collect(),
            bandwidth_mib_s: ids.iter().map(|id| (id.clone(), 100.0)).collect(),
            hedged: n % 3 != 0,
            ..Node::default()
        })
        .collect();
    let bucket = |name: &str, k: u8, eligible: &[String], gdpr: bool| BucketNeed {
        bucket: name.into(),
        k,
        eligible: eligible.to_vec(),
        reads_per_s: 10.0,
        max_latency_ms: Some(50.0),
        min_download_mib_s: Some(100.0),
        gdpr,
        min_trust: Some(0.6),
    };
    let component = Component {
        cpu_millis: 500,
        memory_bytes: 1 << 30,
        buckets: vec![
            bucket("photos", 4, &ids[..6], true),
            bucket("models", 2, &ids[6..], false),
        ],
        ..Component::default()
    };
    (component, nodes, backends)
}

fn bench(c: &mut Criterion) {
    let (component, nodes, backends) = fixture();
    c.bench_function("filter and score 5000 nodes, 2 buckets over 12 backends", |b| {
        b.iter(|| {
            let (fit, out) = filter(black_box(&component), black_box(&nodes));
            let ranked = score(&component, &fit, black_box(&backends));
            black_box((ranked.len(), out.len()))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
