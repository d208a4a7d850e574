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
    /// One rule per trigger, sending its events to the queue.
    pub trigger_rules: Vec<TriggerRule>,
}

#[derive(Debug, Serialize)]
pub struct TriggerRule {
    pub trigger: String,
    pub rule_name: String,
    pub rule_arn: String,
    pub event_pattern: serde_json::Value,
}

/// The name of a trigger's rule: the main rule's name, `-trigger-`, the
/// trigger's name (EventBridge allows 64 characters).
pub fn trigger_rule_name(cfg: &Config, trigger: &str) -> Result<String> {
    let name = format!("{}-trigger-{trigger}", cfg.rule_name);
    if name.len() > 64 {
        anyhow::bail!(
            "the EventBridge rule name {name:?} of trigger {trigger} is longer than 64 characters: \
             give the pipeline a shorter name, or shorten rule_name"
        );
    }
    Ok(name)
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

/// Creates or updates everything. `triggers`: each stored trigger's name
/// and event pattern; a rule of a trigger that is gone is deleted.
pub async fn run(
    sdk: &aws_config::SdkConfig,
    cfg: &Config,
    triggers: &[(String, serde_json::Value)],
) -> Result<SetupReport> {
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

    let mut trigger_rules = Vec::new();
    for (trigger, pattern) in triggers {
        let name = trigger_rule_name(cfg, trigger)?;
        let arn = put_rule_to_queue(
            &events,
            cfg,
            &name,
            pattern,
            &format!("Events that start redrelay's trigger {trigger}"),
            &queue_arn,
        )
        .await?;
        trigger_rules.push(TriggerRule {
            trigger: trigger.clone(),
            rule_name: name,
            rule_arn: arn,
            event_pattern: pattern.clone(),
        });
    }
    remove_stale_trigger_rules(&events, cfg, &trigger_rules).await?;

    // Only these rules may send to the queue.
    // One ARN as a string (as the CloudFormation stack writes it), several
    // as a list.
    let sources = if trigger_rules.is_empty() {
        serde_json::Value::from(rule_arn.clone())
    } else {
        let mut all = vec![serde_json::Value::from(rule_arn.clone())];
        all.extend(trigger_rules.iter().map(|r| r.rule_arn.clone().into()));
        serde_json::Value::Array(all)
    };
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowRedrelayRule",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": sources } }
        }]
    });
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .context("cannot set the queue policy")?;

    attach_queue(&events, cfg, &cfg.rule_name, &queue_arn).await?;

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
        trigger_rules,
    })
}

/// A rule on the configured bus with the queue as its target: its ARN.
async fn put_rule_to_queue(
    events: &aws_sdk_eventbridge::Client,
    cfg: &Config,
    name: &str,
    pattern: &serde_json::Value,
    description: &str,
    queue_arn: &str,
) -> Result<String> {
    let arn = events
        .put_rule()
        .name(name)
        .event_bus_name(&cfg.event_bus)
        .event_pattern(pattern.to_string())
        .state(aws_sdk_eventbridge::types::RuleState::Enabled)
        .description(description)
        .send()
        .await
        .with_context(|| format!("cannot create EventBridge rule {name}"))?
        .rule_arn()
        .map(str::to_string)
        .context("PutRule answered no rule ARN")?;
    attach_queue(events, cfg, name, queue_arn).await?;
    Ok(arn)
}

/// Makes the queue the target of rule `name`.
async fn attach_queue(
    events: &aws_sdk_eventbridge::Client,
    cfg: &Config,
    name: &str,
    queue_arn: &str,
) -> Result<()> {
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id(TARGET_ID)
        .arn(queue_arn)
        .build()
        .context("invalid EventBridge target")?;
    let out = events
        .put_targets()
        .rule(name)
        .event_bus_name(&cfg.event_bus)
        .targets(target)
        .send()
        .await
        .with_context(|| format!("cannot attach the queue to the rule {name}"))?;
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
    Ok(())
}

/// Deletes the rules of triggers that are gone (named like a trigger's
/// rule, not among `keep`).
async fn remove_stale_trigger_rules(
    events: &aws_sdk_eventbridge::Client,
    cfg: &Config,
    keep: &[TriggerRule],
) -> Result<()> {
    let prefix = format!("{}-trigger-", cfg.rule_name);
    let listed = events
        .list_rules()
        .name_prefix(&prefix)
        .event_bus_name(&cfg.event_bus)
        .send()
        .await
        .context("cannot list the EventBridge rules of triggers")?;
    for rule in listed.rules() {
        let Some(name) = rule.name() else { continue };
        if keep.iter().any(|k| k.rule_name == name) {
            continue;
        }
        events
            .remove_targets()
            .rule(name)
            .event_bus_name(&cfg.event_bus)
            .ids(TARGET_ID)
            .send()
            .await
            .with_context(|| format!("cannot remove the target of rule {name}"))?;
        events
            .delete_rule()
            .name(name)
            .event_bus_name(&cfg.event_bus)
            .send()
            .await
            .with_context(|| format!("cannot delete rule {name}"))?;
    }
    Ok(())
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
