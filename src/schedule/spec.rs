//! The `[schedule]` table of a pipeline file, its policies (catch-up,
//! overlap) and their checks: [`Schedule::parse`].

use super::cron::parse_cron;
use super::Schedule;
use jiff::Timestamp;
use serde::Deserialize;

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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
}
