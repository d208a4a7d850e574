//! The publisher: redrelay's own events ("Job State Change", "Run State
//! Change") from the ledger's outbox to EventBridge, on the leader, in
//! batches of 10 (PutEvents' limit), retried with backoff: never lost, at
//! least once. Each event's detail carries `event_id` for dedupe downstream.

use super::*;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

impl Worker {
    pub(super) async fn publish_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let mut failures = 0u32;
        loop {
            let mut wait = Duration::from_millis(500);
            if self.is_leader() {
                match self.publish_some(&self.events).await {
                    Ok(n) if n > 0 => {
                        failures = 0;
                        wait = Duration::ZERO;
                    }
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        wait = backoff(
                            failures,
                            Duration::from_millis(500),
                            Duration::from_secs(60),
                            process_seed(),
                        );
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "Cannot publish redrelay's own events; they stay in the outbox.");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Publishes up to 100 pending events, 10 per PutEvents. Returns how
    /// many were published.
    async fn publish_some(&self, events: &aws_sdk_eventbridge::Client) -> Result<usize> {
        let pending = self.ledger.outbox_pending(100).await?;
        let mut published = 0;
        for chunk in pending.chunks(10) {
            let entries: Vec<PutEventsRequestEntry> = chunk
                .iter()
                .map(|(_, _, detail_type, detail)| {
                    PutEventsRequestEntry::builder()
                        .source(&self.cfg.publish_source)
                        .detail_type(detail_type)
                        .detail(detail)
                        .event_bus_name(&self.cfg.publish_bus)
                        .build()
                })
                .collect();
            let seqs: Vec<i64> = chunk.iter().map(|(seq, ..)| *seq).collect();
            let out = events.put_events().set_entries(Some(entries)).send().await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    let why = aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string();
                    self.ledger.outbox_failed(&seqs, &why).await?;
                    anyhow::bail!("PutEvents failed: {why}");
                }
            };
            // Entries answer in order; one with an error code failed alone.
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            for (seq, entry) in seqs.iter().zip(out.entries()) {
                match entry.error_code() {
                    None => ok.push(*seq),
                    Some(code) => failed.push((
                        *seq,
                        format!("{code}: {}", entry.error_message().unwrap_or("-")),
                    )),
                }
            }
            self.ledger
                .outbox_published(&ok, self.clock.now_ms())
                .await?;
            published += ok.len();
            if let Some((_, why)) = failed.first() {
                let seqs: Vec<i64> = failed.iter().map(|(s, _)| *s).collect();
                self.ledger.outbox_failed(&seqs, why).await?;
                anyhow::bail!(
                    "EventBridge refused {} of {} events: {why}",
                    failed.len(),
                    chunk.len()
                );
            }
            debug!(events = ok.len(), "Published redrelay's own events.");
        }
        Ok(published)
    }
}
