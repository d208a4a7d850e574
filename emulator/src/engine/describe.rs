//! A statement as the API shows it: DescribeStatement, ListStatements,
//! the output of ExecuteStatement, and the record's statement line.

use super::*;

impl Engine {
    /// The process id a statement runs under: its session's, or the
    /// emulator's own for statements outside sessions.
    pub(super) fn pid_of(store: &Store, st: &Statement) -> i64 {
        st.session_id
            .as_ref()
            .and_then(|sid| store.sessions.get(sid))
            .map_or(i64::from(std::process::id()), |s| s.pid)
    }

    /// ExecuteStatement / BatchExecuteStatement output: every field of the
    /// model (Status, RedshiftPid, HasResultSet once ended, SessionId).
    pub(super) fn exec_output(&self, store: &Store, st: &Statement) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("Id".into(), json!(st.id));
        m.insert("CreatedAt".into(), json!(secs(st.created_ms)));
        m.insert("Database".into(), json!(st.database));
        put_target(&mut m, &st.target);
        if let Some(u) = &st.req.db_user {
            m.insert("DbUser".into(), json!(u));
        }
        put_secret_and_session(&mut m, st);
        m.insert("Status".into(), json!(st.status.as_str()));
        m.insert("RedshiftPid".into(), json!(Self::pid_of(store, st)));
        // Once ended, what the statement returned; before, what its text
        // says (a query returns rows), as the Data API answers at submission.
        let has_result_set = if st.status.is_terminal() {
            Some(st.subs.iter().any(|s| s.has_result_set))
        } else {
            st.subs
                .iter()
                .map(|s| super::redshift::returns_rows(&s.sql))
                .try_fold(false, |any, r| r.map(|r| any || r))
        };
        if let Some(has) = has_result_set {
            m.insert("HasResultSet".into(), json!(has));
        }
        Json::Object(m)
    }

    /// DescribeStatement (a parent id or a batch sub-statement id).
    pub(crate) fn describe(&self, id: &str) -> Result<Json, ApiError> {
        check_id(id)?;
        let now = self.now();
        let store = lock(&self.store);
        let (st, sub) = find(&store, id)?;
        let mut out = json!({});
        let put = |out: &mut Json, k: &str, v: Json| {
            if let Some(m) = out.as_object_mut() {
                m.insert(k.to_string(), v);
            }
        };
        match &st.target {
            Target::Workgroup(w) => put(&mut out, "WorkgroupName", json!(w)),
            Target::Cluster(c) => put(&mut out, "ClusterIdentifier", json!(c)),
        }
        put(&mut out, "Database", json!(st.database));
        if let Some(sid) = &st.session_id {
            put(&mut out, "SessionId", json!(sid));
        }
        if st.req.is_batch {
            put(
                &mut out,
                "ExecutionMode",
                json!(st.req.execution_mode.as_str()),
            );
        }
        if let Some(u) = &st.req.db_user {
            put(&mut out, "DbUser", json!(u));
        }
        if let Some(s) = &st.req.secret_arn {
            put(&mut out, "SecretArn", json!(s));
        }
        put(&mut out, "RedshiftPid", json!(Self::pid_of(&store, st)));
        put(
            &mut out,
            "ResultFormat",
            json!(st.req.result_format.as_str()),
        );
        if let Some(p) = st.query_parameters() {
            put(&mut out, "QueryParameters", p);
        }
        match sub {
            Some(i) => {
                let s = &st.subs[i];
                for (k, v) in sub_fields(s, now) {
                    put(&mut out, k, v);
                }
            }
            None if !st.req.is_batch => {
                for (k, v) in sub_fields(&st.subs[0], now) {
                    put(&mut out, k, v);
                }
                put(&mut out, "Status", json!(st.status.as_str()));
                put(&mut out, "CreatedAt", json!(secs(st.created_ms)));
                put(&mut out, "UpdatedAt", json!(secs(st.updated_ms)));
                put(
                    &mut out,
                    "Duration",
                    json!(duration_ns(st.started_ms, st.ended_ms, now)),
                );
                if let Some(e) = &st.error {
                    put(&mut out, "Error", json!(e));
                }
            }
            None => {
                put(&mut out, "Id", json!(st.id));
                put(&mut out, "Status", json!(st.status.as_str()));
                put(&mut out, "CreatedAt", json!(secs(st.created_ms)));
                put(&mut out, "UpdatedAt", json!(secs(st.updated_ms)));
                put(
                    &mut out,
                    "Duration",
                    json!(duration_ns(st.started_ms, st.ended_ms, now)),
                );
                put(&mut out, "QueryString", json!(st.req.sqls.join(";\n")));
                put(
                    &mut out,
                    "HasResultSet",
                    json!(st.subs.iter().any(|s| s.has_result_set)),
                );
                put(&mut out, "ResultRows", json!(st.result_rows()));
                put(&mut out, "ResultSize", json!(st.result_size()));
                put(&mut out, "RedshiftQueryId", json!(st.query_id()));
                if let Some(last) = st.subs.iter().rfind(|s| s.started_ms.is_some()) {
                    put(&mut out, "RedshiftQueryUuid", json!(last.query_uuid));
                }
                if let Some(e) = &st.error {
                    put(&mut out, "Error", json!(e));
                }
                let subs: Vec<Json> = st
                    .subs
                    .iter()
                    .map(|s| {
                        Json::Object(
                            sub_fields(s, now)
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect(),
                        )
                    })
                    .collect();
                put(&mut out, "SubStatements", Json::Array(subs));
            }
        }
        Ok(out)
    }

    /// ListStatements: parents, newest first.
    pub(crate) fn list(&self, q: &ListRequest) -> Result<Json, ApiError> {
        let statement_name = q.statement_name.as_deref();
        let database = q.database.as_deref();
        let cluster = q.cluster_identifier.as_deref();
        let workgroup = q.workgroup_name.as_deref();
        let max = page_limit(q.max_results, 100)?;
        let status = match q.status.as_deref() {
            None | Some("ALL") => None,
            Some(s @ ("SUBMITTED" | "PICKED" | "STARTED" | "FINISHED" | "ABORTED" | "FAILED")) => {
                Some(s)
            }
            Some(s) => return Err(ApiError::validation(format!("Invalid Status {s:?}."))),
        };
        let before = match q.next_token.as_deref() {
            None | Some("") => u64::MAX,
            Some(t) => t
                .strip_prefix("seq:")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| ApiError::validation("Invalid NextToken."))?,
        };
        let store = lock(&self.store);
        let mut out = Vec::new();
        let mut next = None;
        for (seq, id) in store.order.range(..before).rev() {
            let Some(st) = store.statements.get(id) else {
                continue;
            };
            if let Some(prefix) = statement_name {
                if !st
                    .req
                    .statement_name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with(prefix)
                {
                    continue;
                }
            }
            if status.is_some_and(|s| s != st.status.as_str()) {
                continue;
            }
            if database.is_some_and(|d| d != st.database) {
                continue;
            }
            if cluster.is_some_and(|c| st.target != Target::Cluster(c.to_string())) {
                continue;
            }
            if workgroup.is_some_and(|w| st.target != Target::Workgroup(w.to_string())) {
                continue;
            }
            if out.len() == max {
                next = Some(format!("seq:{}", seq + 1));
                break;
            }
            let mut item = json!({
                "Id": st.id,
                "Status": st.status.as_str(),
                "CreatedAt": secs(st.created_ms),
                "UpdatedAt": secs(st.updated_ms),
                "IsBatchStatement": st.req.is_batch,
                "ResultFormat": st.req.result_format.as_str(),
            });
            if let Some(m) = item.as_object_mut() {
                if st.req.is_batch {
                    m.insert("QueryStrings".into(), json!(st.req.sqls));
                } else {
                    m.insert("QueryString".into(), json!(st.req.sqls[0]));
                }
                if let Some(n) = &st.req.statement_name {
                    m.insert("StatementName".into(), json!(n));
                }
                put_secret_and_session(m, st);
                if let Some(p) = st.query_parameters() {
                    m.insert("QueryParameters".into(), p);
                }
            }
            out.push(item);
        }
        let mut resp = json!({ "Statements": out });
        if let (Some(t), Some(m)) = (next, resp.as_object_mut()) {
            m.insert("NextToken".into(), json!(t));
        }
        Ok(resp)
    }
}

/// SecretArn and SessionId, when the statement has them.
pub(super) fn put_secret_and_session(m: &mut serde_json::Map<String, Json>, st: &Statement) {
    if let Some(s) = &st.req.secret_arn {
        m.insert("SecretArn".into(), json!(s));
    }
    if let Some(sid) = &st.session_id {
        m.insert("SessionId".into(), json!(sid));
    }
}

/// The target fields every answer about a statement or session carries.
pub(super) fn put_target(m: &mut serde_json::Map<String, Json>, target: &Target) {
    match target {
        Target::Workgroup(w) => m.insert("WorkgroupName".into(), json!(w)),
        Target::Cluster(c) => m.insert("ClusterIdentifier".into(), json!(c)),
    };
}

pub(super) fn statement_line(st: &Statement) -> Json {
    json!({
        "kind": "statement",
        "id": st.id,
        "client_token": st.req.client_token,
        "statement_name": st.req.statement_name,
        "sqls": st.req.sqls,
        "is_batch": st.req.is_batch,
        "state": st.status.as_str(),
        "error": st.error,
        "rows": st.result_rows(),
        "with_event": st.req.with_event,
        "faults": st.plan,
        "created_ms": st.created_ms,
        "started_ms": st.started_ms,
        "ended_ms": st.ended_ms,
        "session_id": st.session_id,
    })
}

pub(super) fn duration_ns(started: Option<i64>, ended: Option<i64>, now: i64) -> i64 {
    match started {
        Some(s) => ended
            .unwrap_or(now)
            .saturating_sub(s)
            .saturating_mul(1_000_000),
        None => 0,
    }
}

pub(super) fn sub_fields(s: &Sub, now: i64) -> Vec<(&'static str, Json)> {
    let mut v = vec![
        ("Id", json!(s.id)),
        ("Status", json!(s.status.as_str())),
        ("CreatedAt", json!(secs(s.created_ms))),
        ("UpdatedAt", json!(secs(s.updated_ms))),
        (
            "Duration",
            json!(duration_ns(s.started_ms, s.ended_ms, now)),
        ),
        ("QueryString", json!(s.sql)),
        ("HasResultSet", json!(s.has_result_set)),
        ("ResultRows", json!(s.result_rows)),
        ("ResultSize", json!(s.result_size)),
        ("RedshiftQueryId", json!(s.query_id)),
        ("RedshiftQueryUuid", json!(s.query_uuid)),
    ];
    if let Some(e) = &s.error {
        v.push(("Error", json!(e)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_nanoseconds() {
        assert_eq!(duration_ns(Some(1000), Some(1250), 0), 250_000_000);
        assert_eq!(duration_ns(None, None, 5), 0);
    }
}
