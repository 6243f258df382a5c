//! `login`: a machine's client credentials, or a person's login — the authorization code flow on a loopback
//! redirect or the device flow, chosen by [`choose_flow`] from the facts of this environment.

use std::time::{Duration, Instant};

use super::Deps;
use super::LOCK_TIMEOUT;
use super::session::{Provider, Session, require_kind};
use crate::cli::{FlowArg, LoginArgs};
use crate::config::{Flags, FlowChoice, ServerConfig};
use crate::discovery;
use crate::error::{Error, Result};
use crate::flow::{DevicePoll, Flows};
use crate::loopback::{self, Callback};
use crate::progress::Countdown;
use crate::store::{Entry, TokenStore};
use crate::tokenset::{Claims, TokenSet};

pub(super) fn login(flags: &Flags, args: &LoginArgs, deps: &mut Deps) -> Result<()> {
    let mut session = Session::open(flags, deps)?;
    let opts = opts(args);
    let c = &session.server;
    // An https redirect without TLS files cannot work: say so before asking the provider anything.
    let device = opts.flow.unwrap_or(c.flow) == FlowChoice::Device;
    if !c.is_machine() && !device {
        loopback::preflight(&c.redirect_uri, c.redirect_tls_files())?;
    }
    let set = if c.is_machine() {
        deps.note(format!(
            "Logging in to {} as client {} ({})…",
            c.display_name(),
            c.client_id,
            c.machine_grant().as_str()
        ));
        session.machine_grant(deps)?
    } else {
        let (c, provider) = session.connected(deps)?;
        let set = interactive_login(c, provider, opts, deps)?;
        require_kind(c, set)?
    };
    let (c, store) = (&session.server, &session.store);
    let lock = store.lock(&session.key, LOCK_TIMEOUT)?;
    store.save(&session.key, &Entry::new(c, set.clone()), &lock)?;
    drop(lock);
    let who = set
        .id_token
        .as_ref()
        .or(set.access_token.as_ref())
        .and_then(|t| Claims::peek(t.expose()))
        .and_then(|cl| cl.who());
    let until = set
        .expires_at(session.kind())
        .map(|e| format!(" (token valid until {})", crate::tokenset::rfc3339(e)))
        .unwrap_or_default();
    let refresh = match (set.refresh_token.is_some(), c.is_machine()) {
        (true, _) => "",
        (false, true) => "; at expiry the next `token` asks for a new client-credentials token",
        (false, false) => "; no refresh token was issued, so expiry means a new login",
    };
    match who {
        Some(w) => deps.note(format!("Logged in to {} as {w}{until}{refresh}.", c.display_name())),
        None => deps.note(format!("Logged in to {}{until}{refresh}.", c.display_name())),
    }
    Ok(())
}

/// How an interactive login should run.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginOpts {
    pub timeout: u64,
    pub flow: Option<FlowChoice>,
    pub no_browser: bool,
}

fn opts(args: &LoginArgs) -> LoginOpts {
    let flow = if args.device {
        Some(FlowChoice::Device)
    } else {
        args.flow.map(|f| match f {
            FlowArg::AuthCode => FlowChoice::AuthCode,
            FlowArg::Device => FlowChoice::Device,
        })
    };
    LoginOpts { timeout: args.timeout, flow, no_browser: args.no_browser }
}

/// What the flow choice depends on, read from the environment once.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// `--flow`/`--device`, else the block's `flow` when not `auto`.
    pub forced: Option<FlowChoice>,
    /// An SSH session (`SSH_CONNECTION`/`SSH_TTY`).
    pub ssh: bool,
    /// A display to open a browser on (`DISPLAY`/`WAYLAND_DISPLAY`).
    pub display: bool,
    pub browser_plausible: bool,
    pub no_browser: bool,
    /// Whether the provider has a device authorization endpoint.
    pub device_available: bool,
}

/// The flow chosen, and why (shown to the person).
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    Device(&'static str),
    AuthCode(&'static str),
    /// The device flow was asked for, but the provider has none.
    NoDeviceEndpoint,
}

/// Pure: the device flow when asked for, or when no browser can reach us and the provider offers it.
pub fn choose_flow(f: Facts) -> Choice {
    match f.forced {
        Some(FlowChoice::Device) if f.device_available => Choice::Device("asked for"),
        Some(FlowChoice::Device) => Choice::NoDeviceEndpoint,
        Some(_) => Choice::AuthCode("asked for"),
        None if f.ssh && !f.display => match f.device_available {
            true => Choice::Device("this is an SSH session without a forwarded display"),
            false => Choice::AuthCode("the provider has no device flow; open the URL below where you can"),
        },
        None if !f.no_browser && !f.browser_plausible => match f.device_available {
            true => Choice::Device("no browser can be started here"),
            false => Choice::AuthCode("no browser can be started here and the provider has no device flow"),
        },
        None => Choice::AuthCode("a local browser is available"),
    }
}

/// A person logs in: the authorization code flow on a loopback redirect, or the device flow, as chosen.
pub(super) fn interactive_login(
    c: &ServerConfig,
    provider: &Provider,
    opts: LoginOpts,
    deps: &mut Deps,
) -> Result<TokenSet> {
    let meta = &provider.discovered.metadata;
    let forced = opts.flow.or(match c.flow {
        FlowChoice::Auto => None,
        f => Some(f),
    });
    let ssh = deps.env.get_lossy("SSH_CONNECTION").is_some() || deps.env.get_lossy("SSH_TTY").is_some();
    let display = deps.env.get_lossy("DISPLAY").is_some() || deps.env.get_lossy("WAYLAND_DISPLAY").is_some();
    let mut facts = Facts {
        forced,
        ssh,
        display,
        browser_plausible: deps.browser.plausible(),
        no_browser: opts.no_browser,
        device_available: true,
    };
    // The device endpoint may cost a request (RFC 8414 metadata): look only when the choice depends on it.
    let wants_device = matches!(choose_flow(facts), Choice::Device(_));
    let endpoint = if wants_device {
        crate::flow::device_endpoint(c, meta).or_else(|| {
            discovery::authorization_server_metadata(&provider.http, &c.issuer)?.device_authorization_endpoint
        })
    } else {
        None
    };
    facts.device_available = endpoint.is_some();
    let flows = Flows::new(c, meta)?;
    match (choose_flow(facts), endpoint) {
        (Choice::Device(why), Some(endpoint)) => {
            deps.note(format!("Using the device flow ({why})."));
            device_login(c, &flows, provider, &endpoint, opts.timeout, deps)
        }
        (Choice::NoDeviceEndpoint, _) | (Choice::Device(_), None) => Err(Error::config(format!(
            "the provider {} advertises no device_authorization_endpoint (in its OpenID or RFC 8414 metadata): \
             set `device-authorization-endpoint` in the server block if it has one, or use --flow auth-code",
            c.issuer
        ))),
        (Choice::AuthCode(why), _) => {
            deps.debug(format!("authorization code flow ({why})"));
            browser_login(c, provider, &flows, opts, ssh && !display, deps)
        }
    }
}

/// How long the device flow's polls may fail to reach the provider before the login ends with that error.
const UNREACHABLE_FOR: Duration = Duration::from_secs(120);
/// The longest wait between polls while the provider is unreachable.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(60);

/// Polls that failed to reach the provider (not its answers), one after the other.
struct Unreachable {
    /// When the first of them failed.
    since: Instant,
    /// The wait before the next poll.
    wait: Duration,
    /// What the last one met.
    last: String,
}

/// RFC 8628: show the code, poll honouring `interval` and `slow_down`, until approval, denial or expiry.
fn device_login(
    c: &ServerConfig,
    flows: &Flows,
    provider: &Provider,
    endpoint: &str,
    timeout: u64,
    deps: &mut Deps,
) -> Result<TokenSet> {
    let device = flows.start_device(&provider.http, endpoint)?;
    deps.note(format!(
        "To log in to {}, open {} on any device and enter the code:\n\n    {}\n",
        c.display_name(),
        device.verification_uri,
        device.user_code
    ));
    let to_open = device.verification_uri_complete.clone().unwrap_or_else(|| device.verification_uri.clone());
    if let Some(complete) = &device.verification_uri_complete {
        deps.note(format!("Or open this address, which carries the code:\n  {complete}\n"));
    }
    if deps.browser.plausible()
        && let Err(why) = deps.browser.open(&to_open)
    {
        deps.debug(format!("could not open a browser: {why}"));
    }
    let deadline = deps.clock.instant() + Duration::from_secs(device.expires_in.min(timeout.max(1)));
    let mut interval = Duration::from_secs(device.interval);
    let mut unreachable: Option<Unreachable> = None;
    let mut countdown = Countdown::new(deps.stderr_is_tty);
    let waiting = format!("Waiting for approval of code {}", device.user_code);
    loop {
        let next = deps.clock.instant() + unreachable.as_ref().map_or(interval, |u| u.wait);
        while deps.clock.instant() < next {
            let now = deps.clock.instant();
            if now >= deadline {
                countdown.clear(&mut deps.err);
                let unanswered =
                    unreachable.as_ref().map(|u| format!("; the last poll failed: {}", u.last)).unwrap_or_default();
                return Err(Error::interaction(format!(
                    "the login was not approved in time (code {} expired{unanswered}): run `mlflow-oidc login` again",
                    device.user_code
                )));
            }
            countdown.tick(&mut deps.err, &waiting, (deadline - now).as_secs());
            deps.clock.sleep((next - deps.clock.instant().min(next)).min(Duration::from_millis(500)));
        }
        let poll = flows.poll_device(&provider.http, &device, deps.now());
        if !matches!(poll, Err(Error::Network(_))) {
            unreachable = None;
        }
        match poll {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => {
                // RFC 8628 §3.5: add 5 seconds to the interval for this and all later requests.
                interval += Duration::from_secs(5);
                deps.debug(format!("the provider asked to slow down: polling every {}s", interval.as_secs()));
            }
            Ok(DevicePoll::Done(set)) => {
                countdown.clear(&mut deps.err);
                return Ok(set);
            }
            // RFC 8628 §3.5: on a connection timeout the client should back off exponentially, not give up: a
            // provider restarting or a dropped Wi-Fi must not cost the person the code they are typing. Bounded:
            // after UNREACHABLE_FOR of nothing but transport failures the error ends the login.
            Err(e @ Error::Network(_)) => {
                let since = unreachable.as_ref().map_or_else(|| deps.clock.instant(), |u| u.since);
                if deps.clock.instant().saturating_duration_since(since) >= UNREACHABLE_FOR {
                    countdown.clear(&mut deps.err);
                    return Err(e);
                }
                let wait = unreachable.as_ref().map_or(interval, |u| u.wait * 2).min(MAX_POLL_BACKOFF);
                unreachable = Some(Unreachable { since, wait, last: e.to_string() });
                countdown.clear(&mut deps.err);
                deps.note(format!("{e}; polling again in {}s", wait.as_secs()));
            }
            Err(e) => {
                countdown.clear(&mut deps.err);
                return Err(e);
            }
        }
    }
}

/// The authorization code flow with PKCE on a loopback redirect, in the system browser (or by hand).
fn browser_login(
    c: &ServerConfig,
    provider: &Provider,
    flows: &Flows,
    opts: LoginOpts,
    remote: bool,
    deps: &mut Deps,
) -> Result<TokenSet> {
    // Bind before the browser opens, so the redirect can never race the listener (RFC 8252 §7.3).
    let listener = loopback::bind_any(&c.redirect_uri, &c.redirect_ports, c.redirect_tls_files())?;
    for note in &listener.notes {
        deps.debug(note);
    }
    let auth = flows.authorize(&listener.redirect_uri)?;
    let open = !opts.no_browser && deps.browser.plausible();
    let paste = opts.no_browser || !open;
    deps.note(format!("Logging in to {} with {}.", c.display_name(), c.issuer));
    if open {
        deps.note(format!("Opening your browser… if it does not open, visit:\n\n  {}\n", auth.url));
        if let Err(why) = deps.browser.open(&auth.url) {
            deps.note(format!("(could not open a browser: {why}; open the URL above yourself)"));
        }
    } else {
        deps.note(format!("Open this URL in a browser:\n\n  {}\n", auth.url));
        if remote {
            deps.note(format!(
                "From another machine, forward the port first: ssh -L {p}:127.0.0.1:{p} <this host>",
                p = listener.port()
            ));
        }
        deps.note("If the page it ends on fails to load, copy that page's address from the browser and paste it here.");
    }
    let pasted = paste.then(spawn_stdin_lines);
    // The listener waits on sockets in real time, so its deadline is real time too (not the clock seam).
    let deadline = std::time::Instant::now() + Duration::from_secs(opts.timeout);
    let mut countdown = Countdown::new(deps.stderr_is_tty);
    let err = &mut deps.err;
    let mut rejections = Vec::new();
    let callback = listener.wait_or_paste(
        &auth.state,
        deadline,
        pasted.as_ref(),
        |left| countdown.tick(err, "Waiting for the browser login", left.as_secs()),
        |why| rejections.push(why.to_string()),
    );
    countdown.clear(&mut deps.err);
    for why in rejections {
        deps.note(format!("The pasted URL was refused: {why}"));
    }
    let (callback, reply) = callback?;
    match callback {
        Callback::Error { error, description } => {
            let error = crate::error::printable(&error);
            let d = description.map(|d| format!(" ({})", crate::error::printable(&d))).unwrap_or_default();
            let hint = if error == "access_denied" { ": run `mlflow-oidc login` again to retry" } else { "" };
            Err(Error::provider(format!("the provider refused the login: {error}{d}{hint}")))
        }
        Callback::Code { code, iss } => {
            let redirect = listener.redirect_uri.clone();
            let result = check_iss(c, &provider.discovered.metadata, iss.as_deref())
                .and_then(|()| flows.exchange_code(&provider.http, auth, &code, &redirect, deps.now()));
            // The browser learns the outcome only now, after the exchange and the token checks (issue 12): a
            // success page for a code the provider then refuses would send the person away from the real error.
            match &result {
                Ok(_) => reply.finish(Ok(())),
                Err(e) => reply.finish(Err(&e.to_string())),
            }
            result
        }
    }
}

/// RFC 9207 mix-up defence: a callback naming another issuer is refused, and so is one without `iss` when the
/// provider's metadata promises it always sends one (an attacker's provider would not).
fn check_iss(c: &ServerConfig, meta: &discovery::Metadata, iss: Option<&str>) -> Result<()> {
    match iss {
        Some(iss) if !meta.issuer_matches(iss) => Err(Error::provider(format!(
            "the login response came from issuer {}, not {}: refusing it (a mix-up attack, RFC 9207); \
             run `mlflow-oidc login` again",
            crate::error::printable(iss),
            c.issuer
        ))),
        None if meta.authorization_response_iss_parameter_supported => Err(Error::provider(format!(
            "the login response carries no `iss`, yet the provider {} says it always sends one \
             (authorization_response_iss_parameter_supported, RFC 9207): refusing it as a possible mix-up attack; \
             run `mlflow-oidc login` again",
            c.issuer
        ))),
        _ => Ok(()),
    }
}

/// Lines typed or pasted on stdin, read on a helper thread so the listener keeps serving meanwhile.
fn spawn_stdin_lines() -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
            if tx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            forced: None,
            ssh: false,
            display: true,
            browser_plausible: true,
            no_browser: false,
            device_available: true,
        }
    }

    #[test]
    fn the_flow_follows_the_environment() {
        assert_eq!(choose_flow(facts()), Choice::AuthCode("a local browser is available"));
        let ssh = Facts { ssh: true, display: false, ..facts() };
        assert_eq!(choose_flow(ssh), Choice::Device("this is an SSH session without a forwarded display"));
        assert!(matches!(choose_flow(Facts { device_available: false, ..ssh }), Choice::AuthCode(_)));
        let headless = Facts { browser_plausible: false, ..facts() };
        assert_eq!(choose_flow(headless), Choice::Device("no browser can be started here"));
        // --no-browser means "I'll paste the URL", not "use the device flow".
        assert!(matches!(choose_flow(Facts { no_browser: true, ..headless }), Choice::AuthCode(_)));
        let forced = Facts { forced: Some(FlowChoice::Device), device_available: false, ..facts() };
        assert_eq!(choose_flow(forced), Choice::NoDeviceEndpoint);
        assert_eq!(choose_flow(Facts { forced: Some(FlowChoice::AuthCode), ..ssh }), Choice::AuthCode("asked for"));
    }
}
