//! The loopback redirect listener (RFC 8252 §7.3): bind before the browser opens, then wait for the one
//! request that carries our `state`, ignoring everything else, until a deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::token::constant_time_eq;

/// Requests larger than this are answered 431 and dropped: a callback is a few hundred bytes.
const MAX_REQUEST: usize = 16 * 1024;
/// How long one connection may take to send its request; a slow client must not stall the login.
const PER_CONNECTION: Duration = Duration::from_secs(3);
/// Connections served at once; a flood beyond this is closed unread.
const MAX_CONNECTIONS: usize = 64;

/// A bound listener and the redirect URI to send (with the real port when the configured one was 0).
pub struct Listener {
    listener: TcpListener,
    pub redirect_uri: String,
    path: String,
}

/// What the callback carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Callback {
    Code { code: String, iss: Option<String> },
    Error { error: String, description: Option<String> },
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
    let ip = match u.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        // RFC 8252 §8.3: bind the loopback address `localhost` resolves to, preferring IPv4.
        Some(url::Host::Domain(_)) => ("localhost", 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(|s| s.ip().is_loopback() && s.is_ipv4()))
            .map(|s| s.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        None => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    if !ip.is_loopback() {
        return Err(Error::config(format!("redirect URI {redirect_uri} does not name a loopback address")));
    }
    let listener = TcpListener::bind(SocketAddr::new(ip, port)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::PortInUse {
                port,
                message: format!(
                    "port {port} on {ip} (from redirect URI {redirect_uri}) is in use by another program: \
                 stop it (`ss -ltnp 'sport = :{port}'` shows which) or set redirect-uri to another port, \
                 or port 0 if the provider accepts any loopback port"
                ),
            }
        } else {
            Error::interaction(format!("cannot listen on {ip}:{port} for redirect URI {redirect_uri}: {e}"))
        }
    })?;
    let actual = listener.local_addr().map_err(|e| Error::interaction(format!("listener has no address: {e}")))?;
    let redirect_uri = if port == 0 { with_port(redirect_uri, &u, actual.port()) } else { redirect_uri.to_string() };
    listener.set_nonblocking(true).map_err(|e| Error::interaction(format!("cannot configure the listener: {e}")))?;
    Ok(Listener { listener, redirect_uri, path: u.path().to_string() })
}

fn with_port(original: &str, u: &url::Url, port: u16) -> String {
    let mut v = u.clone();
    if v.set_port(Some(port)).is_err() {
        return original.to_string();
    }
    // Keep the path exactly as configured; Url would print "http://h:1/" for "http://h:1/".
    v.to_string()
}

impl Listener {
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Wait for the callback carrying `state` until `deadline`. Stray paths, other methods, and wrong or missing
    /// states are answered and ignored. `tick` is called about once a second with the time left.
    #[cfg(test)]
    pub fn wait(&self, state: &str, deadline: Instant, tick: impl FnMut(Duration)) -> Result<Callback> {
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
    ) -> Result<Callback> {
        let mut last_tick = Instant::now() - Duration::from_secs(2);
        let (results_tx, results) = std::sync::mpsc::channel();
        let active = Arc::new(AtomicUsize::new(0));
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
                    Ok(cb) => return Ok(cb),
                    Err(why) => rejected(&why),
                }
            }
            if let Ok(cb) = results.try_recv() {
                return Ok(cb);
            }
            match self.listener.accept() {
                Ok((stream, _)) => self.serve(stream, state, &results_tx, &active),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(25)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => std::thread::sleep(Duration::from_millis(25)),
            }
        }
    }

    /// Serve one connection on its own thread, so idle or slow clients cannot hold up the real callback;
    /// beyond [`MAX_CONNECTIONS`] at once, new connections are closed unread.
    fn serve(&self, stream: TcpStream, state: &str, results: &Sender<Callback>, active: &Arc<AtomicUsize>) {
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            return;
        }
        let (path, state, results, counter) = (self.path.clone(), state.to_string(), results.clone(), active.clone());
        let spawned = std::thread::Builder::new().name("callback".into()).spawn(move || {
            if let Some(cb) = handle(stream, &path, &state) {
                let _ = results.send(cb);
            }
            counter.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Listener {
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

/// Serve one connection; `Some` only for the request that ends the wait.
fn handle(mut stream: TcpStream, path: &str, state: &str) -> Option<Callback> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(PER_CONNECTION));
    let _ = stream.set_write_timeout(Some(PER_CONNECTION));
    let head = match read_head(&mut stream) {
        Ok(h) => h,
        Err(status) => {
            respond(&mut stream, status, "Bad request", "This request was not understood.");
            return None;
        }
    };
    let (outcome, status, title, body) = judge(&head, path, state);
    respond(&mut stream, status, title, &body);
    outcome
}

/// Decide what a request head means: (outcome, status, page title, page text).
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
            "Logged in",
            "You are logged in. You can close this tab and return to the terminal.".into(),
        ),
        _ => (None, 400, "Login failed", "The response carries no authorization code.".into()),
    }
}

fn read_head(stream: &mut TcpStream) -> std::result::Result<String, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_REQUEST {
            return Err(431);
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

    #[test]
    fn a_real_callback_is_received_and_strays_are_skipped() {
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let port = l.port();
        let t = std::thread::spawn(move || {
            for target in ["/favicon.ico", "/cb?code=x&state=nope", "/cb?code=good&state=s"] {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(get(target).as_bytes()).unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
            }
        });
        let cb = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
        assert_eq!(cb, Callback::Code { code: "good".into(), iss: None });
        t.join().unwrap();
    }

    #[test]
    fn the_wait_ends_at_the_deadline() {
        let l = bind("http://127.0.0.1:0/cb").unwrap();
        let e = l.wait("s", Instant::now() + Duration::from_millis(100), |_| {}).unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
