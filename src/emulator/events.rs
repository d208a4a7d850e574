//! Publishes "Redshift Data Statement Status Change" events to EventBridge
//! (PutEvents through the official SDK, endpoint and region from the
//! standard AWS configuration chain), applying the event faults: drop,
//! duplicate, delay, reorder.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::engine::{system_clock, Target};
use super::faults::{Counters, Faults};
use super::record::Recorder;

/// The event's source and detail-type, as AWS sends them (one place: the
/// parser checks the same).
pub(crate) use crate::event::{DETAIL_TYPE, SOURCE};
/// PutEvents attempts per event before giving up on it.
const PUT_ATTEMPTS: u32 = 4;

/// One completion to announce.
#[derive(Debug, Clone)]
pub(crate) struct EventMsg {
    pub statement_id: String,
    pub statement_name: String,
    pub redshift_query_id: i64,
    pub state: &'static str,
    pub rows: i64,
    pub expire_at_s: i64,
    pub target: Target,
    pub principal: String,
}

/// The event's `detail`, with the documented field names and order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    principal: &'a str,
    statement_name: &'a str,
    statement_id: &'a str,
    redshift_query_id: i64,
    state: &'a str,
    rows: i64,
    expire_at: i64,
}

/// The `detail` JSON of an event.
pub(crate) fn detail_json(m: &EventMsg) -> String {
    let d = Detail {
        principal: &m.principal,
        statement_name: &m.statement_name,
        statement_id: &m.statement_id,
        redshift_query_id: m.redshift_query_id,
        state: m.state,
        rows: m.rows,
        expire_at: m.expire_at_s,
    };
    // Serializing plain strings and integers cannot fail.
    serde_json::to_string(&d).unwrap_or_default()
}

/// The resource ARN of the statement's target.
pub(crate) fn resource_arn(target: &Target, region: &str, account: &str) -> String {
    match target {
        Target::Workgroup(w) => {
            format!("arn:aws:redshift-serverless:{region}:{account}:workgroup/{w}")
        }
        Target::Cluster(c) => format!("arn:aws:redshift:{region}:{account}:cluster:{c}"),
    }
}

/// Hands events to the publisher task.
#[derive(Clone)]
pub(crate) struct EventSender(mpsc::UnboundedSender<EventMsg>);

impl EventSender {
    pub(crate) fn send(&self, m: EventMsg) {
        if self.0.send(m).is_err() {
            tracing::warn!("The event publisher has stopped: an event is lost.");
        }
    }
}

/// Starts the publisher. It stops when `stop` is cancelled, after sending
/// what it was given (delayed events included).
pub(crate) fn spawn(
    account: String,
    faults: Arc<Faults>,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
) -> (EventSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let publisher = Publisher {
        account,
        faults,
        recorder,
        client: tokio::sync::OnceCell::new(),
    };
    let handle = tokio::spawn(Arc::new(publisher).run(rx, stop));
    (EventSender(tx), handle)
}

/// An event held back to be sent after the next one.
struct Held {
    msg: EventMsg,
    duplicate: bool,
    deadline: Instant,
}

struct Publisher {
    account: String,
    faults: Arc<Faults>,
    recorder: Arc<Recorder>,
    /// Built on first use, so that an emulator without WithEvent never
    /// looks for AWS configuration.
    client: tokio::sync::OnceCell<(aws_sdk_eventbridge::Client, String)>,
}

impl Publisher {
    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<EventMsg>,
        stop: CancellationToken,
    ) {
        let mut held: Option<Held> = None;
        let mut delayed = JoinSet::new();
        loop {
            let deadline = held.as_ref().map(|h| h.deadline);
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = stop.cancelled() => None,
                _ = sleep_until_opt(deadline) => {
                    if let Some(h) = held.take() {
                        self.release(h).await;
                    }
                    continue;
                }
                Some(_) = delayed.join_next(), if !delayed.is_empty() => continue,
            };
            let Some(m) = msg else {
                break;
            };
            self.handle(m, &mut held, &mut delayed).await;
        }
        // Shutting down: send what is queued, the held event, and wait for
        // the delayed ones (the caller bounds this with a grace period).
        while let Ok(m) = rx.try_recv() {
            self.handle(m, &mut held, &mut delayed).await;
        }
        if let Some(h) = held.take() {
            self.release(h).await;
        }
        while delayed.join_next().await.is_some() {}
    }

    async fn handle(
        self: &Arc<Self>,
        m: EventMsg,
        held: &mut Option<Held>,
        delayed: &mut JoinSet<()>,
    ) {
        let plan = self.faults.plan_event();
        let counters = &self.faults.counters;
        if plan.drop {
            Counters::bump(&counters.events_dropped);
            tracing::info!(statement_id = %m.statement_id, state = m.state, "Fault injection: event dropped.");
            self.note(&m, "dropped");
            return;
        }
        if plan.duplicate {
            Counters::bump(&counters.events_duplicated);
        }
        if let Some(ms) = plan.delay_ms {
            Counters::bump(&counters.events_delayed);
            tracing::info!(statement_id = %m.statement_id, delay_ms = ms, "Fault injection: event delayed.");
            self.note(&m, "delayed");
            let me = Arc::clone(self);
            delayed.spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                me.publish(&m, "sent").await;
                if plan.duplicate {
                    me.publish(&m, "duplicate_sent").await;
                }
            });
            return;
        }
        if plan.reorder && held.is_none() {
            Counters::bump(&counters.events_reordered);
            tracing::info!(statement_id = %m.statement_id, "Fault injection: event held back to be sent after the next one.");
            self.note(&m, "reordered");
            let window = Duration::from_millis(self.faults.reorder_window_ms());
            *held = Some(Held {
                msg: m,
                duplicate: plan.duplicate,
                deadline: Instant::now() + window,
            });
            return;
        }
        self.publish(&m, "sent").await;
        if plan.duplicate {
            self.publish(&m, "duplicate_sent").await;
        }
        if let Some(h) = held.take() {
            self.release(h).await;
        }
    }

    /// Sends a held-back event (and its duplicate, if it has one).
    async fn release(&self, h: Held) {
        self.publish(&h.msg, "sent_late").await;
        if h.duplicate {
            self.publish(&h.msg, "duplicate_sent").await;
        }
    }

    fn note(&self, m: &EventMsg, action: &str) {
        self.recorder.write(&json!({
            "kind": "event",
            "at_ms": system_clock(),
            "statement_id": m.statement_id,
            "state": m.state,
            "action": action,
        }));
    }

    async fn client(&self) -> &(aws_sdk_eventbridge::Client, String) {
        self.client
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                let region = config
                    .region()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "us-east-1".to_string());
                (aws_sdk_eventbridge::Client::new(&config), region)
            })
            .await
    }

    /// PutEvents with retries; logs and carries on when it keeps failing.
    async fn publish(&self, m: &EventMsg, action: &str) {
        let (client, region) = self.client().await;
        let entry = PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .resources(resource_arn(&m.target, region, &self.account))
            .detail(detail_json(m))
            .build();
        let mut last_error = String::new();
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            match client.put_events().entries(entry.clone()).send().await {
                Ok(out) if out.failed_entry_count() == 0 => {
                    Counters::bump(&self.faults.counters.events_sent);
                    tracing::debug!(statement_id = %m.statement_id, state = m.state, "Event sent.");
                    self.note(m, action);
                    return;
                }
                Ok(out) => {
                    last_error = out
                        .entries()
                        .iter()
                        .filter_map(|e| e.error_message().or(e.error_code()))
                        .collect::<Vec<_>>()
                        .join("; ");
                }
                Err(e) => {
                    last_error = aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string();
                }
            }
        }
        Counters::bump(&self.faults.counters.events_send_failed);
        self.note(m, "send_failed");
        tracing::error!(
            statement_id = %m.statement_id,
            state = m.state,
            error = %last_error,
            "Could not send the status change event to EventBridge; it is lost."
        );
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_has_the_documented_shape() {
        let m = EventMsg {
            statement_id: "dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a".into(),
            statement_name: "test.testtable".into(),
            redshift_query_id: -1,
            state: "FINISHED",
            rows: 1,
            expire_at_s: 1601673265,
            target: Target::Cluster("redshift-cluster-1".into()),
            principal: "arn:aws:iam::123456789012:user/myuser".into(),
        };
        // The fixture's detail, byte for byte.
        assert_eq!(
            detail_json(&m),
            r#"{"principal":"arn:aws:iam::123456789012:user/myuser","statementName":"test.testtable","statementId":"dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a","redshiftQueryId":-1,"state":"FINISHED","rows":1,"expireAt":1601673265}"#
        );
        assert_eq!(
            resource_arn(&m.target, "us-east-1", "123456789012"),
            "arn:aws:redshift:us-east-1:123456789012:cluster:redshift-cluster-1"
        );
        assert_eq!(
            resource_arn(&Target::Workgroup("wg".into()), "eu-west-1", "1"),
            "arn:aws:redshift-serverless:eu-west-1:1:workgroup/wg"
        );
    }
}
