//! The registry of the ledger's tables: every table the migrations create,
//! with its columns and how `ledger migrate` treats it. Dump, restore,
//! counts and checksums read it; the conformance tests compare it with the
//! schema each backend's migrations build, so a table or column added
//! later without an entry here fails them (and cannot be forgotten by a
//! migration between ledgers).

/// One table of the ledger.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// The ORDER BY of a dump and of a checksum (the primary key).
    pub key: &'static str,
    /// An identity column, continued after a restore.
    pub identity: Option<&'static str>,
    /// `None`: copied by `ledger migrate`; `Some(why)`: not copied.
    pub not_copied: Option<&'static str>,
}

impl Table {
    /// The column list, comma separated.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn copied(&self) -> bool {
        self.not_copied.is_none()
    }
}

pub use super::driver::Kind;
use Kind::{Bool, Int, Json, Text};

/// Every table, in the order a restore writes them (parents first). The
/// change stream comes last: restoring the tables above fires its
/// triggers, whose rows the copy of the source's then replaces.
pub static TABLES: &[Table] = &[
    Table {
        name: "runs",
        columns: &[
            ("id", Text),
            ("pipeline", Text),
            ("state", Text),
            ("created_at", Int),
            ("finished_at", Int),
            ("schedule", Text),
            ("session_id", Text),
        ],
        key: "id",
        identity: None,
        not_copied: None,
    },
    Table {
        name: "jobs",
        columns: &[
            ("id", Int),
            ("uid", Text),
            ("run_id", Text),
            ("name", Text),
            ("sqls", Json),
            ("params", Json),
            ("workgroup", Text),
            ("cluster", Text),
            ("database", Text),
            ("db_user", Text),
            ("secret_arn", Text),
            ("state", Text),
            ("attempt", Int),
            ("max_attempts", Int),
            ("retry", Text),
            ("not_before", Int),
            ("timeout_secs", Int),
            ("statement_id", Text),
            ("rows", Int),
            ("error", Text),
            ("result_state", Text),
            ("result_rows", Int),
            ("result_path", Text),
            ("result_error", Text),
            ("created_at", Int),
            ("ready_at", Int),
            ("submitted_at", Int),
            ("finished_at", Int),
            ("timed_out_at", Int),
            ("expire_at", Int),
            ("first_row", Text),
            ("results_pruned_at", Int),
            ("fetch_by", Text),
            ("has_result_set", Bool),
            ("execution_mode", Text),
            ("result_formats", Text),
            ("session_keep_alive_secs", Int),
        ],
        key: "id",
        identity: Some("id"),
        not_copied: None,
    },
    Table {
        name: "job_deps",
        columns: &[("job_id", Int), ("depends_on", Int)],
        key: "job_id, depends_on",
        identity: None,
        not_copied: None,
    },
    Table {
        name: "attempts",
        columns: &[
            ("job_id", Int),
            ("attempt", Int),
            ("client_token", Text),
            ("statement_id", Text),
            ("state", Text),
            ("started_at", Int),
            ("submitted_at", Int),
            ("finished_at", Int),
            ("rows", Int),
            ("error", Text),
            ("claimed_by", Text),
        ],
        key: "job_id, attempt",
        identity: None,
        not_copied: None,
    },
    Table {
        name: "events",
        columns: &[
            ("seq", Int),
            ("event_id", Text),
            ("message_id", Text),
            ("received_at", Int),
            ("statement_id", Text),
            ("state", Text),
            ("job_id", Int),
            ("disposition", Text),
            ("reason", Text),
            ("body", Text),
            ("error", Text),
        ],
        key: "seq",
        identity: Some("seq"),
        not_copied: None,
    },
    Table {
        name: "results",
        columns: &[
            ("job_id", Int),
            ("sub", Int),
            ("statement_id", Text),
            ("rows", Int),
            ("csv_path", Text),
            ("jsonl_path", Text),
        ],
        key: "job_id, sub",
        identity: None,
        not_copied: None,
    },
    Table {
        name: "outbox",
        columns: &[
            ("seq", Int),
            ("event_id", Text),
            ("detail_type", Text),
            ("detail", Text),
            ("created_at", Int),
            ("published_at", Int),
            ("attempts", Int),
            ("last_error", Text),
            ("refused_at", Int),
        ],
        key: "seq",
        identity: Some("seq"),
        not_copied: None,
    },
    Table {
        name: "schedules",
        columns: &[
            ("name", Text),
            ("text", Text),
            ("sql_files", Text),
            ("paused", Bool),
            ("created_at", Int),
            ("updated_at", Int),
            ("effective_since", Int),
            ("last_fired_at", Int),
        ],
        key: "name",
        identity: None,
        not_copied: None,
    },
    Table {
        name: "schedule_fires",
        columns: &[
            ("schedule", Text),
            ("fire_time", Int),
            ("run_id", Text),
            ("note", Text),
            ("fired_at", Int),
        ],
        key: "schedule, fire_time",
        identity: None,
        not_copied: None,
    },
    Table {
        name: "triggers",
        columns: &[
            ("name", Text),
            ("text", Text),
            ("sql_files", Text),
            ("paused", Bool),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: "name",
        identity: None,
        not_copied: None,
    },
    Table {
        name: "trigger_events",
        columns: &[
            ("seq", Int),
            ("trigger", Text),
            ("dedupe_key", Text),
            ("event_id", Text),
            ("body", Text),
            ("params", Text),
            ("state", Text),
            ("run_id", Text),
            ("note", Text),
            ("received_at", Int),
            ("started_at", Int),
        ],
        key: "seq",
        identity: Some("seq"),
        not_copied: None,
    },
    Table {
        name: "changes",
        columns: &[
            ("seq", Int),
            ("kind", Text),
            ("job_id", Int),
            ("run_id", Text),
            ("state", Text),
            ("attempt", Int),
            ("result_state", Text),
            ("at", Int),
            ("xid", Int),
        ],
        key: "seq",
        identity: Some("seq"),
        not_copied: None,
    },
    Table {
        name: "workers",
        columns: &[
            ("id", Text),
            ("host", Text),
            ("pid", Int),
            ("started_at", Int),
            ("heartbeat_at", Int),
            ("listen", Text),
        ],
        key: "id",
        identity: None,
        not_copied: Some("the processes of the source ledger: the target's workers register"),
    },
    Table {
        name: "leases",
        columns: &[("name", Text), ("holder", Text), ("expires_at", Int)],
        key: "name",
        identity: None,
        not_copied: Some("the source's leader: the target's workers elect theirs"),
    },
];

/// The registry's entry of a table.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// Where a ledger's schema (as its migrations built it) and the registry
/// differ, one line each: a table or column missing from either side.
pub fn drift(schema: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut tables: Vec<&str> = schema.iter().map(|(t, _)| t.as_str()).collect();
    tables.dedup();
    for name in &tables {
        match table(name) {
            None => out.push(format!(
                "table {name} is not in the registry (src/ledger/tables.rs): add it"
            )),
            Some(t) => {
                let actual: Vec<&str> = schema
                    .iter()
                    .filter(|(tt, _)| tt == name)
                    .map(|(_, c)| c.as_str())
                    .collect();
                for (c, _) in t.columns {
                    if !actual.contains(c) {
                        out.push(format!(
                            "column {name}.{c} of the registry is not in the schema"
                        ));
                    }
                }
                for c in actual {
                    if !t.columns.iter().any(|(rc, _)| *rc == c) {
                        out.push(format!(
                            "column {name}.{c} is not in the registry (src/ledger/tables.rs): add it"
                        ));
                    }
                }
            }
        }
    }
    for t in TABLES {
        if !tables.contains(&t.name) {
            out.push(format!(
                "table {} of the registry is not in the schema",
                t.name
            ));
        }
    }
    out
}

impl super::Ledger {
    /// (table, column) of every table of this ledger, as its migrations
    /// built them.
    pub async fn schema(&self) -> super::Result<Vec<(String, String)>> {
        super::driver::query(self.pool.dialect().schema_columns)
            .fetch_all(&self.pool)
            .await
    }
}
