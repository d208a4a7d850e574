//! Sends events to EventBridge (PutEvents through the official SDK,
//! endpoint and region from the standard AWS configuration chain): up to
//! [`MAX_ENTRIES`] entries a call, [`CONCURRENT_CALLS`] calls at once, and
//! only the failed entries retried when a call fails in part.
//!
//! Batches form under load only: a group is sent at once while a call slot
//! is free; while every slot is busy, the groups that come meanwhile wait
//! and go together in the next call. A group (an event, its duplicate, a
//! held-back event released after it) is never split between calls, so its
//! entries arrive in its order; separate calls in flight at once may
//! overtake each other, as EventBridge itself promises no order.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eventbridge::types::{PutEventsRequestEntry, PutEventsResultEntry};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::{detail_json, note, resource_arn, EventMsg, DETAIL_TYPE, SOURCE};
use crate::faults::{Counters, Faults};
use crate::record::Recorder;

/// The most entries PutEvents takes in one call.
pub(super) const MAX_ENTRIES: usize = 10;
/// PutEvents calls in flight at once (moto answers one in about 25 ms).
pub(super) const CONCURRENT_CALLS: usize = 4;
/// PutEvents attempts per entry before giving up on it.
const PUT_ATTEMPTS: u32 = 4;

/// One entry to send, and what the record says once it is sent.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub msg: EventMsg,
    pub action: &'static str,
}

/// Entries that go in one call, in this order.
pub(super) type Group = Vec<Outgoing>;

/// Hands groups to the sender task; it stops once every `Outbox` is gone
/// and what they gave is sent.
#[derive(Clone)]
pub(super) struct Outbox(mpsc::UnboundedSender<Group>);

impl Outbox {
    pub(super) fn send(&self, group: Group) {
        if !group.is_empty() && self.0.send(group).is_err() {
            tracing::warn!("The PutEvents sender has stopped: an event is lost.");
        }
    }
}

/// Starts the sender task.
pub(super) fn spawn(
    account: String,
    faults: Arc<Faults>,
    recorder: Arc<Recorder>,
) -> (Outbox, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = Sender {
        account,
        faults,
        recorder,
        client: tokio::sync::OnceCell::new(),
    };
    (Outbox(tx), tokio::spawn(Arc::new(sender).run(rx)))
}

struct Sender {
    account: String,
    faults: Arc<Faults>,
    recorder: Arc<Recorder>,
    /// Built on first use, so that an emulator without WithEvent never
    /// looks for AWS configuration.
    client: tokio::sync::OnceCell<(aws_sdk_eventbridge::Client, String)>,
}

impl Sender {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Group>) {
        let slots = Arc::new(Semaphore::new(CONCURRENT_CALLS));
        let mut calls = JoinSet::new();
        let mut carry: Option<Group> = None;
        loop {
            let first = match carry.take() {
                Some(g) => g,
                None => match rx.recv().await {
                    Some(g) => g,
                    None => break,
                },
            };
            // A free slot first: while all are busy, what comes meanwhile
            // joins this batch.
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            carry = Some(first);
            let batch = fill_batch(&mut carry, &mut rx);
            let me = Arc::clone(&self);
            calls.spawn(async move {
                me.put(&batch).await;
                drop(slot);
            });
            while calls.try_join_next().is_some() {}
        }
        while calls.join_next().await.is_some() {}
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

    /// Sends a batch (in calls of at most MAX_ENTRIES), retrying only the
    /// entries that failed; logs and carries on when they keep failing.
    async fn put(&self, batch: &[Outgoing]) {
        for chunk in batch.chunks(MAX_ENTRIES) {
            self.put_chunk(chunk).await;
        }
    }

    async fn put_chunk(&self, batch: &[Outgoing]) {
        let (client, region) = self.client().await;
        let entries: Vec<PutEventsRequestEntry> = batch
            .iter()
            .map(|o| {
                PutEventsRequestEntry::builder()
                    .source(SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .resources(resource_arn(&o.msg.target, region, &self.account))
                    .detail(detail_json(&o.msg))
                    .build()
            })
            .collect();
        let mut todo: Vec<usize> = (0..batch.len()).collect();
        let mut errors = vec![String::new(); batch.len()];
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Counters::bump(&self.faults.counters.put_events_calls);
            let call = client
                .put_events()
                .set_entries(Some(todo.iter().map(|&i| entries[i].clone()).collect()))
                .send()
                .await;
            match call {
                Ok(out) => {
                    let failed =
                        failed_positions(out.entries(), todo.len(), out.failed_entry_count());
                    for (k, &i) in todo.iter().enumerate() {
                        match failed.iter().find(|(p, _)| *p == k) {
                            Some((_, e)) => errors[i].clone_from(e),
                            None => self.sent(&batch[i]),
                        }
                    }
                    todo = failed.iter().map(|(k, _)| todo[*k]).collect();
                }
                Err(e) => {
                    let e = aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string();
                    for &i in &todo {
                        errors[i].clone_from(&e);
                    }
                }
            }
            if todo.is_empty() {
                return;
            }
        }
        for i in todo {
            let m = &batch[i].msg;
            Counters::bump(&self.faults.counters.events_send_failed);
            note(&self.recorder, m, "send_failed");
            tracing::error!(
                statement_id = %m.statement_id,
                state = m.state,
                error = %errors[i],
                "Could not send the status change event to EventBridge; it is lost."
            );
        }
    }

    fn sent(&self, o: &Outgoing) {
        Counters::bump(&self.faults.counters.events_sent);
        tracing::debug!(statement_id = %o.msg.statement_id, state = o.msg.state, "Event sent.");
        note(&self.recorder, &o.msg, o.action);
    }
}

/// One batch: whole groups, in order, up to MAX_ENTRIES entries (a first
/// group is taken whole whatever its size); a group that does not fit is
/// left in `carry` for the next batch.
fn fill_batch(carry: &mut Option<Group>, rx: &mut mpsc::UnboundedReceiver<Group>) -> Vec<Outgoing> {
    let mut batch = Vec::new();
    loop {
        let group = match carry.take() {
            Some(g) => g,
            None => match rx.try_recv() {
                Ok(g) => g,
                Err(_) => break,
            },
        };
        if !batch.is_empty() && batch.len() + group.len() > MAX_ENTRIES {
            *carry = Some(group);
            break;
        }
        batch.extend(group);
        if batch.len() >= MAX_ENTRIES {
            break;
        }
    }
    batch
}

/// The positions (in the request) of the entries a PutEvents answer says
/// failed, with their errors. The answer has one result per entry, in
/// order; an entry without a result failed only if the answer counts
/// failures.
fn failed_positions(
    results: &[PutEventsResultEntry],
    sent: usize,
    failed_count: i32,
) -> Vec<(usize, String)> {
    (0..sent)
        .filter_map(|k| match results.get(k) {
            Some(r) if r.error_code().is_some() || r.error_message().is_some() => {
                let code = r.error_code().unwrap_or("");
                let message = r.error_message().unwrap_or("");
                Some((k, format!("{code}: {message}")))
            }
            Some(_) => None,
            None => (failed_count > 0).then(|| (k, "no result for the entry".to_string())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Target;

    fn group(n: usize, tag: &str) -> Group {
        (0..n)
            .map(|i| Outgoing {
                msg: EventMsg {
                    statement_id: format!("{tag}{i}"),
                    statement_name: String::new(),
                    redshift_query_id: 0,
                    state: "FINISHED",
                    rows: 0,
                    expire_at_s: 0,
                    target: Target::Workgroup("wg".into()),
                    principal: String::new(),
                },
                action: "sent",
            })
            .collect()
    }

    fn ids(batch: &[Outgoing]) -> Vec<&str> {
        batch.iter().map(|o| o.msg.statement_id.as_str()).collect()
    }

    #[test]
    fn batches_hold_whole_groups_in_order_up_to_ten() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (n, tag) in [(1, "a"), (2, "b"), (4, "c"), (4, "d"), (1, "e")] {
            tx.send(group(n, tag)).unwrap();
        }
        let mut carry = None;
        let first = fill_batch(&mut carry, &mut rx);
        assert_eq!(ids(&first), ["a0", "b0", "b1", "c0", "c1", "c2", "c3"]);
        assert!(carry.is_some(), "the group of four that does not fit waits");
        let second = fill_batch(&mut carry, &mut rx);
        assert_eq!(ids(&second), ["d0", "d1", "d2", "d3", "e0"]);
        assert!(fill_batch(&mut carry, &mut rx).is_empty());

        for i in 0..25 {
            tx.send(group(1, &format!("n{i}-"))).unwrap();
        }
        let sizes: Vec<usize> = (0..4)
            .map(|_| fill_batch(&mut carry, &mut rx).len())
            .collect();
        assert_eq!(sizes, [10, 10, 5, 0]);
    }

    #[test]
    fn only_failed_entries_are_retried() {
        let ok = PutEventsResultEntry::builder().event_id("e1").build();
        let bad = PutEventsResultEntry::builder()
            .error_code("InternalFailure")
            .error_message("try again")
            .build();
        let failed = failed_positions(&[ok.clone(), bad, ok], 3, 1);
        assert_eq!(failed, [(1, "InternalFailure: try again".to_string())]);
        assert!(failed_positions(&[], 2, 0).is_empty());
        assert_eq!(failed_positions(&[], 2, 2).len(), 2);
    }
}
