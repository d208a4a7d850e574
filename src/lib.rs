//! redrelay: runs SQL on Amazon Redshift through the Data API and reacts to
//! the statements' completion events (EventBridge -> SQS) instead of polling.

pub mod emulator;
