//! A small HTTP/1.1 client over a loopback TCP socket for the API tests:
//! one request a connection, chunked bodies decoded, and a reader of
//! server-sent events. (The checks that matter for the wire format are
//! also made by clients we did not write: schemathesis, Python's urllib,
//! Chromium.)

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let given = |name: &str| extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    // A Host or Content-Type in `extra` replaces the default one.
    if !given("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        if !given("content-type") {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    s.write_all(head.as_bytes())?;
    Ok(s)
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    try_read_head(r).expect("the answer's head")
}

fn try_read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// One chunk of a chunked body (`None` at the last).
fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    if r.read_line(&mut size).ok()? == 0 {
        return None;
    }
    let n = usize::from_str_radix(size.trim(), 16).ok()?;
    if n == 0 {
        return None;
    }
    let mut buf = vec![0; n + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// METHOD PATH (with a bearer token when given, a JSON body when given).
pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    call_with(addr, method, path, token, &[], body)
}

/// [`call`] with extra headers; a `Host` or `Content-Type` among them
/// replaces the default one (the listener's address, JSON).
pub fn call_with(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let s = try_request(addr, method, path, token, extra, body)
        .expect("send a request to the listener");
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut bytes = Vec::new();
    if chunked {
        while let Some(c) = read_chunk(&mut r) {
            bytes.extend(c);
        }
    } else {
        r.read_to_end(&mut bytes).expect("read the body");
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A server-sent event: (event, id, data).
pub type SseEvent = (String, String, String);

/// An open `text/event-stream`, read by a thread of its own.
pub struct Sse {
    pub status: u16,
    chunks: std::sync::mpsc::Receiver<String>,
    buf: String,
}

impl Sse {
    pub fn open(addr: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Sse {
        Self::try_open(addr, path, token, extra).expect("open the event stream")
    }

    /// [`Sse::open`], or why not (a listener that is gone).
    pub fn try_open(
        addr: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> std::io::Result<Sse> {
        let s = try_request(addr, "GET", path, token, extra, None)?;
        s.set_read_timeout(None)?;
        let mut reader = BufReader::new(s);
        let (status, _) = try_read_head(&mut reader)?;
        let (tx, chunks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Some(c) = read_chunk(&mut reader) {
                if tx.send(String::from_utf8_lossy(&c).into_owned()).is_err() {
                    break;
                }
            }
        });
        Ok(Sse {
            status,
            chunks,
            buf: String::new(),
        })
    }

    /// The next event within `timeout` (keep-alive comments skipped).
    pub fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some((event, id, data));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.chunks.recv_timeout(left) {
                Ok(c) => self.buf.push_str(&c),
                Err(_) => return None,
            }
        }
    }
}
