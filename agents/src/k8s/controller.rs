//! The nodeAffinity controller for managed clusters (control-plane.md §5b): it watches
//! [`MLSysOpsApp`] resources and, for each component, patches the Deployment running it with
//! the nodes a [`Placer`] chose, so the rollout moves the pods; kube-scheduler stays in charge
//! (no `spec.nodeName` pinning).
//!
//! What it writes is recorded in the Deployment's [`PLACED_BY`] annotation, so a later placement
//! replaces exactly its own terms and deletion of the app removes exactly them: a user's own
//! affinity terms are never touched. Every patch carries the `resourceVersion` read just
//! before, so a write over a Deployment changed in between is refused (409) and retried on a
//! fresh read; a patch is only sent when the affinity differs.
//!
//! An app's `spec.buckets` are its storage: with a [`Declarer`] the controller hands them to
//! the agents as the app's descriptor (once per change), and withdraws the app when the
//! resource is deleted, so one `kubectl apply` deploys both the containers' placement and the
//! buckets' intents.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The Deployment annotation holding what the controller wrote (JSON [`Written`]).
pub const PLACED_BY: &str = "mlsysops.eu/placed-by";
/// The node label the affinity terms match on.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// Most apps the controller tracks; more are logged and left alone, so a flood of resources
/// cannot grow its memory without bound.
pub const MAX_APPS: usize = 10_000;
/// Most components per app that are reconciled.
pub const MAX_COMPONENTS: usize = 256;

/// The spec of an MLSysOps application deployed on Kubernetes.
#[derive(CustomResource, Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "mlsysops.eu",
    version = "v1",
    kind = "MLSysOpsApp",
    plural = "mlsysopsapps",
    namespaced,
    status = "MLSysOpsAppStatus"
)]
pub struct MLSysOpsAppSpec {
    /// The components and where they run.
    #[serde(default)]
    pub components: Vec<AppComponent>,
    /// The buckets the app declares, each with the targets its data must meet.
    #[serde(default)]
    pub buckets: Vec<AppBucket>,
}

/// One bucket of an [`MLSysOpsApp`]: a bucket entry of the app descriptor (docs/agents.md).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct AppBucket {
    /// S3 bucket name.
    pub bucket_id: String,
    /// Backend losses the bucket must survive: `high`, `one` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<String>,
    /// Highest acceptable p95 GET latency of a backend holding the bucket, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<u64>,
    /// Lowest acceptable download bandwidth of a backend holding the bucket, MiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_download_speed: Option<f64>,
    /// Where the data may live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_restrictions: Option<LocationRestrictions>,
    /// Lowest trust score (0..=1) of a backend holding the data or a node running a component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_trust: Option<f64>,
}

/// Where a bucket's data may live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct LocationRestrictions {
    /// Data only on backends labelled `gdpr`, containers only on nodes labelled `gdpr=true`.
    #[serde(default)]
    pub gdpr: bool,
}

impl MLSysOpsAppSpec {
    /// The app descriptor (`{"MLSysOpsApp": {...}}`) of app `name`: each component with the
    /// entries of the buckets it names; `None` when the app declares no buckets.
    #[must_use]
    pub fn descriptor(&self, name: &str) -> Option<Value> {
        if self.buckets.is_empty() {
            return None;
        }
        let components: Vec<Value> = self
            .components
            .iter()
            .map(|c| {
                let buckets: Vec<&AppBucket> = self
                    .buckets
                    .iter()
                    .filter(|b| c.buckets.contains(&b.bucket_id))
                    .collect();
                // The descriptor requires a container; the Deployment holds the real one.
                let image = c
                    .image
                    .clone()
                    .unwrap_or_else(|| format!("deployment/{}", c.deployment_name()));
                json!({
                    "metadata": {"name": c.name},
                    "containers": [{"image": image}],
                    "storage": {"buckets": buckets},
                })
            })
            .collect();
        Some(json!({"MLSysOpsApp": {"name": name, "components": components}}))
    }
}

/// Hands apps' storage to the agents: the seam between the controller and the northbound API.
#[async_trait::async_trait]
pub trait Declarer: Send + Sync {
    /// Deploys (or updates) app `app` from `descriptor`; `Err` says why it was refused.
    async fn declare(&self, app: &str, descriptor: Value) -> Result<(), String>;
    /// Removes app `app` (its buckets and their data stay).
    async fn withdraw(&self, app: &str) -> Result<(), String>;
}

/// One component of an [`MLSysOpsApp`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct AppComponent {
    /// The component's name (as the placer knows it).
    pub name: String,
    /// The Deployment running it; default: `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Container image, informational (the Deployment is yours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The buckets it reads and writes (`bucket_id`s of `spec.buckets`).
    #[serde(default)]
    pub buckets: Vec<String>,
}

impl AppComponent {
    /// The name of the Deployment running this component.
    #[must_use]
    pub fn deployment_name(&self) -> &str {
        self.deployment.as_deref().unwrap_or(&self.name)
    }
}

/// What the controller last did for each component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct MLSysOpsAppStatus {
    /// One entry per component, in spec order.
    #[serde(default)]
    pub components: Vec<ComponentStatus>,
    /// Why the agents refused the app's buckets, if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The placement of one component as applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ComponentStatus {
    /// The component.
    pub name: String,
    /// Its Deployment.
    pub deployment: String,
    /// Nodes it may run on (empty: no restriction written).
    #[serde(default)]
    pub required: Vec<String>,
    /// Nodes it prefers, with weights 1..=100.
    #[serde(default)]
    pub preferred: Vec<PreferredNode>,
    /// Why these nodes (from the placer), or why nothing was written.
    pub reason: String,
    /// What failed, if applying the placement did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A preferred node and its weight.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
pub struct PreferredNode {
    /// The node's name.
    pub node: String,
    /// 1..=100, as nodeAffinity weights are.
    pub weight: i32,
}

/// Where a component should run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Node names allowed (empty: no hard restriction).
    pub required: Vec<String>,
    /// Preferred node names with weights (clamped to 1..=100 when written).
    pub preferred: Vec<(String, i32)>,
    /// Why, for the status.
    pub reason: String,
}

/// Chooses nodes for components: the seam between the controller and the placement policy.
pub trait Placer: Send + Sync {
    /// The placement of `component` of `app`; `None`: no opinion, the Deployment is left as it is.
    fn place(&self, app: &str, component: &str) -> Option<Placement>;
}

/// How the controller paces itself.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Namespace watched.
    pub namespace: String,
    /// How often an app is reconciled again when nothing changed (placements drift as
    /// measurements do).
    pub requeue: Duration,
    /// First retry delay after a failed reconcile; doubles per failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Attempts at one Deployment patch refused with 409 before giving up until the next round.
    pub conflict_retries: u32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            requeue: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            conflict_retries: 5,
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// The call and its object.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Deployment kept changing under the patch.
    #[error("patching deployment {0}: still conflicting after {1} attempts")]
    Conflicts(String, u32),
    /// The annotation on a Deployment is not what the controller writes.
    #[error("deployment {0}: annotation {PLACED_BY} is not valid JSON: {1}")]
    BadAnnotation(String, serde_json::Error),
}

/// Selects ring as the process's TLS crypto provider (what kube is built with). rustls picks
/// one by itself only when exactly one is compiled in, and the AWS SDK in the same binary
/// brings aws-lc-rs; without this, building a kube client panics. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client from the pod's service account, or from `KUBECONFIG` outside a cluster.
pub async fn default_client() -> Result<Client, ControllerError> {
    install_crypto_provider();
    Client::try_default().await.map_err(|source| ControllerError::Kube {
        what: "connecting to the Kubernetes API (in-cluster service account or KUBECONFIG)".into(),
        source,
    })
}

/// What the controller wrote into a Deployment's affinity, kept in its [`PLACED_BY`] annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Written {
    /// The app (`namespace/name`) that placed it.
    pub app: String,
    /// The component.
    pub component: String,
    /// The hostname `In` values added to every required term (empty: none added).
    #[serde(default)]
    pub required: Vec<String>,
    /// The preferred terms appended.
    #[serde(default)]
    pub preferred: Vec<PreferredNode>,
}

fn hostname_in(values: Vec<String>) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: HOSTNAME_KEY.into(),
        operator: "In".into(),
        values: Some(values),
    }
}

fn preferred_terms(w: &Written) -> Vec<PreferredSchedulingTerm> {
    w.preferred
        .iter()
        .map(|p| PreferredSchedulingTerm {
            weight: p.weight,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![hostname_in(vec![p.node.clone()])]),
                match_fields: None,
            },
        })
        .collect()
}

fn term_is_empty(t: &NodeSelectorTerm) -> bool {
    t.match_expressions.as_ref().is_none_or(Vec::is_empty) && t.match_fields.as_ref().is_none_or(Vec::is_empty)
}

/// `affinity` without the terms `w` added: the user's own.
#[must_use]
pub fn strip(affinity: Option<&NodeAffinity>, w: &Written) -> Option<NodeAffinity> {
    let mut a = affinity.cloned()?;
    if !w.required.is_empty() {
        let ours = hostname_in(w.required.clone());
        if let Some(sel) = a.required_during_scheduling_ignored_during_execution.as_mut() {
            for term in &mut sel.node_selector_terms {
                if let Some(exprs) = term.match_expressions.as_mut() {
                    if let Some(i) = exprs.iter().position(|e| *e == ours) {
                        exprs.remove(i);
                    }
                    if exprs.is_empty() {
                        term.match_expressions = None;
                    }
                }
            }
            // A term left empty was one the controller made (an empty term would match no
            // node, so no user writes one).
            sel.node_selector_terms.retain(|t| !term_is_empty(t));
            if sel.node_selector_terms.is_empty() {
                a.required_during_scheduling_ignored_during_execution = None;
            }
        }
    }
    if let Some(pref) = a.preferred_during_scheduling_ignored_during_execution.as_mut() {
        for ours in preferred_terms(w) {
            if let Some(i) = pref.iter().position(|p| *p == ours) {
                pref.remove(i);
            }
        }
        if pref.is_empty() {
            a.preferred_during_scheduling_ignored_during_execution = None;
        }
    }
    normalize(a)
}

/// `base` (the user's affinity) with the terms of `w` added: the controller's hostname
/// requirement is ANDed into every required term (ORing a new term would widen the user's),
/// and its preferred terms are appended.
#[must_use]
pub fn add(base: Option<NodeAffinity>, w: &Written) -> Option<NodeAffinity> {
    let mut a = base.unwrap_or_default();
    if !w.required.is_empty() {
        let ours = hostname_in(w.required.clone());
        let sel = a
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            });
        if sel.node_selector_terms.is_empty() {
            sel.node_selector_terms.push(NodeSelectorTerm::default());
        }
        for term in &mut sel.node_selector_terms {
            term.match_expressions.get_or_insert_with(Vec::new).push(ours.clone());
        }
    }
    let extra = preferred_terms(w);
    if !extra.is_empty() {
        a.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .extend(extra);
    }
    normalize(a)
}

fn normalize(a: NodeAffinity) -> Option<NodeAffinity> {
    (a != NodeAffinity::default()).then_some(a)
}

fn node_affinity(d: &Deployment) -> Option<&NodeAffinity> {
    d.spec.template.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()
}

fn written(d: &Deployment) -> Result<Option<Written>, ControllerError> {
    match d.annotations().get(PLACED_BY) {
        None => Ok(None),
        Some(s) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| ControllerError::BadAnnotation(d.name_any(), e)),
    }
}

/// The merge patch turning `d`'s nodeAffinity into `desired` with annotation `mark`, pinned to
/// `d`'s resourceVersion; `None` when `d` already is so.
fn affinity_patch(
    d: &Deployment,
    desired: Option<&NodeAffinity>,
    mark: Option<&Written>,
) -> Result<Option<Value>, ControllerError> {
    let current = node_affinity(d);
    let current_mark = written(d)?;
    if current == desired && current_mark.as_ref() == mark {
        return Ok(None);
    }
    // A merge patch merges objects key by key, so fields to drop must be sent as null.
    let affinity = match desired {
        None => Value::Null,
        Some(a) => json!({
            "requiredDuringSchedulingIgnoredDuringExecution":
                a.required_during_scheduling_ignored_during_execution,
            "preferredDuringSchedulingIgnoredDuringExecution":
                a.preferred_during_scheduling_ignored_during_execution,
        }),
    };
    let mark = match mark {
        None => Value::Null,
        Some(w) => Value::String(serde_json::to_string(w).expect("Written serializes")),
    };
    Ok(Some(json!({
        "metadata": {
            "resourceVersion": d.resource_version(),
            "annotations": { PLACED_BY: mark },
        },
        "spec": { "template": { "spec": { "affinity": { "nodeAffinity": affinity } } } },
    })))
}

/// The controller: a watch on [`MLSysOpsApp`] with a requeue and retry schedule.
pub struct AffinityController {
    apps: Api<MLSysOpsApp>,
    deployments: Api<Deployment>,
    placer: Arc<dyn Placer>,
    config: ControllerConfig,
    declarer: Option<Arc<dyn Declarer>>,
    /// The descriptor last declared for each app, so an unchanged one is not declared again
    /// every round (each declaration is a new intent the cluster applies).
    declared: std::sync::Mutex<BTreeMap<String, Value>>,
}

/// One tracked app: its last seen object and when to reconcile it next.
struct Tracked {
    app: MLSysOpsApp,
    due: Instant,
    failures: u32,
}

impl AffinityController {
    /// A controller over `config.namespace` using `client`.
    #[must_use]
    pub fn new(client: Client, placer: Arc<dyn Placer>, config: ControllerConfig) -> Self {
        Self {
            apps: Api::namespaced(client.clone(), &config.namespace),
            deployments: Api::namespaced(client, &config.namespace),
            placer,
            config,
            declarer: None,
            declared: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Declares apps' `spec.buckets` to the agents through `declarer`.
    #[must_use]
    pub fn with_declarer(mut self, declarer: Arc<dyn Declarer>) -> Self {
        self.declarer = Some(declarer);
        self
    }

    fn last_declared(&self, app: &str) -> Option<Value> {
        self.declared.lock().ok()?.get(app).cloned()
    }

    fn set_declared(&self, app: &str, descriptor: Option<Value>) {
        if let Ok(mut d) = self.declared.lock() {
            match descriptor {
                Some(v) => d.insert(app.to_owned(), v),
                None => d.remove(app),
            };
        }
    }

    /// Hands the app's buckets to the agents when they changed; `Err`: why they were refused.
    async fn declare(&self, app: &MLSysOpsApp) -> Result<(), String> {
        let Some(declarer) = &self.declarer else {
            return Ok(());
        };
        let name = app.name_any();
        let last = self.last_declared(&name);
        match app.spec.descriptor(&name) {
            Some(d) if last.as_ref() != Some(&d) => {
                declarer.declare(&name, d.clone()).await?;
                tracing::info!(app = %name, "MLSysOpsApp buckets declared to the agents");
                self.set_declared(&name, Some(d));
            }
            None if last.is_some() => {
                declarer.withdraw(&name).await?;
                self.set_declared(&name, None);
            }
            _ => {}
        }
        Ok(())
    }

    fn app_key(&self, app: &MLSysOpsApp) -> String {
        format!("{}/{}", self.config.namespace, app.name_any())
    }

    /// Runs until `stop` is cancelled. Watch failures are retried with the watcher's own
    /// backoff (a restarted watch lists again; apps gone meanwhile are cleaned up then).
    pub async fn run(self, stop: CancellationToken) {
        let mut events =
            std::pin::pin!(watcher::watcher(self.apps.clone(), watcher::Config::default()).default_backoff());
        let mut tracked: BTreeMap<String, Tracked> = BTreeMap::new();
        // Names seen in the relist in progress, to find apps deleted while the watch was down.
        let mut relist: Option<BTreeSet<String>> = None;
        loop {
            let next_due = tracked.values().map(|t| t.due).min();
            let sleep = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = sleep => {
                    let now = Instant::now();
                    let due: Vec<String> = tracked
                        .iter()
                        .filter(|(_, t)| t.due <= now)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for name in due {
                        if let Some(t) = tracked.get_mut(&name) {
                            let app = t.app.clone();
                            let ok = self.reconcile(&app).await;
                            self.schedule(t, ok);
                        }
                    }
                }
                ev = events.next() => match ev {
                    None => return,
                    Some(Err(e)) => tracing::warn!(error = %e, "watching MLSysOpsApps"),
                    Some(Ok(Event::Init)) => relist = Some(BTreeSet::new()),
                    Some(Ok(Event::InitApply(app) | Event::Apply(app))) => {
                        let name = app.name_any();
                        if let Some(seen) = relist.as_mut() {
                            seen.insert(name.clone());
                        }
                        self.applied(&mut tracked, name, app).await;
                    }
                    Some(Ok(Event::InitDone)) => {
                        if let Some(seen) = relist.take() {
                            let gone: Vec<String> =
                                tracked.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                            for name in gone {
                                if let Some(t) = tracked.remove(&name) {
                                    self.deleted(&t.app).await;
                                }
                            }
                        }
                    }
                    Some(Ok(Event::Delete(app))) => {
                        tracked.remove(&app.name_any());
                        self.deleted(&app).await;
                    }
                },
            }
        }
    }

    async fn applied(&self, tracked: &mut BTreeMap<String, Tracked>, name: String, app: MLSysOpsApp) {
        if let Some(old) = tracked.get(&name) {
            // Components dropped from the spec keep no affinity of ours.
            let kept: BTreeSet<&str> = app.spec.components.iter().map(AppComponent::deployment_name).collect();
            let dropped: Vec<AppComponent> = old
                .app
                .spec
                .components
                .iter()
                .filter(|c| !kept.contains(c.deployment_name()))
                .cloned()
                .collect();
            for c in dropped {
                if let Err(e) = self.place(c.deployment_name(), None).await {
                    tracing::warn!(error = %e, component = %c.name, "removing affinity of a dropped component");
                }
            }
        } else if tracked.len() >= MAX_APPS {
            tracing::warn!(app = %name, "too many MLSysOpsApps tracked; ignoring this one");
            return;
        }
        let ok = self.reconcile(&app).await;
        let t = tracked.entry(name).or_insert_with(|| Tracked {
            app: app.clone(),
            due: Instant::now(),
            failures: 0,
        });
        t.app = app;
        self.schedule(t, ok);
    }

    fn schedule(&self, t: &mut Tracked, ok: bool) {
        if ok {
            t.failures = 0;
            t.due = Instant::now() + self.config.requeue;
        } else {
            t.failures = t.failures.saturating_add(1);
            let factor = 1u32 << t.failures.min(16).saturating_sub(1);
            let delay = self
                .config
                .backoff_base
                .saturating_mul(factor)
                .min(self.config.backoff_max);
            t.due = Instant::now() + delay;
        }
    }

    /// Applies every component's placement and writes the status; false if anything failed.
    pub async fn reconcile(&self, app: &MLSysOpsApp) -> bool {
        let app_name = app.name_any();
        let mut statuses = Vec::new();
        let declared = self.declare(app).await;
        let mut ok = declared.is_ok();
        if let Err(e) = &declared {
            tracing::warn!(app = %app_name, error = %e, "the agents refused the app's buckets");
        }
        for c in app.spec.components.iter().take(MAX_COMPONENTS) {
            let deployment = c.deployment_name().to_owned();
            let mut status = ComponentStatus {
                name: c.name.clone(),
                deployment: deployment.clone(),
                ..ComponentStatus::default()
            };
            match self.placer.place(&app_name, &c.name) {
                None => "no placement known; deployment left as it is".clone_into(&mut status.reason),
                Some(p) => {
                    let w = Written {
                        app: self.app_key(app),
                        component: c.name.clone(),
                        required: p.required,
                        preferred: p
                            .preferred
                            .into_iter()
                            .map(|(node, weight)| PreferredNode {
                                node,
                                weight: weight.clamp(1, 100),
                            })
                            .collect(),
                    };
                    status.required.clone_from(&w.required);
                    status.preferred.clone_from(&w.preferred);
                    status.reason = p.reason;
                    if let Err(e) = self.place(&deployment, Some(&w)).await {
                        tracing::warn!(error = %e, app = %app_name, component = %c.name, "placing");
                        status.error = Some(e.to_string());
                        ok = false;
                    }
                }
            }
            statuses.push(status);
        }
        let status = MLSysOpsAppStatus {
            components: statuses,
            error: declared.err(),
        };
        if app.status.as_ref() != Some(&status) {
            let patch = Patch::Merge(json!({ "status": status }));
            if let Err(e) = self.apps.patch_status(&app_name, &PatchParams::default(), &patch).await {
                tracing::warn!(error = %e, app = %app_name, "writing status");
                ok = false;
            }
        }
        ok
    }

    async fn deleted(&self, app: &MLSysOpsApp) {
        if let Some(declarer) = &self.declarer {
            let name = app.name_any();
            if app.spec.descriptor(&name).is_some() || self.last_declared(&name).is_some() {
                if let Err(e) = declarer.withdraw(&name).await {
                    tracing::warn!(app = %name, error = %e, "withdrawing the app's buckets");
                }
                self.set_declared(&name, None);
            }
        }
        for c in app.spec.components.iter().take(MAX_COMPONENTS) {
            if let Err(e) = self.place(c.deployment_name(), None).await {
                tracing::warn!(error = %e, app = %app.name_any(), component = %c.name, "removing affinity");
            }
        }
    }

    /// Makes `deployment` carry exactly `w` as the controller's part of its affinity (`None`:
    /// nothing), reading it afresh after a conflict. A missing Deployment is not an error when
    /// removing.
    async fn place(&self, deployment: &str, w: Option<&Written>) -> Result<(), ControllerError> {
        let attempts = self.config.conflict_retries.max(1);
        for _ in 0..attempts {
            let d = match self.deployments.get(deployment).await {
                Ok(d) => d,
                Err(kube::Error::Api(s)) if s.code == 404 && w.is_none() => return Ok(()),
                Err(source) => {
                    return Err(ControllerError::Kube {
                        what: format!("reading deployment {deployment}"),
                        source,
                    })
                }
            };
            let prior = written(&d)?;
            let base = match &prior {
                Some(p) => strip(node_affinity(&d), p),
                None => node_affinity(&d).cloned(),
            };
            if w.is_none() && prior.is_none() {
                return Ok(());
            }
            let desired = match w {
                Some(w) => add(base, w),
                None => base,
            };
            let Some(patch) = affinity_patch(&d, desired.as_ref(), w)? else {
                return Ok(());
            };
            match self
                .deployments
                .patch(deployment, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(deployment, "conflict; reading again");
                }
                Err(source) => {
                    return Err(ControllerError::Kube {
                        what: format!("patching deployment {deployment}"),
                        source,
                    })
                }
            }
        }
        Err(ControllerError::Conflicts(deployment.to_owned(), attempts))
    }
}
