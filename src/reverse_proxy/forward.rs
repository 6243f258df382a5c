//! One request through the proxy: refuse it or forward it with the bearer token, stream both bodies, retry
//! once on a 401 when the body can be replayed (and not again for a token the server rejected right after its
//! renewal), and speak MLflow's REST error shape when there is no token or no server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

use super::idle::{Idle, Stalled};
use super::tokens::{Failure, FailureKind, Lease};
use super::{Refusal, Shared, route};

/// The body of every response the proxy sends.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// Request bodies up to this size are kept, so the request can be replayed after a 401 with a new token;
/// bigger ones (artifact uploads) stream and a 401 passes through.
pub const REPLAY_MAX: usize = 1 << 20;

/// After a 401 to a token renewed for the very 401 before it, 401s to that token pass through for this long
/// instead of a renewal each (an upstream that rejects every token would otherwise get a grant per request).
pub const DISTRUST_FOR: Duration = Duration::from_secs(30);

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

/// The header fields of `headers` worth forwarding: not hop-by-hop, not named in `Connection`, and none that
/// carries `secret` (the capability in a `Referer` or `Origin` the client built from the proxy's URI: the
/// tracking server has no business learning it).
pub(super) fn forwardable(headers: &HeaderMap, secret: &str) -> HeaderMap {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        let carries = !secret.is_empty() && value.as_bytes().windows(secret.len()).any(|w| w == secret.as_bytes());
        if !NOT_FORWARDED.contains(&n) && !listed.iter().any(|l| l == n) && !carries {
            out.append(name.clone(), value.clone());
        }
    }
    out
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

fn full(status: u16, content_type: &str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap_or(json()));
    resp
}

fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    full(status, "application/json", mlflow_error(code, message))
}

/// Every request slot is taken: MLflow's clients retry a 503 (after `Retry-After`).
pub(super) fn all_slots_busy() -> Response<Body> {
    let mut r = error(503, "TEMPORARILY_UNAVAILABLE", "mlflow-oidc proxy: too many requests at once; retry later");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A request whose handling panicked (a bug): the client gets an answer, the proxy goes on.
pub(super) fn internal_error() -> Response<Body> {
    error(500, "INTERNAL_ERROR", "mlflow-oidc proxy: internal error while forwarding this request")
}

/// Something the user should see even without `-v` (stderr), for what threatens the proxy itself.
pub(super) fn warn(shared: &Shared, line: &str) {
    match &shared.log {
        Some(log) => log(line),
        None => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "mlflow-oidc: {line}");
        }
    }
}

/// The request target as the client sent it: origin-form as is, anything else in full (and refused).
fn target(uri: &http::Uri) -> String {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return uri.to_string();
    }
    uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

/// Serve one request, then write its access log line.
pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let (path, resp) = match route(method.as_str(), &target(req.uri()), shared.capability.expose()) {
        Err(refusal) => {
            let why = match refusal {
                Refusal::NoCapability => "this URL lacks the proxy's capability: use the tracking URI it printed",
                Refusal::NotOriginForm => "not a forward proxy: only paths under the printed tracking URI",
                Refusal::Connect => "CONNECT is not supported: not a forward proxy",
                Refusal::DotSegments => "dot segments (also encoded or with ;parameters) are not forwarded",
            };
            // The body is never read: hyper closes the connection instead of draining it, whatever length it
            // claims.
            let resp = full(refusal.status(), "text/plain; charset=utf-8", format!("mlflow-oidc proxy: {why}\n"));
            ("(refused)".to_owned(), resp)
        }
        Ok(forwarded) => {
            // The tests' way to make a request's handling panic (issue 20: a panic gives its slot back).
            #[cfg(test)]
            if forwarded == "/__panic" {
                panic!("a panic while forwarding, as a test asked");
            }
            let path = forwarded.split('?').next().unwrap_or_default().to_owned();
            (path, forward(&shared, req, &forwarded).await)
        }
    };
    if shared.log.is_some() {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let length = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-");
        let status = resp.status().as_u16();
        shared.log(&format!("proxy: {method} {} {status} {length} B {ms:.1} ms", crate::error::printable(&path)));
    }
    resp
}

async fn current(shared: &Shared) -> Result<Lease, Failure> {
    if let Some(lease) = shared.tokens.current_now() {
        return Ok(lease);
    }
    let tokens = shared.tokens.clone();
    blocking(move || tokens.current()).await
}

async fn rejected(shared: &Shared, generation: u64) -> Result<Lease, Failure> {
    let tokens = shared.tokens.clone();
    blocking(move || tokens.rejected(generation)).await
}

/// The token cell waits on a condition variable (for a renewal, at most `tokens::WAIT_AT_MOST`): off the
/// runtime's workers.
async fn blocking(f: impl FnOnce() -> Result<Lease, Failure> + Send + 'static) -> Result<Lease, Failure> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(Failure { kind: FailureKind::Other, message: "the token renewal was interrupted".into() })
    })
}

fn failed(f: &Failure) -> Response<Body> {
    let (status, body) = token_failure(f);
    full(status, "application/json", body)
}

fn distrusted(shared: &Shared, generation: u64) -> bool {
    let d = shared.distrusted.lock().unwrap_or_else(|p| p.into_inner());
    matches!(*d, Some((g, until)) if g == generation && Instant::now() < until)
}

async fn forward(shared: &Shared, req: Request<Incoming>, forwarded: &str) -> Response<Body> {
    let upgrade = req.headers().contains_key(header::UPGRADE)
        || req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    if upgrade {
        return error(501, "BAD_REQUEST", "mlflow-oidc proxy: protocol upgrades are not supported");
    }
    let url = format!("{}{forwarded}", shared.upstream.as_str().trim_end_matches('/'));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return error(400, "BAD_REQUEST", "mlflow-oidc proxy: the request target is not a valid URI");
    };
    let (parts, body) = req.into_parts();
    let body = Idle::new(body, shared.body_timeout);
    let headers = forwardable(&parts.headers, shared.capability.expose());
    // hyper has checked the framing: a valid length (or chunked), never both.
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // No Content-Length and no Transfer-Encoding: no body (RFC 9112 §6.3), which a replay can resend.
    let declared = if chunked { None } else { Some(length.unwrap_or(0)) };
    let mut lease = match current(shared).await {
        Ok(l) => l,
        Err(f) => return failed(&f),
    };
    // Small bodies are kept for a replay; the rest streams.
    let (mut kept, mut stream) = (None, None);
    match declared {
        Some(n) if n <= REPLAY_MAX as u64 => match Limited::new(body, REPLAY_MAX).collect().await {
            Ok(b) => kept = Some(b.to_bytes()),
            Err(e) => return body_failed(e.as_ref()),
        },
        _ => stream = Some(body),
    }
    let has_content =
        !matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE);
    let (mut renewed, mut resent) = (false, false);
    loop {
        let body: super::upstream::ReqBody = match (&kept, stream.take()) {
            (Some(b), _) => Full::new(b.clone()).map_err(|never| match never {}).boxed(),
            (None, Some(s)) => s.boxed(),
            // Only kept bodies are sent twice.
            (None, None) => return internal_error(),
        };
        let mut up = Request::builder().method(parts.method.clone()).uri(uri.clone()).body(body).unwrap_or_default();
        *up.headers_mut() = headers.clone();
        let Ok(mut auth) = HeaderValue::try_from(format!("Bearer {}", lease.token.expose())) else {
            return failed(&Failure {
                kind: FailureKind::Other,
                message: "the token is not a valid header value".into(),
            });
        };
        auth.set_sensitive(true);
        up.headers_mut().insert(header::AUTHORIZATION, auth);
        // The client's framing is kept: a length when it sent one (0 included when the method carries content),
        // else chunked.
        match declared {
            Some(0) if !has_content => {}
            Some(n) => {
                up.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {}
        }
        // A streamed body cannot be sent twice: it never risks a pooled connection the server may be closing.
        let client = if resent || kept.is_none() { &shared.fresh_client } else { &shared.client };
        let sent = tokio::time::timeout(shared.upstream_timeout, client.request(up)).await;
        match sent {
            Err(_) => {
                let origin = shared.upstream.origin().ascii_serialization();
                return error(
                    504,
                    "TEMPORARILY_UNAVAILABLE",
                    &format!(
                        "mlflow-oidc proxy: the tracking server {origin} did not answer within {} s \
                         (MLFLOW_OIDC_PROXY_UPSTREAM_TIMEOUT)",
                        shared.upstream_timeout.as_secs()
                    ),
                );
            }
            Ok(Ok(r)) if r.status() == StatusCode::UNAUTHORIZED && kept.is_some() && !renewed => {
                if distrusted(shared, lease.generation) {
                    return relay(shared, r, forwarded);
                }
                // Dropping the unread 401 closes its connection: a replay never reuses a connection in an
                // unknown state (issue 20's hang was a lost connection, not this, but the rule stands).
                drop(r);
                renewed = true;
                lease = match rejected(shared, lease.generation).await {
                    Ok(l) => l,
                    Err(f) => return failed(&f),
                };
            }
            Ok(Ok(r)) => {
                if renewed && r.status() == StatusCode::UNAUTHORIZED {
                    *shared.distrusted.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((lease.generation, Instant::now() + DISTRUST_FOR));
                    shared
                        .log("proxy: the tracking server rejected a token renewed for it; 401s pass through for 30 s");
                }
                return relay(shared, r, forwarded);
            }
            // A kept-alive connection the server closed meanwhile (Apache's event MPM drops idle ones when its
            // workers are busy) fails before any answer: a replayable request goes once more, on a new
            // connection (proxy_e2e's 64 clients saw the pool hand out a second closed one). MLflow's own client
            // retries every method on 5xx, so a rare duplicate is no worse.
            Ok(Err(e)) if kept.is_some() && !resent && !e.is_connect() => {
                shared.log(&format!("proxy: resending after a broken connection to the tracking server: {e}"));
                resent = true;
            }
            Ok(Err(e)) if Stalled::find(&e).is_some() => return body_failed(&e),
            Ok(Err(e)) => {
                let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
                shared.log(&format!("proxy: the tracking server failed: {reason}"));
                let origin = shared.upstream.origin().ascii_serialization();
                return error(
                    502,
                    "TEMPORARILY_UNAVAILABLE",
                    &format!("mlflow-oidc proxy: cannot reach the tracking server {origin}: {reason}"),
                );
            }
        }
    }
}

/// The client's request body failed before it was all read: it stalled (408, RFC 9110 §15.5.9), or it was cut
/// off or too long for its declared length (400).
fn body_failed(e: &(dyn std::error::Error + 'static)) -> Response<Body> {
    match Stalled::find(e) {
        Some(s) => error(408, "BAD_REQUEST", &format!("mlflow-oidc proxy: {s}")),
        None => error(400, "BAD_REQUEST", "mlflow-oidc proxy: the request body was cut off"),
    }
}

/// The tracking server's response, as the client gets it: its status, end-to-end fields, length and body
/// (streamed). Every relayed response passes here: the place to recognise answers that need the user's
/// attention (issue 22: a guard's redirect to its login page).
fn relay(shared: &Shared, resp: Response<Incoming>, forwarded: &str) -> Response<Body> {
    if let Some(d) = login_page(resp.status().as_u16(), resp.headers(), forwarded) {
        // Relayed, the redirect would end in the provider's HTML login form, which MLflow's clients report as a
        // JSON decode error (mlflow/mlflow#17348): say what it is, in MLflow's REST error shape.
        shared.log(&format!("proxy: {d}"));
        return error(401, "UNAUTHENTICATED", &format!("mlflow-oidc proxy: {d}; {}", d.fix()));
    }
    let (parts, body) = resp.into_parts();
    let mut headers = forwardable(&parts.headers, "");
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, length.clone());
    }
    let mut out = Response::new(body.boxed());
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    out
}

/// A guard's login redirect or login page in answer to an MLflow API call (`/api/`, `/ajax-api/`), which never
/// redirects nor answers HTML; other paths (the UI, static files) are relayed as they are.
pub fn login_page(status: u16, headers: &http::HeaderMap, forwarded: &str) -> Option<crate::guard::Diagnosis> {
    let path = forwarded.split('?').next().unwrap_or_default();
    if !(path.starts_with("/api/") || path.starts_with("/ajax-api/")) {
        return None;
    }
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match crate::guard::diagnose(status, text(header::LOCATION), text(header::CONTENT_TYPE))? {
        crate::guard::Diagnosis::Refused { .. } => None,
        d => Some(d),
    }
}
