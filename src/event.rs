//! The "Redshift Data Statement Status Change" event as EventBridge delivers
//! it into SQS: parsing and checking its origin. Pure: no I/O.

use serde::Deserialize;

/// The event's source, detail-type and detail are wire facts the emulator
/// publishes by: one definition, in `redrelay-wire`.
pub use redrelay_wire::{Detail, StatementState, DETAIL_TYPE, SOURCE};

/// The EventBridge envelope. moto's EventBridge leaves out `account`, so it
/// is optional here.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub version: Option<String>,
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: serde_json::Value,
}

/// A parsed, origin-checked status change event.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    pub event_id: String,
    /// The envelope's `time` (RFC 3339), when it has one.
    pub time: Option<String>,
    pub detail: Detail,
}

/// Where events must come from. `None` accepts any value (moto's envelope
/// has no account).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub account: Option<String>,
    pub region: Option<String>,
}

/// Why a message was quarantined instead of applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not an EventBridge event: {0}")]
    NotEnvelope(String),
    #[error("source is {0:?}, expected {SOURCE:?}")]
    WrongSource(String),
    #[error("detail-type is {0:?}, expected {DETAIL_TYPE:?}")]
    WrongDetailType(String),
    #[error("account is {found:?}, expected {expected:?}")]
    WrongAccount { found: String, expected: String },
    #[error("region is {found:?}, expected {expected:?}")]
    WrongRegion { found: String, expected: String },
    #[error("detail is not a Redshift Data status change: {0}")]
    BadDetail(String),
}

/// Longest error text kept in a reason (a huge body must not make a huge row
/// of every reason).
const MAX_REASON: usize = 300;

fn clip(s: String) -> String {
    if s.len() <= MAX_REASON {
        return s;
    }
    let mut end = MAX_REASON;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Parses an SQS message body and checks it against `origin`.
pub fn parse(body: &str, origin: &Origin) -> Result<StatusEvent, Rejection> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| Rejection::NotJson(clip(e.to_string())))?;
    let env: Envelope =
        serde_json::from_value(value).map_err(|e| Rejection::NotEnvelope(clip(e.to_string())))?;
    if env.id.trim().is_empty() || env.id.len() > 200 {
        return Err(Rejection::NotEnvelope(
            "id is empty or too long: events are deduplicated on it".to_string(),
        ));
    }
    if env.source != SOURCE {
        return Err(Rejection::WrongSource(clip(env.source)));
    }
    if env.detail_type != DETAIL_TYPE {
        return Err(Rejection::WrongDetailType(clip(env.detail_type)));
    }
    if let (Some(found), Some(expected)) = (&env.account, &origin.account) {
        if found != expected {
            return Err(Rejection::WrongAccount {
                found: clip(found.clone()),
                expected: expected.clone(),
            });
        }
    }
    if let (Some(found), Some(expected)) = (&env.region, &origin.region) {
        if found != expected {
            return Err(Rejection::WrongRegion {
                found: clip(found.clone()),
                expected: expected.clone(),
            });
        }
    }
    let detail: Detail = serde_json::from_value(env.detail)
        .map_err(|e| Rejection::BadDetail(clip(e.to_string())))?;
    if detail.statement_id.is_empty() || detail.statement_id.len() > 200 {
        return Err(Rejection::BadDetail(
            "statementId is empty or too long".to_string(),
        ));
    }
    Ok(StatusEvent {
        event_id: env.id,
        time: env.time,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        // Copies of ../shared/fixtures/events, kept in the repository so that
        // a clone on its own passes.
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
    }

    fn fixture(name: &str) -> String {
        let path = fixtures().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_fixture_parses() {
        let mut n = 0;
        for entry in std::fs::read_dir(fixtures()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let body = std::fs::read_to_string(&path).unwrap();
            let ev = parse(&body, &Origin::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!ev.event_id.is_empty());
            assert!(ev.detail.state.is_terminal(), "{}", path.display());
            n += 1;
        }
        assert!(n >= 4, "found only {n} fixtures");
    }

    #[test]
    fn finished_fixture_fields() {
        let ev = parse(&fixture("finished.json"), &Origin::default()).unwrap();
        assert_eq!(ev.event_id, "18e7079c-dd4b-dd64-caf9-e2a31640dab0");
        assert_eq!(
            ev.detail.statement_id,
            "dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a"
        );
        assert_eq!(ev.detail.statement_name.as_deref(), Some("test.testtable"));
        assert_eq!(ev.detail.state, StatementState::Finished);
        assert_eq!(ev.detail.rows, Some(1));
        assert_eq!(ev.detail.expire_at, Some(1601673265));
        assert_eq!(ev.detail.redshift_query_id, Some(-1));
    }

    #[test]
    fn failed_and_aborted_fixtures() {
        let f = parse(&fixture("failed-serverless.json"), &Origin::default()).unwrap();
        assert_eq!(f.detail.state, StatementState::Failed);
        assert_eq!(
            f.detail.statement_name.as_deref(),
            Some("nightly/load_sales")
        );
        let a = parse(&fixture("aborted.json"), &Origin::default()).unwrap();
        assert_eq!(a.detail.state, StatementState::Aborted);
    }

    #[test]
    fn moto_envelope_without_account_is_accepted_even_when_account_is_configured() {
        let origin = Origin {
            account: Some("123456789012".into()),
            region: Some("us-east-1".into()),
        };
        let ev = parse(&fixture("moto-no-account.json"), &origin).unwrap();
        assert_eq!(ev.detail.statement_id, "abc");
    }

    #[test]
    fn origin_is_checked() {
        let body = fixture("finished.json");
        let other_account = Origin {
            account: Some("999999999999".into()),
            region: None,
        };
        assert!(matches!(
            parse(&body, &other_account),
            Err(Rejection::WrongAccount { .. })
        ));
        let other_region = Origin {
            account: None,
            region: Some("eu-west-1".into()),
        };
        assert!(matches!(
            parse(&body, &other_region),
            Err(Rejection::WrongRegion { .. })
        ));
        let forged = body.replace("aws.redshift-data", "my.app");
        assert_eq!(
            parse(&forged, &Origin::default()),
            Err(Rejection::WrongSource("my.app".into()))
        );
        let other_type = body.replace("Statement Status Change", "Something Else");
        assert!(matches!(
            parse(&other_type, &Origin::default()),
            Err(Rejection::WrongDetailType(_))
        ));
    }

    #[test]
    fn bad_bodies_are_rejections_not_panics() {
        let o = Origin::default();
        assert!(matches!(parse("", &o), Err(Rejection::NotJson(_))));
        assert!(matches!(parse("not json", &o), Err(Rejection::NotJson(_))));
        assert!(matches!(parse("[1,2]", &o), Err(Rejection::NotEnvelope(_))));
        assert!(matches!(parse("{}", &o), Err(Rejection::NotEnvelope(_))));
        let body = fixture("finished.json").trim().to_string();
        assert!(matches!(
            parse(&body.replace("\"statementId\"", "\"statementIdx\""), &o),
            Err(Rejection::BadDetail(_))
        ));
        assert!(matches!(
            parse(&body.replace("\"rows\":1", "\"rows\":\"many\""), &o),
            Err(Rejection::BadDetail(_))
        ));
        for cut in 0..body.len() {
            if body.is_char_boundary(cut) {
                assert!(parse(&body[..cut], &o).is_err());
            }
        }
        assert!(matches!(
            parse(
                &body.replace("18e7079c-dd4b-dd64-caf9-e2a31640dab0", ""),
                &o
            ),
            Err(Rejection::NotEnvelope(_))
        ));
        let huge = format!("{{\"id\":\"{}\"}}", "x".repeat(1_000_000));
        let err = parse(&huge, &o).unwrap_err().to_string();
        assert!(err.len() < 1000);
    }

    #[test]
    fn unknown_state_is_kept() {
        let body = fixture("finished.json").replace("\"FINISHED\"", "\"UNKNOWN\"");
        let ev = parse(&body, &Origin::default()).unwrap();
        assert_eq!(ev.detail.state, StatementState::Other("UNKNOWN".into()));
        assert!(!ev.detail.state.is_terminal());
    }
}
