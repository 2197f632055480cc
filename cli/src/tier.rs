//! `mlsysops agent --tier node|cluster|continuum`: one agent tier as its own process, linked
//! to its parent over gRPC (the child dials), driving a gateway through its admin API.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The tier to run.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TierArg {
    /// Per gateway: local knobs, summaries upward.
    Node,
    /// Bucket policies over its gateway's backends.
    Cluster,
    /// The northbound API (apps, intents, decisions).
    Continuum,
}

/// Flags of `mlsysops agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Which tier.
    #[arg(long, value_enum)]
    tier: TierArg,
    /// The parent's link URL (`http://host:port`; node: its cluster, cluster: the continuum).
    #[arg(long, env = "MLSYSOPS_AGENT_PARENT")]
    parent: Option<String>,
    /// The gateway's admin API (node and cluster), e.g. `http://127.0.0.1:9001`.
    #[arg(long, env = "MLSYSOPS_AGENT_GATEWAY")]
    gateway: Option<String>,
    /// Where child agents connect (gRPC; cluster and continuum).
    #[arg(long, env = "MLSYSOPS_AGENT_LINK_ADDR")]
    link_addr: Option<SocketAddr>,
    /// Where the northbound API listens (continuum).
    #[arg(long, env = "MLSYSOPS_AGENT_LISTEN")]
    listen: Option<SocketAddr>,
    /// The agent's state (intents, decisions; node: its decisions) [default: ./agent-data].
    #[arg(long, env = "MLSYSOPS_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This agent's name (ids are `<name>-<tier>`) [default: the host name, else `agent`].
    #[arg(long, env = "MLSYSOPS_AGENT_NAME")]
    name: Option<String>,
    /// Seconds between MAPE periods [default: 10].
    #[arg(long, env = "MLSYSOPS_AGENT_PERIOD_SECS")]
    period_secs: Option<f64>,
    /// Seconds after a change to a bucket during which no other change is made [default: 120].
    #[arg(long, env = "MLSYSOPS_AGENT_COOLDOWN_SECS")]
    cooldown_secs: Option<f64>,
    /// Plan and explain, never apply.
    #[arg(long)]
    dry_run: bool,
    /// The admin token (also the link's); else MLSYSOPS_ADMIN_TOKEN, else `<data-dir>/admin-token`.
    #[arg(long, env = "MLSYSOPS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// Runs the tier until SIGTERM or Ctrl-C.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("agent-data"));
    let token = control_api::admin_token(args.admin_token.as_deref(), &data_dir)?
        .context("no admin token: give --admin-token or MLSYSOPS_ADMIN_TOKEN (the gateway's)")?;
    let period = Duration::from_secs_f64(args.period_secs.unwrap_or(10.0));
    if period.is_zero() {
        bail!("--period-secs must be above 0");
    }
    let mut scheduler = agents::scheduler::SchedulerConfig {
        dry_run: args.dry_run,
        ..Default::default()
    };
    if let Some(c) = args.cooldown_secs {
        scheduler.cooldown_secs = Duration::from_secs_f64(c.max(0.0)).as_secs();
    }
    let name = args
        .name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "agent".into());
    let cfg = agents::run::AgentsConfig {
        dir: data_dir,
        period,
        mode: control_api::AgentMode::Heuristic,
        dry_run: args.dry_run,
        scheduler,
        name,
        policies: agents::policies::BuiltinConfig::default(),
        node_policies: agents::node_policies::NodeConfig::default(),
        trust: control_api::trust::TrustConfig::default(),
        anomaly: anomaly::DetectorConfig::default(),
    };
    let tier = match args.tier {
        TierArg::Node => agents::run::Tier::Node,
        TierArg::Cluster => agents::run::Tier::Cluster,
        TierArg::Continuum => agents::run::Tier::Continuum,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    rt.block_on(async move {
        let gateway = match &args.gateway {
            Some(url) => {
                let base = url.parse().with_context(|| format!("--gateway {url:?} is not a URL"))?;
                Some(agents::gateway::Gateway::new(control_api::Client::new(
                    base,
                    Some(token.clone()),
                )?))
            }
            None => None,
        };
        let bind = |a: Option<SocketAddr>, what: &'static str| async move {
            match a {
                Some(a) => tokio::net::TcpListener::bind(a)
                    .await
                    .map(Some)
                    .with_context(|| format!("binding {what} {a}")),
                None => Ok(None),
            }
        };
        let link_listener = bind(args.link_addr, "the link port").await?;
        let api_listener = bind(args.listen, "the northbound API port").await?;
        if let Some(l) = &link_listener {
            println!("agent link: http://{}", l.local_addr()?);
        }
        if let Some(l) = &api_listener {
            println!("northbound API: http://{}", l.local_addr()?);
        }
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            crate::shutdown_signal().await;
            stop.cancel();
        });
        tracing::info!(tier = ?args.tier, parent = ?args.parent, "agent starting");
        let serve_api: Option<agents::run::ServeApi> = api_listener.map(|l| {
            let stop = shutdown.clone();
            let serve: agents::run::ServeApi = Box::new(move |router| {
                Box::pin(async move {
                    let limits = storage_gateway::limits::LimitsConfig::default();
                    storage_gateway::server::serve_router(l, router, &limits, stop.cancelled_owned()).await;
                })
            });
            serve
        });
        agents::run::standalone(
            &cfg,
            agents::run::Standalone {
                tier,
                gateway,
                parent: args.parent.clone(),
                link_listener,
                serve_api,
                token: token.as_str().into(),
            },
            shutdown,
        )
        .await?;
        tracing::info!("agent stopped");
        anyhow::Ok(())
    })
}
