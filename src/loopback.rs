//! The loopback redirect listener (RFC 8252 §7.3): bind before the browser opens, wait for the one request that
//! carries our `state` (ignoring everything else) until a deadline, and hold the browser's connection open so the
//! page it finally shows says how the whole login ended.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, printable};
use crate::token::constant_time_eq;

/// Requests larger than this are answered 431 and dropped: a callback is a few hundred bytes.
const MAX_REQUEST: usize = 16 * 1024;
/// How long one connection may take to send its whole request head, across all its reads: a client dripping a
/// byte at a time must not hold a slot for longer (issue 12: a per-read limit let 70 slow clients stall a login).
const HEAD_DEADLINE: Duration = Duration::from_secs(3);
/// How long writing a page may take; the browser reads it at once, anything else is not worth waiting for.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections read at once. At the cap the *oldest* is closed to make room, never the newest: the browser's
/// real callback is always the newest when it arrives, so a flood of idle connections cannot lock it out.
const MAX_CONNECTIONS: usize = 64;
/// For port 0 on `localhost`: how many ports to try before giving up on finding one free on both addresses.
const DUAL_BIND_TRIES: usize = 8;

/// The page shown when the app never said how the login ended (an error path that dropped the reply).
const GENERIC_FAILURE: &str = "The login did not complete. Look at the terminal for the reason.";
const SUCCESS: &str = "You are logged in. You can close this tab and return to the terminal.";

/// A bound listener and the redirect URI to send (with the real port when the configured one was 0).
pub struct Listener {
    /// One socket per loopback address the redirect host names (two for `localhost`).
    sockets: Vec<TcpListener>,
    pub redirect_uri: String,
    path: String,
    /// The `Host` header values a request for this login may carry, lower-case.
    hosts: Vec<String>,
    /// Things worth a `--debug` line (an IPv6 loopback that could not be bound).
    pub notes: Vec<String>,
}

/// What the callback carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Callback {
    Code { code: String, iss: Option<String> },
    Error { error: String, description: Option<String> },
}

/// The browser's connection that delivered the callback, answered only once the app knows how the login ended,
/// so the browser never says "logged in" for a code the provider then refuses. Dropped unanswered, it sends a
/// generic failure page. A pasted callback has no connection and answers nothing.
#[derive(Debug)]
pub struct Reply {
    stream: Option<TcpStream>,
}

impl Reply {
    fn none() -> Self {
        Reply { stream: None }
    }

    /// Answer the browser: the success page, or a failure page naming `why` briefly (sanitised; the page is
    /// HTML-escaped) and pointing at the terminal for the rest.
    pub fn finish(mut self, outcome: std::result::Result<(), &str>) {
        let Some(mut stream) = self.stream.take() else { return };
        match outcome {
            Ok(()) => respond(&mut stream, 200, "Logged in", SUCCESS),
            Err(why) => {
                let why = printable(why);
                let text = format!("The login did not complete: {why}. Look at the terminal for details.");
                respond(&mut stream, 400, "Login failed", &text)
            }
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            respond(&mut stream, 400, "Login failed", GENERIC_FAILURE);
        }
    }
}

/// Bind the redirect URI's port, or else the first free one of `fallback_ports` (for providers that register exact
/// redirect URIs). The URI sent to the provider names the port actually bound.
pub fn bind_any(redirect_uri: &str, fallback_ports: &[u16]) -> Result<Listener> {
    let first = bind(redirect_uri);
    let Err(first_err) = first else { return first };
    if fallback_ports.is_empty() || !matches!(first_err, Error::PortInUse { .. }) {
        return Err(first_err);
    }
    let u = url::Url::parse(redirect_uri)
        .map_err(|e| Error::config(format!("redirect URI {redirect_uri} is not a valid URL ({e})")))?;
    let mut tried = vec![u.port_or_known_default().unwrap_or(0)];
    for &port in fallback_ports {
        if tried.contains(&port) {
            continue;
        }
        tried.push(port);
        let candidate = with_port(redirect_uri, &u, port);
        match bind(&candidate) {
            Ok(l) => return Ok(l),
            Err(Error::PortInUse { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    let list = tried.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
    Err(Error::PortInUse {
        port: tried[0],
        message: format!(
            "every loopback port for the redirect is in use ({list}): stop the program holding them \
             (`ss -ltnp` shows which) or add a free port to redirect-ports"
        ),
    })
}

/// Bind the redirect URI's host and port; never a wildcard address.
pub fn bind(redirect_uri: &str) -> Result<Listener> {
    let u = url::Url::parse(redirect_uri)
        .map_err(|e| Error::config(format!("redirect URI {redirect_uri} is not a valid URL ({e})")))?;
    let port = u.port_or_known_default().unwrap_or(0);
    let (ip, localhost) = match u.host() {
        Some(url::Host::Ipv4(ip)) => (IpAddr::V4(ip), false),
        Some(url::Host::Ipv6(ip)) => (IpAddr::V6(ip), false),
        // Validation allows only `localhost` as a name (config::validate).
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => (IpAddr::V4(Ipv4Addr::LOCALHOST), true),
        _ => return Err(Error::config(format!("redirect URI {redirect_uri} does not name a loopback address"))),
    };
    if !ip.is_loopback() {
        return Err(Error::config(format!("redirect URI {redirect_uri} does not name a loopback address")));
    }
    let mut notes = Vec::new();
    // A browser may resolve `localhost` to [::1] and try it first, so a listener on 127.0.0.1 alone leaves
    // [::1]:port to any other local user, who would receive the code (issue 12). Binding both addresses on one
    // port closes that and keeps the redirect URI exactly as registered (providers that match redirect URIs
    // exactly would refuse a rewritten 127.0.0.1 one), which is why the URI is not rewritten to the literal.
    let sockets = if localhost {
        bind_localhost(redirect_uri, port, &mut notes)?
    } else {
        vec![bind_one(redirect_uri, ip, port)?]
    };
    let actual = sockets[0].local_addr().map_err(|e| Error::interaction(format!("listener has no address: {e}")))?;
    let redirect_uri = if port == 0 { with_port(redirect_uri, &u, actual.port()) } else { redirect_uri.to_string() };
    for s in &sockets {
        s.set_nonblocking(true).map_err(|e| Error::interaction(format!("cannot configure the listener: {e}")))?;
    }
    let hosts = allowed_hosts(&sockets, localhost, actual.port());
    Ok(Listener { sockets, redirect_uri, path: u.path().to_string(), hosts, notes })
}

/// The `Host` values a browser sends for this listener: `localhost:port` for a `localhost` redirect, and the
/// bound address literals (which DNS cannot rebind). Without a port only when the port is HTTP's default.
fn allowed_hosts(sockets: &[TcpListener], localhost: bool, port: u16) -> Vec<String> {
    let mut names: Vec<String> = sockets
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| match a.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        })
        .collect();
    if localhost {
        names.push("localhost".into());
    }
    let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
    if port == 80 {
        hosts.extend(names);
    }
    hosts
}

/// 127.0.0.1 and [::1] on one port. For port 0 the kernel picks the IPv4 port and [::1] must follow; when that
/// port is taken on [::1], try another. No IPv6 on this machine means no [::1] to hijack: IPv4 alone, with a note.
fn bind_localhost(redirect_uri: &str, port: u16, notes: &mut Vec<String>) -> Result<Vec<TcpListener>> {
    for _ in 0..DUAL_BIND_TRIES {
        let v4 = bind_one(redirect_uri, IpAddr::V4(Ipv4Addr::LOCALHOST), port)?;
        let actual = v4.local_addr().map_err(|e| Error::interaction(format!("listener has no address: {e}")))?.port();
        match TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), actual)) {
            Ok(v6) => return Ok(vec![v4, v6]),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && port == 0 => continue,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(in_use(redirect_uri, "[::1]", port)),
            Err(e) => {
                notes.push(format!(
                    "cannot listen on [::1]:{actual} ({e}): no IPv6 loopback here, listening on 127.0.0.1 only"
                ));
                return Ok(vec![v4]);
            }
        }
    }
    Err(Error::PortInUse {
        port,
        message: format!(
            "no port was free on both 127.0.0.1 and [::1] after {DUAL_BIND_TRIES} tries (redirect URI {redirect_uri}): \
             another program holds many loopback ports; set redirect-uri to a fixed free port"
        ),
    })
}

fn bind_one(redirect_uri: &str, ip: IpAddr, port: u16) -> Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, port)).map_err(|e| {
        let shown = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        if e.kind() == std::io::ErrorKind::AddrInUse {
            in_use(redirect_uri, &shown, port)
        } else {
            Error::interaction(format!("cannot listen on {shown}:{port} for redirect URI {redirect_uri}: {e}"))
        }
    })
}

fn in_use(redirect_uri: &str, shown: &str, port: u16) -> Error {
    Error::PortInUse {
        port,
        message: format!(
            "port {port} on {shown} (from redirect URI {redirect_uri}) is in use by another program: \
             stop it (`ss -ltnp 'sport = :{port}'` shows which) or set redirect-uri to another port, \
             or port 0 if the provider accepts any loopback port"
        ),
    }
}

fn with_port(original: &str, u: &url::Url, port: u16) -> String {
    let mut v = u.clone();
    if v.set_port(Some(port)).is_err() {
        return original.to_string();
    }
    // Keep the path exactly as configured; Url would print "http://h:1/" for "http://h:1/".
    v.to_string()
}

/// Connections still sending their request head, oldest first, each with a handle that can close it.
#[derive(Default)]
struct Open {
    next: u64,
    conns: Vec<(u64, TcpStream)>,
}

type Registry = Arc<Mutex<Open>>;

fn lock(r: &Registry) -> std::sync::MutexGuard<'_, Open> {
    // A panicked reader thread leaves the list intact; keep using it rather than fail the login.
    r.lock().unwrap_or_else(|e| e.into_inner())
}

impl Listener {
    pub fn port(&self) -> u16 {
        self.sockets.first().and_then(|s| s.local_addr().ok()).map(|a| a.port()).unwrap_or(0)
    }

    /// Wait for the callback carrying `state` until `deadline`. Stray paths, other methods, and wrong or missing
    /// states are answered and ignored. `tick` is called about once a second with the time left.
    #[cfg(test)]
    pub fn wait(&self, state: &str, deadline: Instant, tick: impl FnMut(Duration)) -> Result<(Callback, Reply)> {
        self.wait_or_paste(state, deadline, None, tick, |_| {})
    }

    /// Like [`Listener::wait`], but a redirected URL pasted by the person (lines from `pasted`) is accepted too,
    /// under the same checks; a rejected paste is reported through `rejected` and the wait goes on.
    pub fn wait_or_paste(
        &self,
        state: &str,
        deadline: Instant,
        pasted: Option<&std::sync::mpsc::Receiver<String>>,
        mut tick: impl FnMut(Duration),
        mut rejected: impl FnMut(&str),
    ) -> Result<(Callback, Reply)> {
        let mut last_tick = Instant::now() - Duration::from_secs(2);
        let (results_tx, results) = std::sync::mpsc::channel();
        let open = Registry::default();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::interaction(
                    "timed out waiting for the browser login: run `mlflow-oidc login` again (`--timeout` waits longer)",
                ));
            }
            if now.duration_since(last_tick) >= Duration::from_secs(1) {
                tick(deadline - now);
                last_tick = now;
            }
            if let Some(rx) = pasted
                && let Ok(line) = rx.try_recv()
            {
                match self.judge_pasted(line.trim(), state) {
                    Ok(cb) => return Ok((cb, Reply::none())),
                    Err(why) => rejected(&why),
                }
            }
            if let Ok(got) = results.try_recv() {
                return Ok(got);
            }
            let mut idle = true;
            for socket in &self.sockets {
                match socket.accept() {
                    Ok((stream, _)) => {
                        idle = false;
                        self.serve(stream, state, &results_tx, &open);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => idle = false,
                    Err(_) => {}
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }

    /// Serve one connection on its own thread, so idle or slow clients cannot hold up the real callback. At
    /// [`MAX_CONNECTIONS`] the oldest ones still sending their head are closed first.
    fn serve(&self, stream: TcpStream, state: &str, results: &Sender<(Callback, Reply)>, open: &Registry) {
        // Without a second handle the connection could not be evicted later: not worth a slot.
        let Ok(handle) = stream.try_clone() else { return };
        let id = {
            let mut o = lock(open);
            while o.conns.len() >= MAX_CONNECTIONS {
                let (_, oldest) = o.conns.remove(0);
                let _ = oldest.shutdown(Shutdown::Both);
            }
            o.next += 1;
            let id = o.next;
            o.conns.push((id, handle));
            id
        };
        let (path, state, hosts) = (self.path.clone(), state.to_string(), self.hosts.clone());
        let (results, registry) = (results.clone(), open.clone());
        let spawned = std::thread::Builder::new().name("callback".into()).spawn(move || {
            let got = handle_conn(stream, &path, &state, &hosts, || lock(&registry).conns.retain(|(i, _)| *i != id));
            if let Some(got) = got {
                // If the wait is already over, the unsent reply drops here and shows the generic failure page.
                let _ = results.send(got);
            }
        });
        if spawned.is_err() {
            lock(open).conns.retain(|(i, _)| *i != id);
        }
    }

    /// A URL copied from the browser's address bar: the same checks as a request to the listener.
    fn judge_pasted(&self, line: &str, state: &str) -> std::result::Result<Callback, String> {
        if line.is_empty() {
            return Err("empty line ignored; paste the whole URL from the browser's address bar".into());
        }
        let Ok(u) = url::Url::parse(line) else {
            return Err("that is not a URL; paste the whole URL from the browser's address bar".into());
        };
        let target = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        let (outcome, _, _, text) = judge(&format!("GET {target} HTTP/1.1\r\n\r\n"), &self.path, state);
        outcome.ok_or(text)
    }
}

/// Serve one connection; `Some` only for the request that ends the wait. A code callback is not answered here:
/// its connection goes back with it, for [`Reply::finish`]. `done_reading` is called once the head is in, so the
/// connection is no longer one to evict.
fn handle_conn(
    mut stream: TcpStream,
    path: &str,
    state: &str,
    hosts: &[String],
    done_reading: impl FnOnce(),
) -> Option<(Callback, Reply)> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = read_head(&mut stream, Instant::now() + HEAD_DEADLINE);
    done_reading();
    let head = match head {
        Ok(h) => h,
        Err(status) => {
            respond(&mut stream, status, "Bad request", "This request was not understood.");
            return None;
        }
    };
    let (outcome, status, title, body) = judge_request(&head, path, state, hosts);
    match outcome {
        Some(cb @ Callback::Code { .. }) => Some((cb, Reply { stream: Some(stream) })),
        outcome => {
            respond(&mut stream, status, title, &body);
            outcome.map(|cb| (cb, Reply::none()))
        }
    }
}

/// [`judge`] for a request that reached the listener: its `Host` header must also name this listener (one of
/// `hosts`), or the request came from a page whose name was rebound to 127.0.0.1 (DNS rebinding) and is refused.
/// A request without `Host` (HTTP/1.0) is refused too: every browser sends one. Stray paths and methods are
/// answered 404/405 first, as there is nothing there for anyone.
pub fn judge_request(
    head: &str,
    path: &str,
    state: &str,
    hosts: &[String],
) -> (Option<Callback>, u16, &'static str, String) {
    let verdict = judge(head, path, state);
    if matches!(verdict.1, 404 | 405) {
        return verdict;
    }
    let mut found = head.lines().skip(1).take_while(|l| !l.is_empty()).filter_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim())
    });
    let (first, second) = (found.next(), found.next());
    match (first, second) {
        (Some(h), None) if hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h)) => verdict,
        (None, _) => (None, 400, "Login failed", "This request names no Host; it was ignored.".into()),
        (Some(_), Some(_)) => {
            (None, 400, "Login failed", "This request names more than one Host; it was ignored.".into())
        }
        (Some(h), _) => (
            None,
            400,
            "Login failed",
            format!(
                "This request was addressed to {}, not to this login's listener (a page using DNS rebinding?); \
                 it was ignored.",
                printable(h)
            ),
        ),
    }
}

/// Decide what a request head means: (outcome, status, page title, page text). The `Host` header is not looked
/// at here ([`judge_request`] does), so a URL pasted from the address bar is judged the same way.
pub fn judge(head: &str, path: &str, state: &str) -> (Option<Callback>, u16, &'static str, String) {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return (None, 405, "Method not allowed", "Only GET is served here.".into());
    }
    let (req_path, query) = target.split_once('?').unwrap_or((target, ""));
    if req_path != path {
        return (None, 404, "Not found", "Nothing here.".into());
    }
    let mut got_state = None;
    let (mut code, mut error, mut description, mut iss) = (None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "state" => &mut got_state,
            "code" => &mut code,
            "error" => &mut error,
            "error_description" => &mut description,
            "iss" => &mut iss,
            _ => continue,
        };
        if slot.is_some() {
            // A repeated parameter is ambiguous; refuse rather than guess which one the provider meant.
            return (None, 400, "Login failed", format!("The parameter {k} appears more than once."));
        }
        *slot = Some(v.into_owned());
    }
    if !got_state.as_deref().is_some_and(|s| constant_time_eq(s.as_bytes(), state.as_bytes())) {
        return (
            None,
            400,
            "Login failed",
            "This response does not belong to the login in progress (state mismatch); it was ignored.".into(),
        );
    }
    if let Some(error) = error {
        let text = match &description {
            Some(d) => format!("The identity provider refused the login: {error} ({d})."),
            None => format!("The identity provider refused the login: {error}."),
        };
        return (Some(Callback::Error { error, description }), 400, "Login failed", text);
    }
    match code {
        Some(code) if !code.is_empty() => (
            Some(Callback::Code { code, iss }),
            200,
            "Login received",
            // Not the page the browser gets: that waits for the code exchange (see `Reply`).
            "The login response was received; finishing the login in the terminal.".into(),
        ),
        _ => (None, 400, "Login failed", "The response carries no authorization code.".into()),
    }
}

/// Read up to the blank line ending the head, all of it before `deadline` however the bytes are spread out.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> std::result::Result<String, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_REQUEST {
            return Err(431);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout means "block forever" to the OS, so the deadline is checked here, not left to it.
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(408);
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(408),
        }
    }
    String::from_utf8(buf).map_err(|_| 400)
}

fn respond(stream: &mut TcpStream, status: u16, title: &str, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mlflow-oidc: {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}</style></head>\
         <body><h1>{title}</h1><p>{}</p><p><small>mlflow-oidc</small></p></body></html>",
        html_escape(text)
    );
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
    let _ = stream.flush();
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> String {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")
    }

    #[test]
    fn only_the_exact_path_with_our_state_ends_the_wait() {
        let p = "/oauth2/callback";
        assert_eq!(judge(&get("/favicon.ico"), p, "s").1, 404);
        assert_eq!(judge(&get("/oauth2/callback/x?code=c&state=s"), p, "s").1, 404);
        assert_eq!(judge("POST /oauth2/callback?code=c&state=s HTTP/1.1\r\n\r\n", p, "s").1, 405);
        let (o, status, ..) = judge(&get("/oauth2/callback?code=c&state=wrong"), p, "s");
        assert_eq!((o, status), (None, 400));
        assert_eq!(judge(&get("/oauth2/callback?code=c"), p, "s").0, None);
        assert_eq!(judge(&get("/oauth2/callback?state=s"), p, "s").0, None);
        assert_eq!(judge(&get("/oauth2/callback?state=s&state=s&code=c"), p, "s").0, None);
        let (o, status, ..) = judge(&get("/oauth2/callback?code=abc&state=s&iss=https%3A%2F%2Fi"), p, "s");
        assert_eq!(status, 200);
        assert_eq!(o, Some(Callback::Code { code: "abc".into(), iss: Some("https://i".into()) }));
    }

    #[test]
    fn provider_errors_with_our_state_end_the_wait() {
        let (o, status, _, text) =
            judge(&get("/cb?error=access_denied&error_description=End-User+aborted&state=s"), "/cb", "s");
        assert_eq!(status, 400);
        assert_eq!(
            o,
            Some(Callback::Error { error: "access_denied".into(), description: Some("End-User aborted".into()) })
        );
        assert!(text.contains("access_denied"));
        // With a foreign state, an error is ignored like any other stray request.
        assert_eq!(judge(&get("/cb?error=access_denied&state=x"), "/cb", "s").0, None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn port_zero_binds_a_free_loopback_port_and_reports_it() {
        let l = bind("http://127.0.0.1:0/oauth2/callback").unwrap();
        assert_ne!(l.port(), 0);
        assert_eq!(l.redirect_uri, format!("http://127.0.0.1:{}/oauth2/callback", l.port()));
        let busy = bind(&l.redirect_uri).err().unwrap();
        assert!(busy.to_string().contains(&l.port().to_string()), "{busy}");
    }

    /// A request for `target` on `port` (to `addr`) with this `Host`, and the whole answer.
    fn fetch(addr: IpAddr, port: u16, target: &str, host: &str) -> String {
        let mut s = TcpStream::connect((addr, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    fn status(response: &str) -> u16 {
        response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    #[test]
    fn a_real_callback_is_received_and_strays_are_skipped() {
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let port = l.port();
        let host = format!("127.0.0.1:{port}");
        let t = std::thread::spawn(move || {
            let mut answers = Vec::new();
            for target in ["/favicon.ico", "/cb?code=x&state=nope", "/cb?code=good&state=s"] {
                answers.push(fetch(V4, port, target, &host));
            }
            answers
        });
        let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
        assert_eq!(cb, Callback::Code { code: "good".into(), iss: None });
        reply.finish(Ok(()));
        let answers = t.join().unwrap();
        assert_eq!(answers.iter().map(|a| status(a)).collect::<Vec<_>>(), [404, 400, 200]);
        assert!(answers[2].contains("You are logged in"), "{}", answers[2]);
    }

    #[test]
    fn the_browser_hears_how_the_login_ended_not_just_that_a_code_arrived() {
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let port = l.port();
        let browser =
            |_| std::thread::spawn(move || fetch(V4, port, "/cb?code=c&state=s", &format!("127.0.0.1:{port}")));
        // A failure names what went wrong, escaped, and points at the terminal.
        let t = browser(());
        let (_, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!t.is_finished(), "the browser was answered before the app knew the outcome");
        reply.finish(Err("the provider said <b>invalid_grant</b>\u{1b}[2J"));
        let page = t.join().unwrap();
        assert_eq!(status(&page), 400, "{page}");
        assert!(page.contains("the provider said &lt;b&gt;invalid_grant&lt;/b&gt;[2J"), "{page}");
        assert!(page.contains("Look at the terminal") && !page.contains("logged in"), "{page}");
        // A reply the app dropped (an error path) still tells the browser the login failed.
        let t = browser(());
        drop(l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap());
        let page = t.join().unwrap();
        assert_eq!(status(&page), 400, "{page}");
        assert!(page.contains("did not complete"), "{page}");
    }

    #[test]
    fn the_request_head_has_one_deadline_across_reads() {
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let port = l.port();
        let t = std::thread::spawn(move || {
            let mut s = TcpStream::connect((V4, port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let started = Instant::now();
            let mut out = String::new();
            // One byte every 500 ms never trips a per-read limit; the head deadline must close it anyway.
            for b in "GET /cb?code=c&state=s HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa".bytes() {
                if s.write_all(&[b]).is_err() {
                    break;
                }
                let mut buf = [0u8; 512];
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
                    Err(_) => {}
                }
                if !out.is_empty() {
                    break;
                }
            }
            (started.elapsed(), out)
        });
        let e = l.wait("s", Instant::now() + Duration::from_secs(8), |_| {}).unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        let (took, out) = t.join().unwrap();
        assert_eq!(status(&out), 408, "{out}");
        assert!(took < HEAD_DEADLINE + Duration::from_secs(2), "closed after {took:?}");
    }

    #[test]
    fn a_flood_of_idle_connections_evicts_the_oldest_not_the_callback() {
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let port = l.port();
        let t = std::thread::spawn(move || {
            let idle: Vec<TcpStream> =
                (0..MAX_CONNECTIONS + 6).map(|_| TcpStream::connect((V4, port)).unwrap()).collect();
            // Give the listener time to accept them all, so they hold every slot.
            std::thread::sleep(Duration::from_millis(500));
            let started = Instant::now();
            let page = fetch(V4, port, "/cb?code=c&state=s", &format!("127.0.0.1:{port}"));
            (idle, started.elapsed(), page)
        });
        let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
        assert_eq!(cb, Callback::Code { code: "c".into(), iss: None });
        reply.finish(Ok(()));
        let (idle, took, page) = t.join().unwrap();
        assert_eq!(status(&page), 200, "{page}");
        assert!(took < HEAD_DEADLINE, "the callback waited for idle connections to time out: {took:?}");
        // The oldest were closed to make room.
        let mut first = &idle[0];
        first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(first.read(&mut [0u8; 16]).unwrap_or(0), 0, "the oldest idle connection is still open");
    }

    #[test]
    fn localhost_binds_both_loopback_addresses_on_one_port() {
        let l = bind("http://localhost:0/cb").unwrap();
        let port = l.port();
        assert_eq!(l.redirect_uri, format!("http://localhost:{port}/cb"));
        let v6 = TcpListener::bind((V6, 0)).is_ok();
        if !v6 {
            assert!(!l.notes.is_empty(), "no IPv6 here: a note says so");
            return;
        }
        assert!(TcpListener::bind((V4, port)).is_err(), "127.0.0.1:{port} is free to hijack");
        assert!(TcpListener::bind((V6, port)).is_err(), "[::1]:{port} is free to hijack");
        let t = std::thread::spawn(move || fetch(V6, port, "/cb?code=v6&state=s", &format!("localhost:{port}")));
        let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
        assert_eq!(cb, Callback::Code { code: "v6".into(), iss: None });
        reply.finish(Ok(()));
        assert_eq!(status(&t.join().unwrap()), 200);
        // A fixed port whose [::1] half is taken is refused, naming [::1], rather than half-bound.
        let squatter = TcpListener::bind((V6, 0)).unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let e = bind(&format!("http://localhost:{taken}/cb")).err().unwrap();
        assert!(matches!(e, Error::PortInUse { .. }) && e.to_string().contains("[::1]"), "{e}");
    }

    #[test]
    fn the_host_header_must_name_the_listener() {
        let hosts = vec!["127.0.0.1:4000".to_string(), "localhost:4000".to_string()];
        let with = |host: &str| format!("GET /cb?code=c&state=s HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert!(judge_request(&with("127.0.0.1:4000"), "/cb", "s", &hosts).0.is_some());
        assert!(judge_request(&with("LocalHost:4000"), "/cb", "s", &hosts).0.is_some());
        for bad in ["evil.example:4000", "localhost:4001", "localhost", "127.0.0.1", "localhost.:4000", ""] {
            let (o, status, _, text) = judge_request(&with(bad), "/cb", "s", &hosts);
            assert_eq!((o, status), (None, 400), "Host {bad:?}");
            assert!(text.contains("ignored"), "{text}");
        }
        let (o, _, _, text) = judge_request(&with("evil.example:4000\u{1b}[2J"), "/cb", "s", &hosts);
        assert!(o.is_none() && text.contains("evil.example:4000[2J") && !text.contains('\u{1b}'), "{text}");
        let no_host = "GET /cb?code=c&state=s HTTP/1.0\r\n\r\n";
        assert_eq!(judge_request(no_host, "/cb", "s", &hosts).1, 400);
        let twice = "GET /cb?code=c&state=s HTTP/1.1\r\nHost: localhost:4000\r\nhost: evil:4000\r\n\r\n";
        assert!(judge_request(twice, "/cb", "s", &hosts).0.is_none());
        // Stray paths stay 404 whatever the Host: nothing is there for anyone.
        assert_eq!(judge_request("GET /x HTTP/1.1\r\nHost: evil:1\r\n\r\n", "/cb", "s", &hosts).1, 404);
        // A rebinding page's request does not end the wait; the real one afterwards does.
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let port = l.port();
        let t = std::thread::spawn(move || {
            let evil = fetch(V4, port, "/cb?code=c&state=s", &format!("evil.example:{port}"));
            let real = fetch(V4, port, "/cb?code=real&state=s", &format!("127.0.0.1:{port}"));
            (evil, real)
        });
        let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
        assert_eq!(cb, Callback::Code { code: "real".into(), iss: None });
        reply.finish(Ok(()));
        let (evil, real) = t.join().unwrap();
        assert_eq!((status(&evil), status(&real)), (400, 200), "{evil}");
    }

    #[test]
    fn the_wait_ends_at_the_deadline() {
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let e = l.wait("s", Instant::now() + Duration::from_millis(100), |_| {}).unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
