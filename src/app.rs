//! The use cases (`login`, `token`, `logout`, `status`) over [`Deps`]: the one orchestration layer.

use std::io::Write;

use std::time::{Duration, Instant};

use crate::browser::{Browser, SystemBrowser};
use crate::cli::{Cli, Command, ExecArgs, FlowArg, LoginArgs, LogoutArgs, StatusArgs, TokenArgs};
use crate::config::{self, Flags, FlowChoice, Resolved, ServerConfig};
use crate::discovery::{self, Discovered};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::flow::{DevicePoll, Flows};
use crate::http::{Http, HttpSettings};
use crate::keyring_store::Keyring;
use crate::loopback::{self, Callback};
use crate::output;
use crate::paths::Paths;
use crate::store::{self, Entry, LockGuard, Store, StoreMode, StoreSettings, TokenStore};
use crate::token::{Claims, MinValid, TokenKind, TokenSet};

/// How long a process waits for a sibling's refresh before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(90);

/// Everything the use cases touch outside memory; `main` builds the real one, tests their own.
pub struct Deps {
    pub env: Env,
    pub paths: Paths,
    pub out: Box<dyn Write>,
    pub err: Box<dyn Write>,
    /// Unix seconds now.
    pub now: fn() -> i64,
    pub stdin_is_tty: bool,
    pub stderr_is_tty: bool,
    pub browser: Box<dyn Browser>,
    /// `-v`: explain decisions on stderr (never tokens or secrets).
    pub verbose: bool,
    /// Colour on stderr / stdout: only on a terminal, never with NO_COLOR (https://no-color.org).
    pub color_err: bool,
    pub color_out: bool,
}

impl Deps {
    /// The production wiring: real environment, directories, streams and clock.
    pub fn system() -> Self {
        use std::io::IsTerminal;
        let env = Env::capture();
        let colors_ok = !env.is_set("NO_COLOR") && env.get_lossy("TERM") != Some("dumb");
        Deps {
            browser: Box::new(SystemBrowser::new(&env)),
            verbose: false,
            color_err: colors_ok && std::io::stderr().is_terminal(),
            color_out: colors_ok && std::io::stdout().is_terminal(),
            env,
            paths: Paths::from_system(),
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            now: system_now,
            stdin_is_tty: std::io::stdin().is_terminal(),
            stderr_is_tty: std::io::stderr().is_terminal(),
        }
    }

    /// A progress or warning line on stderr. Failing to write one is not worth failing the command for.
    pub fn note(&mut self, msg: impl AsRef<str>) {
        let _ = writeln!(self.err, "{}", msg.as_ref());
    }

    /// A `--verbose` line.
    pub fn debug(&mut self, msg: impl AsRef<str>) {
        if self.verbose {
            let _ = writeln!(self.err, "mlflow-oidc: {}", msg.as_ref());
        }
    }
}

fn system_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Run one invocation and report its outcome; returns the process exit code.
pub fn main_with(cli: Cli, deps: &mut Deps) -> u8 {
    // With --check, the JSON report is already on stdout when a check fails; the error goes to stderr only.
    let json_errors = matches!(&cli.command, Some(Command::Status(StatusArgs { json: true, check: false })));
    match run(cli, deps) {
        Ok(()) => {
            if deps.out.flush().is_err() {
                // A closed stdout (`| head`) is the reader's choice, not our failure.
                return 0;
            }
            0
        }
        Err(e) => {
            if json_errors {
                let obj = serde_json::json!({"error": {"kind": e.kind(), "message": e.to_string(), "exit_code": e.exit_code()}});
                let _ = writeln!(deps.out, "{obj}");
                let _ = deps.out.flush();
            }
            let prefix = if deps.color_err { "\x1b[1;31merror:\x1b[0m" } else { "error:" };
            let _ = writeln!(deps.err, "{prefix} {e}");
            e.exit_code()
        }
    }
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli, deps: &mut Deps) -> Result<()> {
    let flags =
        Flags { server: cli.global.server.clone(), config: cli.global.config.clone(), store: cli.global.store.clone() };
    deps.verbose = cli.global.verbose;
    match cli.command {
        None => orientation(deps),
        Some(Command::Status(args)) => status(&flags, &args, deps),
        Some(Command::Login(args)) => login(&flags, &args, deps),
        Some(Command::Token(args)) => token(&flags, &args, deps),
        Some(Command::Logout(args)) => logout(&flags, &args, deps),
        Some(Command::Exec(args)) => exec(&flags, &args, deps),
        Some(Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mlflow-oidc", &mut buf);
            write_out(deps, &buf)
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut buf)
                .map_err(|e| Error::store(format!("cannot render the man page: {e}")))?;
            write_out(deps, &buf)
        }
    }
}

/// Write the product to stdout; a reader that went away (`| head`) is not an error.
pub fn write_out(deps: &mut Deps, bytes: &[u8]) -> Result<()> {
    match deps.out.write_all(bytes).and_then(|_| deps.out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::store(format!("cannot write to stdout: {e}"))),
    }
}

fn orientation(deps: &mut Deps) -> Result<()> {
    deps.note(
        "mlflow-oidc: credentials for MLflow tracking servers behind OpenID Connect.\n\n\
         Start with:\n  mlflow-oidc status     check which server is configured and who is logged in\n  \
         mlflow-oidc login      log in (opens your browser)\n  mlflow-oidc token      print a bearer token\n\n\
         Run `mlflow-oidc --help` for every command and option.",
    );
    Ok(())
}

/// The server's configuration and the credential store, as this invocation's flags, environment and files say.
fn setup(flags: &Flags, deps: &mut Deps) -> Result<(Resolved, Store)> {
    let files = config::load_sources(flags, &deps.env, deps.paths.user_config.as_deref())?;
    let resolved = config::resolve(&files, &deps.env, flags)?;
    for w in &resolved.warnings {
        deps.note(format!("warning: {w}"));
    }
    let store = open_store(flags, &files, deps)?;
    Ok((resolved, store))
}

fn open_store(flags: &Flags, files: &[config::ConfigFile], deps: &Deps) -> Result<Store> {
    let (mode, source) = if let Some(m) = &flags.store {
        (m.clone(), "--store".to_string())
    } else if let Some(m) = deps.env.get("MLFLOW_OIDC_STORE")? {
        (m.to_string(), "MLFLOW_OIDC_STORE".to_string())
    } else if let Some((m, file)) = config::store_setting(files)? {
        (m, format!("`store` in {}", file.display()))
    } else {
        ("auto".to_string(), "default".to_string())
    };
    let mode = StoreMode::parse(&mode)
        .ok_or_else(|| Error::config(format!("{source} is \"{mode}\"; use auto, keyring, file or memory")))?;
    let data_dir = deps
        .paths
        .data_dir
        .clone()
        .ok_or_else(|| Error::store("cannot find a data directory for credentials: set HOME (or XDG_DATA_HOME)"))?;
    let bus_available = !cfg!(target_os = "linux")
        || deps.env.get_lossy("DBUS_SESSION_BUS_ADDRESS").is_some()
        || deps.env.path("XDG_RUNTIME_DIR").is_some_and(|d| d.join("bus").exists());
    let timeout = match deps.env.get("MLFLOW_OIDC_KEYRING_TIMEOUT")? {
        None => Duration::from_secs(3),
        Some(v) => Duration::from_secs(
            crate::cli::parse_duration(v).map_err(|e| Error::config(format!("MLFLOW_OIDC_KEYRING_TIMEOUT: {e}")))?,
        ),
    };
    let settings = StoreSettings { mode, mode_source: source, data_dir, bus_available, now: (deps.now)() };
    Ok(Store::new(settings, Box::new(Keyring { timeout })))
}

/// Print the store's warnings once.
fn flush_store_warnings(store: &Store, deps: &mut Deps) {
    for w in store.take_warnings() {
        deps.note(format!("warning: {w}"));
    }
}

fn status(flags: &Flags, args: &StatusArgs, deps: &mut Deps) -> Result<()> {
    let (resolved, store) = setup(flags, deps)?;
    let c = &resolved.server;
    let now = (deps.now)();
    let entry = match store.load(&store::server_key(c)) {
        Ok(e) => e,
        Err(e) => {
            deps.note(format!("warning: {e}"));
            None
        }
    };
    let rt_held = entry
        .as_ref()
        .is_some_and(|e| e.tokens.refresh_token.is_some() || e.refresh_token_in.as_deref() == Some("keyring"));
    let (backend, why) = store.backend();
    flush_store_warnings(&store, deps);
    let store_info = output::StoreInfo { backend: backend.as_str(), location: store.describe(), reason: why };
    let login = output::LoginState::new(entry.as_ref().map(|e| &e.tokens), rt_held, token_kind(c), now, store_info);
    let checks = if args.check { Some(crate::check::run(c, &http_for(c, &deps.env)?, now)) } else { None };
    if args.json {
        let mut v =
            serde_json::json!({ "config": output::config_json(c), "login": login.json(), "store": login.store_json() });
        if let Some(checks) = &checks {
            v["checks"] = output::checks_json(checks);
        }
        write_out(deps, format!("{v}\n").as_bytes())?;
    } else {
        let mut text = output::config_text(c) + &login.text(c);
        if let Some(checks) = &checks {
            text.push_str(&output::checks_text(checks, deps.color_out));
        }
        write_out(deps, text.as_bytes())?;
    }
    match checks {
        Some(checks) if checks.iter().any(|c| !c.ok) => {
            let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
            Err(Error::provider(format!("status --check: {} failed: {}", failed.len(), failed.join(", "))))
        }
        _ => Ok(()),
    }
}

/// Which token this server is given.
pub fn token_kind(c: &ServerConfig) -> TokenKind {
    if c.use_id_token { TokenKind::IdToken } else { TokenKind::AccessToken }
}

fn http_for(c: &ServerConfig, env: &Env) -> Result<Http> {
    let secs = |name: &str, default: u64| -> Result<Duration> {
        match env.get(name)? {
            None => Ok(Duration::from_secs(default)),
            Some(v) => crate::cli::parse_duration(v)
                .map(Duration::from_secs)
                .map_err(|e| Error::config(format!("{name}: {e}"))),
        }
    };
    let settings = HttpSettings {
        connect_timeout: secs("MLFLOW_OIDC_HTTP_CONNECT_TIMEOUT", 10)?,
        timeout: secs("MLFLOW_OIDC_HTTP_TIMEOUT", 30)?,
        ca_bundle: c.ca_bundle.clone(),
        ssl_cert_file: env.path("SSL_CERT_FILE"),
    };
    Http::new(&settings)
}

/// Network access for one command: the agent and the provider's metadata, built on first use.
struct Provider {
    http: Http,
    discovered: Discovered,
}

impl Provider {
    fn connect(c: &ServerConfig, deps: &mut Deps) -> Result<Provider> {
        let http = http_for(c, &deps.env)?;
        let cache = deps.paths.cache_dir.clone();
        let discovered = discovery::discover(&http, cache.as_deref(), &c.issuer, (deps.now)(), false)?;
        deps.debug(format!(
            "provider metadata for {} {}",
            c.issuer,
            if discovered.from_cache { "from cache" } else { "fetched" }
        ));
        Ok(Provider { http, discovered })
    }

    /// Refetch metadata that came from the cache; true when it changed (worth retrying a failed request).
    fn refetch(&mut self, c: &ServerConfig, deps: &mut Deps) -> Result<bool> {
        if !self.discovered.from_cache {
            return Ok(false);
        }
        let cache = deps.paths.cache_dir.clone();
        let fresh = discovery::discover(&self.http, cache.as_deref(), &c.issuer, (deps.now)(), true)?;
        let changed = fresh.metadata != self.discovered.metadata;
        self.discovered = fresh;
        Ok(changed)
    }
}

fn token(flags: &Flags, args: &TokenArgs, deps: &mut Deps) -> Result<()> {
    let got = valid_token(flags, &args.want(), deps)?;
    let token = got.tokens.token(got.kind).ok_or_else(|| Error::provider("no token to print"))?;
    let text = output::render_token(
        args.format,
        token.expose(),
        got.kind,
        got.expires_at,
        (deps.now)(),
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

impl TokenArgs {
    fn want(&self) -> Want {
        Want { min_valid: self.min_valid, no_login: self.no_login, login_timeout: self.timeout }
    }
}

/// From cache, by refresh, by client credentials, or by an interactive login when that is allowed.
pub fn valid_token(flags: &Flags, want: &Want, deps: &mut Deps) -> Result<ValidToken> {
    let (resolved, store) = setup(flags, deps)?;
    let c = resolved.server;
    let kind = token_kind(&c);
    let key = store::server_key(&c);
    let min_valid = match want.min_valid {
        Some(s) => MinValid::Exactly(s as i64),
        None => MinValid::Default(60),
    };
    // The hot path: a fresh cached token costs one file read, no lock, no network.
    match store.load(&key) {
        Ok(Some(entry)) => match entry.tokens.freshness(kind, (deps.now)(), min_valid) {
            Ok(expires_at) => return Ok(ValidToken { config: c, tokens: entry.tokens, kind, expires_at }),
            Err(reason) => deps.debug(format!("{reason}; renewing")),
        },
        Ok(None) => deps.debug("no cached tokens"),
        Err(e) => deps.note(format!("warning: {e}; obtaining new tokens")),
    }
    let interactive_ok =
        c.interactive && !want.no_login && deps.stdin_is_tty && deps.stderr_is_tty && !deps.env.is_set("CI");
    let tokens = obtain(&c, &store, &key, min_valid, interactive_ok, want.login_timeout, deps);
    flush_store_warnings(&store, deps);
    let tokens = tokens?;
    let expires_at = tokens
        .freshness(kind, (deps.now)(), MinValid::Exactly(0))
        .map_err(|r| Error::provider(format!("the provider issued no usable token for {}: {r}", c.display_name())))?;
    Ok(ValidToken { config: c, tokens, kind, expires_at })
}

/// Run a command with `MLFLOW_TRACKING_TOKEN` and `MLFLOW_TRACKING_URI` set; the token never enters argv.
fn exec(flags: &Flags, args: &ExecArgs, deps: &mut Deps) -> Result<()> {
    let want = Want { min_valid: args.min_valid, no_login: args.no_login, login_timeout: args.timeout };
    let got = valid_token(flags, &want, deps)?;
    let left = got.expires_at.saturating_sub((deps.now)());
    if left < args.warn_within as i64 {
        deps.note(format!(
            "warning: the token for {} expires in {}; a run that outlives it will fail. For long runs use the MLflow \
             plugin (`pip install mlflow-oidc`, then MLFLOW_TRACKING_AUTH=oidc), which renews tokens as needed",
            got.config.display_name(),
            output::human_duration(left.max(0))
        ));
    }
    let token = got.tokens.token(got.kind).ok_or_else(|| Error::provider("no token to pass on"))?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::config("no command given: mlflow-oidc exec -- COMMAND [ARGS...]"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest).env("MLFLOW_TRACKING_TOKEN", token.expose());
    if let Some(uri) = &got.config.uri {
        cmd.env("MLFLOW_TRACKING_URI", uri);
    }
    let _ = deps.out.flush();
    let _ = deps.err.flush();
    let failed = |e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound { ": not found on PATH" } else { "" };
        Error::interaction(format!("cannot run `{}`{hint} ({})", program.to_string_lossy(), config::io_reason(&e)))
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
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// Renew tokens under the key's lock: re-read (a sibling may have refreshed), refresh, client credentials, or
/// (when allowed) an interactive login.
fn obtain(
    c: &ServerConfig,
    store: &Store,
    key: &str,
    min_valid: MinValid,
    interactive_ok: bool,
    login_timeout: u64,
    deps: &mut Deps,
) -> Result<TokenSet> {
    let kind = token_kind(c);
    let lock = store.lock(key, LOCK_TIMEOUT)?;
    let existing = store.load(key).unwrap_or_default();
    if let Some(e) = &existing
        && e.tokens.freshness(kind, (deps.now)(), min_valid).is_ok()
    {
        deps.debug("another process renewed the tokens meanwhile");
        return Ok(e.tokens.clone());
    }
    let mut provider = Provider::connect(c, deps)?;
    let rt = match &existing {
        Some(e) => store.refresh_token(key, e)?,
        None => None,
    };
    let mut rt_rejected = false;
    let mut no_id_on_refresh = false;
    if let Some(rt) = rt {
        deps.debug("refreshing");
        let attempt = refresh_once(c, &provider, &rt, deps);
        let attempt = match attempt {
            Err(e) if matches!(e, Error::Network(_) | Error::Provider(_)) && provider.refetch(c, deps)? => {
                deps.debug("the cached provider metadata was stale; retrying with fresh metadata");
                refresh_once(c, &provider, &rt, deps)
            }
            other => other,
        };
        match attempt? {
            Some(mut set) => {
                let renewed = set.token(kind).is_some();
                keep_missing(&mut set, existing.as_ref().map(|e| &e.tokens));
                // Persist the rotated refresh token before anyone uses the new access token.
                store.save(key, &Entry::new(c, set.clone()), &lock)?;
                if renewed {
                    set.freshness(kind, (deps.now)(), MinValid::Exactly(0)).map_err(|r| {
                        Error::provider(format!("the provider issued no usable token for {}: {r}", c.display_name()))
                    })?;
                    return Ok(set);
                }
                // OIDC Core §12.2 lets a provider renew the access token without a new ID token.
                no_id_on_refresh = true;
                deps.debug("the refresh renewed the access token but returned no ID token");
            }
            None => {
                rt_rejected = true;
                deps.debug("the refresh token is no longer valid");
                if let Ok(Some(e)) = store.load(key)
                    && store.refresh_token(key, &e).ok().flatten().as_ref() != Some(&rt)
                    && e.tokens.freshness(kind, (deps.now)(), min_valid).is_ok()
                {
                    return Ok(e.tokens);
                }
            }
        }
    }
    if c.client_secret.is_some() && !c.interactive {
        deps.debug("client credentials grant");
        let flows = Flows::new(c, &provider.discovered.metadata)?;
        let set = flows.client_credentials(&provider.http, (deps.now)())?;
        store.save(key, &Entry::new(c, set.clone()), &lock)?;
        return require_kind(c, set);
    }
    if !interactive_ok {
        let why = if !c.interactive {
            "interactive login is disabled for this server"
        } else if deps.env.is_set("CI") {
            "CI is set, so no browser login is attempted"
        } else if !deps.stdin_is_tty || !deps.stderr_is_tty {
            "no terminal to log in from"
        } else {
            "--no-login was given"
        };
        let why = if rt_rejected {
            format!("the provider rejected the stored refresh token (expired or revoked); {why}")
        } else if no_id_on_refresh {
            format!(
                "the provider does not return a new ID token on refresh, so the ID token can only be renewed by \
                 logging in (set use-id-token = false to send the access token instead); {why}"
            )
        } else {
            why.to_string()
        };
        return Err(Error::login_required(c.display_name(), why));
    }
    // Siblings may wait on the lock while a person logs in: they then find fresh tokens instead of opening
    // a second browser.
    let opts = LoginOpts { timeout: login_timeout, ..LoginOpts::default() };
    let set = interactive_login(c, &provider, opts, deps)?;
    store.save(key, &Entry::new(c, set.clone()), &lock)?;
    require_kind(c, set)
}

fn refresh_once(
    c: &ServerConfig,
    provider: &Provider,
    rt: &crate::token::Secret<String>,
    deps: &Deps,
) -> Result<Option<TokenSet>> {
    let flows = Flows::new(c, &provider.discovered.metadata)?;
    flows.refresh(&provider.http, rt, (deps.now)())
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

fn require_kind(c: &ServerConfig, set: TokenSet) -> Result<TokenSet> {
    if set.token(token_kind(c)).is_none() {
        return Err(match token_kind(c) {
            TokenKind::IdToken => Error::provider(format!(
                "the provider returned no ID token for {}: include `openid` in `scope`, or set use-id-token = false to send the access token",
                c.display_name()
            )),
            TokenKind::AccessToken => {
                Error::provider(format!("the provider returned no access token for {}", c.display_name()))
            }
        });
    }
    Ok(set)
}

fn login(flags: &Flags, args: &LoginArgs, deps: &mut Deps) -> Result<()> {
    let (resolved, store) = setup(flags, deps)?;
    let c = &resolved.server;
    let key = store::server_key(c);
    let provider = Provider::connect(c, deps)?;
    let set = if c.client_secret.is_some() && !c.interactive {
        deps.note(format!("Logging in to {} as client {} (client credentials)…", c.display_name(), c.client_id));
        let flows = Flows::new(c, &provider.discovered.metadata)?;
        flows.client_credentials(&provider.http, (deps.now)())?
    } else {
        interactive_login(c, &provider, args.opts(), deps)?
    };
    let set = require_kind(c, set)?;
    let lock = store.lock(&key, LOCK_TIMEOUT)?;
    let saved = store.save(&key, &Entry::new(c, set.clone()), &lock);
    drop(lock);
    flush_store_warnings(&store, deps);
    saved?;
    let kind = token_kind(c);
    let who = set
        .id_token
        .as_ref()
        .or(set.access_token.as_ref())
        .and_then(|t| Claims::peek(t.expose()))
        .and_then(|cl| cl.who().map(str::to_string));
    let until =
        set.expires_at(kind).map(|e| format!(" (token valid until {})", crate::token::rfc3339(e))).unwrap_or_default();
    let refresh =
        if set.refresh_token.is_some() { "" } else { "; no refresh token was issued, so expiry means a new login" };
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

impl LoginArgs {
    fn opts(&self) -> LoginOpts {
        let flow = if self.device {
            Some(FlowChoice::Device)
        } else {
            self.flow.map(|f| match f {
                FlowArg::AuthCode => FlowChoice::AuthCode,
                FlowArg::Device => FlowChoice::Device,
            })
        };
        LoginOpts { timeout: self.timeout, flow, no_browser: self.no_browser }
    }
}

/// A person logs in: the authorization code flow on a loopback redirect, or the device flow, as chosen.
fn interactive_login(c: &ServerConfig, provider: &Provider, opts: LoginOpts, deps: &mut Deps) -> Result<TokenSet> {
    let meta = &provider.discovered.metadata;
    let device_endpoint = || {
        crate::flow::device_endpoint(c, meta).or_else(|| {
            discovery::authorization_server_metadata(&provider.http, &c.issuer)?.device_authorization_endpoint
        })
    };
    let ssh = deps.env.get_lossy("SSH_CONNECTION").is_some() || deps.env.get_lossy("SSH_TTY").is_some();
    let display = deps.env.get_lossy("DISPLAY").is_some() || deps.env.get_lossy("WAYLAND_DISPLAY").is_some();
    let forced = opts.flow.or(match c.flow {
        FlowChoice::Auto => None,
        f => Some(f),
    });
    let (device, why) = match forced {
        Some(FlowChoice::Device) => match device_endpoint() {
            Some(e) => (Some(e), "asked for".to_string()),
            None => {
                return Err(Error::config(format!(
                    "the provider {} advertises no device_authorization_endpoint (in its OpenID or RFC 8414 metadata): \
                     set `device-authorization-endpoint` in the server block if it has one, or use --flow auth-code",
                    c.issuer
                )));
            }
        },
        Some(_) => (None, "asked for".to_string()),
        None if ssh && !display => match device_endpoint() {
            Some(e) => (Some(e), "this is an SSH session without a forwarded display".to_string()),
            None => (None, "the provider has no device flow; open the URL below where you can".to_string()),
        },
        None if !opts.no_browser && !deps.browser.plausible() => match device_endpoint() {
            Some(e) => (Some(e), "no browser can be started here".to_string()),
            None => (None, "no browser can be started here and the provider has no device flow".to_string()),
        },
        None => (None, "a local browser is available".to_string()),
    };
    let flows = Flows::new(c, meta)?;
    match device {
        Some(endpoint) => {
            deps.note(format!("Using the device flow ({why})."));
            device_login(c, provider, &flows, &endpoint, opts.timeout, deps)
        }
        None => {
            deps.debug(format!("authorization code flow ({why})"));
            browser_login(c, provider, &flows, opts, ssh && !display, deps)
        }
    }
}

/// RFC 8628: show the code, poll honouring `interval` and `slow_down`, until approval, denial or expiry.
fn device_login(
    c: &ServerConfig,
    provider: &Provider,
    flows: &Flows,
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
    let started = Instant::now();
    let deadline = started + Duration::from_secs(device.expires_in.min(timeout.max(1)));
    let mut interval = Duration::from_secs(device.interval);
    let tty = deps.stderr_is_tty;
    let mut last_plain: Option<u64> = None;
    loop {
        let next = Instant::now() + interval;
        while Instant::now() < next {
            let now = Instant::now();
            if now >= deadline {
                if tty {
                    let _ = write!(deps.err, "\r\x1b[2K");
                }
                return Err(Error::interaction(format!(
                    "the login was not approved in time (code {} expired): run `mlflow-oidc login` again",
                    device.user_code
                )));
            }
            let left = (deadline - now).as_secs();
            if tty {
                let _ = write!(
                    deps.err,
                    "\rWaiting for approval of code {}… {}:{:02} left ",
                    device.user_code,
                    left / 60,
                    left % 60
                );
                let _ = deps.err.flush();
            } else if last_plain.is_none_or(|l| l >= left + 60) {
                deps.note(format!(
                    "Waiting for approval of code {} ({}:{:02} left)…",
                    device.user_code,
                    left / 60,
                    left % 60
                ));
                last_plain = Some(left);
            }
            std::thread::sleep((next - Instant::now().min(next)).min(Duration::from_millis(500)));
        }
        let polled = flows.poll_device(&provider.http, &device, (deps.now)());
        match polled {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => {
                // RFC 8628 §3.5: add 5 seconds to the interval for this and all later requests.
                interval += Duration::from_secs(5);
                deps.debug(format!("the provider asked to slow down: polling every {}s", interval.as_secs()));
            }
            Ok(DevicePoll::Done(set)) => {
                if tty {
                    let _ = write!(deps.err, "\r\x1b[2K");
                }
                return Ok(set);
            }
            Err(e) => {
                if tty {
                    let _ = write!(deps.err, "\r\x1b[2K");
                }
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
    let listener = loopback::bind_any(&c.redirect_uri, &c.redirect_ports)?;
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
    let deadline = Instant::now() + Duration::from_secs(opts.timeout);
    let tty = deps.stderr_is_tty;
    let err = &mut deps.err;
    let mut last_plain = None;
    let mut rejections = Vec::new();
    let callback = listener.wait_or_paste(
        &auth.state,
        deadline,
        pasted.as_ref(),
        |left| {
            let secs = left.as_secs();
            if tty {
                let _ = write!(err, "\rWaiting for the browser login… {}:{:02} left ", secs / 60, secs % 60);
                let _ = err.flush();
            } else if last_plain.is_none_or(|l: u64| l >= secs + 60) {
                let _ = writeln!(err, "Waiting for the browser login ({}:{:02} left)…", secs / 60, secs % 60);
                last_plain = Some(secs);
            }
        },
        |why| rejections.push(why.to_string()),
    );
    if tty {
        let _ = write!(deps.err, "\r\x1b[2K");
    }
    for why in rejections {
        deps.note(format!("The pasted URL was refused: {why}"));
    }
    match callback? {
        Callback::Error { error, description } => {
            let error = crate::error::printable(&error);
            let d = description.map(|d| format!(" ({})", crate::error::printable(&d))).unwrap_or_default();
            let hint = if error == "access_denied" { ": run `mlflow-oidc login` again to retry" } else { "" };
            Err(Error::provider(format!("the provider refused the login: {error}{d}{hint}")))
        }
        Callback::Code { code, iss } => {
            // RFC 9207: a callback naming another issuer is a mix-up attack.
            if let Some(iss) = iss
                && !provider.discovered.metadata.issuer_matches(&iss)
            {
                return Err(Error::provider(format!(
                    "the login response came from issuer {iss}, not {}: refusing it",
                    c.issuer
                )));
            }
            let redirect = listener.redirect_uri.clone();
            flows.exchange_code(&provider.http, auth, &code, &redirect, (deps.now)())
        }
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

fn logout(flags: &Flags, args: &LogoutArgs, deps: &mut Deps) -> Result<()> {
    if args.all {
        let files = config::load_sources(flags, &deps.env, deps.paths.user_config.as_deref())?;
        let store = open_store(flags, &files, deps)?;
        let mut n = 0;
        for key in store.keys() {
            if logout_one(None, &store, &key, args, deps)? {
                n += 1;
            }
        }
        flush_store_warnings(&store, deps);
        deps.note(if n == 0 {
            "Not logged in to any server.".to_string()
        } else {
            format!("Logged out of {n} server(s).")
        });
        return Ok(());
    }
    let (resolved, store) = setup(flags, deps)?;
    let c = &resolved.server;
    let key = store::server_key(c);
    let was = logout_one(Some(c), &store, &key, args, deps);
    flush_store_warnings(&store, deps);
    if was? {
        deps.note(format!("Logged out of {}.", c.display_name()));
    } else {
        deps.note(format!("Not logged in to {}: nothing to do.", c.display_name()));
    }
    Ok(())
}

/// Revoke (best effort) and forget one entry; local state is cleared whatever the provider says.
fn logout_one(c: Option<&ServerConfig>, store: &Store, key: &str, args: &LogoutArgs, deps: &mut Deps) -> Result<bool> {
    let lock: LockGuard = store.lock(key, LOCK_TIMEOUT)?;
    let entry = match store.load(key) {
        Ok(e) => e,
        Err(e) => {
            deps.note(format!("warning: {e}"));
            None
        }
    };
    if let Some(entry) = &entry {
        let rt = store.refresh_token(key, entry).unwrap_or_else(|e| {
            deps.note(format!("warning: {e}"));
            None
        });
        let issuer = c.map(|c| c.issuer.clone()).unwrap_or_else(|| entry.issuer.clone());
        let name = entry.server.clone().unwrap_or_else(|| issuer.clone());
        match revoke_and_find_end_session(c, entry, rt.as_ref(), deps) {
            Ok((revoked, end_session)) => {
                if revoked {
                    deps.note(format!("Revoked the refresh token for {name} at the provider."));
                }
                if let Some(url) = end_session {
                    if args.end_session {
                        if let Err(why) = deps.browser.open(&url) {
                            deps.note(format!("(could not open a browser: {why})"));
                        }
                        deps.note(format!("To end the browser session at the provider, visit:\n  {url}"));
                    } else {
                        deps.note(format!(
                            "The provider's browser session may still be active; to end it, visit (or rerun with --end-session):\n  {url}"
                        ));
                    }
                }
            }
            Err(e) => deps.note(format!("warning: {e}; the credentials are deleted locally anyway")),
        }
    }
    store.delete(key, &lock)
}

/// RFC 7009 revocation of `rt` (when there is one) and the RP-initiated logout URL, from the provider's metadata.
fn revoke_and_find_end_session(
    c: Option<&ServerConfig>,
    entry: &Entry,
    rt: Option<&crate::token::Secret<String>>,
    deps: &mut Deps,
) -> Result<(bool, Option<String>)> {
    let http = match c {
        Some(c) => http_for(c, &deps.env)?,
        None => Http::new(&HttpSettings { ssl_cert_file: deps.env.path("SSL_CERT_FILE"), ..HttpSettings::default() })?,
    };
    let issuer = c.map(|c| c.issuer.as_str()).unwrap_or(&entry.issuer);
    let cache = deps.paths.cache_dir.clone();
    let meta = discovery::discover(&http, cache.as_deref(), issuer, (deps.now)(), false)?.metadata;
    let end_session = meta.end_session_endpoint.as_ref().map(|e| {
        let mut u = url::Url::parse(e).ok();
        if let Some(u) = &mut u {
            u.query_pairs_mut().append_pair("client_id", &entry.client_id);
        }
        u.map(|u| u.to_string()).unwrap_or_else(|| e.clone())
    });
    let Some(rt) = rt else { return Ok((false, end_session)) };
    let endpoint = match (meta.revocation_endpoint.clone(), c.and_then(|c| c.revocation_endpoint.clone())) {
        (Some(e), _) => Some(e),
        (None, Some(configured)) => Some(configured),
        (None, None) => discovery::authorization_server_metadata(&http, issuer).and_then(|m| m.revocation_endpoint),
    };
    if let Some(e) = &endpoint {
        crate::flow::check_endpoint("revocation_endpoint", e)?;
    }
    let Some(endpoint) = endpoint else {
        deps.note(format!(
            "warning: the provider {issuer} advertises no revocation endpoint (set `revocation-endpoint` in the server \
             block if it has one); the refresh token stays valid at the provider until it expires"
        ));
        return Ok((false, end_session));
    };
    let secret = c.and_then(|c| c.client_secret.as_ref());
    let mut form = vec![("token", rt.expose().as_str()), ("token_type_hint", "refresh_token")];
    let basic = match (secret, c) {
        (Some(s), Some(c)) if crate::flow::auth_method(c, &meta) == config::AuthMethod::ClientSecretBasic => {
            Some((entry.client_id.as_str(), s.expose().as_str()))
        }
        (Some(s), _) => {
            form.push(("client_id", &entry.client_id));
            form.push(("client_secret", s.expose().as_str()));
            None
        }
        (None, _) => {
            form.push(("client_id", &entry.client_id));
            None
        }
    };
    let resp = http.post_form(&endpoint, &form, basic)?;
    if resp.status == 200 {
        Ok((true, end_session))
    } else {
        let err = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {}", resp.status));
        Err(Error::provider(format!("the provider refused to revoke the refresh token at {endpoint}: {err}")))
    }
}
