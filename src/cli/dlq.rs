//! `dlq list|redrive`: the arguments and the output; the SQS calls are in
//! `crate::dlq`.

use crate::config::Config;
use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the messages in the dead-letter queue (they stay there).
    List {
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Move messages from the dead-letter queue back to the queue.
    Redrive {
        /// At most this many messages.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

pub(super) async fn run(cfg: &Config, cmd: DlqCommand) -> Result<()> {
    let sdk = crate::aws::sdk_config().await?;
    match cmd {
        DlqCommand::List { limit, json } => {
            let letters = crate::dlq::list(&sdk, cfg, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                println!("{} messages in {}", letters.len(), cfg.dlq_name());
                for l in letters {
                    let mut body: String = l.body.chars().take(120).collect();
                    if body.len() < l.body.len() {
                        body.push('…');
                    }
                    println!(
                        "{}  received {}x  {}",
                        l.message_id,
                        l.receive_count.unwrap_or_else(|| "?".into()),
                        body.replace('\n', " ")
                    );
                }
            }
        }
        DlqCommand::Redrive { limit } => {
            let moved = crate::dlq::redrive(&sdk, cfg, limit).await?;
            println!(
                "{moved} messages moved from {} back to {}",
                cfg.dlq_name(),
                cfg.queue_name
            );
        }
    }
    Ok(())
}
