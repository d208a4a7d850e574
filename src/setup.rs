//! `redrelay setup`: the queue, its dead-letter queue, the queue policy, the
//! EventBridge rule and its target, created idempotently, exactly as in AWS.

use crate::config::Config;
use crate::event::{DETAIL_TYPE, SOURCE};
use anyhow::{Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Serialize)]
pub struct SetupReport {
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
    pub rule_name: String,
    pub rule_arn: String,
    pub event_bus: String,
    pub event_pattern: serde_json::Value,
    pub target_id: String,
}

pub const TARGET_ID: &str = "redrelay-queue";

/// The rule's pattern: Redshift Data status changes of statements redrelay
/// named (`redrelay/...`), so other tools' statements never reach the queue.
pub fn event_pattern() -> serde_json::Value {
    serde_json::json!({
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPE],
        "detail": { "statementName": [{ "prefix": "redrelay/" }] }
    })
}

async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<(String, String)> {
    let url = match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => out.queue_url().map(str::to_string),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) =>
        {
            None
        }
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("cannot look up queue {name}"))
        }
    };
    let url = match url {
        Some(url) => {
            if !attributes.is_empty() {
                sqs.set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attributes))
                    .send()
                    .await
                    .with_context(|| format!("cannot set the attributes of queue {name}"))?;
            }
            url
        }
        None => sqs
            .create_queue()
            .queue_name(name)
            .set_attributes(Some(attributes))
            .send()
            .await
            .with_context(|| format!("cannot create queue {name}"))?
            .queue_url()
            .map(str::to_string)
            .context("CreateQueue answered no queue URL")?,
    };
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("cannot read the ARN of queue {name}"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("GetQueueAttributes answered no QueueArn")?;
    Ok((url, arn))
}

pub async fn run(sdk: &aws_config::SdkConfig, cfg: &Config) -> Result<SetupReport> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let events = aws_sdk_eventbridge::Client::new(sdk);

    let dlq_name = cfg.dlq_name();
    let (dlq_url, dlq_arn) = ensure_queue(
        &sqs,
        &dlq_name,
        HashMap::from([(QueueAttributeName::MessageRetentionPeriod, "1209600".into())]),
    )
    .await?;

    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": cfg.max_receive_count,
    });
    let (queue_url, queue_arn) = ensure_queue(
        &sqs,
        &cfg.queue_name,
        HashMap::from([
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (
                QueueAttributeName::VisibilityTimeout,
                cfg.visibility_timeout_secs.to_string(),
            ),
            (QueueAttributeName::MessageRetentionPeriod, "1209600".into()),
            (
                QueueAttributeName::ReceiveMessageWaitTimeSeconds,
                cfg.wait_time_secs.to_string(),
            ),
        ]),
    )
    .await?;

    let pattern = event_pattern();
    let rule_arn = events
        .put_rule()
        .name(&cfg.rule_name)
        .event_bus_name(&cfg.event_bus)
        .event_pattern(pattern.to_string())
        .state(aws_sdk_eventbridge::types::RuleState::Enabled)
        .description("Redshift Data API statement status changes for redrelay")
        .send()
        .await
        .with_context(|| format!("cannot create EventBridge rule {}", cfg.rule_name))?
        .rule_arn()
        .map(str::to_string)
        .context("PutRule answered no rule ARN")?;

    // Only this rule may send to the queue.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowRedrelayRule",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": rule_arn } }
        }]
    });
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .context("cannot set the queue policy")?;

    let target = aws_sdk_eventbridge::types::Target::builder()
        .id(TARGET_ID)
        .arn(&queue_arn)
        .build()
        .context("invalid EventBridge target")?;
    let out = events
        .put_targets()
        .rule(&cfg.rule_name)
        .event_bus_name(&cfg.event_bus)
        .targets(target)
        .send()
        .await
        .context("cannot attach the queue to the rule")?;
    if out.failed_entry_count() > 0 {
        let why: Vec<String> = out
            .failed_entries()
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.error_code().unwrap_or("?"),
                    e.error_message().unwrap_or("?")
                )
            })
            .collect();
        anyhow::bail!("PutTargets failed: {}", why.join("; "));
    }

    Ok(SetupReport {
        queue_url,
        queue_arn,
        dlq_url,
        dlq_arn,
        rule_name: cfg.rule_name.clone(),
        rule_arn,
        event_bus: cfg.event_bus.clone(),
        event_pattern: pattern,
        target_id: TARGET_ID.into(),
    })
}

/// The queue URL: `queue_url` from the configuration, else looked up by name.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, cfg: &Config) -> Result<String> {
    if let Some(url) = &cfg.queue_url {
        return Ok(url.clone());
    }
    let out = sqs
        .get_queue_url()
        .queue_name(&cfg.queue_name)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist())
            {
                anyhow::anyhow!(
                    "queue {} does not exist: run `redrelay setup` first, or set queue_url",
                    cfg.queue_name
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot look up queue {}", cfg.queue_name))
            }
        })?;
    out.queue_url()
        .map(str::to_string)
        .context("GetQueueUrl answered no URL")
}
