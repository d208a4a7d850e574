//! The dead-letter queue: look at what SQS gave up on, and move it back.

use crate::cli::DlqCommand;
use crate::config::Config;
use anyhow::{Context, Result};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct DeadLetter {
    message_id: String,
    receive_count: Option<String>,
    sent_at: Option<String>,
    body: String,
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

pub async fn run(sdk: &aws_config::SdkConfig, cfg: &Config, cmd: DlqCommand) -> Result<()> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = dlq_url(&sqs, cfg).await?;
    match cmd {
        DlqCommand::List { limit, json } => {
            // Held for 30 s so one listing sees each message once; they stay
            // in the dead-letter queue.
            let messages = receive(&sqs, &url, limit, 30).await?;
            let letters: Vec<DeadLetter> = messages
                .iter()
                .map(|m| {
                    let attr = |k: MessageSystemAttributeName| {
                        m.attributes().and_then(|a| a.get(&k)).cloned()
                    };
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
            println!(
                "{moved} messages moved from {} back to {}",
                cfg.dlq_name(),
                cfg.queue_name
            );
        }
    }
    Ok(())
}
