//! Admission: ExecuteStatement / BatchExecuteStatement recorded and
//! started, after the API faults, the ClientToken (idempotency) and the
//! active-statement limit.

use super::*;

impl Engine {
    /// ExecuteStatement / BatchExecuteStatement: records the statement and
    /// starts it; answers with its id at once, or when it ends
    /// (WaitTimeSeconds).
    pub(crate) async fn execute(self: &Arc<Self>, req: ExecRequest) -> Result<Json, ApiError> {
        validate_request(&req)?;
        if let Some(arn) = &req.secret_arn {
            self.check_secret(arn).await?;
        }
        let wait = req.wait;
        let id = self.admit(req)?;
        if let Some(secs) = wait {
            self.wait_for_end(&id, Some(secs)).await?;
        }
        let store = lock(&self.store);
        let st = store
            .statements
            .get(&id)
            .ok_or_else(|| ApiError::not_found("Query does not exist.", &id))?;
        Ok(self.exec_output(&store, st))
    }

    /// Records a new statement and starts it (or finds the one its
    /// ClientToken names); returns its id.
    pub(super) fn admit(self: &Arc<Self>, req: ExecRequest) -> Result<String, ApiError> {
        let now = self.now();
        let mut store = lock(&self.store);
        // Random throttling happens in front of everything, like a gateway;
        // max_active is checked below, after the idempotency check, so that
        // a retried call of a statement already admitted is answered.
        let random_fault = self.faults.plan_api_random();
        if let Some((fault, message)) = random_fault {
            drop(store);
            self.recorder.write(&json!({
                "kind": "rejected", "at_ms": now, "error": api_fault_error(fault, message.clone()).kind.type_name(),
                "client_token": req.client_token, "statement_name": req.statement_name,
            }));
            return Err(api_fault_error(fault, message));
        }
        if let Some(token) = &req.client_token {
            if let Some((id, seen)) = store.tokens.get(token).cloned() {
                if now - seen < self.cfg.client_token_ttl_ms && store.statements.contains_key(&id) {
                    drop(store);
                    tracing::info!(statement_id = %id, "ClientToken seen before: the statement is not run again.");
                    self.recorder.write(&json!({
                        "kind": "replay", "at_ms": now, "client_token": token, "id": id,
                    }));
                    return Ok(id);
                }
            }
        }
        if let Some(max) = self.faults.config.api.max_active {
            if store.active >= max {
                drop(store);
                Counters::bump(&self.faults.counters.api_max_active_rejected);
                let err = ApiError {
                    kind: ErrorKind::ActiveStatementsExceeded,
                    message: format!("Active statements exceeded the allowed quota ({max})."),
                    resource_id: None,
                };
                self.recorder.write(&json!({
                    "kind": "rejected", "at_ms": now, "error": err.kind.type_name(),
                    "client_token": req.client_token, "statement_name": req.statement_name,
                }));
                return Err(err);
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        // The session the statement runs in, and so its target.
        let (target, database, session_id) = self.session_for(&mut store, &req, &id, now)?;
        let plan = self
            .faults
            .plan_statement(req.statement_name.as_deref(), &req.sqls);
        let subs = req
            .sqls
            .iter()
            .enumerate()
            .map(|(i, sql)| Sub {
                id: if req.is_batch {
                    format!("{id}:{}", i + 1)
                } else {
                    id.clone()
                },
                sql: sql.clone(),
                status: Status::Submitted,
                error: None,
                created_ms: now,
                updated_ms: now,
                started_ms: None,
                ended_ms: None,
                query_id: 0,
                query_uuid: uuid::Uuid::new_v4().to_string(),
                has_result_set: false,
                result_rows: -1,
                result_size: -1,
                result: None,
            })
            .collect();
        store.next_seq += 1;
        let seq = store.next_seq;
        if let Some(token) = &req.client_token {
            store.tokens.insert(token.clone(), (id.clone(), now));
        }
        let st = Statement {
            id: id.clone(),
            req,
            target,
            database,
            session_id,
            status: Status::Submitted,
            error: None,
            created_ms: now,
            updated_ms: now,
            started_ms: None,
            ended_ms: None,
            subs,
            cancel: CancellationToken::new(),
            plan,
        };
        tracing::info!(
            statement_id = %id,
            statement_name = st.req.statement_name.as_deref().unwrap_or(""),
            sqls = st.subs.len(),
            session = st.session_id.as_deref().unwrap_or(""),
            faults = !st.plan.is_empty(),
            "Statement submitted."
        );
        store.order.insert(seq, id.clone());
        store.statements.insert(id.clone(), st);
        store.active += 1;
        drop(store);
        self.running.fetch_add(1, Ordering::SeqCst);
        let engine = Arc::clone(self);
        let run_id = id.clone();
        tokio::spawn(async move {
            engine.run_statement(&run_id).await;
            if engine.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                engine.idle.notify_waiters();
            }
        });
        Ok(id)
    }
}
