//! Sessions: the one a statement runs in (an existing one, made busy, or
//! a new one), closing idle ones after their keep-alive, and ListSessions.

use super::*;

impl Engine {
    /// The session statement `id` runs in and so its target and database:
    /// an existing AVAILABLE session (made BUSY), a new session (with
    /// SessionKeepAliveSeconds), or none (the request's own target).
    pub(super) fn session_for(
        &self,
        store: &mut Store,
        req: &ExecRequest,
        id: &str,
        now: i64,
    ) -> Result<(Target, String, Option<String>), ApiError> {
        let resolved = match &req.session {
            SessionUse::Existing {
                id: sid,
                keep_alive,
            } => {
                let session = store.sessions.get_mut(sid).ok_or_else(|| {
                    ApiError::not_found(format!("Session {sid} does not exist."), sid)
                })?;
                match session.status {
                    SessionStatus::Closed => {
                        return Err(ApiError::validation(format!(
                            "Session {sid} is closed: it ended after {} seconds without a statement.",
                            session.keep_alive_secs
                        )))
                    }
                    SessionStatus::Busy => {
                        return Err(ApiError::validation(format!(
                            "Session {sid} is busy running statement {}: a session runs one statement at a time.",
                            session.current.as_deref().unwrap_or("?")
                        )))
                    }
                    SessionStatus::Available => {}
                }
                if let Some(k) = keep_alive {
                    session.keep_alive_secs = *k;
                }
                session.status = SessionStatus::Busy;
                session.current = Some(id.to_string());
                session.expires_ms = None;
                session.updated_ms = now;
                (
                    session.target.clone(),
                    session.database.clone(),
                    Some(sid.clone()),
                )
            }
            other => {
                let (Some(target), Some(database)) = (req.target.clone(), req.database.clone())
                else {
                    return Err(ApiError::validation(
                        "Either ClusterIdentifier, WorkgroupName or SessionId must be specified, with a Database.",
                    ));
                };
                let session_id = match other {
                    SessionUse::New { keep_alive } => {
                        let sid = uuid::Uuid::new_v4().to_string();
                        store.next_seq += 1;
                        let seq = store.next_seq;
                        store.session_order.insert(seq, sid.clone());
                        store.sessions.insert(
                            sid.clone(),
                            Session {
                                id: sid.clone(),
                                target: target.clone(),
                                database: database.clone(),
                                db_user: req.db_user.clone(),
                                keep_alive_secs: *keep_alive,
                                status: SessionStatus::Busy,
                                created_ms: now,
                                updated_ms: now,
                                expires_ms: None,
                                current: Some(id.to_string()),
                                pid: self.next_pid.fetch_add(1, Ordering::Relaxed),
                                conn: Arc::new(tokio::sync::Mutex::new(None)),
                            },
                        );
                        Some(sid)
                    }
                    _ => None,
                };
                (target, database, session_id)
            }
        };
        Ok(resolved)
    }

    /// Closes the AVAILABLE sessions past their keep-alive and forgets the
    /// closed ones past the result retention; returns the connections to
    /// close (outside the store's lock).
    pub(super) fn close_idle_sessions(
        store: &mut Store,
        now: i64,
        ttl: i64,
    ) -> Vec<(String, SessionConn)> {
        let mut closing = Vec::new();
        for session in store.sessions.values_mut() {
            if session.status == SessionStatus::Available
                && session.expires_ms.is_some_and(|e| now >= e)
            {
                session.status = SessionStatus::Closed;
                session.updated_ms = now;
                closing.push((session.id.clone(), Arc::clone(&session.conn)));
            }
        }
        let gone: Vec<(u64, String)> = store
            .session_order
            .iter()
            .filter(|(_, sid)| {
                store.sessions.get(*sid).is_some_and(|s| {
                    s.status == SessionStatus::Closed && now >= s.updated_ms.saturating_add(ttl)
                })
            })
            .map(|(seq, sid)| (*seq, sid.clone()))
            .collect();
        for (seq, sid) in gone {
            store.session_order.remove(&seq);
            store.sessions.remove(&sid);
        }
        closing
    }

    /// ListSessions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn list_sessions(
        &self,
        session_id: Option<&str>,
        status: Option<&str>,
        max_results: Option<i64>,
        next_token: Option<&str>,
        cluster: Option<&str>,
        workgroup: Option<&str>,
        database: Option<&str>,
    ) -> Result<Json, ApiError> {
        if session_id.is_some() && (status.is_some() || cluster.is_some() || workgroup.is_some()) {
            return Err(ApiError::validation(
                "When SessionId is given, Status, ClusterIdentifier and WorkgroupName cannot be.",
            ));
        }
        if cluster.is_some() && workgroup.is_some() {
            return Err(ApiError::validation(
                "Specify at most one of ClusterIdentifier and WorkgroupName.",
            ));
        }
        let statuses: Vec<SessionStatus> = match status {
            None => vec![SessionStatus::Available, SessionStatus::Busy],
            Some("AVAILABLE") => vec![SessionStatus::Available],
            Some("BUSY") => vec![SessionStatus::Busy],
            Some("CLOSED") => vec![SessionStatus::Closed],
            Some(s) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{s}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [AVAILABLE, BUSY, CLOSED]"
                )))
            }
        };
        let max = page_limit(max_results, 100)?;
        let before = match next_token {
            None | Some("") => u64::MAX,
            Some(t) => t
                .strip_prefix("seq:")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| ApiError::validation("Invalid NextToken."))?,
        };
        let now = self.now();
        let store = lock(&self.store);
        let mut out = Vec::new();
        let mut next = None;
        for (seq, sid) in store.session_order.range(..before).rev() {
            let Some(s) = store.sessions.get(sid) else {
                continue;
            };
            let wanted = match session_id {
                Some(want) => want == s.id,
                None => {
                    statuses.contains(&s.status)
                        && cluster.is_none_or(|c| s.target == Target::Cluster(c.to_string()))
                        && workgroup.is_none_or(|w| s.target == Target::Workgroup(w.to_string()))
                        && database.is_none_or(|d| d == s.database)
                }
            };
            if !wanted {
                continue;
            }
            if out.len() == max {
                next = Some(format!("seq:{}", seq + 1));
                break;
            }
            let mut m = serde_json::Map::new();
            m.insert("SessionId".into(), json!(s.id));
            m.insert("Status".into(), json!(s.status.as_str()));
            m.insert("CreatedAt".into(), json!(secs(s.created_ms)));
            m.insert("UpdatedAt".into(), json!(secs(s.updated_ms)));
            m.insert("Database".into(), json!(s.database));
            put_target(&mut m, &s.target);
            if let Some(u) = &s.db_user {
                m.insert("DbUser".into(), json!(u));
            }
            m.insert("SessionAliveSeconds".into(), json!(s.keep_alive_secs));
            let ttl = match s.status {
                SessionStatus::Available => s.expires_ms,
                SessionStatus::Busy => Some(now.saturating_add(s.keep_alive_secs * 1000)),
                SessionStatus::Closed => Some(s.updated_ms),
            };
            if let Some(t) = ttl {
                m.insert("SessionTtl".into(), json!(secs(t)));
            }
            if let Some(c) = &s.current {
                m.insert("CurrentStatementId".into(), json!(c));
            }
            out.push(Json::Object(m));
        }
        let mut resp = json!({ "Sessions": out });
        if let (Some(t), Some(m)) = (next, resp.as_object_mut()) {
            m.insert("NextToken".into(), json!(t));
        }
        Ok(resp)
    }
}
