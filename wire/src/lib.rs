//! What redrelay and its Data API emulator must agree on, in one place:
//! the "Redshift Data Statement Status Change" event (its source,
//! detail-type and the JSON shape of its detail), the Data API's batch
//! limit, and how the Data API finds the `:name` parameters of a SQL text.
//!
//! The daemon parses what the emulator publishes, so both take these from
//! here; neither imports the other. Pure and small: serde only.

mod event;
mod params;

pub use event::{Detail, StatementState, DETAIL_TYPE, SOURCE};
pub use params::{param_names, rewrite_params, valid_param_name, Rewritten};

/// BatchExecuteStatement takes 1 to 40 SQL statements.
pub const MAX_BATCH_STATEMENTS: usize = 40;
