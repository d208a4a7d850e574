//! The cron expression: five fields parsed by `croner`, and the next fire
//! time in the schedule's time zone (daylight saving: see the module docs
//! of [`super`]).

use super::Schedule;
use jiff::{SignedDuration, Timestamp};

impl Schedule {
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
}

/// Five fields, standard syntax (no seconds, no year).
pub(super) fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
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
    use super::super::test_support::*;
    use super::super::ScheduleSpec;
    use super::*;

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
}
