//! `mlsysops app`: MLSysOps applications (descriptors whose buckets become intents) through the
//! northbound API.

mod format;

use crate::bucket::{explain, print_json, ConnArgs};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use control_api::Client;
use format::{format_app, format_apps, format_removed};
use std::path::{Path, PathBuf};

/// `mlsysops app` flags and subcommands.
#[derive(Args)]
pub struct AppArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Subcommand)]
enum AppCommand {
    /// Deploy an application descriptor (MLSysOpsApp; FILE ends in .yaml, .yml or .json).
    Deploy(DeployArgs),
    /// List the deployed applications.
    #[command(alias = "ls")]
    List(JsonFlag),
    /// Show one application and its buckets' intents.
    Show(NameArgs),
    /// Remove an application (its buckets and their data stay).
    #[command(alias = "remove")]
    Rm(NameArgs),
}

#[derive(Args)]
struct DeployArgs {
    /// The descriptor.
    file: PathBuf,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct JsonFlag {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct NameArgs {
    /// The application's name.
    name: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs an app command.
pub fn run(args: AppArgs) -> anyhow::Result<()> {
    crate::remote::run(&args.conn, |client| command(client, args.command))
}

async fn command(client: Client, command: AppCommand) -> anyhow::Result<()> {
    let explain = explain(client.has_token());
    match command {
        AppCommand::Deploy(a) => {
            let content_type = content_type(&a.file)?;
            let body = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
            let app = client.deploy_app(body, content_type).await.map_err(explain)?;
            if a.json {
                return print_json(&app);
            }
            print!("deployed app {}\n{}", app.name, format_app(&app));
        }
        AppCommand::List(a) => {
            let apps = client.apps().await.map_err(explain)?;
            if a.json {
                // The raw answer's shape.
                return print_json(&control_api::AppsView { apps });
            }
            print!("{}", format_apps(&apps));
        }
        AppCommand::Show(a) => {
            let app = client.app(&a.name).await.map_err(explain)?;
            if a.json {
                return print_json(&app);
            }
            print!("{}", format_app(&app));
        }
        AppCommand::Rm(a) => {
            let app = client.remove_app(&a.name).await.map_err(explain)?;
            if a.json {
                return print_json(&app);
            }
            print!("{}", format_removed(&app));
        }
    }
    Ok(())
}

/// The media type of a descriptor, from its file name.
fn content_type(file: &Path) -> anyhow::Result<&'static str> {
    let ext = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("yaml" | "yml") => Ok("application/yaml"),
        Some("json") => Ok("application/json"),
        _ => bail!(
            "{}: cannot tell JSON from YAML by the name; it must end in .yaml, .yml or .json",
            file.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: AppArgs,
    }

    fn parse(argv: &[&str]) -> Result<AppArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("app").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn the_extension_chooses_the_content_type() {
        assert_eq!(content_type(Path::new("a.yaml")).unwrap(), "application/yaml");
        assert_eq!(content_type(Path::new("dir/a.YML")).unwrap(), "application/yaml");
        assert_eq!(content_type(Path::new("a.json")).unwrap(), "application/json");
        let err = content_type(Path::new("app.txt")).unwrap_err().to_string();
        assert!(err.starts_with("app.txt: cannot tell JSON from YAML"), "{err}");
        assert!(content_type(Path::new("yaml")).is_err());
    }

    #[test]
    fn subcommands_and_flags_parse() {
        assert!(matches!(
            parse(&["deploy", "a.yaml"]).unwrap().command,
            AppCommand::Deploy(DeployArgs { json: false, .. })
        ));
        assert!(matches!(
            parse(&["ls", "--json"]).unwrap().command,
            AppCommand::List(JsonFlag { json: true })
        ));
        assert!(matches!(
            parse(&["show", "photo-ai"]).unwrap().command,
            AppCommand::Show(NameArgs { .. })
        ));
        assert!(matches!(
            parse(&["remove", "photo-ai"]).unwrap().command,
            AppCommand::Rm(NameArgs { .. })
        ));
        let args = parse(&["rm", "x", "--admin-url", "http://h:1"]).unwrap();
        assert_eq!(args.conn.admin_url, "http://h:1");
        assert!(parse(&["deploy"]).is_err());
        assert!(parse(&["show"]).is_err());
    }
}
