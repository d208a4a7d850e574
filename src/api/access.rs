//! Who may call the API: the tokens and what each allows.
//!
//! - The full token (`api_token`, `api_token_file`, REDRELAY_API_TOKEN) may
//!   do everything; a fleet of workers shares one.
//! - Without one, the worker makes a random token at start (32 bytes from
//!   the operating system's CSPRNG, as hex) and keeps it in a file of mode
//!   0600 (`api_token_path`), reused at the next start: there is no API
//!   without a token. `redrelay console-url` reads it.
//! - The read-only token (`api_read_token`, `api_read_token_file`,
//!   REDRELAY_API_READ_TOKEN) may only read (GET, HEAD): for dashboards.
//!
//! Tokens are kept and compared as SHA-256 digests: two fixed-size digests
//! compared in constant time tell nothing of a token's length or of where
//! a wrong one differs. A token read from the configuration, a file or the
//! environment is trimmed of surrounding whitespace (a trailing newline).

use crate::config::{Config, Secret};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{key} and {key}_file are both set: keep one")]
    Both { key: &'static str },
    #[error("{key} is empty: set a long random value, or remove it")]
    Empty { key: &'static str },
    #[error("cannot read {key} {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key} is empty ({path}): write the token on its first line")]
    EmptyFile { key: &'static str, path: String },
    #[error(
        "api_read_token is the same as api_token: the read-only token must be a different value"
    )]
    Same,
    #[error(
        "the worker's token file {path} is empty or unreadable as text: delete it, and the \
         worker makes a new token at its next start"
    )]
    BadKept { path: String },
    #[error(
        "the worker's token file {path} can be read by other users (mode {mode:o}): run \
         `chmod 600 {path}`, or delete it and the worker makes a new token at its next start"
    )]
    Exposed { path: String, mode: u32 },
    #[error(
        "cannot keep the worker's API token in {path}: {source}; set api_token_path \
         (REDRELAY_API_TOKEN_PATH) to a file in a writable directory, or set api_token"
    )]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot make a random API token: the operating system's random source failed: {0}")]
    Random(String),
    #[error("cannot tell where the worker's token file is: {0}")]
    Location(#[from] crate::ledger::LedgerError),
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything (the full token).
    Full,
    /// GET and HEAD only (the read-only token).
    Read,
}

/// The tokens a listener accepts, as SHA-256 digests.
#[derive(Clone)]
pub struct Tokens {
    full: [u8; 32],
    read: Option<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(****)")
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Tokens {
    pub fn new(full: &Secret, read: Option<&Secret>) -> Self {
        Tokens {
            full: digest(full.expose()),
            read: read.map(|r| digest(r.expose())),
        }
    }

    /// What the token `given` allows; `None` when it is neither token.
    /// Both digests are compared whatever the first answer.
    pub fn check(&self, given: &str) -> Option<Access> {
        let given = digest(given);
        let full = given.ct_eq(&self.full);
        let read = match &self.read {
            Some(r) => given.ct_eq(r),
            None => subtle::Choice::from(0),
        };
        if bool::from(full) {
            Some(Access::Full)
        } else if bool::from(read) {
            Some(Access::Read)
        } else {
            None
        }
    }
}

/// A token from its key or its file's first line, trimmed; `None` when
/// neither is set.
fn configured(
    key: &'static str,
    value: Option<&Secret>,
    file_key: &'static str,
    file: Option<&Path>,
) -> Result<Option<Secret>, TokenError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(TokenError::Both { key }),
        (Some(t), None) => {
            let t = t.expose().trim();
            if t.is_empty() {
                return Err(TokenError::Empty { key });
            }
            Ok(Some(Secret::new(t)))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                key: file_key,
                path: path.display().to_string(),
                source,
            })?;
            let token = text.lines().next().unwrap_or("").trim();
            if token.is_empty() {
                return Err(TokenError::EmptyFile {
                    key: file_key,
                    path: path.display().to_string(),
                });
            }
            Ok(Some(Secret::new(token)))
        }
        (None, None) => Ok(None),
    }
}

/// The configured full token (`api_token` or `api_token_file`), if any.
pub fn configured_token(cfg: &Config) -> Result<Option<Secret>, TokenError> {
    configured(
        "api_token",
        cfg.api_token.as_ref(),
        "api_token_file",
        cfg.api_token_file.as_deref(),
    )
}

/// The configured read-only token (`api_read_token` or
/// `api_read_token_file`), if any.
pub fn read_token(cfg: &Config) -> Result<Option<Secret>, TokenError> {
    configured(
        "api_read_token",
        cfg.api_read_token.as_ref(),
        "api_read_token_file",
        cfg.api_read_token_file.as_deref(),
    )
}

/// The full token a worker serves with.
pub struct WorkerToken {
    pub token: Secret,
    /// Where the token is kept when the worker made it (none configured).
    pub kept_at: Option<PathBuf>,
}

/// The configured token, else the one kept at `api_token_path` (made and
/// kept there now when the file does not exist). Several workers sharing
/// the file agree on one token: the file is written under another name
/// and linked into place, so exactly one of them makes it.
pub fn worker_token(cfg: &Config) -> Result<WorkerToken, TokenError> {
    let read = read_token(cfg)?;
    let (token, kept_at) = match configured_token(cfg)? {
        Some(t) => (t, None),
        None => {
            let path = cfg.api_token_path()?;
            let token = match kept_token(&path)? {
                Some(t) => t,
                None => keep_new_token(&path)?,
            };
            (token, Some(path))
        }
    };
    if read.as_ref().is_some_and(|r| r == &token) {
        return Err(TokenError::Same);
    }
    Ok(WorkerToken { token, kept_at })
}

/// The token kept at `path`; `None` when there is no such file. A file
/// other users can read is refused.
pub fn kept_token(path: &Path) -> Result<Option<Secret>, TokenError> {
    let shown = || path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TokenError::Read {
                key: "api_token_path",
                path: shown(),
                source,
            })
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed {
                path: shown(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        key: "api_token_path",
        path: shown(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(TokenError::BadKept { path: shown() });
    }
    Ok(Some(Secret::new(token)))
}

/// 32 random bytes from the operating system, as 64 hex digits.
fn new_token() -> Result<Secret, TokenError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// Makes a token and keeps it at `path` (mode 0600). When another process
/// made the file first, its token is the one.
fn keep_new_token(path: &Path) -> Result<Secret, TokenError> {
    let write_err = |source| TokenError::Write {
        path: path.display().to_string(),
        source,
    };
    let token = new_token()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "api-token".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let written = open.open(&tmp).and_then(|mut f| {
        f.write_all(format!("{}\n", token.expose()).as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            kept_token(path)?.ok_or_else(|| TokenError::BadKept {
                path: path.display().to_string(),
            })
        }
        Err(e) => Err(write_err(e)),
    }
}

/// The console's address with the token in its fragment (which browsers
/// never send to the server): `http://127.0.0.1:9464/#token=...`. An
/// unspecified listen address (0.0.0.0, ::) is shown as loopback.
pub fn console_url(listen: std::net::SocketAddr, token: &Secret) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let addr = std::net::SocketAddr::new(ip, listen.port());
    // Every byte but RFC 3986's unreserved ones percent-encoded, as the
    // console's decodeURIComponent reads it (form encoding's `+` for a
    // space would not be; `url` exposes no encoder for a fragment's value).
    let token: String = token
        .expose()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("http://{addr}/#token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_allows_what_it_should() {
        let t = Tokens::new(&Secret::new("full-one"), Some(&Secret::new("read-one")));
        assert_eq!(t.check("full-one"), Some(Access::Full));
        assert_eq!(t.check("read-one"), Some(Access::Read));
        assert_eq!(t.check("full-on"), None);
        assert_eq!(t.check(""), None);
        let t = Tokens::new(&Secret::new("full-one"), None);
        assert_eq!(t.check("read-one"), None);
        assert_eq!(format!("{t:?}"), "Tokens(****)");
    }

    #[test]
    fn tokens_are_trimmed_wherever_they_come_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "  file-token \r\nignored\n").unwrap();
        let cfg = Config {
            api_token_file: Some(file),
            api_read_token: Some(Secret::new("read-token\n")),
            ..Config::default()
        };
        assert_eq!(
            configured_token(&cfg).unwrap().unwrap().expose(),
            "file-token"
        );
        assert_eq!(read_token(&cfg).unwrap().unwrap().expose(), "read-token");
        let cfg = Config {
            api_token: Some(Secret::new(" \n")),
            ..Config::default()
        };
        assert!(matches!(
            configured_token(&cfg),
            Err(TokenError::Empty { key: "api_token" })
        ));
        let cfg = Config {
            api_token: Some(Secret::new("same")),
            api_read_token: Some(Secret::new("same\n")),
            ..Config::default()
        };
        assert!(matches!(worker_token(&cfg), Err(TokenError::Same)));
    }

    #[cfg(unix)]
    #[test]
    fn a_made_token_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db.api-token");
        let cfg = Config {
            api_token_path: Some(path.clone()),
            ..Config::default()
        };
        let made = worker_token(&cfg).unwrap();
        assert_eq!(made.kept_at.as_deref(), Some(path.as_path()));
        let token = made.token.expose().to_string();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(worker_token(&cfg).unwrap().token.expose(), token);
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = worker_token(&cfg).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains(&token), "{err}");
        // Another worker's token wins over a new one.
        let other = dir.path().join("other");
        std::fs::write(&other, "theirs\n").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(keep_new_token(&other).unwrap().expose(), "theirs");
    }

    #[test]
    fn the_console_url_carries_the_token_in_its_fragment() {
        let t = Secret::new("a b&c");
        assert_eq!(
            console_url("0.0.0.0:9464".parse().unwrap(), &t),
            "http://127.0.0.1:9464/#token=a%20b%26c"
        );
        assert_eq!(
            console_url("[::]:1".parse().unwrap(), &t),
            "http://[::1]:1/#token=a%20b%26c"
        );
    }
}
