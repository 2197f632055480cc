//! The agents' door to a gateway: its admin API through `control_api::Client`, whether the
//! agent runs inside `mlsysops serve` or as its own process. [`Observer`] turns the answers
//! into the period's [`World`]; the storage-policy mechanism changes policies through it.

use crate::error::{Error, Result};
use crate::world::{now_ms, BackendView, BucketView, World};
use control_api::{Client, MigrationProgress, StoragePolicyChanged, StoragePolicyRequest, StoragePolicyView};
use serde_json::Value;
use std::collections::HashMap;

/// GETs the last 15 s must hold for the agents to judge a backend from them alone.
const RECENT_MIN_GETS: u64 = 5;

/// A gateway's admin API.
#[derive(Clone)]
pub struct Gateway {
    client: Client,
}

fn gw(what: impl Into<String>) -> impl FnOnce(control_api::ClientError) -> Error {
    let what = what.into();
    move |source| Error::Gateway {
        what,
        source: Box::new(source),
    }
}

impl Gateway {
    /// Over `client` (its base URL and admin token).
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client, for callers that need an endpoint this type does not wrap.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A bucket's storage policy.
    pub async fn storage_policy(&self, bucket: &str) -> Result<StoragePolicyView> {
        self.client
            .storage_policy(bucket)
            .await
            .map_err(gw(format!("reading the storage policy of {bucket}")))
    }

    /// Changes a bucket's storage policy.
    pub async fn set_storage_policy(&self, bucket: &str, req: &StoragePolicyRequest) -> Result<StoragePolicyChanged> {
        self.client
            .set_storage_policy(bucket, req)
            .await
            .map_err(gw(format!("changing the storage policy of {bucket}")))
    }

    /// A bucket's migration.
    pub async fn migration(&self, bucket: &str) -> Result<MigrationProgress> {
        self.client
            .migration(bucket)
            .await
            .map_err(gw(format!("reading the migration of {bucket}")))
    }

    /// The sliding-window statistics of every backend (`GET /api/v1/telemetry/backends`).
    pub async fn backend_telemetry(&self) -> Result<Value> {
        self.client
            .backend_telemetry()
            .await
            .map_err(gw("reading backend telemetry"))
    }

    /// Every S3 principal's request counters (`GET /api/v1/telemetry/principals`).
    pub async fn principal_telemetry(&self) -> Result<Value> {
        self.client
            .principal_telemetry()
            .await
            .map_err(gw("reading principal telemetry"))
    }

    /// The principals throttled now, as JSON (`GET /api/v1/principals/throttles`).
    pub async fn principal_throttles(&self) -> Result<Value> {
        let t = self
            .client
            .principal_throttles()
            .await
            .map_err(gw("reading principal throttles"))?;
        Ok(serde_json::to_value(t).unwrap_or_default())
    }

    /// Creates `bucket` with the gateway's default policy if it does not exist.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        let path = control_api::routes::BUCKET_ADMIN.replace(control_api::routes::BUCKET, bucket);
        let (status, body) = self
            .client
            .send(control_api::Method::PUT, &path, None)
            .await
            .map_err(gw(format!("creating bucket {bucket}")))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Error::Gateway {
                what: format!("creating bucket {bucket}"),
                source: Box::new(control_api::ClientError::from_answer(
                    status,
                    body.to_string().as_bytes(),
                )),
            })
        }
    }

    /// Every backend with its labels, health and injected faults.
    pub async fn backends(&self) -> Result<control_api::BackendsView> {
        self.client.backends().await.map_err(gw("listing backends"))
    }
}

/// How long a bucket's counted size is used before it is counted again: counting walks the
/// bucket's catalog, and sizes move slowly next to the cost optimiser's minutes.
const USAGE_MAX_AGE_MS: i64 = 60_000;

/// Builds each period's [`World`], remembering across periods what a snapshot cannot say
/// (since when a backend has been down) or should not ask every period (buckets' sizes).
#[derive(Default)]
pub struct Observer {
    down_since: HashMap<String, i64>,
    /// Bucket -> (when counted, Unix ms; what it holds).
    usage: HashMap<String, (i64, control_api::BucketUsage)>,
    /// The backend telemetry the last observation read (the guard judges the same snapshot
    /// rather than reading it again).
    backend_telemetry: Option<Value>,
}

/// The prefixes of `usage` with their read rates from bucket telemetry `t` (its `hot_prefixes`
/// over 1 minute and 1 hour). A prefix missing from a full top list gets the least listed
/// count as an upper bound; from a shorter list, zero.
fn prefix_views(usage: &control_api::BucketUsage, t: &Value) -> Vec<crate::world::PrefixView> {
    // Per-second rate of a count in window `w`: over the stats' age while younger than it
    // (reads / reads_per_s), else over the window.
    let rates = |w: &str| -> (HashMap<String, f64>, f64) {
        let Some(win) = window(t, w) else {
            return (HashMap::new(), 0.0);
        };
        let reads = win["reads"].as_f64().unwrap_or(0.0);
        let rate = win["reads_per_s"].as_f64().unwrap_or(0.0);
        let secs = if reads > 0.0 && rate > 0.0 {
            reads / rate
        } else {
            win["seconds"].as_f64().unwrap_or(60.0).max(1.0)
        };
        let listed: Vec<(String, f64)> = win["hot_prefixes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p["prefix"].as_str()?.to_owned(), p["count"].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let floor = if listed.len() >= TELEMETRY_TOP {
            listed.iter().map(|(_, c)| *c).fold(f64::INFINITY, f64::min) / secs
        } else {
            0.0
        };
        (listed.into_iter().map(|(p, c)| (p, c / secs)).collect(), floor)
    };
    let (minute, minute_floor) = rates("1m");
    let (hour, hour_floor) = rates("1h");
    usage
        .prefixes
        .iter()
        .map(|p| crate::world::PrefixView {
            prefix: p.prefix.clone(),
            objects: p.objects,
            bytes: p.bytes,
            reads_per_s: minute.get(&p.prefix).copied().unwrap_or(minute_floor),
            reads_per_s_1h: hour.get(&p.prefix).copied().unwrap_or(hour_floor),
        })
        .collect()
}

/// How many prefixes bucket telemetry lists as the most accessed (the gateway's
/// `telemetry::stats::HOT_PREFIXES`).
const TELEMETRY_TOP: usize = 10;

/// Window `name` (`1m`, `15s`) of a backend or bucket telemetry snapshot.
pub(crate) fn window<'a>(snapshot: &'a Value, name: &str) -> Option<&'a Value> {
    snapshot["windows"]
        .as_array()?
        .iter()
        .find(|w| w["window"].as_str() == Some(name))
}

impl Observer {
    /// A fresh observer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The backend telemetry (`GET /api/v1/telemetry/backends`) the last observation read.
    #[must_use]
    pub fn backend_telemetry(&self) -> Option<&Value> {
        self.backend_telemetry.as_ref()
    }

    /// What `bucket` holds, counted at most [`USAGE_MAX_AGE_MS`] ago; `None` when the gateway
    /// cannot say (an older gateway, or the count failed: the cost optimiser then leaves egress
    /// out, and hot/cold its prefixes, rather than guess).
    async fn usage(&mut self, gateway: &Gateway, bucket: &str, now: i64) -> Option<control_api::BucketUsage> {
        if let Some((at, u)) = self.usage.get(bucket) {
            if now - at < USAGE_MAX_AGE_MS {
                return Some(u.clone());
            }
        }
        match gateway.client.bucket_usage(bucket).await {
            Ok(u) => {
                self.usage.insert(bucket.to_owned(), (now, u.clone()));
                Some(u)
            }
            Err(e) => {
                tracing::debug!(%bucket, error = %e, "counting the bucket's bytes failed");
                self.usage.remove(bucket);
                None
            }
        }
    }

    /// The world now: every backend, and the buckets in `buckets` (those with an intent,
    /// with their tokens) that exist.
    pub async fn observe(
        &mut self,
        gateway: &Gateway,
        period_secs: u64,
        buckets: &[(String, control_api::BucketIntent)],
    ) -> Result<World> {
        let now = now_ms();
        let entries = gateway.backends().await?.backends;
        let telemetry = gateway.backend_telemetry().await?;
        let snaps: HashMap<String, &Value> = telemetry["backends"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| Some((s["backend"].as_str()?.to_owned(), s)))
                    .collect()
            })
            .unwrap_or_default();
        let mut backends = Vec::with_capacity(entries.len());
        for e in entries {
            let minute = snaps.get(&e.id).and_then(|s| window(s, "1m"));
            let recent = snaps.get(&e.id).and_then(|s| window(s, "15s"));
            // The last 15 s when they hold enough GETs to judge from: a backend that turned
            // slow shows within a period instead of after a minute of dilution by its fast past
            // (readers steer around it, so its slow calls stay few).
            let recent_enough = recent.is_some_and(|w| w["get"]["count"].as_u64().unwrap_or(0) >= RECENT_MIN_GETS);
            let w = if recent_enough { recent } else { minute };
            let at = |w: Option<&Value>, path: &[&str]| -> Option<f64> {
                let mut v = w?;
                for p in path {
                    v = &v[*p];
                }
                v.as_f64()
            };
            let f = |path: &[&str]| at(w, path);
            let down_since = if e.suspect {
                Some(*self.down_since.entry(e.id.clone()).or_insert(now))
            } else {
                self.down_since.remove(&e.id);
                None
            };
            // Client GETs understate a slow backend (a hedged reader abandons its reads early,
            // and they are recorded as the time they had taken), so the audit reads, which
            // always wait, count too: the worse of the two is the backend's p95.
            let audits = |w: Option<&Value>| w.and_then(|w| w["audit"]["count"].as_u64()).unwrap_or(0);
            let recent_audited = audits(recent) >= RECENT_MIN_GETS;
            let audit_w = if recent_audited { recent } else { minute };
            let audit_p95 = at(audit_w, &["audit", "p95_ms"]);
            // Too few client reads in the last 15 s but enough audits (a drained backend): the
            // audits judge it; a minute of old client samples would keep a recovered backend
            // slow for that minute.
            let client_p95 = if !recent_enough && recent_audited {
                None
            } else {
                f(&["get", "p95_ms"])
            };
            let label = if recent_enough || recent_audited { "15s" } else { "1m" };
            let get_p95_ms = match (client_p95, audit_p95) {
                (Some(c), Some(a)) => Some(c.max(a)),
                (c, a) => c.or(a),
            };
            let client_gets = f(&["get", "count"]).map_or(0, |c| c as u64);
            backends.push(BackendView {
                get_p95_ms,
                get_p50_ms: f(&["get", "p50_ms"]),
                put_p95_ms: f(&["put", "p95_ms"]),
                bandwidth_mib_s: f(&["get", "bandwidth_mib_s"]),
                error_rate: f(&["error_rate"]),
                availability: at(minute, &["availability"]),
                recent_window: label.to_owned(),
                get_samples: client_gets.max(audits(audit_w)),
                id: e.id,
                labels: e.labels,
                suspect: e.suspect,
                down_since_ms: down_since,
                trust: None,
                trust_failures: 0.0,
            });
        }
        let mut views = Vec::new();
        for (bucket, intent) in buckets {
            let policy = match gateway.client.storage_policy(bucket).await {
                Ok(p) => p,
                // A bucket the intent names but the gateway does not have (yet): nothing to
                // decide about it this period.
                Err(e) if e.status() == Some(control_api::StatusCode::NOT_FOUND) => continue,
                Err(e) => return Err(gw(format!("reading the storage policy of {bucket}"))(e)),
            };
            let t = gateway
                .client
                .bucket_telemetry(bucket)
                .await
                .map_err(gw(format!("reading the telemetry of {bucket}")))?;
            let rate = |win: &str, key: &str| window(&t, win).and_then(|w| w[key].as_f64()).unwrap_or(0.0);
            // Bytes per read times the (age-corrected) read rate: a young gateway's hour is not
            // an hour long yet.
            let read_bytes_per_s_1h = window(&t, "1h")
                .and_then(|w| {
                    let (out, reads) = (w["bytes_out"].as_f64()?, w["reads"].as_f64()?);
                    (reads > 0.0).then(|| out / reads * w["reads_per_s"].as_f64().unwrap_or(0.0))
                })
                .unwrap_or(0.0);
            let usage = self.usage(gateway, bucket, now).await;
            let prefixes = usage.as_ref().map(|u| prefix_views(u, &t)).unwrap_or_default();
            let bytes = usage.map(|u| u.bytes);
            let migration = gateway.client.migration(bucket).await.ok();
            let mut intent = intent.clone();
            let token = intent.policy_update_token.take();
            views.push(BucketView {
                name: bucket.clone(),
                policy,
                intent: Some(intent),
                token,
                reads_per_s: rate("1m", "reads_per_s"),
                writes_per_s: rate("1m", "writes_per_s"),
                reads_per_s_1h: rate("1h", "reads_per_s"),
                read_bytes_per_s_1h,
                bytes,
                prefixes,
                migration,
            });
        }
        self.usage.retain(|b, _| buckets.iter().any(|(name, _)| name == b));
        self.backend_telemetry = Some(telemetry);
        Ok(World {
            now_ms: now,
            period_secs,
            backends,
            buckets: views,
            principals: Vec::new(),
            nodes: Vec::new(),
            components: Vec::new(),
        })
    }
}
