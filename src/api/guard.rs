//! What keeps other web sites out of the listener, whatever the token:
//!
//! - Every request's `Host` must be the listener's own address (the
//!   address the connection reached, `localhost`, `127.0.0.1` or `[::1]`,
//!   on the listener's port) or a name in `api_allowed_hosts`; anything
//!   else is 403. A page on another site that points its own name at this
//!   machine (DNS rebinding) sends its own name as the Host, so it reads
//!   nothing, not even /metrics.
//! - A state change (POST, PUT, PATCH, DELETE) must come from the same
//!   origin: an `Origin` header, when sent, must be `http(s)://` an allowed
//!   host; a `Sec-Fetch-Site` header, when sent, must be `same-origin` or
//!   `none`; and a body must be `Content-Type: application/json` (415
//!   otherwise), which a browser never sends cross-site without a CORS
//!   preflight, and this listener answers no preflight: it sends no CORS
//!   headers at all.
//!
//! Jupyter guards its local server the same way.

use super::ApiError;
use crate::config::HostName;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The address a connection reached (the listener's own address, which
/// for a listener on 0.0.0.0 is the interface's).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub Option<SocketAddr>);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for LocalAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        LocalAddr(stream.io().local_addr().ok())
    }
}

/// The listener's rules: its bound address and the extra allowed names.
#[derive(Debug, Clone)]
pub struct Guard {
    bound: SocketAddr,
    allowed: Vec<HostName>,
}

/// An IP address as a Host header writes it.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{ip}]"),
        },
    }
}

impl Guard {
    /// The rules of a listener bound to `bound`, also answering to the
    /// names in `allowed` (`api_allowed_hosts`, checked when loaded).
    pub fn new(bound: SocketAddr, allowed: &[String]) -> Guard {
        Guard {
            bound,
            allowed: allowed.iter().filter_map(|h| HostName::parse(h)).collect(),
        }
    }

    /// Whether `host` on `port` (its scheme's default when it names none)
    /// names this listener, reached at `local`.
    fn allows(&self, local: SocketAddr, host: &HostName, default_port: u16) -> bool {
        let port = host.port().unwrap_or(default_port);
        if self
            .allowed
            .iter()
            .any(|a| a.host() == host.host() && a.port().is_none_or(|p| p == port))
        {
            return true;
        }
        if port != local.port() {
            return false;
        }
        matches!(host.host(), "localhost" | "127.0.0.1" | "[::1]")
            || host.host() == ip_text(local.ip())
            || (!self.bound.ip().is_unspecified() && host.host() == ip_text(self.bound.ip()))
    }

    /// Why the request is refused, if it is.
    fn refuse(&self, local: SocketAddr, method: &Method, headers: &HeaderMap) -> Option<ApiError> {
        let forbidden = |message: String| ApiError::new(StatusCode::FORBIDDEN, message);
        let port = local.port();
        let host_text = headers
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
        let Some(host_text) = host_text else {
            return Some(forbidden(format!(
                "the request has no Host header: send `Host: 127.0.0.1:{port}` (the \
                 listener's address), as every HTTP/1.1 client does"
            )));
        };
        if !HostName::parse(&host_text).is_some_and(|h| self.allows(local, &h, 80)) {
            return Some(forbidden(format!(
                "Host {host_text:?} is not this listener's address (127.0.0.1:{port}, \
                 localhost:{port}, [::1]:{port} or {}): requests naming another host are \
                 refused, so that other web sites cannot reach the console through their own \
                 names; add the name to api_allowed_hosts (REDRELAY_API_ALLOWED_HOSTS) to \
                 serve it under that name",
                SocketAddr::new(local.ip(), port)
            )));
        }
        let changes_state = !matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        if !changes_state {
            return None;
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            let same = url::Url::parse(&text).ok().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.path() == "/"
                    && u.host_str().and_then(HostName::parse).is_some_and(|h| {
                        self.allows(local, &h, u.port_or_known_default().unwrap_or(80))
                    })
            });
            if !same {
                return Some(forbidden(format!(
                    "a {method} from another web site (Origin {text:?}) is refused: state \
                     changes come only from this listener's own console or from clients that \
                     are not browsers; add the host to api_allowed_hosts \
                     (REDRELAY_API_ALLOWED_HOSTS) when the console is served under that name"
                )));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = String::from_utf8_lossy(site.as_bytes()).into_owned();
            if !matches!(site.as_str(), "same-origin" | "none") {
                return Some(forbidden(format!(
                    "a {method} from another web site (Sec-Fetch-Site: {site}) is refused: \
                     state changes come only from this listener's own console or from clients \
                     that are not browsers"
                )));
            }
        }
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        if has_body {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let json = ct.as_deref().is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
            if !json {
                return Some(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "a {method} body must be JSON: send `Content-Type: application/json` \
                         (this one is {})",
                        ct.map(|c| format!("{c:?}"))
                            .unwrap_or_else(|| "without a Content-Type".into())
                    ),
                ));
            }
        }
        None
    }
}

/// The guard as a middleware over every route of the listener.
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let local = req
        .extensions()
        .get::<ConnectInfo<LocalAddr>>()
        .and_then(|c| c.0 .0)
        .unwrap_or(g.bound);
    if let Some(refused) = g.refuse(local, req.method(), req.headers()) {
        return refused.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn status(g: &Guard, local: &str, method: Method, pairs: &[(&str, &str)]) -> u16 {
        g.refuse(local.parse().unwrap(), &method, &headers(pairs))
            .map(|e| e.status.as_u16())
            .unwrap_or(200)
    }

    #[test]
    fn host_names_parse_as_a_browser_writes_them() {
        let h = HostName::parse("Redrelay.Example:8443").unwrap();
        assert_eq!((h.host(), h.port()), ("redrelay.example", Some(8443)));
        assert_eq!(HostName::parse("[::1]:9").unwrap().host(), "[::1]");
        for bad in ["", "http://a", "a/b", "u@a", "::1", "a b"] {
            assert_eq!(HostName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_listeners_own_names_are_served() {
        let g = Guard::new("127.0.0.1:9464".parse().unwrap(), &["rr.example".into()]);
        let at = "127.0.0.1:9464";
        for ok in [
            "127.0.0.1:9464",
            "localhost:9464",
            "LOCALHOST:9464",
            "[::1]:9464",
            "rr.example",
            "rr.example:443",
        ] {
            assert_eq!(status(&g, at, Method::GET, &[("host", ok)]), 200, "{ok}");
        }
        for bad in [
            "attacker.example:9464",
            "127.0.0.1:9465",
            "127.0.0.1",
            "localhost",
            "evil.rr.example",
        ] {
            assert_eq!(status(&g, at, Method::GET, &[("host", bad)]), 403, "{bad}");
        }
        assert_eq!(status(&g, at, Method::GET, &[]), 403);
        // On 0.0.0.0, the address each connection reached.
        let g = Guard::new("0.0.0.0:9464".parse().unwrap(), &[]);
        let h = [("host", "10.1.2.3:9464")];
        assert_eq!(status(&g, "10.1.2.3:9464", Method::GET, &h), 200);
        assert_eq!(status(&g, "10.9.9.9:9464", Method::GET, &h), 403);
        assert_eq!(status(&g, "[::ffff:10.1.2.3]:9464", Method::GET, &h), 200);
    }

    #[test]
    fn state_changes_come_from_the_same_origin_as_json() {
        let g = Guard::new("127.0.0.1:9464".parse().unwrap(), &["rr.example".into()]);
        let at = "127.0.0.1:9464";
        let host = ("host", "127.0.0.1:9464");
        let json = ("content-type", "application/json; charset=utf-8");
        let body = ("content-length", "2");
        let post = |extra: &[(&str, &str)]| {
            let mut h = vec![host];
            h.extend_from_slice(extra);
            status(&g, at, Method::POST, &h)
        };
        assert_eq!(post(&[json, body]), 200);
        assert_eq!(post(&[]), 200, "no body, no Content-Type needed");
        assert_eq!(
            post(&[("origin", "http://127.0.0.1:9464"), json, body]),
            200
        );
        assert_eq!(post(&[("origin", "http://localhost:9464")]), 200);
        assert_eq!(post(&[("origin", "https://rr.example")]), 200);
        assert_eq!(post(&[("sec-fetch-site", "same-origin")]), 200);
        assert_eq!(post(&[("sec-fetch-site", "none")]), 200);
        for origin in [
            "https://evil.example",
            "http://127.0.0.1:9465",
            "http://127.0.0.1",
            "null",
            "file://",
        ] {
            assert_eq!(post(&[("origin", origin), json, body]), 403, "{origin}");
        }
        assert_eq!(post(&[("sec-fetch-site", "cross-site")]), 403);
        assert_eq!(post(&[("sec-fetch-site", "same-site")]), 403);
        assert_eq!(post(&[("content-type", "text/plain"), body]), 415);
        assert_eq!(post(&[body]), 415);
        assert_eq!(
            post(&[
                ("content-type", "text/plain"),
                ("transfer-encoding", "chunked")
            ]),
            415
        );
        // Reading is not a state change: Origin is the token's business.
        let h = [host, ("origin", "https://evil.example")];
        assert_eq!(status(&g, at, Method::GET, &h), 200);
        let h = [host, ("content-type", "text/plain"), body];
        assert_eq!(status(&g, at, Method::DELETE, &h), 415);
    }
}
