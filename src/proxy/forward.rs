//! One request through the proxy: refuse it or forward it with the bearer token, stream both bodies, retry
//! once on a 401 when the body can be replayed, and speak MLflow's REST error shape when there is no token or
//! no server.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::tokens::{Failure, FailureKind, Lease};
use super::{Refusal, Shared, route};

/// Request bodies up to this size are kept, so the request can be replayed after a 401 with a new token;
/// bigger ones (artifact uploads) stream and a 401 passes through.
pub const REPLAY_MAX: usize = 1 << 20;

/// Hop-by-hop fields (RFC 9110 §7.6.1, and the obsolete `Keep-Alive`/`Proxy-Connection`), plus what the proxy
/// sets itself (`Host`, `Authorization`, the framing) and `Expect` (the server side answers 100-continue).
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "authorization",
    "content-length",
    "expect",
];

/// The header fields of `headers` worth forwarding: not hop-by-hop, not named in `Connection`.
pub fn end_to_end<'h>(headers: impl Iterator<Item = (&'h str, &'h str)> + Clone) -> Vec<(&'h str, &'h str)> {
    let listed: Vec<String> = headers
        .clone()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    headers
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            !NOT_FORWARDED.contains(&n.as_str()) && !listed.contains(&n)
        })
        .collect()
}

/// MLflow's REST error body (`{"error_code": …, "message": …}`), which its clients turn into an exception
/// with this message.
pub fn mlflow_error(error_code: &str, message: &str) -> String {
    serde_json::json!({"error_code": error_code, "message": message}).to_string()
}

/// The status and MLflow error for a missing token.
pub fn token_failure(f: &Failure) -> (u16, String) {
    // Not 500/502/503/504: MLflow's Python client retries those for minutes and then shows "too many 503 error
    // responses" without our message. 424 (Failed Dependency: the token the request depends on) is not retried.
    let (status, code) = match f.kind {
        FailureKind::LoginRequired => (401, "UNAUTHENTICATED"),
        FailureKind::Unavailable => (424, "TEMPORARILY_UNAVAILABLE"),
        FailureKind::Other => (424, "INTERNAL_ERROR"),
        FailureKind::ShuttingDown => (503, "TEMPORARILY_UNAVAILABLE"),
    };
    (status, mlflow_error(code, &format!("mlflow-oidc: {}", f.message)))
}

/// Counts the bytes of a response body as they pass.
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond_text(req: tiny_http::Request, status: u16, content_type: &str, body: String) -> u64 {
    let n = body.len() as u64;
    let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
    if let Some(h) = header("Content-Type", content_type) {
        resp = resp.with_header(h);
    }
    let _ = req.respond(resp);
    n
}

/// Serve one request, then write its access log line.
pub(super) fn handle(shared: &Shared, req: tiny_http::Request) {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let routed = route(&method, req.url(), shared.capability.expose());
    let (path, status, bytes) = match routed {
        Err(refusal) => {
            let status = refusal.status();
            let why = match refusal {
                Refusal::NoCapability => "this URL lacks the proxy's capability: use the tracking URI it printed",
                Refusal::NotOriginForm => "not a forward proxy: only paths under the printed tracking URI",
                Refusal::Connect => "CONNECT is not supported: not a forward proxy",
                Refusal::DotSegments => "dot segments are not forwarded",
            };
            let bytes = respond_text(req, status, "text/plain; charset=utf-8", format!("mlflow-oidc proxy: {why}\n"));
            ("(refused)".to_owned(), status, bytes)
        }
        Ok(forwarded) => {
            let path = forwarded.split('?').next().unwrap_or_default().to_owned();
            let (status, bytes) = forward(shared, req, &forwarded);
            (path, status, bytes)
        }
    };
    if let Some(log) = &shared.log {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        log(&format!("proxy: {method} {} {status} {bytes} B {ms:.1} ms", crate::error::printable(&path)));
    }
}

/// The request body as the upstream request gets it.
enum Body<'r> {
    Kept(&'r [u8]),
    Stream(&'r mut dyn Read),
}

fn forward(shared: &Shared, mut req: tiny_http::Request, forwarded: &str) -> (u16, u64) {
    let upgrade = req.headers().iter().any(|h| {
        (h.field.equiv("Connection") && h.value.as_str().to_ascii_lowercase().contains("upgrade"))
            || h.field.equiv("Upgrade")
    });
    if upgrade {
        let body = mlflow_error("BAD_REQUEST", "mlflow-oidc proxy: protocol upgrades are not supported");
        return (501, respond_text(req, 501, "application/json", body));
    }
    let url = format!("{}{forwarded}", shared.upstream.as_str().trim_end_matches('/'));
    let Ok(uri) = url.parse::<http::Uri>() else {
        let body = mlflow_error("BAD_REQUEST", "mlflow-oidc proxy: the request target is not a valid URI");
        return (400, respond_text(req, 400, "application/json", body));
    };
    let method = req.method().as_str().to_owned();
    let headers: Vec<(String, String)> =
        end_to_end(req.headers().iter().map(|h| (h.field.as_str().as_str(), h.value.as_str())))
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
    // No Content-Length and no Transfer-Encoding: no body (RFC 9112 §6.3), which a replay can resend.
    let chunked = req.headers().iter().any(|h| h.field.equiv("Transfer-Encoding"));
    let length = req.body_length().or(if chunked { None } else { Some(0) });
    let mut lease = match shared.tokens.current() {
        Ok(l) => l,
        Err(f) => return failed(req, &f),
    };
    // Small bodies are kept for a replay; the rest streams.
    let mut kept = None;
    if let Some(n) = length
        && n <= REPLAY_MAX
    {
        let mut buf = Vec::with_capacity(n);
        if req.as_reader().take(n as u64).read_to_end(&mut buf).is_err() {
            return (400, 0);
        }
        kept = Some(buf);
    }
    let (mut retried_401, mut fresh) = (false, kept.is_none());
    let resp = loop {
        let body = match &kept {
            Some(buf) => Body::Kept(buf.as_slice()),
            None => Body::Stream(req.as_reader()),
        };
        let agent = if fresh { &shared.fresh_agent } else { &shared.agent };
        let sent = send(agent, &method, &uri, &headers, length, &lease, body);
        match sent {
            Ok(r) if r.status() == 401 && kept.is_some() && !retried_401 => {
                retried_401 = true;
                lease = match shared.tokens.rejected(lease.generation) {
                    Ok(l) => l,
                    Err(f) => return failed(req, &f),
                };
            }
            Ok(r) => break r,
            // A kept-alive connection the server closed meanwhile (Apache's event MPM drops idle ones when
            // its workers are busy) fails before any answer: a replayable request goes once more, on a new
            // connection. MLflow's own client retries every method on 5xx, so a rare duplicate is no worse.
            Err(e) if !fresh && stale_connection(&e) => fresh = true,
            Err(e) => {
                if let Some(log) = &shared.log {
                    log(&format!("proxy: the tracking server failed: {e}"));
                }
                let origin = shared.upstream.origin().ascii_serialization();
                let body = mlflow_error(
                    "TEMPORARILY_UNAVAILABLE",
                    &format!("mlflow-oidc proxy: cannot reach the tracking server {origin}: {e}"),
                );
                return (502, respond_text(req, 502, "application/json", body));
            }
        }
    };
    relay(req, resp)
}

fn stale_connection(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        ureq::Error::Io(io) => matches!(io.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof),
        ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

fn failed(req: tiny_http::Request, f: &Failure) -> (u16, u64) {
    let (status, body) = token_failure(f);
    (status, respond_text(req, status, "application/json", body))
}

fn send(
    agent: &ureq::Agent,
    method: &str,
    uri: &http::Uri,
    headers: &[(String, String)],
    length: Option<usize>,
    lease: &Lease,
    body: Body<'_>,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let mut b = http::Request::builder().method(method).uri(uri.clone());
    for (n, v) in headers {
        b = b.header(n.as_str(), v.as_str());
    }
    let mut auth = http::HeaderValue::try_from(format!("Bearer {}", lease.token.expose()))
        .map_err(|_| ureq::Error::BadUri("token is not a valid header value".into()))?;
    auth.set_sensitive(true);
    b = b.header(http::header::AUTHORIZATION, auth);
    // The client's framing is kept: a length when it sent one (0 included when the method carries content),
    // else chunked.
    let has_content = !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
    match length {
        Some(0) if !has_content => {}
        Some(n) => b = b.header(http::header::CONTENT_LENGTH, n),
        None => {}
    }
    let run = |r: http::Request<ureq::SendBody<'_>>| agent.run(r);
    match (body, length) {
        (Body::Kept(buf), _) if buf.is_empty() && !has_content => {
            run(b.body(ureq::SendBody::none()).map_err(|e| ureq::Error::BadUri(e.to_string()))?)
        }
        (Body::Kept(mut buf), _) => {
            run(b.body(ureq::SendBody::from_reader(&mut buf)).map_err(|e| ureq::Error::BadUri(e.to_string()))?)
        }
        (Body::Stream(r), _) => {
            run(b.body(ureq::SendBody::from_reader(r)).map_err(|e| ureq::Error::BadUri(e.to_string()))?)
        }
    }
}

/// Stream the tracking server's response to the client, keeping its length when it gave one.
fn relay(req: tiny_http::Request, resp: http::Response<ureq::Body>) -> (u16, u64) {
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let length = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let pairs: Vec<(&str, &str)> =
        parts.headers.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))).collect();
    let headers: Vec<tiny_http::Header> =
        end_to_end(pairs.iter().copied()).into_iter().filter_map(|(n, v)| header(n, v)).collect();
    let n = Arc::new(AtomicU64::new(0));
    let reader = Counting { inner: body.into_reader(), n: n.clone() };
    let response = tiny_http::Response::new(tiny_http::StatusCode(status), headers, reader, length, None)
        // Keep Content-Length as the server sent it (tiny_http switches to chunked above 32 KiB otherwise).
        .with_chunked_threshold(usize::MAX);
    let _ = req.respond(response);
    (status, n.load(Ordering::Relaxed))
}
