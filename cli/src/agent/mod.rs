//! `mlsysops agents`: the control plane's agents (tiers, health, last period, pending plans) and
//! their mode, through the northbound API.

mod format;

use crate::bucket::{explain, print_json, ConnArgs};
use clap::{Args, Subcommand, ValueEnum};
use control_api::{AgentMode, Client};
use format::format_agents;

/// `mlsysops agents` flags and subcommands (none: the table of agents).
#[derive(Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<AgentsCommand>,
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Switch between heuristics only and policies that may consult models.
    Mode {
        /// The new mode.
        #[arg(value_enum)]
        mode: ModeArg,
    },
}

/// `heuristic` or `ml`.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum ModeArg {
    /// Thresholds and rules only.
    Heuristic,
    /// Policies may consult models.
    Ml,
}

impl From<ModeArg> for AgentMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Heuristic => AgentMode::Heuristic,
            ModeArg::Ml => AgentMode::Ml,
        }
    }
}

/// Runs an agents command.
pub fn run(args: AgentsArgs) -> anyhow::Result<()> {
    crate::remote::run(&args.conn, |client| command(client, args.command, args.json))
}

async fn command(client: Client, command: Option<AgentsCommand>, json: bool) -> anyhow::Result<()> {
    let explain = explain(client.has_token());
    let view = match command {
        None => client.agents().await,
        Some(AgentsCommand::Mode { mode }) => client.set_agents_mode(mode.into()).await,
    }
    .map_err(explain)?;
    if json {
        return print_json(&view);
    }
    print!("{}", format_agents(&view));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: AgentsArgs,
    }

    fn parse(argv: &[&str]) -> Result<AgentsArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("agents").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn no_subcommand_lists_and_mode_takes_two_values() {
        let a = parse(&[]).unwrap();
        assert!(a.command.is_none() && !a.json);
        let a = parse(&["mode", "ml", "--json"]).unwrap();
        assert!(a.json);
        assert!(matches!(a.command, Some(AgentsCommand::Mode { mode: ModeArg::Ml })));
        assert_eq!(AgentMode::from(ModeArg::Heuristic), AgentMode::Heuristic);
        assert!(parse(&["mode", "fast"]).is_err());
        assert!(parse(&["mode"]).is_err());
    }
}
