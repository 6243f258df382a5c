//! `mlflow-oidc proxy`: a reverse proxy on a loopback port in front of one tracking server, which gives every
//! MLflow client (Java, R, TypeScript, curl — not only Python's) a fresh bearer token on every request.
//!
//! Only its user can use it: the URI it hands out carries a capability path prefix of 192 random bits, compared
//! in constant time; a request without it is answered 403 and never forwarded. It is no open proxy: only
//! origin-form targets under the capability are forwarded, only to the configured server's origin. Requests
//! are served by a synchronous HTTP/1.1 server (`tiny_http`) and forwarded with the process's HTTP client
//! (`ureq`), bodies streamed both ways (see `forward`).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::token::Secret;

mod forward;
pub mod tokens;
pub mod upstream;

pub use tokens::{Failure, FailureKind, Fresh, TokenCell};

/// A worker waits this long for a request before it looks whether the proxy is stopping.
const POLL: Duration = Duration::from_millis(200);
/// Workers kept waiting for requests; more are started while all are busy, up to [`MAX_WORKERS`].
const MIN_WORKERS: usize = 4;
const MAX_WORKERS: usize = 512;

/// Where the access log goes (`-v`): one line per request, never a token or the capability.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// What the proxy is started with.
pub struct Settings {
    pub listen: SocketAddr,
    /// The tracking server (origin and base path).
    pub upstream: url::Url,
    pub agent: ureq::Agent,
    /// One without a connection pool: for streamed bodies, and the retry after a stale pooled connection.
    pub fresh_agent: ureq::Agent,
    /// The access log, when asked for.
    pub log: Option<Log>,
}

/// State every request thread shares.
struct Shared {
    server: tiny_http::Server,
    capability: Secret<String>,
    upstream: url::Url,
    agent: ureq::Agent,
    fresh_agent: ureq::Agent,
    tokens: Arc<TokenCell>,
    log: Option<Log>,
    stopping: AtomicBool,
    idle: AtomicUsize,
    workers: AtomicUsize,
    /// Requests being served, and a signal when one finishes.
    busy: Mutex<usize>,
    done: Condvar,
}

/// A running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    uri: Secret<String>,
    addr: SocketAddr,
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
    /// `..` segments (400): the capability must not be a way out of the server's base path.
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
    if !crate::token::constant_time_eq(segment.as_bytes(), capability.as_bytes()) {
        return Err(Refusal::NoCapability);
    }
    let forwarded = format!("/{}", after.trim_start_matches('/'));
    let path = forwarded.split('?').next().unwrap_or_default();
    let dot = |s: &str| s == ".." || s == "." || s.eq_ignore_ascii_case("%2e%2e") || s.eq_ignore_ascii_case(".%2e");
    if path.split('/').any(|s| dot(s) || s.eq_ignore_ascii_case("%2e.")) {
        return Err(Refusal::DotSegments);
    }
    Ok(forwarded)
}

/// A fresh capability: 24 random bytes (192 bits) from the OS-seeded CSPRNG, base64url.
fn new_capability() -> Secret<String> {
    Secret::new(oauth2::CsrfToken::new_random_len(24).secret().clone())
}

impl Proxy {
    /// Bind and start serving. The listen address must be a loopback one unless `allow_remote` (then the
    /// caller warns).
    pub fn start(settings: Settings, tokens: Arc<TokenCell>) -> Result<Proxy> {
        let listener = TcpListener::bind(settings.listen)
            .map_err(|e| Error::io(format!("cannot listen on {}", settings.listen), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("cannot read the proxy's address", e))?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| Error::config(format!("cannot serve on {addr}: {e}")))?;
        let capability = new_capability();
        let host = match addr {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        };
        let uri = Secret::new(format!("http://{host}:{}/{}/", addr.port(), capability.expose()));
        let shared = Arc::new(Shared {
            server,
            capability,
            upstream: settings.upstream,
            agent: settings.agent,
            fresh_agent: settings.fresh_agent,
            tokens,
            log: settings.log,
            stopping: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            busy: Mutex::new(0),
            done: Condvar::new(),
        });
        for _ in 0..MIN_WORKERS {
            spawn_worker(&shared);
        }
        Ok(Proxy { shared, uri, addr })
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

    /// Stop taking requests and let those in flight finish, for at most `grace`.
    pub fn shutdown(self, grace: Duration) -> bool {
        let s = &self.shared;
        s.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        let mut busy = s.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            busy = s.done.wait_timeout(busy, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

fn spawn_worker(shared: &Arc<Shared>) {
    if shared.workers.fetch_add(1, Ordering::SeqCst) >= MAX_WORKERS {
        shared.workers.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    shared.idle.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    let spawned = std::thread::Builder::new().name("proxy".into()).spawn(move || worker(&shared));
    if spawned.is_err() {
        // Out of threads: the workers there are keep serving.
    }
}

fn worker(shared: &Arc<Shared>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let req = match shared.server.recv_timeout(POLL) {
            Ok(Some(req)) => req,
            Ok(None) => continue,
            Err(_) => continue,
        };
        // The last idle worker starts another, so a slow upload never holds up the next client.
        if shared.idle.fetch_sub(1, Ordering::SeqCst) == 1 {
            spawn_worker(shared);
        }
        *shared.busy.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        forward::handle(shared, req);
        *shared.busy.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        shared.done.notify_all();
        shared.idle.fetch_add(1, Ordering::SeqCst);
    }
    shared.idle.fetch_sub(1, Ordering::SeqCst);
    shared.workers.fetch_sub(1, Ordering::SeqCst);
}

/// Is `addr` one the proxy may listen on without `--allow-non-loopback`?
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests;
