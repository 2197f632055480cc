//! Starting the agents: all three tiers inside `mlsysops serve` ([`InProcess`]), or one tier
//! as its own process ([`standalone`]), tiers linked by channels or by gRPC.

use crate::decisions::DecisionLog;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::guard::Guard;
use crate::intents::Intents;
use crate::k8s::knowledge::Containers;
use crate::link::{AgentId, LinkKeys, Session};
use crate::ml::Models;
use crate::northbound::{self, Northbound};
use crate::scheduler::SchedulerConfig;
use crate::store::Store;
use crate::tiers::cluster::Cluster;
use crate::tiers::continuum::Continuum;
use crate::tiers::node::Node;
use crate::tiers::{Shared, TierConfig};
use axum::Router;
use control_api::trust::EnrolledBy;
use control_api::trust::IdentityKind;
use control_api::AgentMode;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use trust::identity::{Identities, KeyPair};

/// What the agents are started with.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// The agent's RocksDB (intents, apps, decisions; a standalone node's decisions).
    pub dir: PathBuf,
    /// The MAPE period.
    pub period: Duration,
    /// Heuristic or ML at start.
    pub mode: AgentMode,
    /// Plan and explain, never apply.
    pub dry_run: bool,
    /// The scheduler's rules.
    pub scheduler: SchedulerConfig,
    /// The prefix of this process's agent ids (`<prefix>-node`, ...).
    pub name: String,
    /// Settings of the cluster's built-in policies.
    pub policies: crate::policies::BuiltinConfig,
    /// Settings of the node's policies.
    pub node_policies: crate::node_policies::NodeConfig,
    /// The trust model's weights and decay (changeable at run time: `PUT /api/v1/trust/config`).
    pub trust: control_api::trust::TrustConfig,
    /// The anomaly detector's thresholds.
    pub anomaly: anomaly::DetectorConfig,
}

impl AgentsConfig {
    /// The machine its node agent reports for.
    fn machine(&self) -> &str {
        self.node_policies.machine.as_deref().unwrap_or(&self.name)
    }

    fn tier(&self, tier: &str) -> TierConfig {
        TierConfig {
            id: format!("{}-{tier}", self.name),
            period: self.period,
        }
    }
}

fn id(cfg: &TierConfig, tier: &str) -> AgentId {
    AgentId {
        id: cfg.id.clone(),
        tier: tier.to_owned(),
    }
}

/// The file in the agents' directory holding this process's Ed25519 key (PKCS#8, mode 0600).
pub const KEY_FILE: &str = "identity.key";
/// The file in the agents' directory holding the peers' public keys and revocations.
pub const IDENTITIES_FILE: &str = "identities.json";

/// This process's key (created on first start) and the registry of its peers' keys, from
/// `dir`; `name` is enrolled as a node under its own key so the registry lists it.
pub fn link_keys(dir: &std::path::Path, name: &str) -> Result<LinkKeys> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Invalid(format!("creating the agents' directory {}: {e}", dir.display())))?;
    let key = KeyPair::load_or_create(&dir.join(KEY_FILE))?;
    let peers = Identities::open(&dir.join(IDENTITIES_FILE))?;
    if let Err(e) = peers.enrol(name, IdentityKind::Node, &key.public_key(), EnrolledBy::Operator, false) {
        // A changed key under the same name: the registry keeps the old one until an operator
        // says otherwise (enrol with `replace`).
        tracing::warn!(node = %name, error = %e, "this node's own key is not the one its registry holds");
    }
    Ok(LinkKeys::new(key, peers))
}

/// The trust and anomaly watch of a cluster agent, over the registry of `keys`; refusals on the
/// link become evidence against the agent refused.
fn guard(keys: &LinkKeys, cfg: &AgentsConfig) -> Guard {
    let reputation = trust::Reputation::new(cfg.trust.clone());
    Guard::new(
        reputation,
        keys.peers.clone(),
        anomaly::Anomalies::new(),
        cfg.anomaly.clone(),
    )
}

/// `keys` with a hook that records each refusal as evidence against the refused agent.
fn reporting(mut keys: LinkKeys, reputation: &trust::Reputation) -> LinkKeys {
    let reputation = reputation.clone();
    keys.on_refusal = Some(Arc::new(move |peer: &str, why: &str| {
        crate::guard::link_evidence(
            &reputation,
            peer,
            control_api::trust::EvidenceKind::BadLinkSignature,
            &format!("agent link: {why}"),
        );
    }));
    keys
}

/// One session, handed over once (a local link never reconnects).
fn once(s: Session) -> mpsc::Receiver<Session> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(s);
    rx
}

/// Never a session.
fn none() -> mpsc::Receiver<Session> {
    mpsc::channel(1).1
}

/// The three tiers running inside this process.
pub struct InProcess {
    router: Router,
    reputation: trust::Reputation,
    anomalies: anomaly::Anomalies,
    containers: Containers,
    north: Northbound,
    /// Where sessions of node agents in other processes join the in-process cluster agent.
    nodes: mpsc::Sender<Session>,
    keys: LinkKeys,
    cluster_id: AgentId,
    token: Arc<str>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl InProcess {
    /// Starts node, cluster and continuum over `gateway`; the northbound API is [`Self::router`],
    /// behind `token`.
    pub fn start(cfg: &AgentsConfig, gateway: Gateway, token: Arc<str>) -> Result<Self> {
        let store = Store::open(&cfg.dir)?;
        let shared = Shared::new(cfg.mode, cfg.dry_run);
        let (node_cfg, cluster_cfg, continuum_cfg) = (cfg.tier("node"), cfg.tier("cluster"), cfg.tier("continuum"));
        let intents = Intents::new(store.clone());
        let log = DecisionLog::new(store.clone());
        let continuum = Continuum::new(&continuum_cfg.id, intents.clone(), log.clone(), shared.clone());
        // The process's own key, created on first start; in-process links are not signed, but
        // the registry lists this node and takes the operator's enrolments and revocations.
        let keys = link_keys(&cfg.dir, &cfg.name)?;
        let guard = guard(&keys, cfg);
        let reputation = guard.reputation.clone();
        let anomalies = guard.anomalies.clone();
        let keys = reporting(keys, &reputation);
        let north = Northbound {
            intents,
            log,
            shared: shared.clone(),
            submit: continuum.submitter(),
            token: token.clone(),
        };
        let router = northbound::router(north.clone())
            .merge(trust::routes::router(
                guard.reputation.clone(),
                guard.identities.clone(),
                token.clone(),
            ))
            .merge(anomaly::router(guard.anomalies.clone(), token.clone()));
        let (c_up, c_down) = crate::link::local_pair(id(&continuum_cfg, "continuum"), id(&cluster_cfg, "cluster"));
        let (n_up, n_down) = crate::link::local_pair(id(&cluster_cfg, "cluster"), id(&node_cfg, "node"));
        let cluster_id = id(&cluster_cfg, "cluster");
        // The node's decisions land in the same store (one RocksDB per process), so the
        // continuum's log shows them as soon as they are made.
        let node_policies = crate::node_policies::builtin(&node_cfg.id, cfg.node_policies.clone());
        let node = Node::new(
            node_cfg,
            gateway.clone(),
            store.clone(),
            shared.clone(),
            node_policies,
            cfg.scheduler.clone(),
        )
        .on_machine(cfg.machine(), cfg.node_policies.labels.clone());
        let cluster = Cluster::new(
            cluster_cfg,
            gateway,
            store,
            shared.clone(),
            crate::policies::builtin(cfg.policies.clone()),
            cfg.scheduler.clone(),
            Models::default(),
        )
        .with_guard(guard);
        let containers = cluster.containers();
        // The local node agent's session first; remote node agents' join later
        // ([`Self::accept_nodes`]).
        let (nodes, children) = mpsc::channel(16);
        let _ = nodes.try_send(n_up);
        let shutdown = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(continuum.run(once(c_up), shutdown.clone())),
            tokio::spawn(cluster.run(once(c_down), children, shutdown.clone())),
            tokio::spawn(node.run(once(n_down), shutdown.clone())),
        ];
        tracing::info!(period = ?cfg.period, mode = ?cfg.mode, dry_run = cfg.dry_run, "agents started in-process (node, cluster, continuum)");
        Ok(Self {
            router,
            reputation,
            anomalies,
            containers,
            north,
            nodes,
            keys,
            cluster_id,
            token,
            shutdown,
            tasks,
        })
    }

    /// Lets node agents of other processes (other machines' gateways) join the in-process
    /// cluster agent over the gRPC link on `listener`: their machines become candidates for
    /// the app components the cluster places.
    pub async fn accept_nodes(&mut self, listener: tokio::net::TcpListener) -> Result<()> {
        let mut sessions = crate::link::serve(
            listener,
            self.token.clone(),
            self.cluster_id.clone(),
            Duration::from_secs(2),
            self.keys.clone(),
            self.shutdown.clone(),
        )
        .await?;
        let nodes = self.nodes.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(s) = sessions.recv().await {
                if nodes.send(s).await.is_err() {
                    break;
                }
            }
        }));
        Ok(())
    }

    /// The kube-scheduler extender's routes (`filter`, `prioritize`), unauthenticated: serve
    /// them on a listener of their own that only the cluster reaches.
    pub fn extender(&self) -> Router {
        crate::k8s::routes::router(Arc::new(self.containers.clone()))
    }

    /// Runs the nodeAffinity controller for `MLSysOpsApp` resources through `client` until
    /// the agents stop.
    pub fn start_controller(&mut self, client: kube::Client, config: crate::k8s::controller::ControllerConfig) {
        let controller =
            crate::k8s::controller::AffinityController::new(client, Arc::new(self.containers.clone()), config)
                .with_declarer(Arc::new(Declare(self.north.clone())));
        self.tasks.push(tokio::spawn(controller.run(self.shutdown.clone())));
    }

    /// The anomaly verdicts (for the binary to export as metrics).
    #[must_use]
    pub fn anomalies(&self) -> &anomaly::Anomalies {
        &self.anomalies
    }

    /// Components, nodes and placements as the cluster agent sees them.
    #[must_use]
    pub fn containers(&self) -> &Containers {
        &self.containers
    }

    /// The northbound API's routes.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The trust scores (for the binary to export as metrics).
    #[must_use]
    pub fn reputation(&self) -> &trust::Reputation {
        &self.reputation
    }

    /// Stops the three loops.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The controller's apps deployed through the northbound API, as an operator's would be.
struct Declare(Northbound);

#[async_trait::async_trait]
impl crate::k8s::controller::Declarer for Declare {
    async fn declare(&self, app: &str, descriptor: serde_json::Value) -> std::result::Result<(), String> {
        let parsed = crate::descriptor::from_value(&descriptor).map_err(|e| e.to_string())?;
        if parsed.name != app {
            return Err(format!("the descriptor names app {:?}, not {app:?}", parsed.name));
        }
        self.0
            .deploy(parsed, descriptor)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn withdraw(&self, app: &str) -> std::result::Result<(), String> {
        self.0.remove(app).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Which tier a standalone agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Per gateway.
    Node,
    /// Over a cluster's gateways.
    Cluster,
    /// The northbound API.
    Continuum,
}

/// Where a standalone agent connects and listens.
pub struct Standalone {
    /// Its tier.
    pub tier: Tier,
    /// Its gateway's admin API (node and cluster).
    pub gateway: Option<Gateway>,
    /// Its parent's link URL (node and cluster).
    pub parent: Option<String>,
    /// Where children connect (cluster and continuum).
    pub link_listener: Option<tokio::net::TcpListener>,
    /// Serves the northbound API (continuum): given the router, runs until shutdown. The
    /// binary passes the gateway's hardened listener (limits and timeouts).
    pub serve_api: Option<ServeApi>,
    /// The admin token (northbound API and link).
    pub token: Arc<str>,
}

/// Serves a router until the shutdown the caller arranged.
pub type ServeApi = Box<dyn FnOnce(Router) -> futures::future::BoxFuture<'static, ()> + Send>;

/// Runs one tier until `shutdown`.
pub async fn standalone(cfg: &AgentsConfig, s: Standalone, shutdown: CancellationToken) -> Result<()> {
    let missing = |what: &str| Error::Invalid(format!("this tier needs {what}"));
    let tier_name = match s.tier {
        Tier::Node => "node",
        Tier::Cluster => "cluster",
        Tier::Continuum => "continuum",
    };
    let tc = cfg.tier(tier_name);
    let me = id(&tc, tier_name);
    let heartbeat = Duration::from_secs(2);
    let keys = link_keys(&cfg.dir, &cfg.name)?;
    let guard = guard(&keys, cfg);
    let keys = reporting(keys, &guard.reputation);
    let parents = match &s.parent {
        Some(url) => crate::link::dial(
            url.clone(),
            s.token.clone(),
            me.clone(),
            heartbeat,
            keys.clone(),
            shutdown.clone(),
        ),
        None => none(),
    };
    let children = match s.link_listener {
        Some(l) => {
            crate::link::serve(
                l,
                s.token.clone(),
                me.clone(),
                heartbeat,
                keys.clone(),
                shutdown.clone(),
            )
            .await?
        }
        None => none(),
    };
    let shared = Shared::new(cfg.mode, cfg.dry_run);
    match s.tier {
        Tier::Node => {
            let gateway = s.gateway.ok_or_else(|| missing("--gateway"))?;
            let store = Store::open(&cfg.dir)?;
            let policies = crate::node_policies::builtin(&tc.id, cfg.node_policies.clone());
            Node::new(tc, gateway, store, shared, policies, cfg.scheduler.clone())
                .on_machine(cfg.machine(), cfg.node_policies.labels.clone())
                .run(parents, shutdown)
                .await;
        }
        Tier::Cluster => {
            let gateway = s.gateway.ok_or_else(|| missing("--gateway"))?;
            let store = Store::open(&cfg.dir)?;
            let cluster = Cluster::new(
                tc,
                gateway,
                store,
                shared,
                crate::policies::builtin(cfg.policies.clone()),
                cfg.scheduler.clone(),
                Models::default(),
            )
            .with_guard(guard);
            cluster.run(parents, children, shutdown).await;
        }
        Tier::Continuum => {
            let serve_api = s.serve_api.ok_or_else(|| missing("--listen"))?;
            let store = Store::open(&cfg.dir)?;
            let intents = Intents::new(store.clone());
            let log = DecisionLog::new(store);
            let continuum = Continuum::new(&tc.id, intents.clone(), log.clone(), shared.clone())
                .with_anomalies(guard.anomalies.clone());
            let router = northbound::router(Northbound {
                intents,
                log,
                shared,
                submit: continuum.submitter(),
                token: s.token.clone(),
            })
            // The continuum's registry, the evidence its link gathers against clusters, and
            // the anomalies the clusters report.
            .merge(trust::routes::router(
                guard.reputation.clone(),
                guard.identities.clone(),
                s.token.clone(),
            ))
            .merge(anomaly::router(guard.anomalies.clone(), s.token.clone()));
            let api = tokio::spawn(serve_api(router));
            continuum.run(children, shutdown).await;
            let _ = api.await;
        }
    }
    Ok(())
}
