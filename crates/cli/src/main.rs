//! `mlsysops`: wires configuration, logging and signals to the gateway library.

mod admin;
mod bench;
mod config;

use anyhow::Context;
use clap::{Parser, Subcommand};
use storage_gateway::server::Server;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // s3s logs every client error (a 404 on HEAD included) at ERROR; our S3 layer
                // logs the failures that matter, so s3s stays quiet unless asked for.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Bench(args) => bench::run(*args),
    }
}

fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let (config, generated) = config::resolve(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    rt.block_on(async move {
        let server = Server::start(&config).await.context("starting the gateway")?;
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
            println!("(generated; stored in {})", config.data_dir.join(config::ADMIN_TOKEN_FILE).display());
        }
        tracing::info!(%addr, data_dir = %config.data_dir.display(), backends = config.backends.len(), policy = %config.default_policy, "serving S3");
        server.serve(shutdown_signal()).await?;
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
