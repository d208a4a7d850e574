//! Heartbeat, the leader's lease, this worker's share of the Data API
//! quotas, and wake-ups from the ledger (PostgreSQL LISTEN/NOTIFY).

use super::*;

impl Worker {
    /// Whether this worker leads now (maintenance runs on the leader only).
    pub fn is_leader(&self) -> bool {
        let until = match self.leader_until.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        until.is_some_and(|t| std::time::Instant::now() < t)
    }

    pub(super) fn set_leader_until(&self, until: Option<std::time::Instant>) -> bool {
        let mut g = match self.leader_until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let was = g.is_some_and(|t| std::time::Instant::now() < t);
        *g = until;
        was
    }

    /// Heartbeat, leader's lease, and this worker's share of the Data API
    /// quotas. With SQLite the one worker is the leader.
    pub(super) async fn renew(&self) {
        self.lease().await;
        self.gauges().await;
    }

    async fn lease(&self) {
        let asked = std::time::Instant::now();
        if let Err(e) = self.ledger.heartbeat(&self.info).await {
            warn!(error = %e, "Cannot record this worker's heartbeat.");
        }
        let take = self.ledger.kind() == "sqlite";
        let ttl_ms = LEASE_TTL.as_millis() as i64;
        match self.ledger.try_lead(&self.info.id, ttl_ms, take).await {
            Ok(true) => {
                if !self.set_leader_until(Some(asked + LEASE_TTL - LEASE_MARGIN)) {
                    info!(worker = %self.info.id, "This worker is now the leader.");
                }
            }
            Ok(false) => {
                if self.set_leader_until(None) {
                    warn!(worker = %self.info.id, "This worker is no longer the leader.");
                }
            }
            // Keep what we had: it runs out by itself if renewals keep failing.
            Err(e) => warn!(error = %e, "Cannot renew the leader's lease."),
        }
        // One worker per SQLite file: a killed predecessor's heartbeat must
        // not shrink this one's share.
        if take {
            return;
        }
        match self.ledger.workers(LIVE_MS).await {
            Ok(ws) => self.data_api.set_share(ws.len().max(1)),
            Err(e) => warn!(error = %e, "Cannot count the live workers."),
        }
    }

    /// Gauges: leadership and statements in flight on every worker; jobs
    /// by state and the oldest in-flight age on the leader only.
    async fn gauges(&self) {
        let leader = self.is_leader();
        self.metrics.leader.set(i64::from(leader));
        if let Ok(n) = self.ledger.in_flight().await {
            self.metrics.in_flight.set(n);
        }
        if !leader {
            return;
        }
        match self.ledger.gauges().await {
            Ok((by_state, oldest)) => {
                for state in JobState::ALL {
                    let n = by_state
                        .iter()
                        .find(|(s, _)| *s == state)
                        .map_or(0, |(_, n)| *n);
                    self.metrics
                        .jobs
                        .get_or_create(&crate::metrics::StateLabel {
                            state: state.as_str(),
                        })
                        .set(n);
                }
                let age = oldest.map_or(0, |t| self.clock.now_ms() - t);
                self.metrics.oldest_in_flight.set(crate::metrics::secs(age));
            }
            Err(e) => warn!(error = %e, "Cannot count the jobs for the gauges."),
        }
    }

    pub(super) async fn lead_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
            self.renew().await;
        }
    }

    /// PostgreSQL: wakes the submitter when another process made jobs
    /// READY (LISTEN/NOTIFY). Polling stays: a lost notification costs at
    /// most one poll.
    pub(super) async fn listen_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let Some(pg) = self.ledger.postgres() else {
            stop.cancelled().await;
            return Ok(());
        };
        loop {
            match pg.listen_ready().await {
                Ok(mut listener) => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        n = listener.recv() => match n {
                            Ok(_) => self.submit_wake.notify_one(),
                            Err(e) => {
                                warn!(error = %e, "Lost the ledger's notifications; polling until they are back.");
                                break;
                            }
                        },
                    }
                },
                Err(e) => {
                    warn!(error = %e, "Cannot listen for the ledger's notifications; polling.")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
