//! Starting the agents: all three tiers inside `mlsysops serve` ([`InProcess`]), or one tier
//! as its own process ([`standalone`]), tiers linked by channels or by gRPC.

use crate::decisions::DecisionLog;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::intents::Intents;
use crate::link::{AgentId, Session};
use crate::ml::Models;
use crate::northbound::{self, Northbound};
use crate::scheduler::SchedulerConfig;
use crate::store::Store;
use crate::tiers::cluster::Cluster;
use crate::tiers::continuum::Continuum;
use crate::tiers::node::Node;
use crate::tiers::{Shared, TierConfig};
use axum::Router;
use control_api::AgentMode;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
}

impl AgentsConfig {
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
        let router = northbound::router(Northbound {
            intents,
            log,
            shared: shared.clone(),
            submit: continuum.submitter(),
            token,
        });
        let (c_up, c_down) = crate::link::local_pair(id(&continuum_cfg, "continuum"), id(&cluster_cfg, "cluster"));
        let (n_up, n_down) = crate::link::local_pair(id(&cluster_cfg, "cluster"), id(&node_cfg, "node"));
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
        );
        let cluster = Cluster::new(
            cluster_cfg,
            gateway,
            store,
            shared.clone(),
            crate::policies::builtin(cfg.policies.clone()),
            cfg.scheduler.clone(),
            Models::default(),
        );
        let shutdown = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(continuum.run(once(c_up), shutdown.clone())),
            tokio::spawn(cluster.run(once(c_down), once(n_up), shutdown.clone())),
            tokio::spawn(node.run(once(n_down), shutdown.clone())),
        ];
        tracing::info!(period = ?cfg.period, mode = ?cfg.mode, dry_run = cfg.dry_run, "agents started in-process (node, cluster, continuum)");
        Ok(Self {
            router,
            shutdown,
            tasks,
        })
    }

    /// The northbound API's routes.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Stops the three loops.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
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
    let parents = match &s.parent {
        Some(url) => crate::link::dial(url.clone(), s.token.clone(), me.clone(), heartbeat, shutdown.clone()),
        None => none(),
    };
    let children = match s.link_listener {
        Some(l) => crate::link::serve(l, s.token.clone(), me.clone(), heartbeat, shutdown.clone()).await?,
        None => none(),
    };
    let shared = Shared::new(cfg.mode, cfg.dry_run);
    match s.tier {
        Tier::Node => {
            let gateway = s.gateway.ok_or_else(|| missing("--gateway"))?;
            let store = Store::open(&cfg.dir)?;
            let policies = crate::node_policies::builtin(&tc.id, cfg.node_policies.clone());
            Node::new(tc, gateway, store, shared, policies, cfg.scheduler.clone())
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
            );
            cluster.run(parents, children, shutdown).await;
        }
        Tier::Continuum => {
            let serve_api = s.serve_api.ok_or_else(|| missing("--listen"))?;
            let store = Store::open(&cfg.dir)?;
            let intents = Intents::new(store.clone());
            let log = DecisionLog::new(store);
            let continuum = Continuum::new(&tc.id, intents.clone(), log.clone(), shared.clone());
            let router = northbound::router(Northbound {
                intents,
                log,
                shared,
                submit: continuum.submitter(),
                token: s.token.clone(),
            });
            let api = tokio::spawn(serve_api(router));
            continuum.run(children, shutdown).await;
            let _ = api.await;
        }
    }
    Ok(())
}
