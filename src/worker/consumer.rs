//! The consumer: SQS long poll (10 per batch), one ledger transaction per
//! message, delete after commit; the batch kept invisible while handled.

use super::*;

/// Extends the visibility of received messages every half timeout, until
/// aborted.
async fn keep_invisible(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipts: Vec<String>,
    visibility_secs: u32,
) {
    let period = Duration::from_secs(u64::from(visibility_secs / 2).max(1));
    loop {
        tokio::time::sleep(period).await;
        for chunk in receipts.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(visibility_secs as i32)
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = sqs
                .change_message_visibility_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "Cannot extend the visibility of messages being handled.");
            }
        }
        debug!(
            messages = receipts.len(),
            "Extended the visibility of messages being handled."
        );
    }
}

impl Worker {
    pub(super) async fn consume(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let mut failures = 0u32;
        loop {
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(self.cfg.wait_time_secs as i32)
                .visibility_timeout(self.cfg.visibility_timeout_secs as i32)
                .send();
            tokio::pin!(receive);
            let out = tokio::select! {
                r = &mut receive => r,
                _ = stop.cancelled() => {
                    // SQS hands messages to a receive in flight even if its
                    // caller is gone: let it answer (within its long poll),
                    // and give back what it got at once, so that no event
                    // waits out the visibility timeout.
                    let bound = Duration::from_secs(u64::from(self.cfg.wait_time_secs) + 5);
                    if let Ok(Ok(out)) = tokio::time::timeout(bound, receive).await {
                        self.give_back(out.messages.unwrap_or_default()).await;
                    }
                    return Ok(());
                }
            };
            let messages = match out {
                Ok(out) => {
                    failures = 0;
                    let messages = out.messages.unwrap_or_default();
                    self.received_ok();
                    if messages.is_empty() {
                        self.first_receive.send_replace(true);
                    }
                    messages
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                        process_seed(),
                    );
                    warn!(
                        error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                        retry_in_ms = wait.as_millis() as u64,
                        "Cannot receive from the queue."
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            if messages.is_empty() {
                continue;
            }
            // While the batch is being handled, keep it invisible to other
            // consumers (a slow ledger or Data API must not let SQS hand the
            // same messages out again).
            let heartbeat = tokio::spawn(keep_invisible(
                self.sqs.clone(),
                self.queue_url.clone(),
                messages
                    .iter()
                    .filter_map(|m| m.receipt_handle().map(str::to_string))
                    .collect(),
                self.cfg.visibility_timeout_secs,
            ));
            let mut acks = Vec::new();
            for m in &messages {
                if self.handle(m).await {
                    if let Some(receipt) = m.receipt_handle() {
                        acks.push(receipt.to_string());
                    }
                }
            }
            heartbeat.abort();
            self.submit_wake.notify_one();
            self.fetch_wake.notify_one();
            self.delete(acks).await;
            self.first_receive.send_replace(true);
        }
    }

    /// Makes received messages visible again at once (a stop during a long
    /// poll): another consumer takes them.
    async fn give_back(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        match self
            .sqs
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(_) => info!(
                messages = messages.len(),
                "Stopping: gave back the messages of the last receive."
            ),
            Err(e) => {
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "Stopping: cannot give back received messages; they come back after the visibility timeout.")
            }
        }
    }

    /// Deletes acknowledged messages (after their ledger commit).
    pub(super) async fn delete(&self, receipts: Vec<String>) {
        for chunk in receipts.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .ok()
                })
                .collect();
            match self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) if !out.failed().is_empty() => warn!(
                    failed = out.failed().len(),
                    "Some messages could not be deleted; they will be received again and deduplicated."
                ),
                Ok(_) => {}
                Err(e) => warn!(
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                    "Cannot delete messages; they will be received again and deduplicated."
                ),
            }
        }
    }

    /// Records one message in the ledger. Returns whether to delete it from
    /// the queue. Never panics, whatever the body.
    pub(super) async fn handle(&self, m: &Message) -> bool {
        let body = m.body().unwrap_or_default();
        let message_id = m.message_id();
        let now = self.clock.now_ms();
        let ev = match event::parse(body, &self.origin) {
            Ok(ev) => ev,
            Err(rejection) => {
                // Not Redshift's: an event one of the triggers may take (its
                // envelope may differ, as moto's S3 `time`). Redshift's
                // events, the hot path, are parsed once.
                if matches!(
                    rejection,
                    event::Rejection::WrongSource(_) | event::Rejection::NotEnvelope(_)
                ) {
                    if let Some(ack) = self.take_trigger_event(body, message_id, now).await {
                        return ack;
                    }
                }
                let reason = rejection.to_string();
                warn!(message = message_id.unwrap_or("?"), %reason, "Quarantined a message that is not a valid event.");
                return match self.ledger.quarantine(message_id, body, &reason, now).await {
                    Ok(()) => {
                        self.count_event("quarantined");
                        self.cfg.on_invalid == OnReject::Ack
                    }
                    Err(e) => {
                        error!(error = %e, "Cannot record a quarantined message; leaving it on the queue.");
                        false
                    }
                };
            }
        };
        let sid = ev.detail.statement_id.clone();
        if let Some(sent) = ev
            .time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        {
            let lag = now - sent.as_millis() as i64;
            self.metrics.event_lag.observe(crate::metrics::secs(lag));
        }
        // The event carries no error text: ask for it, for our statements.
        let ours = match ev.detail.state {
            StatementState::Failed | StatementState::Aborted => {
                // Also before its statement id is recorded (the event raced
                // the submission's transaction): the error text is only
                // asked for here.
                match self.ledger.owns_event(&ev).await {
                    Ok(ours) => ours,
                    Err(e) => {
                        error!(statement = %sid, error = %e, "Cannot read the ledger; leaving the event on the queue.");
                        return false;
                    }
                }
            }
            _ => false,
        };
        let error = match ev.detail.state {
            StatementState::Failed | StatementState::Aborted if ours => {
                match self.data_api.describe(&sid).await {
                    Ok(d) => d.outcome().and_then(|o| match o {
                        Outcome::Failed { error } | Outcome::Aborted { error } => Some(error),
                        _ => None,
                    }),
                    Err(e) => {
                        warn!(statement = %sid, error = %e, "Cannot describe a failed statement; recording it without its error text.");
                        None
                    }
                }
            }
            _ => None,
        };
        match self
            .ledger
            .apply_event(&ev, error.as_deref(), message_id, body, now)
            .await
        {
            Ok((disposition, job)) => {
                self.count_event(disposition.as_str());
                match disposition {
                    Disposition::Applied => {
                        // Dependents released by this event are submitted
                        // now, not after the rest of the batch.
                        self.submit_wake.notify_one();
                        if let Ok(j) = self.ledger.job(job.unwrap_or_default()).await {
                            self.job_ended(&j);
                            info!(
                                job = j.id,
                                run = j.run_id.as_deref().unwrap_or("-"),
                                name = %j.name,
                                state = %j.state,
                                statement = %sid,
                                "Job {}.",
                                j.state
                            );
                        }
                    }
                    Disposition::Foreign => {
                        warn!(statement = %sid, "Recorded an event for a statement that is not ours (foreign).")
                    }
                    d => debug!(statement = %sid, disposition = d.as_str(), "Recorded an event."),
                }
                disposition != Disposition::Foreign || self.cfg.on_foreign == OnReject::Ack
            }
            Err(e) => {
                self.count_event("error");
                error!(statement = %sid, error = %e, "Cannot record an event; leaving it on the queue.");
                false
            }
        }
    }

    pub(super) fn count_event(&self, disposition: &str) {
        self.metrics
            .events_received
            .get_or_create(&crate::metrics::DispositionLabel {
                disposition: disposition.to_string(),
            })
            .inc();
    }

    /// A successful receive: for `/readyz` and its gauge.
    fn received_ok(&self) {
        let now = self.clock.now_ms();
        self.last_receive_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
        self.metrics.last_receive.set(now as f64 / 1000.0);
    }

    /// Metrics of an attempt's end applied by this worker.
    pub(super) fn job_ended(&self, j: &Job) {
        self.metrics.entered(j.state.as_str());
        if let (Some(s), Some(e)) = (
            j.submitted_at,
            j.finished_at.or(j.not_before.map(|_| self.clock.now_ms())),
        ) {
            self.metrics
                .job_run_time
                .observe(crate::metrics::secs(e - s));
        }
    }
}
