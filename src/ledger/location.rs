//! Where the ledger is: `ledger` (REDRELAY_LEDGER) is a SQLite path (or
//! `sqlite://PATH`), or a `postgres://` / `postgresql://` URL. Any other
//! scheme is an error: a URL is never taken for a file name. The password
//! comes from the URL, `ledger_password_file`, or PGPASSWORD, in that order,
//! and is never shown: [`Location`]'s `Display` hides it.

use super::LedgerError;
use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A parsed ledger location. Its `Debug` and `Display` never show the
/// password.
#[derive(Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres {
        options: Box<PgConnectOptions>,
        /// The URL with its password replaced by `****`.
        shown: String,
    },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Location::Postgres { shown, .. } => f.debug_tuple("Postgres").field(shown).finish(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres { shown, .. } => f.write_str(shown),
        }
    }
}

/// The scheme of `s` when it is written as a URL (`scheme://...` or a bare
/// `postgres:`/`postgresql:`/`sqlite:` prefix).
fn scheme(s: &str) -> Option<&str> {
    let (head, rest) = s.split_once(':')?;
    let is_scheme = !head.is_empty()
        && head.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let known = matches!(
        head.to_ascii_lowercase().as_str(),
        "postgres" | "postgresql" | "sqlite"
    );
    (is_scheme && (rest.starts_with("//") || known) && head.len() > 1).then_some(head)
}

/// `postgres://user:secret@host/db` shown as `postgres://user:****@host/db`,
/// and a `password` query parameter (libpq takes one) as `password=****`.
/// A URL that cannot be parsed is not shown at all (it may hold a password).
pub fn redact(s: &str) -> String {
    let Ok(mut url) = url::Url::parse(s) else {
        let scheme = s.split(':').next().unwrap_or_default();
        return format!("{scheme}://(a URL that cannot be parsed, not shown)");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("****"));
    }
    let hidden =
        |k: &str| k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
    if url.query_pairs().any(|(k, _)| hidden(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if hidden(&k) {
                    "****".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

fn url_has_password(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            rest[..end]
                .rsplit_once('@')
                .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        })
        .unwrap_or(false)
}

/// Parses `ledger`. `password_file` is `ledger_password_file`; `env` reads
/// the environment (PGPASSWORD).
pub fn parse(
    s: &str,
    password_file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Location, LedgerError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(LedgerError::Location(
            "ledger is empty: give a SQLite file path or a postgres:// URL".into(),
        ));
    }
    let Some(scheme) = scheme(s) else {
        return Ok(Location::Sqlite(PathBuf::from(s)));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            let path = s[scheme.len() + 1..].trim_start_matches("//");
            if path.is_empty() {
                return Err(LedgerError::Location(format!(
                    "ledger {s:?} names no file: write sqlite://PATH (e.g. sqlite://redrelay.db)"
                )));
            }
            Ok(Location::Sqlite(PathBuf::from(path)))
        }
        "postgres" | "postgresql" => {
            let shown = redact(s);
            if !s[scheme.len() + 1..].starts_with("//") {
                return Err(LedgerError::Location(format!(
                    "ledger {shown:?} is not a PostgreSQL URL: write postgres://USER@HOST:PORT/DATABASE"
                )));
            }
            let mut options = PgConnectOptions::from_str(s).map_err(|e| {
                LedgerError::Location(format!(
                    "ledger {shown:?} is not a valid PostgreSQL URL ({e}): write \
                     postgres://USER@HOST:PORT/DATABASE[?sslmode=require]"
                ))
            })?;
            if !url_has_password(s) {
                if let Some(file) = password_file {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        LedgerError::Location(format!(
                            "cannot read ledger_password_file {}: {e}",
                            file.display()
                        ))
                    })?;
                    options = options.password(text.trim_end_matches(['\n', '\r']));
                } else if let Some(p) = env("PGPASSWORD") {
                    options = options.password(&p);
                }
            }
            Ok(Location::Postgres {
                options: Box::new(options),
                shown,
            })
        }
        other => Err(LedgerError::Location(format!(
            "ledger {:?} has the scheme {other}://, which redrelay does not know: give a SQLite \
             file path (or sqlite://PATH) or a postgres:// URL",
            redact(s)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn paths_and_sqlite_urls_are_files() {
        for (given, path) in [
            ("redrelay.db", "redrelay.db"),
            ("/var/lib/redrelay/l.db", "/var/lib/redrelay/l.db"),
            ("sqlite://state/l.db", "state/l.db"),
            ("sqlite:///abs/l.db", "/abs/l.db"),
            ("C", "C"),
        ] {
            match parse(given, None, no_env).unwrap() {
                Location::Sqlite(p) => assert_eq!(p, PathBuf::from(path), "{given}"),
                other => panic!("{given}: {other:?}"),
            }
        }
    }

    #[test]
    fn postgres_urls_are_never_files_and_hide_their_password() {
        let loc = parse(
            "postgres://rr:s3cret@db.internal:5432/ledger?sslmode=require",
            None,
            no_env,
        )
        .unwrap();
        assert!(matches!(loc, Location::Postgres { .. }));
        let shown = loc.to_string();
        assert_eq!(
            shown,
            "postgres://rr:****@db.internal:5432/ledger?sslmode=require"
        );
        assert!(!format!("{loc:?}").contains("s3cret"));
        // libpq's password parameter is hidden too.
        let loc = parse(
            "postgres://rr@db/ledger?password=s3cret&sslmode=require",
            None,
            no_env,
        )
        .unwrap();
        assert_eq!(
            loc.to_string(),
            "postgres://rr@db/ledger?password=****&sslmode=require"
        );
        assert!(!redact("postgres://rr:s3cret@[::1/db").contains("s3cret"));
        assert!(matches!(
            parse("postgresql://rr@h/db", None, no_env).unwrap(),
            Location::Postgres { .. }
        ));
        // A bare "postgres:" is a mistake, not a folder name.
        let e = parse("postgres:host/db", None, no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
        let e = parse("postgres://h/db?sslmode=bogus", None, no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid PostgreSQL URL"), "{e}");
    }

    #[test]
    fn other_schemes_are_errors() {
        for given in ["mysql://h/db", "s3://bucket/l.db", "http://x"] {
            let e = parse(given, None, no_env).unwrap_err().to_string();
            assert!(e.contains("does not know"), "{given}: {e}");
        }
        assert!(parse("  ", None, no_env).is_err());
        assert!(parse("sqlite://", None, no_env).is_err());
    }

    #[test]
    fn the_password_comes_from_the_file_or_pgpassword() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let env = |k: &str| (k == "PGPASSWORD").then(|| "from-env".to_string());
        for (file, url) in [
            (Some(f.as_path()), "postgres://u@h/db"),
            (None, "postgres://u@h/db"),
        ] {
            let loc = parse(url, file, env).unwrap();
            assert_eq!(loc.to_string(), "postgres://u@h/db", "never shown");
        }
        let e = parse(
            "postgres://u@h/db",
            Some(&dir.path().join("missing")),
            no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ledger_password_file"), "{e}");
    }
}
