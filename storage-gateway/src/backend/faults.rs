//! A fault-injecting wrapper around any object store: added latency (fixed plus a long-tailed
//! random part), a bandwidth cap shared by all transfers, random errors, outage windows, and
//! bit flips on read. For tests, benchmarks and the `multicloud-sim` profile; never on by
//! default.
//!
//! The spec can be replaced while the store serves ([`FaultyStore::set_spec`]): every call
//! takes the spec in force when it starts, and a new spec brings its own clock (outage windows
//! count from the moment it is set), bandwidth link and random generator.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest fixed or mean random delay a spec may ask for: an hour.
const MAX_DELAY_MS: f64 = 3_600_000.0;
/// Slowest link a spec may ask for (1 KiB/s): a slower one makes waits no clock can hold.
const MIN_BANDWIDTH_MIB_S: f64 = 1.0 / 1024.0;

/// What to inject; every field defaults to "nothing".
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Fixed delay added to every call, milliseconds.
    #[serde(default)]
    pub latency_ms: f64,
    /// Mean of an exponentially distributed extra delay per call, milliseconds: most calls get
    /// a little, a few get a lot, as on real networks.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Cap on bytes moved per second (one link shared by all calls), MiB/s.
    #[serde(default)]
    pub bandwidth_mib_s: Option<f64>,
    /// Probability that a call fails with an injected error.
    #[serde(default)]
    pub error_rate: f64,
    /// Windows `[from, to)` in seconds since start during which every call fails.
    #[serde(default)]
    pub outages: Vec<[f64; 2]>,
    /// Probability that a read returns its bytes with one bit flipped.
    #[serde(default)]
    pub bitflip_rate: f64,
    /// Seed of the random choices, for repeatable runs.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl FaultSpec {
    /// Checks the numbers are meaningful.
    pub fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("faults.{name} must be within 0..=1, got {p}"))
            }
        };
        prob("error_rate", self.error_rate)?;
        prob("bitflip_rate", self.bitflip_rate)?;
        // Written so that NaN fails every check.
        let at_least_zero = |x: f64| x >= 0.0;
        for (name, ms) in [("latency_ms", self.latency_ms), ("jitter_ms", self.jitter_ms)] {
            // Bounded so that every delay (the jitter's tail included) is a valid Duration.
            if !(at_least_zero(ms) && ms <= MAX_DELAY_MS) {
                return Err(format!("faults.{name} must be within 0..={MAX_DELAY_MS}, got {ms}"));
            }
        }
        if self
            .bandwidth_mib_s
            .is_some_and(|b| b.is_nan() || b < MIN_BANDWIDTH_MIB_S)
        {
            return Err(format!("faults.bandwidth_mib_s must be >= {MIN_BANDWIDTH_MIB_S}"));
        }
        let window_ok = |a: f64, b: f64| at_least_zero(a) && a < b;
        if let Some([a, b]) = self.outages.iter().find(|[a, b]| !window_ok(*a, *b)) {
            return Err(format!("faults.outages: window [{a}, {b}] is not 0 <= from < to"));
        }
        Ok(())
    }
}

/// One spec in force, with its clock, link and random generator.
struct Shared {
    spec: FaultSpec,
    started: Instant,
    /// When the simulated link is free again (bandwidth cap).
    link_free_at: Mutex<Instant>,
    rng: Mutex<StdRng>,
}

impl Shared {
    /// A spec whose outage windows count from now, on a free link.
    fn new(spec: FaultSpec) -> Self {
        let rng = match spec.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        Self {
            spec,
            started: Instant::now(),
            link_free_at: Mutex::new(Instant::now()),
            rng: Mutex::new(rng),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn injected(what: String) -> object_store::Error {
        object_store::Error::Generic {
            store: "faults",
            source: what.into(),
        }
    }

    /// Delay, then maybe fail: what every call goes through first.
    async fn before(&self, op: &str) -> object_store::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        if let Some([a, b]) = self.spec.outages.iter().find(|[a, b]| (*a..*b).contains(&t)) {
            return Err(Self::injected(format!("injected outage ({a}s..{b}s) during {op}")));
        }
        let (jitter, fail) = {
            let mut rng = Self::lock(&self.rng);
            // Exponential with the given mean, by inversion.
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            (-self.spec.jitter_ms * u.ln(), rng.gen_bool(self.spec.error_rate))
        };
        let delay = self.spec.latency_ms + jitter;
        if delay > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
        }
        if fail {
            return Err(Self::injected(format!("injected error during {op}")));
        }
        Ok(())
    }

    /// Holds the caller as long as `bytes` take on the shared link.
    async fn transfer(&self, bytes: usize) {
        let Some(rate) = self.spec.bandwidth_mib_s else { return };
        let needs = Duration::from_secs_f64(bytes as f64 / (rate * 1048576.0));
        let done_at = {
            let mut free = Self::lock(&self.link_free_at);
            let start = (*free).max(Instant::now());
            *free = start + needs;
            *free
        };
        tokio::time::sleep_until(done_at.into()).await;
    }

    fn maybe_flip(&self, bytes: Bytes) -> Bytes {
        if bytes.is_empty() || self.spec.bitflip_rate == 0.0 {
            return bytes;
        }
        let mut rng = Self::lock(&self.rng);
        if !rng.gen_bool(self.spec.bitflip_rate) {
            return bytes;
        }
        let mut v = bytes.to_vec();
        let i = rng.gen_range(0..v.len());
        v[i] ^= 1 << rng.gen_range(0..8);
        Bytes::from(v)
    }
}

/// The spec in force, replaceable while calls run.
type Current = Arc<ArcSwap<Shared>>;

/// An object store with faults injected in front of another.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    current: Current,
}

impl FaultyStore {
    /// Wraps `inner`; time for outage windows starts now.
    pub fn new(inner: Arc<dyn ObjectStore>, spec: FaultSpec) -> Self {
        Self {
            inner,
            current: Arc::new(ArcSwap::from_pointee(Shared::new(spec))),
        }
    }

    /// The spec in force.
    #[must_use]
    pub fn spec(&self) -> FaultSpec {
        self.current.load().spec.clone()
    }

    /// Replaces the spec from the next call on (calls under way keep theirs). Its outage
    /// windows count from now, and its bandwidth cap starts on a free link.
    pub fn set_spec(&self, spec: FaultSpec) -> Result<(), String> {
        spec.validate()?;
        self.current.store(Arc::new(Shared::new(spec)));
        Ok(())
    }

    /// The spec in force now, for one call.
    fn shared(&self) -> Arc<Shared> {
        self.current.load_full()
    }
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({:?}, {})", self.current.load().spec, self.inner)
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let shared = self.shared();
        shared.before("put").await?;
        shared.transfer(payload.content_length()).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.shared().before("put_multipart").await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            upload,
            current: Arc::clone(&self.current),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let shared = self.shared();
        shared.before("get").await?;
        let res = self.inner.get_opts(location, options).await?;
        if shared.spec.bandwidth_mib_s.is_none() && shared.spec.bitflip_rate == 0.0 {
            return Ok(res);
        }
        // Whole bodies are small here (shard windows); collecting keeps the wrapper simple.
        let (meta, range, attributes) = (res.meta.clone(), res.range.clone(), res.attributes.clone());
        let bytes = res.bytes().await?;
        shared.transfer(bytes.len()).await;
        let bytes = shared.maybe_flip(bytes);
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes,
        })
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> object_store::Result<Bytes> {
        let shared = self.shared();
        shared.before("get_range").await?;
        let bytes = self.inner.get_range(location, range).await?;
        shared.transfer(bytes.len()).await;
        Ok(shared.maybe_flip(bytes))
    }

    async fn head(&self, location: &Path) -> object_store::Result<ObjectMeta> {
        self.shared().before("head").await?;
        self.inner.head(location).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.shared().before("delete").await?;
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let shared = self.shared();
        let inner = self.inner.list(prefix);
        futures::stream::once(async move {
            match shared.before("list").await {
                Ok(()) => inner,
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.shared().before("list_with_delimiter").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.shared().before("copy").await?;
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.shared().before("copy_if_not_exists").await?;
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    upload: Box<dyn MultipartUpload>,
    /// The store's spec cell: each part takes the spec in force when it starts.
    current: Current,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let shared = self.current.load_full();
        let len = data.content_length();
        let put = self.upload.put_part(data);
        Box::pin(async move {
            shared.before("put_part").await?;
            shared.transfer(len).await;
            put.await
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.current.load_full().before("complete").await?;
        self.upload.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn store(spec: FaultSpec) -> FaultyStore {
        FaultyStore::new(Arc::new(InMemory::new()), spec)
    }

    #[tokio::test]
    async fn no_faults_is_transparent() {
        let s = store(FaultSpec::default());
        let p = Path::from("a/b");
        s.put(&p, PutPayload::from_static(b"hello")).await.unwrap();
        assert_eq!(s.get_range(&p, 1..4).await.unwrap(), Bytes::from_static(b"ell"));
        assert_eq!(
            s.get(&p).await.unwrap().bytes().await.unwrap(),
            Bytes::from_static(b"hello")
        );
    }

    #[tokio::test]
    async fn latency_and_bandwidth_delay_calls() {
        let s = store(FaultSpec {
            latency_ms: 100.0,
            bandwidth_mib_s: Some(1.0),
            ..FaultSpec::default()
        });
        let p = Path::from("x");
        let t = Instant::now();
        s.put(&p, PutPayload::from(vec![0u8; 512 * 1024])).await.unwrap();
        // 100 ms latency + 0.5 s for 512 KiB at 1 MiB/s: a lower bound (a busy machine may
        // add to it, nothing may take from it).
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(600), "{took:?}");
    }

    #[tokio::test]
    async fn errors_outages_and_bitflips_are_injected() {
        let always = store(FaultSpec {
            error_rate: 1.0,
            ..FaultSpec::default()
        });
        let err = always.head(&Path::from("x")).await.unwrap_err().to_string();
        assert!(err.contains("injected error during head"), "{err}");

        let outage = store(FaultSpec {
            outages: vec![[0.0, 3600.0]],
            ..FaultSpec::default()
        });
        let err = outage.get_range(&Path::from("x"), 0..1).await.unwrap_err().to_string();
        assert!(err.contains("injected outage"), "{err}");

        let flips = store(FaultSpec {
            bitflip_rate: 1.0,
            seed: Some(7),
            ..FaultSpec::default()
        });
        let p = Path::from("y");
        let data = vec![0u8; 4096];
        flips.put(&p, PutPayload::from(data.clone())).await.unwrap();
        let got = flips.get_range(&p, 0..4096).await.unwrap();
        let flipped: u32 = got.iter().zip(&data).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(flipped, 1, "exactly one bit flipped per read");
    }

    #[tokio::test]
    async fn a_new_spec_takes_effect_on_the_next_call() {
        let s = store(FaultSpec::default());
        let p = Path::from("k");
        s.put(&p, PutPayload::from_static(b"data")).await.unwrap();
        // An upload opened before the change: its next part must see the new spec too.
        let mut upload = s.put_multipart(&Path::from("mp")).await.unwrap();

        s.set_spec(FaultSpec {
            error_rate: 1.0,
            ..FaultSpec::default()
        })
        .unwrap();
        assert_eq!(s.spec().error_rate, 1.0);
        let err = s.get_range(&p, 0..4).await.unwrap_err().to_string();
        assert!(err.contains("injected error during get_range"), "{err}");
        let err = upload
            .put_part(PutPayload::from_static(b"part"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("injected error during put_part"), "{err}");

        // Outage windows count from the moment the spec is set, not from the store's start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.set_spec(FaultSpec {
            outages: vec![[0.0, 0.2]],
            ..FaultSpec::default()
        })
        .unwrap();
        let err = s.head(&p).await.unwrap_err().to_string();
        assert!(err.contains("injected outage"), "{err}");

        s.set_spec(FaultSpec {
            latency_ms: 150.0,
            ..FaultSpec::default()
        })
        .unwrap();
        let t = Instant::now();
        assert_eq!(s.get_range(&p, 0..4).await.unwrap(), Bytes::from_static(b"data"));
        assert!(t.elapsed() >= Duration::from_millis(150), "{:?}", t.elapsed());

        // Refused specs leave the one in force.
        let bad = FaultSpec {
            bitflip_rate: 2.0,
            ..FaultSpec::default()
        };
        let err = s.set_spec(bad).unwrap_err();
        assert!(err.contains("bitflip_rate"), "{err}");
        assert_eq!(s.spec().latency_ms, 150.0);

        s.set_spec(FaultSpec::default()).unwrap();
        assert_eq!(s.spec(), FaultSpec::default());
        s.head(&p).await.unwrap();
    }

    #[test]
    fn nonsense_specs_are_refused() {
        let bad = [
            FaultSpec {
                error_rate: 1.5,
                ..FaultSpec::default()
            },
            FaultSpec {
                latency_ms: -1.0,
                ..FaultSpec::default()
            },
            FaultSpec {
                bandwidth_mib_s: Some(0.0),
                ..FaultSpec::default()
            },
            FaultSpec {
                outages: vec![[5.0, 2.0]],
                ..FaultSpec::default()
            },
            FaultSpec {
                latency_ms: 1e300,
                ..FaultSpec::default()
            },
            FaultSpec {
                bandwidth_mib_s: Some(1e-300),
                ..FaultSpec::default()
            },
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
        assert!(FaultSpec::default().validate().is_ok());
    }
}
