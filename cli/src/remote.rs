//! What every admin-API command family shares: a client from the connection flags, a runtime,
//! and failures printed as `error: ...` with exit status 1.

use crate::bucket::{connect, ConnArgs};
use anyhow::Context;
use control_api::Client;
use std::future::Future;

/// Runs `command` with a client of the admin API the flags describe; a failure prints
/// `error: ...` on stderr and exits with status 1.
pub(crate) fn run<F, Fut>(conn: &ConnArgs, command: F) -> anyhow::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let outcome = connect(conn).and_then(|client| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the Tokio runtime")?;
        rt.block_on(command(client))
    });
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
