//! What keyed integrity costs the data path, per block, through the gateway's own code.
//!
//! * `put`: what a PUT does with every block off the async threads: MD5 (the ETag), then
//!   `Codec::encode` into k + m shard blocks, with a CRC32C each (`crc`: sets without a MAC),
//!   with a keyed MAC and a CRC32C each (`keyed`: plaintext sets now), or after AES-256-GCM
//!   sealing (`sealed`: encrypted sets, for comparison).
//! * `get`: what a healthy GET does with the k data shard blocks of a block: verify each
//!   (CRC32C; and the MAC, for `keyed`), join them (`decode` without loss), and open the
//!   block (`sealed`).
//!
//! Throughput is object bytes per second (`Throughput::Bytes(block)`), 4+2, blocks of 256 KiB
//! and 1 MiB (the default). Time is the bench thread's CPU time, not wall time: on a shared
//! machine wall time mostly measures the neighbours, and this work is CPU-bound anyway.
//! Run: `cargo bench -p storage-gateway --bench integrity`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use md5::Digest;
use storage_gateway::codec::{verify_block, Codec, Layout};
use storage_gateway::crypto::{SetCipher, TAG_LEN};
use storage_gateway::integrity::ShardMac;
use uuid::Uuid;

const K: usize = 4;
const M: usize = 2;
const BLOCKS: &[(usize, &str)] = &[(256 * 1024, "256KiB"), (1024 * 1024, "1MiB")];

/// The three ways a set's shard blocks are protected.
#[derive(Clone, Copy)]
enum Kind {
    Crc,
    Keyed,
    Sealed,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Crc, Kind::Keyed, Kind::Sealed];

    fn name(self) -> &'static str {
        match self {
            Kind::Crc => "crc",
            Kind::Keyed => "keyed",
            Kind::Sealed => "sealed",
        }
    }

    fn layout(self, block: usize) -> Layout {
        let stored = match self {
            Kind::Sealed => block + TAG_LEN,
            _ => block,
        } as u64;
        Layout {
            k: K,
            m: M,
            block_size: stored,
            size: stored,
            keyed: matches!(self, Kind::Keyed),
        }
    }
}

fn data(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

struct Keys {
    mac: ShardMac,
    cipher: SetCipher,
}

fn keys() -> Keys {
    let set = Uuid::now_v7();
    let key = storage_gateway::crypto::Secret::random().expect("random key");
    Keys {
        mac: ShardMac::new(set, &[0x42; 32]),
        cipher: SetCipher::new(set, &key),
    }
}

/// A PUT's work on one block: hash, (seal,) code.
fn put(kind: Kind, keys: &Keys, codec: &mut Codec, layout: &Layout, block: &[u8]) -> Vec<Bytes> {
    black_box(md5::Md5::digest(block));
    match kind {
        Kind::Crc => codec.encode(layout, 0, block, None),
        Kind::Keyed => codec.encode(layout, 0, block, Some(&keys.mac)),
        Kind::Sealed => {
            let mut sealed = Vec::with_capacity(block.len() + TAG_LEN);
            sealed.extend_from_slice(block);
            keys.cipher.seal(0, &mut sealed).expect("seal");
            codec.encode(layout, 0, &sealed, None)
        }
    }
    .expect("encode")
}

/// A healthy GET's work on one block: verify the k data shard blocks, join, (open).
fn get(kind: Kind, keys: &Keys, codec: &mut Codec, layout: &Layout, stored: &[Bytes]) -> Bytes {
    let mac = matches!(kind, Kind::Keyed).then_some(&keys.mac);
    let mut shards: Vec<Option<Bytes>> = stored[..K]
        .iter()
        .enumerate()
        .map(|(i, s)| Some(verify_block(layout, s, i, 0, mac).expect("verified")))
        .collect();
    shards.extend((0..M).map(|_| None));
    let block = codec
        .decode(layout, layout.block_len(0) as usize, &shards)
        .expect("decode");
    match kind {
        Kind::Sealed => keys.cipher.open(0, &block).expect("open"),
        _ => block,
    }
}

/// The calling thread's CPU time, in nanoseconds.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuTime
    }
}

impl ValueFormatter for CpuTime {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical_ns {
            t if t < 1e3 => (1.0, "ns (cpu)"),
            t if t < 1e6 => (1e3, "µs (cpu)"),
            _ => (1e6, "ms (cpu)"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, _: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let bytes = match throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => *b as f64,
            Throughput::Elements(e) => *e as f64,
        };
        values
            .iter_mut()
            .for_each(|ns| *ns = bytes * 1e9 / *ns / (1024.0 * 1024.0));
        "MiB/s (cpu)"
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench(c: &mut Criterion<CpuTime>) {
    let keys = keys();
    for (op, is_put) in [("put", true), ("get", false)] {
        let mut group = c.benchmark_group(op);
        for &(block, block_name) in BLOCKS {
            let plain = data(block);
            group.throughput(Throughput::Bytes(block as u64));
            for kind in Kind::ALL {
                let layout = kind.layout(block);
                let mut codec = Codec::new(K, M).expect("codec");
                let stored = put(kind, &keys, &mut codec, &layout, &plain);
                // Correctness outside the timed loop: the block comes back.
                assert_eq!(&get(kind, &keys, &mut codec, &layout, &stored)[..], &plain[..]);
                let id = BenchmarkId::new(kind.name(), block_name);
                if is_put {
                    group.bench_function(id, |b| {
                        b.iter(|| put(kind, &keys, &mut codec, &layout, black_box(&plain)))
                    });
                } else {
                    group.bench_function(id, |b| {
                        b.iter(|| get(kind, &keys, &mut codec, &layout, black_box(&stored)))
                    });
                }
            }
        }
        group.finish();
    }
}

fn config() -> Criterion<CpuTime> {
    Criterion::default()
        .with_measurement(CpuTime)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
