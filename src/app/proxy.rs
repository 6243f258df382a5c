//! `proxy` and `exec --proxy`: start the reverse proxy (src/reverse_proxy.rs) for the configured tracking server and
//! keep its token fresh with the `token` logic ([`valid_token`]: cache → refresh under the lock → machine
//! grant), on this thread, until a signal or the command's exit stops it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::session::Session;
use super::{Deps, ValidToken, Want, valid_token, write_out};
use crate::cli::{ExecArgs, ProxyArgs};
use crate::clock::{Clock, SystemClock};
use crate::config::{Flags, keys};
use crate::error::{Error, Result};
use crate::reverse_proxy::{self, Failure, FailureKind, Fresh, Proxy, TokenCell, upstream};

/// In-flight requests get this long to finish when the proxy stops.
const GRACE: Duration = Duration::from_secs(10);

pub(super) fn proxy(flags: &Flags, args: &ProxyArgs, deps: &mut Deps) -> Result<()> {
    let want = Want { min_valid: None, no_login: args.no_login, login_timeout: args.timeout };
    // One session for the proxy's lifetime: renewals reuse its configuration, store and provider.
    let mut session = Session::open(flags, deps)?;
    // A first token before the URI is printed (a login when one is needed and possible); without one the proxy
    // still starts, and answers clients with what to do until a token can be had.
    let first = match valid_token(&mut session, &want, deps) {
        Ok(got) => Some(got),
        Err(e @ (Error::Config(_) | Error::NoServer(_))) => return Err(e),
        Err(e) => {
            deps.warn(format!("{e}; the proxy starts anyway and tells MLflow clients so"));
            None
        }
    };
    let running = start(&session, args.listen, args.allow_non_loopback, args.allow_plain_http, first, deps)?;
    let stop = on_signals(&running.cell)?;
    write_out(deps, format!("{}\n", running.proxy.uri().expose()).as_bytes())?;
    deps.note(format!(
        "mlflow-oidc: proxy for {} on {}; stop it with Ctrl-C",
        running.upstream,
        running.proxy.local_addr()
    ));
    renew_until_closed(&running.cell, &running.server, &mut session, deps);
    let _ = stop;
    if let Some(why) = running.proxy.lost() {
        // Never a silent exit: whoever uses the URI must learn that nobody serves it any more.
        running.proxy.shutdown(Duration::ZERO);
        return Err(Error::network(format!("{why}; the proxy stopped (start it again for a new URI)")));
    }
    deps.debug("proxy: stopping");
    if !running.proxy.shutdown(GRACE) {
        deps.warn(format!("requests still running after {} s were cut off", GRACE.as_secs()));
    }
    Ok(())
}

/// `exec --proxy -- COMMAND`: the command gets `MLFLOW_TRACKING_URI` = the proxy's URI and no
/// `MLFLOW_TRACKING_TOKEN`; the proxy stops when it exits, and its exit code is ours.
pub(super) fn exec(flags: &Flags, args: &ExecArgs, deps: &mut Deps) -> Result<u8> {
    let want = Want { min_valid: args.min_valid, no_login: args.no_login, login_timeout: args.timeout };
    let mut session = Session::open(flags, deps)?;
    let got = valid_token(&mut session, &want, deps)?;
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let running = start(&session, listen, false, args.allow_plain_http, Some(got), deps)?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::config("no command given: mlflow-oidc exec --proxy -- COMMAND [ARGS...]"))?;
    let mut cmd = std::process::Command::new(program);
    // The capability travels in the environment only, never in argv (which every local user can read).
    cmd.args(rest).env("MLFLOW_TRACKING_URI", running.proxy.uri().expose()).env_remove("MLFLOW_TRACKING_TOKEN");
    // If we are killed outright, the command dies with us: it must never go on sending the capability and its
    // payloads to a port that another local process may bind next (issue 20).
    crate::pdeathsig::die_with_parent(&mut cmd);
    deps.print_warnings(); // Before the command's own output, which follows on the same stderr.
    let _ = deps.out.flush();
    let _ = deps.err.flush();
    let child = cmd.spawn().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound { ": not found on PATH" } else { "" };
        Error::io(format!("cannot run `{}`{hint}", program.to_string_lossy()), e)
    })?;
    // Ctrl-C reaches the command through the terminal's process group: we stay up to serve it until it exits.
    // A SIGTERM sent to us alone is passed on to it, as `exec` (which becomes the command) would get it.
    let (interrupted, terminated) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    for (sig, flag) in [(signal_hook::consts::SIGINT, &interrupted), (signal_hook::consts::SIGTERM, &terminated)] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| Error::io("cannot install the signal handlers", e))?;
    }
    let (cell, pid) = (running.cell.clone(), child.id());
    std::thread::spawn(move || {
        while !cell.is_closed() {
            if terminated.swap(false, Ordering::SeqCst) {
                let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let child = Arc::new(std::sync::Mutex::new(child));
    let (cell, waited) = (running.cell.clone(), child.clone());
    let waiter = std::thread::spawn(move || {
        let status = loop {
            match waited.lock().unwrap_or_else(|p| p.into_inner()).try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        cell.close();
        status
    });
    renew_until_closed(&running.cell, &running.server, &mut session, deps);
    if let Some(why) = running.proxy.lost() {
        // The command would go on talking to a port nobody serves, or that someone else binds: end it.
        end_child(&child);
        let _ = waiter.join();
        running.proxy.shutdown(Duration::ZERO);
        return Err(Error::network(format!(
            "{why}; `{}` was ended because its tracking URI is served no more",
            program.to_string_lossy()
        )));
    }
    let waited = waiter.join().unwrap_or_else(|_| Err(std::io::Error::other("the waiting thread panicked")));
    let status = waited.map_err(|e| Error::io(format!("cannot wait for `{}`", program.to_string_lossy()), e))?;
    running.proxy.shutdown(GRACE);
    Ok(exit_code(&status))
}

/// SIGTERM, then SIGKILL after 5 s.
fn end_child(child: &std::sync::Mutex<std::process::Child>) {
    let pid = child.lock().unwrap_or_else(|p| p.into_inner()).id();
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.lock().unwrap_or_else(|p| p.into_inner()).try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
}

fn exit_code(status: &std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return (128 + sig).clamp(0, 255) as u8;
        }
    }
    status.code().map_or(1, |c| c.clamp(0, 255) as u8)
}

struct Running {
    proxy: Proxy,
    /// The server's name, for messages.
    server: String,
    cell: Arc<TokenCell>,
    upstream: url::Url,
}

fn start(
    session: &Session,
    listen: SocketAddr,
    allow_remote: bool,
    allow_plain_http: bool,
    first: Option<ValidToken>,
    deps: &mut Deps,
) -> Result<Running> {
    let insecure = deps.env.get(keys::MLFLOW_TRACKING_INSECURE_TLS.env)?.unwrap_or_default();
    if matches!(insecure.to_ascii_lowercase().as_str(), "true" | "1" | "yes") {
        // The proxy adds the user's bearer token to every request: without verification anyone on the path
        // takes it. MLflow's own client honours the variable; we do not (docs/proxy.md).
        return Err(Error::config(
            "MLFLOW_TRACKING_INSECURE_TLS is set: the proxy never sends tokens without TLS verification; trust \
             the server's CA with MLFLOW_TRACKING_SERVER_CERT_PATH (or SSL_CERT_FILE) and unset it",
        ));
    }
    if !reverse_proxy::is_loopback(&listen) {
        if !allow_remote {
            return Err(Error::config(format!(
                "refusing to listen on {listen}: not a loopback address (anyone who can reach it and learns the \
                 URI acts as you); pass --allow-non-loopback to do it anyway"
            )));
        }
        deps.warn(format!(
            "listening on {listen}, which other machines may reach: whoever learns the printed URI \
             acts as you on the tracking server"
        ));
    }
    let config = &session.server;
    let uri = config.uri.clone().ok_or_else(|| {
        Error::config(format!(
            "no tracking server URI for {}: set `uri` in its block, MLFLOW_TRACKING_URI or --server",
            config.display_name()
        ))
    })?;
    let upstream = url::Url::parse(&uri)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| Error::config(format!("the tracking URI {uri} is not an http(s) URL")))?;
    if upstream.scheme() == "http" && !upstream.host_str().is_some_and(crate::http::is_loopback) {
        let origin = upstream.origin().ascii_serialization();
        if !allow_plain_http {
            return Err(Error::config(format!(
                "refusing to send your token to {origin} over plain http: anyone on the network path could take it; use its https:// URL, or pass --allow-plain-http to do it anyway"
            )));
        }
        deps.warn(format!("the token goes to {origin} unencrypted (--allow-plain-http)"));
    }
    let tls = upstream::UpstreamTls {
        ssl_cert_file: deps.env.path(keys::SSL_CERT_FILE.env),
        server_cert: deps.env.path(keys::MLFLOW_TRACKING_SERVER_CERT_PATH.env),
        client_cert: deps.env.path(keys::MLFLOW_TRACKING_CLIENT_CERT_PATH.env),
        connect_timeout: crate::config::http_settings(None, &deps.env)?.connect_timeout,
        proxy_env: upstream::PROXY_VARIABLES
            .iter()
            .filter_map(|v| Some((*v, deps.env.get_lossy(v)?.to_owned())))
            .collect(),
    };
    let upstream_timeout = crate::config::proxy_upstream_timeout(&deps.env)?;
    let cell = Arc::new(TokenCell::new(|| SystemClock.now()));
    if let Some(got) = first
        && let Some(fresh) = fresh_of(got)
    {
        cell.seed(fresh);
    }
    let log: Option<reverse_proxy::Log> = deps.verbose.then(|| {
        Arc::new(|line: &str| {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "mlflow-oidc: {line}");
        }) as reverse_proxy::Log
    });
    let settings = reverse_proxy::Settings {
        listen,
        upstream: upstream.clone(),
        tls,
        upstream_timeout,
        limits: reverse_proxy::Limits::default(),
        log,
    };
    let proxy = Proxy::start(settings, cell.clone())?;
    Ok(Running { proxy, server: config.display_name().to_owned(), cell, upstream })
}

/// Close the token cell on SIGINT or SIGTERM (a watcher polls the flag the handler sets).
fn on_signals(cell: &Arc<TokenCell>) -> Result<std::thread::JoinHandle<()>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| Error::io("cannot install the signal handlers", e))?;
    }
    let cell = cell.clone();
    Ok(std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) && !cell.is_closed() {
            std::thread::sleep(Duration::from_millis(100));
        }
        cell.close();
    }))
}

/// The renewer: `valid_token` through the proxy's one session, with the held token's remaining life as
/// `min_valid`, never a login.
fn renew_until_closed(cell: &TokenCell, server: &str, session: &mut Session, deps: &mut Deps) {
    cell.serve_renewals(&mut |min_valid| {
        let want = Want { min_valid, no_login: true, login_timeout: 0 };
        match valid_token(session, &want, deps) {
            Ok(got) => {
                deps.debug(format!("proxy: token renewed, valid for {} s", got.expires_at - deps.now()));
                fresh_of(got).ok_or_else(|| Failure { kind: FailureKind::Other, message: "no token".into() })
            }
            Err(e) => {
                deps.debug(format!("proxy: no token: {e}"));
                Err(failure_of(&e, server))
            }
        }
    });
}

fn fresh_of(got: ValidToken) -> Option<Fresh> {
    let token = got.tokens.token(got.kind)?.clone();
    Some(Fresh { token, expires_at: got.expires_at })
}

/// What an MLflow client is told when there is no token.
fn failure_of(e: &Error, server: &str) -> Failure {
    match e {
        // Already "not logged in to …: run `mlflow-oidc login --server …`".
        Error::LoginRequired { .. } => Failure { kind: FailureKind::LoginRequired, message: e.to_string() },
        Error::Network(_) => {
            Failure { kind: FailureKind::Unavailable, message: format!("cannot get a token for {server}: {e}") }
        }
        _ => Failure { kind: FailureKind::Other, message: format!("cannot get a token for {server}: {e}") },
    }
}
