//! `dlq list|redrive`: the arguments; what they do is in `crate::dlq`.

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
