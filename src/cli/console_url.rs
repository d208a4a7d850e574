//! `console-url`: the web console's address with the API token, for each
//! live worker with a listener.

use super::open_ledger;
use crate::api::access;
use crate::config::Config;
use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ConsoleUrlArgs {
    /// Carry the read-only token (api_read_token) instead of the full one:
    /// a console that shows everything and whose buttons are refused.
    #[arg(long)]
    pub read_only: bool,
}

pub(super) async fn run(cfg: &Config, args: ConsoleUrlArgs) -> Result<()> {
    let token = if args.read_only {
        match access::read_token(cfg)? {
            Some(t) => t,
            None => bail!(
                "no api_read_token is set: set api_read_token (REDRELAY_API_READ_TOKEN) or \
                 api_read_token_file, and restart the workers"
            ),
        }
    } else {
        match access::configured_token(cfg)? {
            Some(t) => t,
            None => {
                let path = cfg.api_token_path()?;
                match access::kept_token(&path)? {
                    Some(t) => t,
                    None => bail!(
                        "no api_token is set and {} does not exist: start `redrelay worker` \
                         (it makes the token and keeps it there), or point api_token_path \
                         (REDRELAY_API_TOKEN_PATH) at the worker's token file",
                        path.display()
                    ),
                }
            }
        }
    };
    let ledger = open_ledger(cfg).await?;
    let workers = ledger.workers(crate::worker::LIVE_MS).await?;
    ledger.close().await;
    let mut printed = 0;
    for w in &workers {
        let Some(listen) = w.listen.as_deref().filter(|l| !l.is_empty()) else {
            continue;
        };
        let addr: std::net::SocketAddr = listen.parse().with_context(|| {
            format!(
                "worker {} has a listen address that is not one: {listen:?}",
                w.id
            )
        })?;
        println!("{}", access::console_url(addr, &token));
        printed += 1;
    }
    if printed == 0 {
        bail!(
            "no live worker of this ledger has an HTTP listener ({} live): start `redrelay \
             worker` with `listen` set (the default is 127.0.0.1:9464)",
            workers.len()
        );
    }
    Ok(())
}
