//! Names and tokens that tie the Data API to the ledger: the ClientToken of
//! an attempt and the StatementName of a job (the `redrelay/` prefix lives
//! here only).

/// The ClientToken of a job attempt: stable across crashes (a resubmission
/// of the same attempt is idempotent), unique across ledgers.
pub fn client_token(uid: &str, attempt: i64) -> String {
    format!("{uid}-{attempt}")
}

const NAME_PREFIX: &str = "redrelay/";

/// The StatementName of a job: `redrelay/<name>/<uid>`, the same for every
/// attempt. It names the job in the Redshift console and lets an event that
/// arrives before its statement id is recorded be matched to its job (only
/// one attempt of a job is ever being submitted at a time).
pub fn statement_name(name: &str, uid: &str) -> String {
    let mut short: String = name
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .take(200)
        .collect();
    if short.is_empty() {
        short.push('_');
    }
    format!("{NAME_PREFIX}{short}/{uid}")
}

/// The job uid in a StatementName made by [`statement_name`].
pub fn parse_statement_name(s: &str) -> Option<&str> {
    let rest = s.strip_prefix(NAME_PREFIX)?;
    let (_, uid) = rest.rsplit_once('/')?;
    (uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit())).then_some(uid)
}

/// A random job uid (32 hex digits).
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_names_round_trip() {
        let uid = new_uid();
        let name = statement_name("load/staging", &uid);
        assert_eq!(name, format!("redrelay/load/staging/{uid}"));
        assert_eq!(parse_statement_name(&name), Some(uid.as_str()));
        let long = statement_name(&"x".repeat(2000), &uid);
        assert!(long.len() <= 500);
        assert_eq!(parse_statement_name(&long), Some(uid.as_str()));
        assert_eq!(parse_statement_name("test.testtable"), None);
        assert_eq!(parse_statement_name("redrelay/a/nothex"), None);
        assert!(client_token(&uid, 40).len() <= 64);
    }
}
