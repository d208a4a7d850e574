//! Execution: one statement (or batch) run on the warehouse or its
//! session's connection, its sub-statements marked as they go, and its end
//! recorded, evented and announced.

use super::*;

impl Engine {
    /// Runs one statement to its end.
    pub(super) async fn run_statement(self: &Arc<Self>, id: &str) {
        let Some((cancel, plan, sqls, params, mode, is_batch, session)) = ({
            let store = lock(&self.store);
            store.statements.get(id).map(|st| {
                (
                    st.cancel.clone(),
                    st.plan.clone(),
                    st.req.sqls.clone(),
                    st.req.params.clone(),
                    st.req.execution_mode,
                    st.req.is_batch,
                    st.session_id
                        .as_ref()
                        .and_then(|sid| store.sessions.get(sid))
                        .map(|s| Arc::clone(&s.conn)),
                )
            })
        }) else {
            return;
        };
        if plan.hold_ms > 0 {
            if !self.mark_started(id) {
                return;
            }
            Counters::bump(&self.faults.counters.statements_held);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(plan.hold_ms)) => {}
                _ = cancel.cancelled() => {
                    self.finish(id, Outcome::Aborted { at: 0 });
                    return;
                }
            }
        }
        let mut guard = match session {
            Some(slot) => ConnGuard::Session(slot.lock_owned().await),
            None => ConnGuard::Main(self.warehouse.lock().await),
        };
        let conn = match guard.conn(&self.warehouse_spec).await {
            Ok(c) => c,
            Err(error) => {
                self.finish(id, Outcome::Failed { at: 0, error });
                return;
            }
        };
        if cancel.is_cancelled() {
            self.finish(id, Outcome::Aborted { at: 0 });
            return;
        }
        if !self.mark_started(id) {
            return;
        }
        if let Some(error) = plan.fail {
            Counters::bump(&self.faults.counters.statements_failed);
            self.finish(id, Outcome::Failed { at: 0, error });
            return;
        }
        let run = Run {
            id,
            sqls: &sqls,
            params: &params,
            cancel: &cancel,
            inject_abort: plan.abort,
        };
        let outcome = if mode == ExecutionMode::AutoCommit && is_batch {
            self.run_auto_commit(conn, run).await
        } else {
            self.run_in_transaction(conn, run, is_batch).await
        };
        drop(guard);
        self.finish(id, outcome);
    }

    /// AUTO_COMMIT batch: each SQL in a transaction of its own; a failure
    /// is recorded on its sub-statement and the others still run.
    pub(super) async fn run_auto_commit(&self, conn: &mut Conn, run: Run<'_>) -> Outcome {
        let Run {
            id,
            sqls,
            params,
            cancel,
            inject_abort,
        } = run;
        conn.set_cancel(Some(cancel)).await;
        let mut first_error = None;
        for (i, sql) in sqls.iter().enumerate() {
            if cancel.is_cancelled() || (inject_abort && i + 1 == sqls.len()) {
                if inject_abort {
                    Counters::bump(&self.faults.counters.statements_aborted);
                }
                conn.set_cancel(None).await;
                return Outcome::Aborted { at: i };
            }
            let query_id = self.query_ids.fetch_add(1, Ordering::Relaxed);
            self.mark_sub_started(id, i, query_id);
            let ran = match conn.raw("BEGIN").await {
                Ok(()) => self.run_one(conn, sql, params, false).await,
                Err(e) => Err(e),
            };
            let ran = match ran {
                Ok(res) => conn.raw("COMMIT").await.map(|()| res),
                Err(e) => Err(e),
            };
            match ran {
                Ok(res) => self.mark_sub_done(id, i, res),
                Err(error) => {
                    let _ = conn.raw("ROLLBACK").await;
                    self.mark_sub_failed(id, i, &error);
                    first_error.get_or_insert(error);
                }
            }
        }
        conn.set_cancel(None).await;
        Outcome::AutoCommitted { first_error }
    }

    pub(super) async fn run_in_transaction(
        &self,
        conn: &mut Conn,
        run: Run<'_>,
        is_batch: bool,
    ) -> Outcome {
        let Run {
            id,
            sqls,
            params,
            cancel,
            inject_abort,
        } = run;
        if let Err(error) = conn.raw("BEGIN").await {
            return Outcome::Failed { at: 0, error };
        }
        conn.set_cancel(Some(cancel)).await;
        let mut outcome = Outcome::Finished;
        for (i, sql) in sqls.iter().enumerate() {
            if cancel.is_cancelled() {
                outcome = Outcome::Aborted { at: i };
                break;
            }
            let query_id = self.query_ids.fetch_add(1, Ordering::Relaxed);
            self.mark_sub_started(id, i, query_id);
            match self.run_one(conn, sql, params, is_batch).await {
                Ok(res) => self.mark_sub_done(id, i, res),
                Err(error) => {
                    outcome = if cancel.is_cancelled() {
                        Outcome::Aborted { at: i }
                    } else {
                        Outcome::Failed { at: i, error }
                    };
                    break;
                }
            }
        }
        if matches!(outcome, Outcome::Finished) && (inject_abort || cancel.is_cancelled()) {
            if inject_abort {
                Counters::bump(&self.faults.counters.statements_aborted);
            }
            outcome = Outcome::Aborted { at: sqls.len() };
        }
        if matches!(outcome, Outcome::Finished) {
            if let Err(error) = conn.raw("COMMIT").await {
                outcome = Outcome::Failed {
                    at: sqls.len().saturating_sub(1),
                    error,
                };
            }
        }
        if !matches!(outcome, Outcome::Finished) {
            // SQLite may have rolled back already (after an interrupt): an
            // error here only means there was nothing left to undo.
            let _ = conn.raw("ROLLBACK").await;
        }
        conn.set_cancel(None).await;
        outcome
    }

    /// Runs one SQL of a statement inside the open transaction:
    /// Redshift SQL translated for SQLite, or a plan of the engine's own
    /// (schemas, databases, COPY, UNLOAD).
    pub(super) async fn run_one(
        &self,
        conn: &mut Conn,
        sql_text: &str,
        params: &[(String, String)],
        in_transaction_block: bool,
    ) -> Result<SubResult, String> {
        let done = |rows: i64| SubResult {
            result: None,
            rows,
            size: 0,
        };
        match redshift::plan(sql_text, conn.backend(), params)? {
            Plan::Sql {
                sql,
                params: names,
                dml,
            } => conn.run(sql, &names, params, dml).await,
            Plan::CreateSchema {
                name,
                if_not_exists,
            } => {
                metadata::create_schema(conn, &name, if_not_exists).await?;
                Ok(done(0))
            }
            Plan::DropSchema {
                names,
                if_exists,
                cascade,
            } => {
                for name in names {
                    metadata::drop_schema(conn, &name, if_exists, cascade).await?;
                }
                Ok(done(0))
            }
            Plan::CreateDatabase { name } => {
                if in_transaction_block {
                    return Err(
                        "ERROR: CREATE DATABASE cannot run inside a transaction block".to_string(),
                    );
                }
                metadata::create_database(conn, &name).await?;
                Ok(done(0))
            }
            Plan::Copy(spec) => {
                let rows = s3io::copy(&self.outside.s3, conn, &spec).await?;
                Ok(done(rows))
            }
            Plan::Unload(spec) => {
                let rows = conn
                    .query_rows(spec.query.clone(), &spec.params, params)
                    .await?;
                let n = s3io::unload(&self.outside.s3, &spec, &rows).await?;
                Ok(done(n))
            }
        }
    }

    /// SUBMITTED -> STARTED; false when the statement already ended
    /// (cancelled while it waited).
    pub(super) fn mark_started(&self, id: &str) -> bool {
        let now = self.now();
        let mut store = lock(&self.store);
        let Some(st) = store.statements.get_mut(id) else {
            return false;
        };
        if st.status.is_terminal() {
            return false;
        }
        if st.status == Status::Submitted {
            st.status = Status::Started;
            st.started_ms = Some(now);
            st.updated_ms = now;
        }
        true
    }

    pub(super) fn mark_sub_started(&self, id: &str, i: usize, query_id: i64) {
        let now = self.now();
        let mut store = lock(&self.store);
        if let Some(sub) = store.statements.get_mut(id).and_then(|s| s.subs.get_mut(i)) {
            sub.status = Status::Started;
            sub.started_ms = Some(now);
            sub.updated_ms = now;
            sub.query_id = query_id;
        }
    }

    pub(super) fn mark_sub_done(&self, id: &str, i: usize, res: SubResult) {
        let now = self.now();
        let mut store = lock(&self.store);
        if let Some(st) = store.statements.get_mut(id) {
            let is_batch = st.req.is_batch;
            if let Some(sub) = st.subs.get_mut(i) {
                // A lone statement is FINISHED only once committed; a batch
                // reports each sub-statement as it completes.
                if is_batch {
                    sub.status = Status::Finished;
                    sub.ended_ms = Some(now);
                }
                sub.updated_ms = now;
                sub.has_result_set = res.result.is_some();
                sub.result_rows = res.rows;
                sub.result_size = res.size;
                sub.result = res.result.map(Arc::new);
            }
        }
    }

    /// A sub-statement of an AUTO_COMMIT batch failed (the others go on).
    pub(super) fn mark_sub_failed(&self, id: &str, i: usize, error: &str) {
        let now = self.now();
        let mut store = lock(&self.store);
        if let Some(sub) = store.statements.get_mut(id).and_then(|s| s.subs.get_mut(i)) {
            sub.status = Status::Failed;
            sub.error = Some(error.to_string());
            sub.ended_ms = Some(now);
            sub.updated_ms = now;
        }
    }

    /// Moves a statement to its terminal state (once), then records it and
    /// sends its event.
    pub(super) fn finish(&self, id: &str, outcome: Outcome) {
        let now = self.now();
        let (line, event) = {
            let mut store = lock(&self.store);
            let Some(st) = store.statements.get_mut(id) else {
                return;
            };
            if st.status.is_terminal() {
                return;
            }
            match outcome {
                Outcome::AutoCommitted { first_error } => {
                    st.status = if first_error.is_some() {
                        Status::Failed
                    } else {
                        Status::Finished
                    };
                    st.error = first_error;
                    for sub in &mut st.subs {
                        if !sub.status.is_terminal() {
                            sub.status = Status::Finished;
                            sub.ended_ms = Some(now);
                            sub.updated_ms = now;
                        }
                    }
                }
                Outcome::Finished => {
                    st.status = Status::Finished;
                    for sub in &mut st.subs {
                        if !sub.status.is_terminal() {
                            sub.status = Status::Finished;
                            sub.ended_ms = Some(now);
                            sub.updated_ms = now;
                        }
                    }
                }
                Outcome::Failed { at, error } => {
                    st.status = Status::Failed;
                    st.error = Some(error.clone());
                    for (i, sub) in st.subs.iter_mut().enumerate() {
                        if i == at {
                            sub.status = Status::Failed;
                            sub.error = Some(error.clone());
                            sub.result = None;
                            sub.has_result_set = false;
                            sub.result_rows = -1;
                            sub.result_size = -1;
                        } else if i > at || !sub.status.is_terminal() {
                            sub.status = Status::Aborted;
                        } else {
                            continue;
                        }
                        sub.ended_ms = Some(now);
                        sub.updated_ms = now;
                    }
                }
                Outcome::Aborted { at } => {
                    st.status = Status::Aborted;
                    st.error = Some("Query cancelled on user's request".to_string());
                    let is_batch = st.req.is_batch;
                    for (i, sub) in st.subs.iter_mut().enumerate() {
                        if !is_batch || i >= at || !sub.status.is_terminal() {
                            sub.status = Status::Aborted;
                            sub.result = None;
                            sub.has_result_set = false;
                            sub.result_rows = -1;
                            sub.result_size = -1;
                            sub.ended_ms = Some(now);
                            sub.updated_ms = now;
                        }
                    }
                }
            }
            st.ended_ms = Some(now);
            st.updated_ms = now;
            let line = statement_line(st);
            let event = st.req.with_event.then(|| EventMsg {
                statement_id: st.id.clone(),
                statement_name: st.req.statement_name.clone().unwrap_or_default(),
                redshift_query_id: st.query_id(),
                state: st.status.as_str(),
                rows: st.result_rows(),
                expire_at_s: (now + self.cfg.result_ttl_ms) / 1000,
                target: st.target.clone(),
                principal: format!("arn:aws:iam::{}:user/redrelay-emulator", self.cfg.account),
            });
            tracing::info!(
                statement_id = %st.id,
                state = st.status.as_str(),
                rows = st.result_rows(),
                error = st.error.as_deref().unwrap_or(""),
                "Statement ended."
            );
            let session_id = st.session_id.clone();
            store.active = store.active.saturating_sub(1);
            if let Some(session) = session_id.and_then(|sid| store.sessions.get_mut(&sid)) {
                if session.status == SessionStatus::Busy {
                    session.status = SessionStatus::Available;
                    session.current = None;
                    session.updated_ms = now;
                    session.expires_ms =
                        Some(now.saturating_add(session.keep_alive_secs.saturating_mul(1000)));
                }
            }
            (line, event)
        };
        self.changed.notify_waiters();
        self.recorder.write(&line);
        if let Some(event) = event {
            self.events.send(event);
        }
    }
}

/// The connection a statement runs on: the warehouse's own, or its
/// session's (opened on first use, so its temp tables are its own).
pub(super) enum ConnGuard<'a> {
    Main(tokio::sync::MutexGuard<'a, Conn>),
    Session(tokio::sync::OwnedMutexGuard<Option<Conn>>),
}

impl ConnGuard<'_> {
    async fn conn(&mut self, spec: &WarehouseSpec) -> Result<&mut Conn, String> {
        match self {
            ConnGuard::Main(c) => Ok(&mut **c),
            ConnGuard::Session(slot) => {
                if slot.is_none() {
                    let c = spec
                        .open()
                        .await
                        .map_err(|e| format!("ERROR: cannot open a session: {e:#}"))?;
                    **slot = Some(c);
                }
                slot.as_mut()
                    .ok_or_else(|| "ERROR: the session's connection is closed".to_string())
            }
        }
    }
}
