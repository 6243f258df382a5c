//! `token` and `exec`: obtain a valid token — cache → refresh under the lock → machine grant → login when
//! allowed — and hand it out (STYLE: kubelogin's `get_token.go` only orders these steps).

use super::session::Session;
use super::{Deps, LOCK_TIMEOUT, write_out};
use crate::cli::{ExecArgs, TokenArgs};
use crate::config::{Flags, ServerConfig};
use crate::error::{Error, Result};
use crate::flow::Flows;
use crate::output;
use crate::store::{Entry, LockGuard, TokenStore};
use crate::tokenset::{MinValid, Secret, TokenKind, TokenSet};

pub(super) fn token(flags: &Flags, args: &TokenArgs, deps: &mut Deps) -> Result<()> {
    let want = Want { min_valid: args.min_valid, no_login: args.no_login, login_timeout: args.timeout };
    let mut session = Session::open(flags, deps)?;
    let got = valid_token(&mut session, &want, deps)?;
    let token = got.tokens.token(got.kind).ok_or_else(|| Error::provider("no token to print"))?;
    // Checked on arrival since issue 21; a token stored by an older version is checked here, where it is printed.
    if !crate::tokenset::is_b64token(token.expose()) {
        return Err(Error::store(format!(
            "the stored token for {} is not a valid bearer token (RFC 6750 §2.1): run `mlflow-oidc logout` and log in again",
            got.config.display_name()
        )));
    }
    let text = output::render_token(
        args.format,
        token.expose(),
        got.kind,
        got.expires_at,
        deps.now(),
        got.config.uri.as_deref(),
    );
    write_out(deps, text.as_bytes())
}

/// A token ready to hand out, with the configuration it belongs to.
pub struct ValidToken {
    pub config: ServerConfig,
    pub tokens: TokenSet,
    pub kind: TokenKind,
    pub expires_at: i64,
}

/// What a caller of [`valid_token`] asks for.
pub struct Want {
    pub min_valid: Option<u64>,
    pub no_login: bool,
    pub login_timeout: u64,
}

/// From cache, by refresh, by client credentials, or by an interactive login when that is allowed.
pub fn valid_token(session: &mut Session, want: &Want, deps: &mut Deps) -> Result<ValidToken> {
    let kind = session.kind();
    let min_valid = match want.min_valid {
        Some(s) => MinValid::Exactly(s as i64),
        None => MinValid::Default(60),
    };
    // The hot path: a fresh cached token costs one file read, no lock, no network.
    match session.store.load(&session.key) {
        Ok(Some(entry)) => match entry.tokens.freshness(kind, deps.now(), min_valid) {
            Ok(expires_at) => {
                return Ok(ValidToken { config: session.server.clone(), tokens: entry.tokens, kind, expires_at });
            }
            Err(reason) => deps.debug(format!("{reason}; renewing")),
        },
        Ok(None) => deps.debug("no cached tokens"),
        Err(e) => deps.warn(format!("{e}; obtaining new tokens")),
    }
    let c = &session.server;
    let interactive_ok =
        c.interactive && !want.no_login && deps.stdin_is_tty && deps.stderr_is_tty && !deps.env.is_set("CI");
    let tokens = obtain(session, min_valid, interactive_ok, want.login_timeout, deps)?;
    let c = &session.server;
    let expires_at = tokens
        .freshness(kind, deps.now(), MinValid::Exactly(0))
        .map_err(|r| Error::provider(format!("the provider issued no usable token for {}: {r}", c.display_name())))?;
    Ok(ValidToken { config: c.clone(), tokens, kind, expires_at })
}

/// Run a command with `MLFLOW_TRACKING_TOKEN` and `MLFLOW_TRACKING_URI` set; the token never enters argv. On
/// Unix the process becomes the command; elsewhere its exit code is returned as ours.
pub(super) fn exec(flags: &Flags, args: &ExecArgs, deps: &mut Deps) -> Result<u8> {
    let want = Want { min_valid: args.min_valid, no_login: args.no_login, login_timeout: args.timeout };
    let mut session = Session::open(flags, deps)?;
    let got = valid_token(&mut session, &want, deps)?;
    let left = got.expires_at.saturating_sub(deps.now());
    if left < args.warn_within as i64 {
        deps.warn(format!(
            "the token for {} expires in {}; a run that outlives it will fail. For long runs use the MLflow \
             plugin (`pip install mlflow-oidc`, then MLFLOW_TRACKING_AUTH=oidc), which renews tokens as needed",
            got.config.display_name(),
            output::human_duration(left.max(0))
        ));
    }
    let token = got.tokens.token(got.kind).ok_or_else(|| Error::provider("no token to pass on"))?;
    // MLflow's client sends Basic credentials instead of MLFLOW_TRACKING_TOKEN when both are set, and servers
    // then try only those (docs/mlflow-oidc-auth.md): the token handed over would never be used.
    if deps.env.is_set("MLFLOW_TRACKING_USERNAME") || deps.env.is_set("MLFLOW_TRACKING_PASSWORD") {
        deps.warn(
            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD are set: MLflow sends them instead of the \
             token `exec` provides; unset them (or use MLFLOW_TRACKING_AUTH=oidc, which wins over them)",
        );
    }
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::config("no command given: mlflow-oidc exec -- COMMAND [ARGS...]"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest).env("MLFLOW_TRACKING_TOKEN", token.expose());
    if let Some(uri) = &got.config.uri {
        cmd.env("MLFLOW_TRACKING_URI", uri);
    }
    deps.print_warnings(); // Before the command's own output, which follows on the same stderr.
    let _ = deps.out.flush();
    let _ = deps.err.flush();
    let failed = |e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound { ": not found on PATH" } else { "" };
        Error::io(format!("cannot run `{}`{hint}", program.to_string_lossy()), e)
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // exec only returns on failure.
        Err(failed(cmd.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().map_err(failed)?;
        Ok(status.code().map_or(1, |c| c.clamp(0, 255) as u8))
    }
}

/// Renew tokens under the key's lock, as a sequence of steps, each of which may end it: a sibling renewed them
/// meanwhile; the refresh token still works; this is a machine client; a person may log in here.
pub(super) fn obtain(
    session: &mut Session,
    min_valid: MinValid,
    interactive_ok: bool,
    login_timeout: u64,
    deps: &mut Deps,
) -> Result<TokenSet> {
    let lock = session.store.lock(&session.key, LOCK_TIMEOUT)?;
    let existing = session.store.load(&session.key).unwrap_or_default();
    if let Some(e) = &existing
        && e.tokens.freshness(session.kind(), deps.now(), min_valid).is_ok()
    {
        deps.debug("another process renewed the tokens meanwhile");
        return Ok(e.tokens.clone());
    }
    // The provider first: one that cannot be reached is reported as that, not as "log in" (tests/bad_input.rs).
    session.connected(deps)?;
    let refreshed = match &existing {
        Some(e) => refresh_step(session, e, min_valid, &lock, deps)?,
        None => Refreshed::NoRefreshToken,
    };
    let (rt_rejected, no_id_on_refresh) = match refreshed {
        Refreshed::Renewed(set) => return Ok(set),
        Refreshed::NoRefreshToken => (false, false),
        Refreshed::Rejected => (true, false),
        Refreshed::NoIdToken => (false, true),
    };
    if session.server.is_machine() {
        deps.debug(format!("{} grant", session.server.machine_grant().as_str()));
        let set = session.machine_grant(deps)?;
        session.store.save(&session.key, &Entry::new(&session.server, set.clone()), &lock)?;
        return Ok(set);
    }
    if !interactive_ok {
        let why = why_no_login(&session.server, deps, rt_rejected, no_id_on_refresh);
        return Err(Error::login_required(session.server.display_name(), why));
    }
    login_step(session, login_timeout, &lock, deps)
}

/// What the refresh step came to when it did not end `obtain` with an error.
enum Refreshed {
    /// New tokens (saved), or a sibling's fresh ones.
    Renewed(TokenSet),
    NoRefreshToken,
    /// The provider no longer takes the refresh token (now dropped from the store).
    Rejected,
    /// The access token was renewed, but the ID token this server is given was not (OIDC Core §12.2).
    NoIdToken,
}

fn refresh_step(
    session: &mut Session,
    existing: &Entry,
    min_valid: MinValid,
    lock: &LockGuard,
    deps: &mut Deps,
) -> Result<Refreshed> {
    let Some(rt) = session.store.refresh_token(&session.key, existing)? else { return Ok(Refreshed::NoRefreshToken) };
    deps.debug("refreshing");
    let kind = session.kind();
    let previous_id = existing.tokens.id_token.clone();
    let mut attempt = refresh_once(session, &rt, previous_id.as_ref(), deps);
    if matches!(attempt, Err(Error::Network(_) | Error::Provider(_))) && session.refetch(deps)? {
        deps.debug("the cached provider metadata was stale; retrying with fresh metadata");
        attempt = refresh_once(session, &rt, previous_id.as_ref(), deps);
    }
    let (c, store, key) = (&session.server, &session.store, &session.key);
    match attempt? {
        Some(mut set) => {
            let renewed = set.token(kind).is_some();
            keep_missing(&mut set, Some(&existing.tokens));
            // Persist the rotated refresh token before anyone uses the new access token.
            store.save(key, &Entry::new(c, set.clone()), lock)?;
            if !renewed {
                deps.debug("the refresh renewed the access token but returned no ID token");
                return Ok(Refreshed::NoIdToken);
            }
            set.freshness(kind, deps.now(), MinValid::Exactly(0)).map_err(|r| {
                Error::provider(format!("the provider issued no usable token for {}: {r}", c.display_name()))
            })?;
            Ok(Refreshed::Renewed(set))
        }
        None => {
            deps.debug("the refresh token is no longer valid");
            // A sibling may have rotated it a moment ago: its tokens are ours too.
            if let Ok(Some(e)) = store.load(key)
                && store.refresh_token(key, &e).ok().flatten().as_ref() != Some(&rt)
                && e.tokens.freshness(kind, deps.now(), min_valid).is_ok()
            {
                return Ok(Refreshed::Renewed(e.tokens));
            }
            // The dead refresh token is dropped, so the next `token` asks for a login at once instead of at the
            // provider; the rest of the entry (whose login this was) stays (issue 16).
            let mut e = existing.clone();
            e.tokens.refresh_token = None;
            e.refresh_token_in = None;
            store.save(key, &e, lock)?;
            Ok(Refreshed::Rejected)
        }
    }
}

/// Siblings may wait on the lock while a person logs in: they then find fresh tokens instead of opening a second
/// browser.
fn login_step(session: &mut Session, login_timeout: u64, lock: &LockGuard, deps: &mut Deps) -> Result<TokenSet> {
    let opts = super::LoginOpts { timeout: login_timeout, ..super::LoginOpts::default() };
    let (c, provider) = session.connected(deps)?;
    let set = super::login::interactive_login(c, provider, opts, deps)?;
    let set = super::session::require_kind(c, set)?;
    session.store.save(&session.key, &Entry::new(&session.server, set.clone()), lock)?;
    Ok(set)
}

/// Why `token` stops at "log in", in the words the user needs.
fn why_no_login(c: &ServerConfig, deps: &Deps, rt_rejected: bool, no_id_on_refresh: bool) -> String {
    let why = if !c.interactive {
        "interactive login is disabled for this server"
    } else if deps.env.is_set("CI") {
        "CI is set, so no browser login is attempted"
    } else if !deps.stdin_is_tty || !deps.stderr_is_tty {
        "no terminal to log in from"
    } else {
        "--no-login was given"
    };
    if rt_rejected {
        format!("the provider rejected the stored refresh token (expired or revoked); {why}")
    } else if no_id_on_refresh {
        format!(
            "the provider does not return a new ID token on refresh, so the ID token can only be renewed by \
             logging in (set use-id-token = false to send the access token instead); {why}"
        )
    } else {
        why.to_string()
    }
}

fn refresh_once(
    session: &mut Session,
    rt: &Secret<String>,
    previous_id: Option<&Secret<String>>,
    deps: &mut Deps,
) -> Result<Option<TokenSet>> {
    let now = deps.now();
    let (c, provider) = session.connected(deps)?;
    let flows = Flows::new(c, &provider.discovered.metadata)?;
    flows.refresh(&provider.http, rt, previous_id, now)
}

/// A refresh response may omit the ID token or scope; keep the old ones only when still of use.
fn keep_missing(set: &mut TokenSet, old: Option<&TokenSet>) {
    let Some(old) = old else { return };
    if set.scope.is_none() {
        set.scope = old.scope.clone();
    }
    // Kept so `status` still says whose login this is; its expiry decides whether it is used.
    if set.id_token.is_none() {
        set.id_token = old.id_token.clone();
    }
}
