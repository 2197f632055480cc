//! Erasure-codec benchmark: `reed-solomon-simd` 3 vs `reed-solomon-erasure` 6.
//!
//! For every (k, m) in 4+2, 8+4, 12+4 and every block size in 256 KiB, 1 MiB
//! (block = the object bytes coded at once), it measures
//!
//! * `encode`: k data shards of `block / k` bytes in, m parity shards out;
//! * `reconstruct`: the worst case, m *data* shards lost, recovered from the
//!   k - m surviving data shards plus the m parity shards.
//!
//! Throughput is reported as object bytes per second (`Throughput::Bytes(block)`).
//! The shard length is `block / k` rounded up to an even number (the
//! reed-solomon-simd constraint); both crates code exactly the same shard
//! length. Each crate is used the fastest correct way it offers: encoder and
//! decoder are reused across iterations (`reset`) for reed-solomon-simd, and
//! reed-solomon-erasure codes in place into preallocated buffers (the
//! `(buffer, present)` form of `reconstruct`, no allocation per call).
//!
//! Run: `cargo bench -p storage-gateway --bench codec` (reed-solomon-erasure is built with its
//! `simd-accel` C/AVX2 kernels, as the gateway uses it).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reed_solomon_erasure::galois_8::ReedSolomon;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// (data shards k, parity shards m).
const LAYOUTS: &[(usize, usize)] = &[(4, 2), (8, 4), (12, 4)];
/// Object bytes coded at once.
const BLOCKS: &[(usize, &str)] = &[(256 * 1024, "256KiB"), (1024 * 1024, "1MiB")];

/// Shard length for `block` bytes over `k` data shards: `ceil(block / k)`,
/// rounded up to even (reed-solomon-simd rejects odd shard lengths).
fn shard_len(block: usize, k: usize) -> usize {
    block.div_ceil(k).next_multiple_of(2)
}

/// Deterministic pseudo-random data shards (xorshift64*), `k` shards of `len` bytes.
fn data_shards(k: usize, len: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..k)
        .map(|_| {
            (0..len)
                .map(|_| {
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
                })
                .collect()
        })
        .collect()
}

fn label(k: usize, m: usize, block_name: &str) -> String {
    format!("{k}+{m}/{block_name}")
}

/// Parity shards computed by reed-solomon-simd.
fn simd_parity(k: usize, m: usize, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
    reed_solomon_simd::encode(k, m, data).expect("reed-solomon-simd encode")
}

/// Correctness check for reed-solomon-simd, outside the timed loop: lose
/// data shards 0..m, recover them through a reused decoder, compare.
fn check_simd(k: usize, m: usize, data: &[Vec<u8>]) {
    let len = data[0].len();
    let parity = simd_parity(k, m, data);
    assert_eq!(parity.len(), m);

    // Same parity through the reusable encoder used in the hot loop.
    let mut enc = ReedSolomonEncoder::new(k, m, len).expect("encoder");
    for shard in data {
        enc.add_original_shard(shard).expect("add original");
    }
    let out = enc.encode().expect("encode");
    for (j, rec) in out.recovery_iter().enumerate() {
        assert_eq!(rec, parity[j].as_slice(), "simd encoder parity {j}");
    }
    drop(out);

    let mut dec = ReedSolomonDecoder::new(k, m, len).expect("decoder");
    for (i, shard) in data.iter().enumerate().skip(m) {
        dec.add_original_shard(i, shard).expect("add original");
    }
    for (j, rec) in parity.iter().enumerate() {
        dec.add_recovery_shard(j, rec).expect("add recovery");
    }
    let restored = dec.decode().expect("decode");
    let mut seen = 0;
    for (i, shard) in restored.restored_original_iter() {
        assert!(i < m, "simd restored a shard that was not lost: {i}");
        assert_eq!(shard, data[i].as_slice(), "simd recovered shard {i}");
        seen += 1;
    }
    assert_eq!(seen, m, "simd restored every lost shard");
}

/// Correctness check for reed-solomon-erasure, outside the timed loop: encode,
/// verify, wipe data shards 0..m, reconstruct them in place, compare.
fn check_erasure(k: usize, m: usize, data: &[Vec<u8>]) {
    let len = data[0].len();
    let rs = ReedSolomon::new(k, m).expect("reed-solomon-erasure codec");
    let mut shards: Vec<Vec<u8>> = data.to_vec();
    shards.extend((0..m).map(|_| vec![0u8; len]));
    rs.encode(&mut shards).expect("encode");
    assert!(rs.verify(&shards).expect("verify"), "erasure parity verifies");

    let mut work: Vec<(Vec<u8>, bool)> = shards.iter().map(|s| (s.clone(), true)).collect();
    for shard in work.iter_mut().take(m) {
        shard.0.fill(0);
        shard.1 = false;
    }
    rs.reconstruct(&mut work).expect("reconstruct");
    for (i, (shard, _)) in work.iter().enumerate() {
        assert_eq!(shard, &shards[i], "erasure recovered shard {i}");
    }

    // The allocating `Option` form agrees too.
    let mut opt: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
    for shard in opt.iter_mut().take(m) {
        *shard = None;
    }
    rs.reconstruct(&mut opt).expect("reconstruct (Option)");
    for (i, shard) in opt.iter().enumerate() {
        assert_eq!(shard.as_deref(), Some(shards[i].as_slice()), "shard {i}");
    }
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for &(k, m) in LAYOUTS {
        for &(block, block_name) in BLOCKS {
            let len = shard_len(block, k);
            let data = data_shards(k, len);
            check_simd(k, m, &data);
            check_erasure(k, m, &data);
            group.throughput(Throughput::Bytes(block as u64));
            let id = label(k, m, block_name);

            let mut enc = ReedSolomonEncoder::new(k, m, len).expect("encoder");
            group.bench_function(BenchmarkId::new("simd", &id), |b| {
                b.iter(|| {
                    enc.reset(k, m, len).expect("reset");
                    for shard in &data {
                        enc.add_original_shard(shard).expect("add original");
                    }
                    let out = enc.encode().expect("encode");
                    for rec in out.recovery_iter() {
                        black_box(rec);
                    }
                })
            });

            let rs = ReedSolomon::new(k, m).expect("codec");
            let mut shards: Vec<Vec<u8>> = data.clone();
            shards.extend((0..m).map(|_| vec![0u8; len]));
            group.bench_function(BenchmarkId::new("erasure", &id), |b| {
                b.iter(|| {
                    rs.encode(black_box(&mut shards)).expect("encode");
                    black_box(&shards);
                })
            });
        }
    }
    group.finish();
}

fn bench_reconstruct(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconstruct");
    for &(k, m) in LAYOUTS {
        for &(block, block_name) in BLOCKS {
            let len = shard_len(block, k);
            let data = data_shards(k, len);
            group.throughput(Throughput::Bytes(block as u64));
            let id = label(k, m, block_name);

            // Worst case: data shards 0..m lost; survivors are data m..k and all parity.
            let parity = simd_parity(k, m, &data);
            let mut dec = ReedSolomonDecoder::new(k, m, len).expect("decoder");
            group.bench_function(BenchmarkId::new("simd", &id), |b| {
                b.iter(|| {
                    dec.reset(k, m, len).expect("reset");
                    for (i, shard) in data.iter().enumerate().skip(m) {
                        dec.add_original_shard(i, shard).expect("add original");
                    }
                    for (j, rec) in parity.iter().enumerate() {
                        dec.add_recovery_shard(j, rec).expect("add recovery");
                    }
                    let out = dec.decode().expect("decode");
                    for (i, shard) in out.restored_original_iter() {
                        black_box((i, shard));
                    }
                })
            });

            let rs = ReedSolomon::new(k, m).expect("codec");
            let mut shards: Vec<(Vec<u8>, bool)> = data.iter().map(|s| (s.clone(), true)).collect();
            shards.extend((0..m).map(|_| (vec![0u8; len], true)));
            {
                let mut encode_view: Vec<&mut [u8]> = shards.iter_mut().map(|(s, _)| s.as_mut_slice()).collect();
                rs.encode(&mut encode_view).expect("encode");
            }
            group.bench_function(BenchmarkId::new("erasure", &id), |b| {
                b.iter(|| {
                    for shard in shards.iter_mut().take(m) {
                        shard.1 = false;
                    }
                    rs.reconstruct(black_box(&mut shards)).expect("reconstruct");
                    black_box(&shards);
                })
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_encode, bench_reconstruct
}
criterion_main!(benches);
