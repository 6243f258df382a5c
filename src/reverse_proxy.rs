//! `mlflow-oidc proxy`: a reverse proxy on a loopback port in front of one tracking server, which gives every
//! MLflow client (Java, R, TypeScript, curl — not only Python's) a fresh bearer token on every request.
//!
//! Only its user can use it: the URI it hands out carries a capability path prefix of 192 random bits, compared
//! in constant time; a request without it is answered 403 and never forwarded. It is no open proxy: only
//! origin-form targets under the capability are forwarded, only to the configured server's origin. Requests
//! are served by hyper's HTTP/1.1 server on a tokio runtime that only the proxy starts, with limits an attacker
//! meets and a user never does (`server`), and forwarded with hyper-util's pooled client (`upstream`), bodies
//! streamed both ways (`forward`).
//!
//! Why not tiny_http, the server before issue 20: besides allocating a refused body's declared length and an
//! accept thread that ended silently on EMFILE, its thread pool (`util::TaskPool::spawn`) loses connections. A
//! pool thread woken for one connection still counts as waiting until it re-takes the lock, so a second
//! connection accepted in that window is queued behind a `notify_one` nobody receives, and waits until some
//! other thread finishes a whole connection — with keep-alive and no read timeout, possibly never. That was the
//! hang of `an_upstream_401_renews_once_and_replays_small_bodies` (its fake upstream ran tiny_http: the 401's
//! unread body made ureq close that connection, the replay opened a new one that landed in the queue, and the
//! proxy waited 600 s for an answer while the pool's threads sat on idle pooled connections), and the proxy's
//! own listener had the same flaw towards its clients. Here every connection is a tokio task: nothing waits
//! for a thread, and the upstream response head has a deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::tokenset::Secret;

mod forward;
mod idle;
mod server;
pub mod tokens;
pub mod upstream;

pub use server::Limits;
pub use tokens::{Failure, FailureKind, Fresh, TokenCell};

/// Where the access log goes (`-v`): one line per request, never a token or the capability.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// What the proxy is started with.
pub struct Settings {
    pub listen: SocketAddr,
    /// The tracking server (origin and base path).
    pub upstream: url::Url,
    /// How to reach it.
    pub tls: upstream::UpstreamTls,
    /// How long the tracking server may take to start answering a request.
    pub upstream_timeout: Duration,
    pub limits: Limits,
    /// The access log, when asked for.
    pub log: Option<Log>,
}

/// State every request shares.
struct Shared {
    capability: Secret<String>,
    upstream: url::Url,
    client: upstream::Client,
    /// Without a pool: for the resend of a request whose pooled connection the server had closed.
    fresh_client: upstream::Client,
    upstream_timeout: Duration,
    /// How long a request body may pause (Limits::body_timeout).
    body_timeout: Duration,
    tokens: Arc<TokenCell>,
    log: Option<Log>,
    /// Requests being served (from the head read to the response head written).
    busy: AtomicUsize,
    /// A token the tracking server rejected right after it was renewed for that very rejection: its
    /// generation and until when its 401s pass through without asking for another renewal.
    distrusted: Mutex<Option<(u64, Instant)>>,
}

impl Shared {
    fn log(&self, line: &str) {
        if let Some(log) = &self.log {
            log(line);
        }
    }
}

/// A running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    server: server::Handle,
    runtime: Option<tokio::runtime::Runtime>,
    uri: Secret<String>,
    addr: SocketAddr,
    /// The listening socket, duplicated: tests make it fail under the server.
    #[cfg(all(test, unix))]
    listener: std::net::TcpListener,
}

/// Why a request is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The target does not start with the capability (403).
    NoCapability,
    /// Absolute-form, authority-form or asterisk-form target (400): we are not a forward proxy.
    NotOriginForm,
    /// `CONNECT` (405).
    Connect,
    /// Dot segments, plain or hidden (`%2e`, `..;x`, `..%2f`) (400): the capability must not be a way out of the
    /// server's base path, on a server that normalises them either.
    DotSegments,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoCapability => 403,
            Refusal::NotOriginForm | Refusal::DotSegments => 400,
            Refusal::Connect => 405,
        }
    }
}

/// The path and query to forward for request target `target`, or why it is refused. The capability is the
/// first path segment; it is stripped, and any run of slashes after it becomes one (a client that joins
/// `<uri>/` and `/api/…` sends `//api/…`).
pub fn route(method: &str, target: &str, capability: &str) -> std::result::Result<String, Refusal> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(Refusal::Connect);
    }
    let Some(rest) = target.strip_prefix('/') else { return Err(Refusal::NotOriginForm) };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (segment, after) = rest.split_at(end);
    // Lengths are public (the capability's is fixed); the bytes are compared in constant time.
    if !crate::tokenset::constant_time_eq(segment.as_bytes(), capability.as_bytes()) {
        return Err(Refusal::NoCapability);
    }
    let forwarded = format!("/{}", after.trim_start_matches('/'));
    let path = forwarded.split('?').next().unwrap_or_default();
    if path.split('/').any(hides_dot_segment) {
        return Err(Refusal::DotSegments);
    }
    Ok(forwarded)
}

/// Is `segment` a dot segment to a server that drops `;` parameters (Tomcat, Jetty), percent-decodes before it
/// normalises, or takes `\` and an encoded `/` as separators (RFC 3986 §3.3 and §6.2.2; issue 20)?
fn hides_dot_segment(segment: &str) -> bool {
    let bare = segment.split(';').next().unwrap_or_default();
    let decoded = percent_decode(bare);
    decoded.split(['/', '\\']).any(|s| s == "." || s == "..")
}

/// `%XX` decoded once (invalid escapes kept as they are); for comparison only.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh capability: 24 random bytes (192 bits) from the OS-seeded CSPRNG, base64url.
fn new_capability() -> Secret<String> {
    Secret::new(oauth2::CsrfToken::new_random_len(24).secret().clone())
}

impl Proxy {
    /// Bind and start serving on a runtime of its own. The listen address must be a loopback one unless
    /// `allow_remote` (then the caller warns).
    pub fn start(settings: Settings, tokens: Arc<TokenCell>) -> Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            // One worker: on the 2-core bench machine one worker beat two at 16 clients (74 % vs 51-63 % of
            // direct, wrk) and on latency (p50 +0.13 vs +0.20 ms), the proxy's work per request being small
            // next to the client's and the server's; a core still moves GB/s of body (BENCHMARKS.md).
            .worker_threads(1)
            .thread_name("proxy")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("cannot start the proxy's runtime", e))?;
        let _entered = runtime.enter();
        let std_listener = std::net::TcpListener::bind(settings.listen)
            .map_err(|e| Error::io(format!("cannot listen on {}", settings.listen), e))?;
        let addr = std_listener.local_addr().map_err(|e| Error::io("cannot read the proxy's address", e))?;
        std_listener.set_nonblocking(true).map_err(|e| Error::io(format!("cannot serve on {addr}"), e))?;
        #[cfg(all(test, unix))]
        let test_listener = std_listener.try_clone().map_err(|e| Error::io("cannot duplicate the listener", e))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| Error::io(format!("cannot serve on {addr}"), e))?;
        let client = upstream::client(&settings.upstream, &settings.tls, true)?;
        let fresh_client = upstream::client(&settings.upstream, &settings.tls, false)?;
        let capability = new_capability();
        let host = match addr {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        };
        let uri = Secret::new(format!("http://{host}:{}/{}/", addr.port(), capability.expose()));
        let shared = Arc::new(Shared {
            capability,
            upstream: settings.upstream,
            client,
            fresh_client,
            upstream_timeout: settings.upstream_timeout,
            body_timeout: settings.limits.body_timeout,
            tokens: tokens.clone(),
            log: settings.log,
            busy: AtomicUsize::new(0),
            distrusted: Mutex::new(None),
        });
        let server = server::start(listener, shared.clone(), settings.limits, tokens);
        drop(_entered);
        Ok(Proxy {
            shared,
            server,
            runtime: Some(runtime),
            uri,
            addr,
            #[cfg(all(test, unix))]
            listener: test_listener,
        })
    }

    /// The tracking URI for clients: `http://127.0.0.1:PORT/<capability>/`. A secret: whoever has it can act
    /// as the user on the tracking server.
    pub fn uri(&self) -> &Secret<String> {
        &self.uri
    }

    /// The address it listens on (no capability: fine to print).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Why the proxy can serve no more (its listener failed for good), once that happened; the token cell is
    /// closed at that moment, which ends the renewer's loop.
    pub fn lost(&self) -> Option<String> {
        self.server.lost()
    }

    /// Stop taking requests and let those in flight finish, for at most `grace`.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        self.server.stop();
        let deadline = Instant::now() + grace;
        let mut finished = true;
        while self.shared.busy.load(Ordering::SeqCst) > 0 || self.server.connections() > 0 {
            if Instant::now() >= deadline {
                finished = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // What is left (idle blocking-pool threads, connections cut off at the grace) is not waited for.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        finished
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            self.server.stop();
            rt.shutdown_background();
        }
    }
}

/// Is `addr` one the proxy may listen on without `--allow-non-loopback`?
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests;
