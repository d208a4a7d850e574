//! The `:scheduled_time` parameter's text for a fire time, and reading
//! one given by hand.

use jiff::Timestamp;

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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
