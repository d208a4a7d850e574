//! Catch-up after an outage (or a slow tick): which missed fire times
//! start now ([`Schedule::due`]; the rules are in the module docs of
//! [`super`]).

use super::{CatchUp, Schedule};
use jiff::{SignedDuration, Timestamp};

/// How long after its time a firing still counts as on time for
/// [`CatchUp::None`].
pub const ON_TIME_GRACE: SignedDuration = SignedDuration::from_secs(300);

impl Schedule {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
}
