//! The proxy's HTTP/1.1 server (hyper on the proxy's tokio runtime) and the limits a hostile local process meets
//! and a user never does (issue 20): a bounded request head read within a deadline that is also the idle
//! keep-alive timeout, a write timeout, a connection cap that evicts the least recently used idle connection, a
//! bounded number of requests in flight (over it: an MLflow-shaped 503 at once), a panic contained in its request
//! with its slot given back, and an accept loop that retries resource errors and says when it can serve no more.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Sleep;

use super::forward::{self, Body};
use super::{Shared, TokenCell};

/// The server's limits; the defaults are far above what MLflow clients do (a pool of 10-20 keep-alive
/// connections, request heads of a few hundred bytes).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open client connections; at the cap the least recently used idle one is closed for a new one, and
    /// when none is idle the new one gets a 503.
    pub max_connections: usize,
    /// Requests being served at once; over it a request gets a 503 at once.
    pub max_in_flight: usize,
    /// How long a connection may take to send a request head, counted from when it is ready for one: the
    /// head deadline and the idle keep-alive timeout.
    pub head_timeout: Duration,
    /// Request head size (request line and fields); over it: 431 and the connection is closed.
    pub max_head: usize,
    /// How long one write to a client may make no progress (a client that never reads, a pipeline it never
    /// collects) before its connection is closed.
    pub write_timeout: Duration,
    /// How long a request body may send nothing before the request is answered 408 (kept bodies) or ended
    /// (streamed ones); the in-flight slot it held is free again.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_in_flight: 128,
            head_timeout: Duration::from_secs(30),
            max_head: 64 << 10,
            write_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The server's read buffer: bounds what one connection holds of a request head, a body chunk or a pipeline
/// the client sent ahead (hyper reads no further until the buffered requests are answered).
const READ_BUF: usize = 256 << 10;
/// Accept errors (out of descriptors, of memory) are retried after this, doubling up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The running server, seen from the thread that started it.
pub(super) struct Handle {
    state: Arc<State>,
}

struct State {
    conns: Mutex<Table>,
    stopping: AtomicBool,
    stop: Notify,
    lost: Mutex<Option<String>>,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Conn>,
}

struct Conn {
    busy: usize,
    idle_since: Instant,
    close: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// A place for a new connection: at the cap, the least recently used idle connection is told to close
    /// and its place is taken; `None` when every connection is busy.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Notify>)> {
        let mut t = lock(&self.conns);
        if t.open.len() >= max && !t.evict_one() {
            return None;
        }
        t.next += 1;
        let id = t.next;
        let close = Arc::new(Notify::new());
        t.open.insert(id, Conn { busy: 0, idle_since: Instant::now(), close: close.clone() });
        Some((id, close))
    }

    fn busy(self: &Arc<Self>, id: u64) -> BusyGuard {
        if let Some(c) = lock(&self.conns).open.get_mut(&id) {
            c.busy += 1;
        }
        BusyGuard { state: self.clone(), id }
    }

    fn close_all(&self) {
        for c in lock(&self.conns).open.values() {
            c.close.notify_one();
        }
    }
}

impl Table {
    fn evict_one(&mut self) -> bool {
        let oldest = self.open.iter().filter(|(_, c)| c.busy == 0).min_by_key(|(_, c)| c.idle_since).map(|(id, _)| *id);
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a connection busy while one of its requests is served.
struct BusyGuard {
    state: Arc<State>,
    id: u64,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.state.conns).open.get_mut(&self.id) {
            c.busy = c.busy.saturating_sub(1);
            c.idle_since = Instant::now();
        }
    }
}

impl Handle {
    pub(super) fn stop(&self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.stop.notify_one();
        self.state.close_all();
    }

    pub(super) fn lost(&self) -> Option<String> {
        lock(&self.state.lost).clone()
    }

    /// Client connections open.
    pub(super) fn connections(&self) -> usize {
        lock(&self.state.conns).open.len()
    }
}

/// Serve `listener` on the current runtime. When the listener fails for good, [`Handle::lost`] says why and
/// `tokens` is closed, which ends the renewer's loop: the command then stops (and ends `exec`'s child) instead
/// of leaving a port nobody serves.
pub(super) fn start(listener: TcpListener, shared: Arc<Shared>, limits: Limits, tokens: Arc<TokenCell>) -> Handle {
    let state = Arc::new(State {
        conns: Mutex::new(Table::default()),
        stopping: AtomicBool::new(false),
        stop: Notify::new(),
        lost: Mutex::new(None),
    });
    let accepting = tokio::spawn(accept_loop(listener, shared, limits, state.clone()));
    let st = state.clone();
    tokio::spawn(async move {
        let why = match accepting.await {
            Ok(None) => return,
            Ok(Some(why)) => why,
            Err(e) if e.is_panic() => "the proxy's listener task panicked".to_owned(),
            Err(_) => return,
        };
        if !st.stopping.load(Ordering::SeqCst) {
            *lock(&st.lost) = Some(why);
            tokens.close();
        }
    });
    Handle { state }
}

/// Accept errors that pass: a descriptor or memory shortage, a connection reset before it was accepted.
fn transient(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return matches!(
            code,
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EAGAIN
                | libc::EINTR
                | libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ETIMEDOUT
        );
    }
    !matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::NotConnected | io::ErrorKind::Unsupported)
}

/// Accept until stopped (`None`) or until the listener fails for good (why).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, limits: Limits, state: Arc<State>) -> Option<String> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "its port".into());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_header_size(limits.max_head)
        .max_buf_size(READ_BUF.max(limits.max_head))
        .keep_alive(true)
        .half_close(false);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut backoff = BACKOFF_MIN;
    let mut last_said: Option<Instant> = None;
    loop {
        if state.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = state.stop.notified() => return None,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = BACKOFF_MIN;
                stream
            }
            Err(e) if transient(&e) => {
                // Out of descriptors: a connection nobody uses gives one back, and the listener stays.
                lock(&state.conns).evict_one();
                if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    last_said = Some(Instant::now());
                    let line = format!("proxy: cannot accept a connection on {addr}: {e}; retrying");
                    crate::reverse_proxy::forward::warn(&shared, &line);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(e) => return Some(format!("the proxy cannot accept connections on {addr} any more: {e}")),
        };
        let _ = stream.set_nodelay(true);
        let Some((id, close)) = state.admit(limits.max_connections) else {
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let (shared, state, slots, http) = (shared.clone(), state.clone(), slots.clone(), http.clone());
        let write_timeout = limits.write_timeout;
        tokio::spawn(async move {
            let io = TokioIo::new(Timed::new(stream, write_timeout));
            let st = state.clone();
            let svc = hyper::service::service_fn(move |req| serve(shared.clone(), st.clone(), id, slots.clone(), req));
            let conn = http.serve_connection(io, svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = close.notified() => {
                    // Idle: closes at once; busy (the proxy stops): the request in flight finishes.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            lock(&state.conns).open.remove(&id);
        });
    }
}

/// Every connection busy: say so in MLflow's shape, then close.
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = forward::mlflow_error(
        "TEMPORARILY_UNAVAILABLE",
        &format!("mlflow-oidc proxy: all {max} connections are busy; retry later"),
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Retry-After: 1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        // Read what came first so that closing does not reset the connection before the answer is read.
        let mut buf = vec![0; 8192];
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Aborts the request's task when the client's connection goes away (hyper drops the service future): the
/// upstream request is then dropped, which closes its connection to the tracking server.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a request in `Shared::busy` for as long as it is served.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    shared: Arc<Shared>,
    state: Arc<State>,
    id: u64,
    slots: Arc<Semaphore>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let _busy = state.busy(id);
    let Ok(_slot) = slots.try_acquire_owned() else {
        return Ok(forward::all_slots_busy());
    };
    shared.busy.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(shared.clone());
    // Its own task: a panic ends that task only, and the slot (held here) is given back either way.
    let mut task = AbortOnDrop(tokio::spawn(forward::handle(shared.clone(), req)));
    Ok(match (&mut task.0).await {
        Ok(resp) => resp,
        Err(e) => {
            let what = if e.is_panic() { "panicked" } else { "was cancelled" };
            forward::warn(&shared, &format!("proxy: a request {what}"));
            forward::internal_error()
        }
    })
}

/// A client connection whose writes fail once one makes no progress for `limit`.
struct Timed {
    io: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Timed {
    fn new(io: TcpStream, limit: Duration) -> Self {
        Timed { io, limit, stalled: None }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} s", limit.as_secs()),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Timed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Timed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check(cx, polled)
    }
}
