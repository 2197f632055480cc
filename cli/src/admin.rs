//! `mlsysops admin`: offline maintenance commands on a stopped gateway's data dir.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use storage_gateway::crypto::{rotate, KeyRing};
use storage_gateway::meta::RocksStore;

/// Admin subcommands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Make a new master key active and rewrap every data key under it (no data is rewritten).
    RotateKey(RotateArgs),
}

/// `mlsysops admin rotate-key` flags.
#[derive(Args)]
pub struct RotateArgs {
    /// Data dir of the (stopped) gateway [default: ./data].
    #[arg(long, env = "MLSYSOPS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// After a complete rewrap, remove the old keys from the key file.
    #[arg(long)]
    retire_old: bool,
}

/// Runs an admin command.
pub fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::RotateKey(args) => rotate_key(args),
    }
}

fn rotate_key(args: RotateArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("data"));
    let meta_dir = data_dir.join("meta");
    if !meta_dir.is_dir() {
        bail!(
            "no metadata store at {}: is {} a gateway data dir?",
            meta_dir.display(),
            data_dir.display()
        );
    }
    // The store first: a running gateway holds its lock, and then nothing must change.
    let store = RocksStore::open(&meta_dir).map_err(|e| {
        let msg = e.to_string();
        if msg.to_ascii_lowercase().contains("lock") {
            anyhow::anyhow!(
                "the metadata store {} is locked by a running gateway: stop it before rotating keys ({msg})",
                meta_dir.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("opening {}", meta_dir.display()))
        }
    })?;
    let mut ring = match crate::config::master_keys_from_env()? {
        Some(ring) => {
            println!(
                "master keys from {}: rewrapping to its first key {:?}",
                storage_gateway::crypto::keys::KEY_ENV,
                ring.active()?.id
            );
            ring
        }
        None => {
            let path = data_dir.join(storage_gateway::crypto::keys::KEY_FILE);
            if !path.exists() {
                bail!(
                    "no master key file {}: nothing was ever encrypted with a master key here",
                    path.display()
                );
            }
            let (mut ring, _) = KeyRing::open(&data_dir, None, &store).context("loading the master keys")?;
            let old = ring.active()?.id.clone();
            let new = ring.add_active_key().context("adding a new master key")?.id.clone();
            println!(
                "new active master key {new:?} (was {old:?}); old keys stay in {} until the rewrap is complete",
                path.display()
            );
            ring
        }
    };
    let report = rotate::rewrap_all(&store, &ring).context("rewrapping data keys")?;
    println!(
        "rewrapped {} data keys ({} object manifests, {} multipart parts); {} already under the active key, {} SSE-C, {} unencrypted",
        report.keys_rewrapped, report.objects, report.parts, report.keys_current, report.customer_keys, report.plaintext
    );
    println!(
        "rewrapped {} copies of shard MAC keys ({} set records); {} already under the active key",
        report.mac_keys_rewrapped, report.sets, report.mac_keys_current
    );
    if !report.complete() {
        for f in &report.failures {
            eprintln!("not rewrapped: {f}");
        }
        bail!(
            "{} data keys could not be rewrapped; no key was retired ({})",
            report.failures.len(),
            ring.describe()
        );
    }
    if args.retire_old {
        if ring.is_file() {
            let retired = ring.retire_inactive().context("retiring old master keys")?;
            println!("retired master keys {retired:?}");
        } else {
            println!("keys come from the environment: drop the old keys from it yourself");
        }
    }
    Ok(())
}
