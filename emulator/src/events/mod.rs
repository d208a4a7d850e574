//! Publishes "Redshift Data Statement Status Change" events to EventBridge,
//! applying the event faults: drop, duplicate, delay, reorder. This module
//! decides what is sent and in which order, as groups of entries that stay
//! together (an event, its duplicate, and a held-back event released after
//! it); `putevents` sends the groups in batched, concurrent PutEvents calls.

mod putevents;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::{system_clock, Target};
use crate::faults::{Counters, Faults};
use crate::record::Recorder;
use putevents::{Group, Outbox, Outgoing};

/// The event's source, detail-type and detail, as AWS sends them (one
/// place, `redrelay-wire`: redrelay's parser checks the same).
use redrelay_wire::{Detail, StatementState, DETAIL_TYPE, SOURCE};

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

/// The `detail` JSON of an event.
pub(crate) fn detail_json(m: &EventMsg) -> String {
    let d = Detail {
        principal: Some(m.principal.clone()),
        statement_name: Some(m.statement_name.clone()),
        statement_id: m.statement_id.clone(),
        redshift_query_id: Some(m.redshift_query_id),
        state: StatementState::parse(m.state),
        rows: Some(m.rows),
        expire_at: Some(m.expire_at_s),
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
    let (out, sending) = putevents::spawn(account, Arc::clone(&faults), Arc::clone(&recorder));
    let publisher = Publisher {
        faults,
        recorder,
        out,
    };
    let handle = tokio::spawn(publisher.run(rx, stop, sending));
    (EventSender(tx), handle)
}

/// An event held back to be sent after the next one.
struct Held {
    msg: EventMsg,
    duplicate: bool,
    deadline: Instant,
}

/// Applies the event faults, in the order the events come.
struct Publisher {
    faults: Arc<Faults>,
    recorder: Arc<Recorder>,
    out: Outbox,
}

impl Publisher {
    async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<EventMsg>,
        stop: CancellationToken,
        sending: tokio::task::JoinHandle<()>,
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
                        self.release(h);
                    }
                    continue;
                }
                Some(_) = delayed.join_next(), if !delayed.is_empty() => continue,
            };
            let Some(m) = msg else {
                break;
            };
            self.handle(m, &mut held, &mut delayed);
        }
        // Shutting down: send what is queued, the held event, and wait for
        // the delayed ones, then for the calls in flight (the caller bounds
        // this with a grace period).
        while let Ok(m) = rx.try_recv() {
            self.handle(m, &mut held, &mut delayed);
        }
        if let Some(h) = held.take() {
            self.release(h);
        }
        while delayed.join_next().await.is_some() {}
        drop(self.out);
        if sending.await.is_err() {
            tracing::warn!("The PutEvents sender stopped abnormally.");
        }
    }

    fn handle(&self, m: EventMsg, held: &mut Option<Held>, delayed: &mut JoinSet<()>) {
        let plan = self.faults.plan_event();
        let counters = &self.faults.counters;
        if plan.drop {
            Counters::bump(&counters.events_dropped);
            tracing::info!(statement_id = %m.statement_id, state = m.state, "Fault injection: event dropped.");
            note(&self.recorder, &m, "dropped");
            return;
        }
        if plan.duplicate {
            Counters::bump(&counters.events_duplicated);
        }
        if let Some(ms) = plan.delay_ms {
            Counters::bump(&counters.events_delayed);
            tracing::info!(statement_id = %m.statement_id, delay_ms = ms, "Fault injection: event delayed.");
            note(&self.recorder, &m, "delayed");
            let out = self.out.clone();
            delayed.spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                out.send(copies(m, "sent", plan.duplicate));
            });
            return;
        }
        if plan.reorder && held.is_none() {
            Counters::bump(&counters.events_reordered);
            tracing::info!(statement_id = %m.statement_id, "Fault injection: event held back to be sent after the next one.");
            note(&self.recorder, &m, "reordered");
            let window = Duration::from_millis(self.faults.reorder_window_ms());
            *held = Some(Held {
                msg: m,
                duplicate: plan.duplicate,
                deadline: Instant::now() + window,
            });
            return;
        }
        // The event, its duplicate, then the held-back one: one group, so
        // one PutEvents call sends them in this order.
        let mut group = copies(m, "sent", plan.duplicate);
        if let Some(h) = held.take() {
            group.extend(copies(h.msg, "sent_late", h.duplicate));
        }
        self.out.send(group);
    }

    /// Sends a held-back event (and its duplicate, if it has one).
    fn release(&self, h: Held) {
        self.out.send(copies(h.msg, "sent_late", h.duplicate));
    }
}

/// An event to send as `action`, then its duplicate when it has one.
fn copies(m: EventMsg, action: &'static str, duplicate: bool) -> Group {
    let mut group = Vec::with_capacity(2);
    if duplicate {
        group.push(Outgoing {
            msg: m.clone(),
            action,
        });
        group.push(Outgoing {
            msg: m,
            action: "duplicate_sent",
        });
    } else {
        group.push(Outgoing { msg: m, action });
    }
    group
}

/// Writes what became of an event to the record.
fn note(recorder: &Recorder, m: &EventMsg, action: &str) {
    recorder.write(&json!({
        "kind": "event",
        "at_ms": system_clock(),
        "statement_id": m.statement_id,
        "state": m.state,
        "action": action,
    }));
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
