//! redrelay: runs SQL on Amazon Redshift through the Data API and reacts to
//! the statements' completion events (EventBridge -> SQS) instead of polling.
//!
//! One module per outside system (`dataapi`, `setup` for SQS and
//! EventBridge, `ledger` for SQLite); the state machine (`state`) and the
//! event parser (`event`) are pure.

pub mod api;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod dataapi;
pub mod dlq;
pub mod domain;
/// The local Data API emulator (`redrelay emulator`), a crate of its own;
/// left out of the production build (`--no-default-features`).
#[cfg(feature = "emulator")]
pub use redrelay_emulator as emulator;
pub mod event;
pub mod ledger;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod ratelimit;
pub mod results;
pub mod retry;
pub mod schedule;
pub mod setup;
pub mod state;
pub mod trigger;
pub mod worker;
