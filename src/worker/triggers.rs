//! Triggers: events on the queue that are not Redshift's statement events
//! are matched against the stored triggers' patterns; each match is taken
//! once per (trigger, dedupe key) in the transaction that creates its run
//! (or records why it waits or was not started), before the message is
//! deleted. On the leader, the events that waited (a paused trigger that
//! was resumed, a trigger at its `max_active_runs`) start in their order.

use super::*;
use crate::ledger::{Admission, Taken, TakenEvent, TriggerRow};
use crate::trigger::{OnPause, Overlap, TriggerSpec};

/// A stored trigger, read back.
struct Stored {
    row: TriggerRow,
    pipeline: crate::pipeline::Pipeline,
    spec: TriggerSpec,
}

fn admission(spec: &TriggerSpec) -> Admission {
    let max_active = match spec.overlap {
        Overlap::Allow => None,
        Overlap::Queue => spec.max_active_runs.map(i64::from),
        Overlap::Skip => Some(i64::from(spec.max_active_runs.unwrap_or(1))),
    };
    Admission {
        max_active,
        skip_when_busy: spec.overlap == Overlap::Skip,
        drop_when_paused: spec.on_pause == OnPause::Drop,
        batch_window_ms: spec.batch_window_secs.map(|s| i64::from(s) * 1000),
    }
}

/// The run parameters of a batch: each parameter the JSON list of its
/// events' values (in the events' order).
fn batch_params(
    events: &[crate::ledger::TriggerEventRow],
) -> std::collections::BTreeMap<String, String> {
    let mut lists: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for ev in events {
        let params: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&ev.params).unwrap_or_default();
        for (k, v) in params {
            lists.entry(k).or_default().push(v);
        }
    }
    lists
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::from(v).to_string()))
        .collect()
}

impl Worker {
    /// The stored triggers that parse (one that no longer does is logged
    /// and passed over).
    async fn stored_triggers(&self) -> Result<Vec<Stored>> {
        let mut out = Vec::new();
        for row in self.ledger.triggers().await? {
            match crate::ops::trigger_pipeline(&row) {
                Ok(pipeline) => match pipeline.trigger.clone() {
                    Some(spec) => out.push(Stored {
                        row,
                        pipeline,
                        spec,
                    }),
                    None => {
                        warn!(trigger = %row.name, "A stored trigger has no [trigger] table; add it again.")
                    }
                },
                Err(e) => {
                    error!(trigger = %row.name, error = %crate::ops::error_text(&e), "A stored trigger does not parse; add it again.")
                }
            }
        }
        Ok(out)
    }

    /// Plans a run of `p` with `params`: its pipeline name and jobs, or why
    /// not.
    fn plan(
        &self,
        p: &crate::pipeline::Pipeline,
        params: &std::collections::BTreeMap<String, String>,
        now: i64,
    ) -> std::result::Result<Vec<crate::ledger::RunJob>, String> {
        let given: Vec<(String, String)> =
            params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let at = crate::clock::timestamp(now).map_err(|e| e.to_string())?;
        p.plan_run(&given, at, &self.cfg.default_target())
            .map_err(|e| e.to_string())
    }

    /// Takes a message that is an event of one or more triggers. `None`:
    /// it is no trigger's (Redshift's own events, anything that matches no
    /// pattern), for the caller to handle as before; `Some(ack)`: whether
    /// to delete it (every match recorded).
    pub(super) async fn take_trigger_event(
        &self,
        body: &str,
        message_id: Option<&str>,
        now: i64,
    ) -> Option<bool> {
        let event: serde_json::Value = serde_json::from_str(body).ok()?;
        if event.get("source").and_then(|s| s.as_str()) == Some(crate::event::SOURCE) {
            return None;
        }
        let triggers = match self.stored_triggers().await {
            Ok(t) => t,
            Err(e) => {
                error!(error = %e, "Cannot read the triggers; leaving the message on the queue.");
                return Some(false);
            }
        };
        let event_id = event.get("id").and_then(|v| v.as_str());
        let mut matched = false;
        let mut ack = true;
        for t in triggers.iter().filter(|t| t.spec.matches(&event)) {
            matched = true;
            let (params, dedupe_key, plan) = match t.spec.evaluate(&event) {
                Ok(ev) => {
                    let plan = self.plan(&t.pipeline, &ev.params, now);
                    (ev.params, ev.dedupe_key, plan)
                }
                Err(why) => {
                    // The error of this event, recorded once.
                    let key = match (event_id, message_id) {
                        (Some(id), _) => format!("id:{id}"),
                        (None, Some(m)) => format!("message:{m}"),
                        (None, None) => {
                            use sha2::Digest;
                            let d = sha2::Sha256::digest(body.as_bytes());
                            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
                            format!("body:{hex}")
                        }
                    };
                    (Default::default(), key, Err(why))
                }
            };
            let params_json = serde_json::to_string(&params).unwrap_or_else(|_| "{}".into());
            let taken = self
                .ledger
                .take_trigger_event(
                    TakenEvent {
                        trigger: &t.row.name,
                        dedupe_key: &dedupe_key,
                        event_id,
                        body,
                        params: &params_json,
                    },
                    match &plan {
                        Ok(jobs) => Ok((t.pipeline.name.as_str(), jobs.as_slice())),
                        Err(why) => Err(why.as_str()),
                    },
                    admission(&t.spec),
                    now,
                )
                .await;
            match taken {
                Ok(Taken::Started(run)) => {
                    info!(trigger = %t.row.name, run = %run, event = event_id.unwrap_or("-"), "Trigger started a run.");
                    self.count_event("triggered");
                    self.submit_wake.notify_one();
                }
                Ok(Taken::Waiting(why)) => {
                    info!(trigger = %t.row.name, event = event_id.unwrap_or("-"), %why, "Trigger event waits.")
                }
                Ok(Taken::NotStarted(why)) => {
                    warn!(trigger = %t.row.name, event = event_id.unwrap_or("-"), %why, "Trigger event not started.")
                }
                Ok(Taken::Duplicate(state, run)) => {
                    debug!(trigger = %t.row.name, event = event_id.unwrap_or("-"), %state, run = run.as_deref().unwrap_or("-"), "Trigger event taken before (duplicate).");
                    self.count_event("duplicate");
                }
                Ok(Taken::NoTrigger) => {}
                Err(e) => {
                    error!(trigger = %t.row.name, error = %e, "Cannot record a trigger event; leaving it on the queue.");
                    ack = false;
                }
            }
        }
        matched.then_some(ack)
    }

    /// On the leader: starts the events that wait, oldest first per
    /// trigger, while their triggers have room.
    pub(super) async fn start_waiting_trigger_events(&self) -> Result<()> {
        let triggers = self.stored_triggers().await?;
        loop {
            let waiting = self.ledger.next_waiting_trigger_events().await?;
            let mut started = 0;
            for ev in &waiting {
                let Some(t) = triggers.iter().find(|t| t.row.name == ev.trigger) else {
                    continue;
                };
                let now = self.clock.now_ms();
                let a = admission(&t.spec);
                if let Some(window) = a.batch_window_ms {
                    // One run for the events of the window the oldest opened,
                    // once it has closed.
                    if now < ev.received_at + window {
                        continue;
                    }
                    let batch = self
                        .ledger
                        .waiting_trigger_batch(&t.row.name, ev.received_at, ev.received_at + window)
                        .await?;
                    let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
                    let plan = self.plan(&t.pipeline, &batch_params(&batch), now);
                    let run = self
                        .ledger
                        .start_trigger_batch(
                            &t.row.name,
                            &seqs,
                            match &plan {
                                Ok(jobs) => Ok((t.pipeline.name.as_str(), jobs.as_slice())),
                                Err(why) => Err(why.as_str()),
                            },
                            a,
                            now,
                        )
                        .await?;
                    if let Some(run) = run {
                        info!(trigger = %t.row.name, run = %run, events = seqs.len(), "Trigger started a run for a batch of events.");
                        self.submit_wake.notify_one();
                        started += 1;
                    }
                    continue;
                }
                let params: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(&ev.params).unwrap_or_default();
                let plan = self.plan(&t.pipeline, &params, now);
                let run = self
                    .ledger
                    .start_waiting_trigger_event(
                        ev.seq,
                        match &plan {
                            Ok(jobs) => Ok((t.pipeline.name.as_str(), jobs.as_slice())),
                            Err(why) => Err(why.as_str()),
                        },
                        a,
                        now,
                    )
                    .await?;
                if let Some(run) = run {
                    info!(trigger = %t.row.name, run = %run, event = ev.event_id.as_deref().unwrap_or("-"), "Trigger started a run for an event that waited.");
                    self.submit_wake.notify_one();
                    started += 1;
                }
            }
            if started == 0 {
                return Ok(());
            }
        }
    }
}
