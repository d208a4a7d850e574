//! The "Redshift Data Statement Status Change" event: where it comes from
//! and the JSON of its `detail`. The emulator serializes [`Detail`], the
//! daemon deserializes it: one definition of the shape.

use serde::{Deserialize, Serialize};

/// The event's `source`, as AWS sends it.
pub const SOURCE: &str = "aws.redshift-data";
/// The event's `detail-type`, as AWS sends it.
pub const DETAIL_TYPE: &str = "Redshift Data Statement Status Change";

/// The event's `detail`, with the documented field names and order (the
/// order in which they are serialized).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_name: Option<String>,
    pub statement_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redshift_query_id: Option<i64>,
    pub state: StatementState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<i64>,
}

/// A statement status. Unknown values are kept, never an error: the Data
/// API has been seen to answer states it does not document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementState {
    Submitted,
    Picked,
    Started,
    Finished,
    Failed,
    Aborted,
    Other(String),
}

impl StatementState {
    pub fn parse(s: &str) -> Self {
        match s {
            "SUBMITTED" => Self::Submitted,
            "PICKED" => Self::Picked,
            "STARTED" => Self::Started,
            "FINISHED" => Self::Finished,
            "FAILED" => Self::Failed,
            "ABORTED" => Self::Aborted,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::Picked => "PICKED",
            Self::Started => "STARTED",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Aborted => "ABORTED",
            Self::Other(s) => s,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Aborted)
    }
}

impl<'de> Deserialize<'de> for StatementState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

impl Serialize for StatementState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example's detail, byte for byte, both ways.
    const DOCUMENTED: &str = r#"{"principal":"arn:aws:iam::123456789012:user/myuser","statementName":"test.testtable","statementId":"dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a","redshiftQueryId":-1,"state":"FINISHED","rows":1,"expireAt":1601673265}"#;

    #[test]
    fn detail_round_trips_the_documented_shape() {
        let d: Detail = serde_json::from_str(DOCUMENTED).unwrap();
        assert_eq!(d.state, StatementState::Finished);
        assert_eq!(d.rows, Some(1));
        assert_eq!(serde_json::to_string(&d).unwrap(), DOCUMENTED);
    }

    #[test]
    fn unknown_states_are_kept() {
        let s: StatementState = serde_json::from_str("\"QUEUED\"").unwrap();
        assert_eq!(s, StatementState::Other("QUEUED".into()));
        assert!(!s.is_terminal());
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"QUEUED\"");
    }
}
