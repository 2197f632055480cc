//! The cost of one `observe` over every subject of a window: 50 backends and 500 principals,
//! all past their cold start (KMeans fitted), judged as the agents would each period.
//! Run: `cargo bench -p anomaly --bench score`.

use std::hint::black_box;

use anomaly::{Detector, DetectorConfig, Feature, Sample};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BACKENDS: usize = 50;
const PRINCIPALS: usize = 500;

fn window(rng: &mut StdRng, at_ms: u64) -> Vec<Sample> {
    let mut out = Vec::with_capacity(BACKENDS + PRINCIPALS);
    for i in 0..BACKENDS {
        let p50 = 10.0 * rng.gen_range(0.8..1.2);
        out.push(Sample {
            subject: format!("backend:b{i}"),
            at_ms,
            features: vec![
                (Feature::GetP50Ms, p50),
                (Feature::GetP95Ms, p50 * 3.0),
                (Feature::PutP95Ms, p50 * 5.0),
                (Feature::ErrorRate, rng.gen_range(0.0..0.002)),
                (Feature::Availability, 1.0),
                (Feature::ChecksumFailuresPerS, 0.0),
                (Feature::CallsPerS, rng.gen_range(40.0..60.0)),
                (Feature::GetJitter, 3.0),
            ],
        });
    }
    for i in 0..PRINCIPALS {
        let rps = rng.gen_range(1.0..2.0) * (1 + i % 10) as f64;
        out.push(Sample {
            subject: format!("principal:AKIA{i}"),
            at_ms,
            features: vec![
                (Feature::RequestsPerS, rps),
                (Feature::AuthFailuresPerS, 0.0),
                (Feature::DeniedShare, 0.0),
                (Feature::NotFoundPerS, rps * 0.02),
                (Feature::HeadShare, rng.gen_range(0.08..0.12)),
                (Feature::BytesOutPerS, rps * 1e5),
                (Feature::DeletesPerS, rps * 0.02),
                (Feature::PutsPerS, rps * 0.2),
                (Feature::TokenFailuresPerS, 0.0),
            ],
        });
    }
    out
}

fn observe(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(13);
    let mut d = Detector::new(DetectorConfig::default());
    // Warm: every subject past its cold start, with a fitted KMeans.
    let mut at = 0;
    for _ in 0..80 {
        at += 60_000;
        d.observe(&window(&mut rng, at));
    }
    let windows: Vec<Vec<Sample>> = (0..64).map(|k| window(&mut rng, at + (k + 1) * 60_000)).collect();
    let mut k = 0;
    c.bench_function("observe 50 backends + 500 principals", |b| {
        b.iter(|| {
            k = (k + 1) % windows.len();
            black_box(d.observe(black_box(&windows[k])))
        });
    });
}

criterion_group!(benches, observe);
criterion_main!(benches);
