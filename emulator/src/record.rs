//! The emulator's own record: one JSON object per line, flushed line by
//! line, so that tests can check what really ran (no SQL twice, how many
//! statements were in flight) without trusting the code under test.
//!
//! Line kinds (field `kind`):
//! - `statement`: a statement reached a terminal state (or was still
//!   running at shutdown): id, client_token, statement_name, sqls, is_batch,
//!   state, error, rows, with_event, faults, created_ms, started_ms,
//!   ended_ms (epoch milliseconds), session_id (null outside sessions).
//! - `replay`: an ExecuteStatement repeated a ClientToken; nothing ran.
//! - `rejected`: an Execute call was refused by fault injection.
//! - `event`: what happened to one completion event (sent, dropped,
//!   duplicated, delayed, reordered, send_failed).
//! - `counters`: totals of injected faults, written at shutdown.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use super::faults::lock;

/// Appends JSON lines to an optional file.
pub(crate) struct Recorder {
    out: Mutex<Option<BufWriter<File>>>,
}

impl Recorder {
    pub(crate) fn open(path: Option<&Path>) -> anyhow::Result<Recorder> {
        let out = match path {
            Some(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| anyhow::anyhow!("cannot open record file {}: {e}", p.display()))?;
                Some(BufWriter::new(f))
            }
            None => None,
        };
        Ok(Recorder {
            out: Mutex::new(out),
        })
    }

    /// Writes one line; a write error is logged, never fatal.
    pub(crate) fn write(&self, line: &serde_json::Value) {
        let mut guard = lock(&self.out);
        if let Some(out) = guard.as_mut() {
            let res = serde_json::to_writer(&mut *out, line)
                .map_err(std::io::Error::other)
                .and_then(|_| out.write_all(b"\n"))
                .and_then(|_| out.flush());
            if let Err(error) = res {
                tracing::warn!(%error, "Could not write to the emulator record file.");
            }
        }
    }
}
