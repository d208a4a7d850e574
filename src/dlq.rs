//! The dead-letter queue: look at what SQS gave up on, and move it back.
//! (`redrelay dlq` shows what these return.)

use crate::config::Config;
use anyhow::{Context, Result};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde::Serialize;

/// A message in the dead-letter queue, as `dlq list` shows it.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    /// How many times SQS delivered it (ApproximateReceiveCount).
    pub receive_count: Option<String>,
    /// When it was first sent (epoch milliseconds, as SQS says it).
    pub sent_at: Option<String>,
    pub body: String,
}

async fn dlq_url(sqs: &aws_sdk_sqs::Client, cfg: &Config) -> Result<String> {
    let name = cfg.dlq_name();
    let out = sqs
        .get_queue_url()
        .queue_name(&name)
        .send()
        .await
        .with_context(|| {
            format!("cannot find the dead-letter queue {name}: run `redrelay setup` first, or set dlq_name")
        })?;
    out.queue_url()
        .map(str::to_string)
        .context("GetQueueUrl answered no URL")
}

/// Receives up to `limit` messages, invisible for `hold_secs`.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    limit: usize,
    hold_secs: i32,
) -> Result<Vec<aws_sdk_sqs::types::Message>> {
    let mut out = Vec::new();
    while out.len() < limit {
        let batch = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages((limit - out.len()).min(10) as i32)
            .visibility_timeout(hold_secs)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .context("cannot receive from the dead-letter queue")?
            .messages
            .unwrap_or_default();
        if batch.is_empty() {
            break;
        }
        out.extend(batch);
    }
    Ok(out)
}

/// Up to `limit` messages of the dead-letter queue. They stay there,
/// visible again at once.
pub async fn list(
    sdk: &aws_config::SdkConfig,
    cfg: &Config,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = dlq_url(&sqs, cfg).await?;
    // Held for 30 s so one listing sees each message once; they stay
    // in the dead-letter queue.
    let messages = receive(&sqs, &url, limit, 30).await?;
    let letters: Vec<DeadLetter> = messages
        .iter()
        .map(|m| {
            let attr =
                |k: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&k)).cloned();
            DeadLetter {
                message_id: m.message_id().unwrap_or_default().to_string(),
                receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount),
                sent_at: attr(MessageSystemAttributeName::SentTimestamp),
                body: m.body().unwrap_or_default().to_string(),
            }
        })
        .collect();
    // Make them visible again at once.
    for m in &messages {
        if let Some(r) = m.receipt_handle() {
            let _ = sqs
                .change_message_visibility()
                .queue_url(&url)
                .receipt_handle(r)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }
    Ok(letters)
}

/// Moves up to `limit` messages from the dead-letter queue back to the
/// queue: how many were moved.
pub async fn redrive(sdk: &aws_config::SdkConfig, cfg: &Config, limit: usize) -> Result<usize> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = dlq_url(&sqs, cfg).await?;
    let queue = crate::setup::queue_url(&sqs, cfg).await?;
    let arn_check = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .context("cannot read the dead-letter queue")?;
    drop(arn_check);
    let messages = receive(&sqs, &url, limit, 60).await?;
    let mut moved = 0;
    for m in &messages {
        // Send first, then delete: a crash in between leaves a copy
        // in both queues, and the worker deduplicates it.
        sqs.send_message()
            .queue_url(&queue)
            .message_body(m.body().unwrap_or_default())
            .send()
            .await
            .context("cannot send a message back to the queue")?;
        if let Some(r) = m.receipt_handle() {
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(r)
                .send()
                .await
                .context("cannot delete a redriven message from the dead-letter queue")?;
        }
        moved += 1;
    }
    Ok(moved)
}
