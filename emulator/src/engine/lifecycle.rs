//! How statements end and are forgotten: WaitTimeSeconds, CancelStatement,
//! the retention sweep, and shutdown.

use super::*;

impl Engine {
    /// WaitTimeSeconds: returns once the statement (parent of `id`) has
    /// ended, or after `secs`. At most `max_waiting` calls wait on one
    /// statement (ActiveWaitingRequestsExceededException beyond).
    pub(crate) async fn wait_for_end(&self, id: &str, secs: Option<u64>) -> Result<(), ApiError> {
        let Some(secs) = secs else {
            return Ok(());
        };
        check_id(id)?;
        let parent = id.split_once(':').map_or(id, |(p, _)| p).to_string();
        {
            let mut store = lock(&self.store);
            find(&store, id)?;
            let n = store.waiting.entry(parent.clone()).or_insert(0);
            if *n >= self.cfg.max_waiting {
                return Err(ApiError {
                    kind: ErrorKind::ActiveWaitingRequestsExceeded,
                    message: format!(
                        "The number of active requests with WaitTimeSeconds for statement {parent} exceeds the limit ({}).",
                        self.cfg.max_waiting
                    ),
                    resource_id: None,
                });
            }
            *n += 1;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let notified = self.changed.notified();
            let ended = {
                let store = lock(&self.store);
                store
                    .statements
                    .get(&parent)
                    .is_none_or(|st| st.status.is_terminal())
            };
            if ended || tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let mut store = lock(&self.store);
        if let Some(n) = store.waiting.get_mut(&parent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                store.waiting.remove(&parent);
            }
        }
        Ok(())
    }

    /// CancelStatement.
    pub(crate) fn cancel(&self, id: &str) -> Result<Json, ApiError> {
        check_id(id)?;
        let abort_now = {
            let store = lock(&self.store);
            let st = store
                .statements
                .get(id)
                .ok_or_else(|| ApiError::not_found("Query does not exist.", id))?;
            if st.status.is_terminal() {
                return Err(ApiError::validation(format!(
                    "Could not cancel a query that is already in {} state.",
                    st.status.as_str()
                )));
            }
            if st.plan.uncancellable {
                // Committing: too late to stop it.
                return Ok(json!({ "Status": false }));
            }
            st.cancel.cancel();
            st.status == Status::Submitted
        };
        if abort_now {
            // Not picked up yet: it ends now, and its task will find it ended.
            self.finish(id, Outcome::Aborted { at: 0 });
        }
        Ok(json!({ "Status": true }))
    }

    /// Forgets ended statements past the result retention (AWS forgets
    /// them after 24 h), ClientTokens past theirs, and closes sessions past
    /// their keep-alive.
    pub(crate) fn sweep(&self) {
        let now = self.now();
        let mut store = lock(&self.store);
        let ttl = self.cfg.result_ttl_ms;
        let old: Vec<(u64, String)> = store
            .order
            .iter()
            .filter(|(_, id)| {
                store.statements.get(*id).is_some_and(|st| {
                    st.status.is_terminal()
                        && st.ended_ms.is_some_and(|e| now >= e.saturating_add(ttl))
                        && !store.waiting.contains_key(*id)
                })
            })
            .map(|(seq, id)| (*seq, id.clone()))
            .collect();
        for (seq, id) in &old {
            store.order.remove(seq);
            store.statements.remove(id);
            if store.forgotten.insert(id.clone()) {
                store.forgotten_order.push_back(id.clone());
            }
        }
        while store.forgotten_order.len() > FORGOTTEN_KEPT {
            if let Some(id) = store.forgotten_order.pop_front() {
                store.forgotten.remove(&id);
            }
        }
        let token_ttl = self.cfg.client_token_ttl_ms;
        store.tokens.retain(|_, (_, seen)| now - *seen < token_ttl);
        let closing = Self::close_idle_sessions(&mut store, now, ttl);
        let kept = store.statements.len();
        drop(store);
        for (sid, conn) in closing {
            tracing::info!(session_id = %sid, "Session closed after its keep-alive.");
            tokio::spawn(async move {
                if let Some(c) = conn.lock().await.take() {
                    c.close().await;
                }
            });
        }
        if !old.is_empty() {
            tracing::debug!(
                forgotten = old.len(),
                kept,
                "Ended statements past the result retention forgotten."
            );
        }
    }

    /// Cancels what still runs and waits (up to `grace`) for it to stop;
    /// records statements that never ended.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        {
            let store = lock(&self.store);
            for st in store.statements.values() {
                if !st.status.is_terminal() {
                    st.cancel.cancel();
                }
            }
        }
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.running.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!(
                running = self.running.load(Ordering::SeqCst),
                "Statements still running at shutdown."
            );
            let store = lock(&self.store);
            for st in store.statements.values() {
                if !st.status.is_terminal() {
                    self.recorder.write(&statement_line(st));
                }
            }
        }
    }
}
