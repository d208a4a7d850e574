//! Dump and restore for `ledger migrate`, table by table from the registry
//! ([`super::tables`]), with each table's rows counted and checksummed so
//! that a copy can be compared with its source.

use super::driver::{query, Value};
use super::tables::{Table, TABLES};
use super::{Dump, Ledger, Result, TableSummary};
use sha2::{Digest, Sha256};

impl Ledger {
    /// Every row of every table the registry copies, in key order.
    pub async fn dump(&self) -> Result<Dump> {
        let mut tables = Vec::new();
        for table in TABLES.iter().filter(|t| t.copied()) {
            tables.push((table, self.rows_of(table).await?));
        }
        Ok(Dump { tables })
    }

    async fn rows_of(&self, table: &Table) -> Result<Vec<Vec<Value>>> {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            table.column_list(),
            table.name,
            table.key
        );
        let kinds: Vec<_> = table.columns.iter().map(|(_, k)| *k).collect();
        query(sql).fetch_values(&self.pool, &kinds).await
    }

    /// Writes a dump into this (empty) ledger in one transaction, ids kept:
    /// the change rows the triggers write meanwhile are replaced by the
    /// source's, and identity columns continue after the copied ids.
    pub async fn restore(&self, dump: &Dump) -> Result<()> {
        let mut tx = self.begin().await?;
        let overriding = tx.dialect().overriding_identity;
        for (table, rows) in &dump.tables {
            if table.name == "changes" {
                query("DELETE FROM changes").execute(&mut tx).await?;
            }
            let marks: Vec<String> = (1..=table.columns.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO {} ({}){} VALUES ({})",
                table.name,
                table.column_list(),
                if table.identity.is_some() {
                    overriding
                } else {
                    ""
                },
                marks.join(", ")
            );
            for row in rows {
                let mut q = query(sql.as_str());
                for v in row {
                    q = q.bind(v.clone());
                }
                q.execute(&mut tx).await?;
            }
            if let Some(column) = table.identity {
                tx.continue_identity(table.name, column).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Rows per copied table (a migration's target must have none).
    pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for table in TABLES.iter().filter(|t| t.copied()) {
            let n: i64 = query(format!("SELECT COUNT(*) FROM {}", table.name))
                .scalar(&self.pool)
                .await?;
            out.push((table.name.to_string(), n));
        }
        Ok(out)
    }

    /// Each copied table's row count and a checksum of its rows (SHA-256
    /// over every value in key order, JSON with sorted keys): equal on two
    /// ledgers exactly when they hold the same rows.
    pub async fn summaries(&self) -> Result<Vec<TableSummary>> {
        let mut out = Vec::new();
        for table in TABLES.iter().filter(|t| t.copied()) {
            let rows = self.rows_of(table).await?;
            let mut hash = Sha256::new();
            for row in &rows {
                for v in row {
                    hash.update(v.canonical().as_bytes());
                    hash.update([0x1f]);
                }
                hash.update([0x1e]);
            }
            let digest = hash.finalize();
            out.push(TableSummary {
                table: table.name,
                rows: rows.len(),
                checksum: digest.iter().take(8).map(|b| format!("{b:02x}")).collect(),
            });
        }
        Ok(out)
    }
}
