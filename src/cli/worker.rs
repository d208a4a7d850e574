//! `worker`: consume completion events, fetch results, submit waiting jobs.

use super::open_ledger;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::dataapi::DataApi;
use crate::event::Origin;
use crate::worker::{self, Worker};
use anyhow::Result;
use clap::Args;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Exit 0 once no job is waiting, in flight or awaiting its results.
    #[arg(long)]
    pub until_idle: bool,
    /// Seconds to let in-flight work finish after SIGINT or SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
}

pub(super) async fn run(cfg: Config, args: WorkerArgs, shutdown: CancellationToken) -> Result<()> {
    let ledger = open_ledger(&cfg).await?;
    let sdk = crate::aws::sdk_config().await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = crate::setup::queue_url(&sqs, &cfg).await?;
    let origin = Origin {
        account: cfg.account.clone(),
        region: cfg
            .region
            .clone()
            .or_else(|| sdk.region().map(|r| r.to_string())),
    };
    let worker = Arc::new(Worker::new(
        ledger.clone(),
        DataApi::with_rate_scale(&sdk, cfg.api_rate_scale),
        sqs,
        aws_sdk_eventbridge::Client::new(&sdk),
        queue_url,
        cfg,
        origin,
        Arc::new(SystemClock),
    ));
    let res = worker
        .run(
            worker::Options {
                until_idle: args.until_idle,
                grace: Duration::from_secs(args.grace_secs),
            },
            shutdown,
        )
        .await;
    ledger.close().await;
    res
}
