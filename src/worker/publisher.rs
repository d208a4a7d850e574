//! The publisher: redrelay's own events ("Job State Change", "Run State
//! Change") from the ledger's outbox to EventBridge, on the leader, in
//! calls of at most 10 entries and 256 KB (PutEvents' limits), retried with
//! backoff: never lost, at least once. An entry the bus refuses for good is
//! set aside in the outbox with its reason and never blocks the others.
//! Each event's detail carries `event_id` for dedupe downstream.

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

    /// Publishes up to 100 pending events, in calls of at most 10 entries
    /// and [`MAX_CALL_BYTES`]. An entry the bus refuses for good is set
    /// aside with its reason; one that failed for now is retried on a
    /// later round; neither holds back the others. Returns how many were
    /// published; an error when the calls failed (the caller backs off).
    async fn publish_some(&self, events: &aws_sdk_eventbridge::Client) -> Result<usize> {
        let pending = self.ledger.outbox_pending(100).await?;
        let mut published = 0;
        let mut for_now = Vec::new();
        for chunk in calls(&pending, self.cfg.publish_source.len()) {
            // A round takes a while: a worker that stopped leading stops
            // here, so the new leader alone sends what is left (a send
            // whose answer was not recorded, by a death or a lost ledger,
            // is sent again: at least once, with the same event_id).
            if !self.is_leader() {
                break;
            }
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
            for (seq, entry) in seqs.iter().zip(out.entries()) {
                let Some(code) = entry.error_code() else {
                    ok.push(*seq);
                    continue;
                };
                let why = format!("{code}: {}", entry.error_message().unwrap_or("-"));
                if REFUSED.contains(&code) {
                    warn!(outbox_seq = seq, error = %why, "EventBridge refused one of redrelay's own events; it is set aside (the others go on).");
                    self.ledger
                        .outbox_refused(&[*seq], &why, self.clock.now_ms())
                        .await?;
                } else {
                    self.ledger.outbox_failed(&[*seq], &why).await?;
                    for_now.push(why);
                }
            }
            self.ledger
                .outbox_published(&ok, self.clock.now_ms())
                .await?;
            published += ok.len();
            debug!(events = ok.len(), "Published redrelay's own events.");
        }
        if published == 0 {
            if let Some(why) = for_now.first() {
                anyhow::bail!(
                    "EventBridge failed {} own events for now ({why}); they are retried",
                    for_now.len()
                );
            }
        }
        Ok(published)
    }
}

/// Per-entry error codes of PutEvents that say the entry itself is bad:
/// sending it again cannot succeed.
const REFUSED: [&str; 3] = ["MalformedDetail", "InvalidArgument", "ValidationException"];

/// PutEvents takes at most 10 entries and 256 KB in one call (source,
/// detail type and detail of every entry); a margin is kept.
const MAX_CALL_BYTES: usize = 250_000;

/// `pending` in calls of at most 10 entries and [`MAX_CALL_BYTES`] (an
/// entry larger than that alone goes in a call of its own, and the bus
/// says what it thinks of it).
fn calls(
    pending: &[(i64, String, String, String)],
    source_len: usize,
) -> Vec<&[(i64, String, String, String)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, _, detail_type, detail)) in pending.iter().enumerate() {
        let size = source_len + detail_type.len() + detail.len();
        if i > start && (i - start == 10 || bytes + size > MAX_CALL_BYTES) {
            out.push(&pending[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < pending.len() {
        out.push(&pending[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_hold_ten_entries_and_256_kb_at_most() {
        let row = |n: usize| {
            (
                0,
                String::new(),
                "Job State Change".to_string(),
                "x".repeat(n),
            )
        };
        let small: Vec<_> = (0..25).map(|_| row(100)).collect();
        let sizes: Vec<usize> = calls(&small, 8).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let big: Vec<_> = (0..4).map(|_| row(100_000)).collect();
        let sizes: Vec<usize> = calls(&big, 8).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2, 2]);
        assert!(calls(&[], 8).is_empty());
    }
}
