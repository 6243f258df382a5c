//! The loopback redirect listener (RFC 8252 §7.3): bind before the browser opens, wait for the one request that
//! carries our `state` (ignoring everything else) until a deadline, and hold the browser's connection open so the
//! page it finally shows says how the whole login ended.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Detail, Error, Result};

mod page;
#[cfg(test)]
mod tests;
mod tls;

use page::handle_conn;
pub use page::{Reply, judge, judge_request};
pub use tls::TlsFiles;

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
    /// For an `https://` redirect URI: the server side of TLS.
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The configured redirect URI when it asked for any free port (port 0): a wait that times out then most
    /// likely met a provider that matches redirect URIs exactly (issue 16), and says so.
    random_port: Option<String>,
}

/// What the callback carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Callback {
    Code { code: String, iss: Option<String> },
    Error { error: String, description: Option<String> },
}

/// Bind the redirect URI's port, or else the first free one of `fallback_ports` (for providers that register exact
/// redirect URIs). The URI sent to the provider names the port actually bound.
pub fn bind_any(redirect_uri: &str, fallback_ports: &[u16], tls: Option<TlsFiles<'_>>) -> Result<Listener> {
    let first = bind(redirect_uri, tls);
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
        match bind(&candidate, tls) {
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

/// Bind the redirect URI's host and port; never a wildcard address. An `https://` redirect needs `tls`.
pub fn bind(redirect_uri: &str, tls: Option<TlsFiles<'_>>) -> Result<Listener> {
    let u = url::Url::parse(redirect_uri)
        .map_err(|e| Error::config(format!("redirect URI {redirect_uri} is not a valid URL ({e})")))?;
    let tls = tls_for(redirect_uri, &u, tls)?;
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
    let actual = sockets[0]
        .local_addr()
        .map_err(|e| Error::Interaction(Detail::with_source(format!("listener has no address: {e}"), e)))?;
    let random_port = (port == 0).then(|| redirect_uri.to_string());
    let redirect_uri = if port == 0 { with_port(redirect_uri, &u, actual.port()) } else { redirect_uri.to_string() };
    for s in &sockets {
        s.set_nonblocking(true)
            .map_err(|e| Error::Interaction(Detail::with_source(format!("cannot configure the listener: {e}"), e)))?;
    }
    let hosts = allowed_hosts(&sockets, localhost, actual.port());
    Ok(Listener { sockets, redirect_uri, path: u.path().to_string(), hosts, notes, tls, random_port })
}

/// The TLS server side an `https://` redirect needs, or the error saying what to set.
fn tls_for(
    redirect_uri: &str,
    u: &url::Url,
    tls: Option<TlsFiles<'_>>,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    Ok(match (u.scheme(), tls) {
        ("https", Some(files)) => Some(tls::server_config(&files)?),
        ("https", None) => {
            return Err(Error::config(format!(
                "redirect URI {redirect_uri} uses https://, so the loopback listener must serve TLS: set \
                 `redirect-tls-cert` and `redirect-tls-key` to a PEM certificate (for this host name) and its key — \
                 mlflow-oidc bundles none, because a bundled key would be public and any local program could \
                 serve it — or use an http:// loopback redirect (RFC 8252 §7.3), which providers accept for native \
                 clients"
            )));
        }
        _ => None,
    })
}

/// Fail before the provider is contacted when the redirect cannot be served (an https one without TLS files).
pub fn preflight(redirect_uri: &str, tls: Option<TlsFiles<'_>>) -> Result<()> {
    let u = url::Url::parse(redirect_uri)
        .map_err(|e| Error::config(format!("redirect URI {redirect_uri} is not a valid URL ({e})")))?;
    tls_for(redirect_uri, &u, tls).map(|_| ())
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
        let actual = v4
            .local_addr()
            .map_err(|e| Error::Interaction(Detail::with_source(format!("listener has no address: {e}"), e)))?
            .port();
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
            let what = format!("cannot listen on {shown}:{port} for redirect URI {redirect_uri}: {e}");
            Error::Interaction(Detail::with_source(what, e))
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
                return Err(self.timed_out());
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

    fn timed_out(&self) -> Error {
        let m = "timed out waiting for the browser login: run `mlflow-oidc login` again (`--timeout` waits longer)";
        match &self.random_port {
            None => Error::interaction(m),
            Some(configured) => Error::interaction(format!(
                "{m}. With port 0 in redirect-uri ({configured}) the provider most likely refused the redirect URI \
                 because it matches them exactly (its page in the browser says so): register the exact URI with a \
                 fixed port at the provider, set that port in `redirect-uri`, and list fallbacks in `redirect-ports`"
            )),
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
        let Some(conn) = tls::Conn::new(stream, self.tls.as_ref()) else {
            lock(open).conns.retain(|(i, _)| *i != id);
            return;
        };
        let (path, state, hosts) = (self.path.clone(), state.to_string(), self.hosts.clone());
        let (results, registry) = (results.clone(), open.clone());
        let spawned = std::thread::Builder::new().name("callback".into()).spawn(move || {
            let got = handle_conn(conn, &path, &state, &hosts, || lock(&registry).conns.retain(|(i, _)| *i != id));
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
