//! `mlsysops`: wires configuration, logging and signals to the gateway library.

mod admin;
mod agent;
mod app;
mod backend;
mod bench;
mod bucket;
mod config;
mod decisions;
mod guard;
mod intent;
mod remote;
mod text;
mod tier;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use storage_gateway::server::Server;
use telemetry::otel::{Otel, OtelConfig};
use telemetry::Telemetry;

/// S3-compatible gateway that erasure-codes objects across storage backends.
#[derive(Parser)]
#[command(name = "mlsysops", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (S3 API) until SIGTERM or Ctrl-C.
    Serve(Box<config::ServeArgs>),
    /// Offline maintenance of a data dir (the gateway must be stopped).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Load generator: PUT/GET/mixed/list/multipart against any S3 endpoint.
    Bench(Box<bench::BenchArgs>),
    /// Buckets' storage policies and migrations through a running gateway's admin API.
    Bucket(Box<bucket::BucketArgs>),
    /// Run one agent tier (node, cluster or continuum) as its own process.
    Agent(Box<tier::AgentArgs>),
    /// MLSysOps applications: deploy a descriptor (its buckets get intents), list, show, remove.
    App(Box<app::AppArgs>),
    /// What a bucket must achieve (the agents choose the code and backends that do it).
    Intent(Box<intent::IntentArgs>),
    /// The control plane's agents (health, last period, pending plans) and their mode.
    Agents(Box<agent::AgentsArgs>),
    /// The agents' decision log: every plan, applied or not, with its reason.
    Decisions(Box<decisions::DecisionsArgs>),
    /// Why a bucket's data is where it is: its policy, intent and the decisions behind them.
    Why(Box<decisions::WhyArgs>),
    /// Backends of a running gateway and the faults injected into them, through its admin API.
    Backend(Box<backend::BackendArgs>),
    /// Trust scores of backends, principals and agents, or one with the evidence that moved it.
    Trust(Box<guard::TrustArgs>),
    /// The anomaly detector's verdicts (malfunction, attack, tampering), optionally followed.
    Anomalies(Box<guard::AnomaliesArgs>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Admin(cmd) => {
            init_logging(None);
            admin::run(cmd)
        }
        Command::Bench(args) => {
            init_logging(None);
            bench::run(*args)
        }
        Command::Bucket(args) => {
            init_logging(None);
            bucket::run(*args)
        }
        Command::Agent(args) => {
            init_logging(None);
            tier::run(*args)
        }
        Command::App(args) => {
            init_logging(None);
            app::run(*args)
        }
        Command::Intent(args) => {
            init_logging(None);
            intent::run(*args)
        }
        Command::Agents(args) => {
            init_logging(None);
            agent::run(*args)
        }
        Command::Trust(args) => {
            init_logging(None);
            guard::run_trust(*args)
        }
        Command::Anomalies(args) => {
            init_logging(None);
            guard::run_anomalies(*args)
        }
        Command::Decisions(args) => {
            init_logging(None);
            decisions::run_decisions(*args)
        }
        Command::Why(args) => {
            init_logging(None);
            decisions::run_why(*args)
        }
        Command::Backend(args) => {
            init_logging(None);
            backend::run(*args)
        }
    }
}

/// The agents' counters: anomaly verdicts and decisions, read at each scrape or push.
fn export_agent_metrics(anomalies: anomaly::Anomalies, otel: &Otel) {
    use telemetry::otel::ObservableKind;
    otel.observe_u64(
        "mlsysops.anomaly.verdicts",
        "Anomaly verdicts since start, by class and subject kind",
        "{verdict}",
        ObservableKind::Counter,
        move |observe| {
            for (class, kind, n) in anomalies.totals() {
                observe(
                    n,
                    &[
                        ("mlsysops.anomaly.class", class.name()),
                        ("mlsysops.subject.kind", &kind),
                    ],
                );
            }
        },
    );
    otel.observe_u64(
        "mlsysops.agent.decisions",
        "Decisions the agents recorded since start, by policy and status as recorded",
        "{decision}",
        ObservableKind::Counter,
        |observe| {
            for (policy, status, n) in agents::decisions::recorded() {
                observe(n, &[("mlsysops.policy", &policy), ("mlsysops.decision.status", status)]);
            }
        },
    );
}

/// Logs to stderr, and exports spans over OTLP when `otel` has an endpoint.
fn init_logging(otel: Option<&Otel>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // s3s logs every client error (a 404 on HEAD included) at ERROR; our S3 layer
        // logs the failures that matter, so s3s stays quiet unless asked for.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel.and_then(Otel::tracing_layer))
        .init();
}

fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let (mut config, generated, settings, agent_settings) = config::resolve(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    rt.block_on(async move {
        let otel = Otel::init(OtelConfig {
            service_name: "mlsysops-gateway".into(),
            otlp_endpoint: settings.otlp_endpoint.clone(),
            export_interval: settings.otlp_interval,
            enabled: settings.enabled,
        })
        .context("setting up telemetry export")?;
        init_logging(Some(&otel));
        let telemetry = Arc::new(Telemetry::new(otel.clone(), settings.prefix_depth));
        config.telemetry = Some(telemetry);
        if let Some(endpoint) = &settings.otlp_endpoint {
            tracing::info!(%endpoint, interval = ?settings.otlp_interval, "exporting metrics and traces over OTLP");
        }
        let mut server = Server::start(&config).await.context("starting the gateway")?;
        let extender_stop = tokio_util::sync::CancellationToken::new();
        // The agents drive the gateway through its own admin API, as a separate agent would.
        let agents = if agent_settings.enabled {
            let client = control_api::Client::at(server.admin_addr()?, Some(config.admin.token.clone()))
                .context("the agents' client of the admin API")?;
            let running = agents::run::InProcess::start(
                &agent_settings.config,
                agents::gateway::Gateway::new(client),
                config.admin.token.as_str().into(),
            )
            .context("starting the agents")?;
            let mut running = running;
            server = server.with_admin_routes(running.router());
            trust::metrics::export(running.reputation(), &otel);
            export_agent_metrics(running.anomalies().clone(), &otel);
            if let Some(addr) = agent_settings.link_listen {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding agents.link_listen {addr}"))?;
                let bound = l.local_addr()?;
                running.accept_nodes(l).await.context("serving the agent link")?;
                println!("agent link: http://{bound}");
            }
            if let Some(addr) = agent_settings.extender_listen {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding agents.kubernetes.extender_listen {addr}"))?;
                println!("scheduler extender: http://{}{}", l.local_addr()?, agents::k8s::routes::PREFIX);
                let (router, limits, stop) = (running.extender(), config.limits.clone(), extender_stop.clone());
                tokio::spawn(async move {
                    storage_gateway::server::serve_router(l, router, &limits, stop.cancelled_owned()).await;
                });
            }
            if let Some(c) = agent_settings.controller.clone() {
                let client = agents::k8s::controller::default_client()
                    .await
                    .context("agents.kubernetes.controller")?;
                tracing::info!(namespace = %c.namespace, "nodeAffinity controller started");
                running.start_controller(client, c);
            }
            Some(running)
        } else {
            tracing::info!("agents off: storage policies change only when an operator changes them");
            None
        };
        let addr = server.local_addr()?;
        // Printed on stdout (not the log) so scripts can read the endpoint; the secret only
        // when it was just generated, and only here.
        println!("S3 endpoint: http://{addr}");
        println!("access key: {}", config.credentials.access_key);
        if generated.credentials {
            println!("secret key: {}", config.credentials.secret_key);
            println!("(generated; stored in {})", config.data_dir.join(config::CREDENTIALS_FILE).display());
        }
        println!("admin endpoint: http://{}", server.admin_addr()?);
        if generated.admin_token {
            println!("admin token: {}", config.admin.token);
            println!("(generated; stored in {})", config.data_dir.join(control_api::ADMIN_TOKEN_FILE).display());
        }
        tracing::info!(%addr, data_dir = %config.data_dir.display(), backends = config.backends.len(), policy = %config.default_policy, durability = %config.durability, "serving S3");
        server.serve(shutdown_signal()).await?;
        extender_stop.cancel();
        if let Some(a) = agents {
            a.stop().await;
        }
        // The last OTLP push: what happened since the previous one would be lost otherwise.
        otel.shutdown();
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
