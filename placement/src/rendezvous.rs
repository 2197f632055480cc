//! Rendezvous (highest random weight) hashing of an object's shards onto backends.

/// Chooses `n` of `backends` for the shards of the object `key`, in shard order.
///
/// Each backend gets a score hash(backend, key); the `n` highest win. Adding a backend moves
/// only the shards it now wins (about n / (B + 1) of them), unlike modulo hashing which
/// reshuffles nearly everything. Returns indices into `backends`. When `n >= backends.len()`
/// every backend is used, in ranked order.
#[must_use]
pub fn place_shards<S: AsRef<str>>(backends: &[S], key: &[u8], n: usize) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (score(b.as_ref().as_bytes(), key), i))
        .collect();
    // Ties are practically impossible with 64-bit scores; the index breaks them deterministically.
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().take(n).map(|(_, i)| i).collect()
}

/// FNV-1a over backend id, a separator and the key, finished with a 64-bit mixer so that
/// similar keys give unrelated scores.
fn score(backend: &[u8], key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in backend.iter().chain(&[0xff]).chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("local{i}")).collect()
    }

    #[test]
    fn all_backends_when_n_equals_count() {
        let b = ids(6);
        let mut got = place_shards(&b, b"photos/cat.jpg", 6);
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn deterministic_and_distinct() {
        let b = ids(10);
        let a = place_shards(&b, b"k", 6);
        assert_eq!(a, place_shards(&b, b"k", 6));
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn balanced_across_backends() {
        let b = ids(10);
        let mut counts = [0usize; 10];
        let objects = 20_000;
        for i in 0..objects {
            for idx in place_shards(&b, format!("obj-{i}").as_bytes(), 6) {
                counts[idx] += 1;
            }
        }
        let expected = objects * 6 / 10;
        for (i, c) in counts.iter().enumerate() {
            let dev = (*c as f64 - expected as f64).abs() / expected as f64;
            assert!(dev < 0.05, "backend {i} holds {c} shards, expected about {expected}");
        }
    }

    #[test]
    fn adding_a_backend_moves_few_shards() {
        let before = ids(10);
        let after = ids(11);
        let objects = 5_000;
        let mut moved = 0usize;
        for i in 0..objects {
            let key = format!("obj-{i}");
            let a: std::collections::HashSet<_> = place_shards(&before, key.as_bytes(), 6).into_iter().collect();
            let b: std::collections::HashSet<_> = place_shards(&after, key.as_bytes(), 6).into_iter().collect();
            moved += b.difference(&a).count();
        }
        // Ideal: the new backend wins 6/11 of the objects, one shard each.
        let ideal = objects as f64 * 6.0 / 11.0;
        assert!(
            (moved as f64) < ideal * 1.1,
            "moved {moved} shards, ideal about {ideal}"
        );
        assert!(
            (moved as f64) > ideal * 0.9,
            "moved {moved} shards, ideal about {ideal}"
        );
    }
}
