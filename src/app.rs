//! The wiring every use case shares: [`Deps`] (streams, clock, browser, environment), dispatch of a parsed
//! command line, error rendering, and the set-up (configuration, store, provider) the commands start from.
//! Each use case lives in its own file under `app/`.

use std::io::Write;

use crate::browser::{Browser, SystemBrowser};
use crate::cli::{Cli, Command, StatusArgs};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Flags, Resolved, ServerConfig};
use crate::discovery::{self, Discovered};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::flow::Flows;
use crate::http::Http;
use crate::paths::Paths;
use crate::store::{Store, StoreSettings};
use crate::token::{TokenKind, TokenSet};

mod login;
mod logout;
mod proxy;
mod status;
mod token;

pub use login::LoginOpts;
pub use token::{ValidToken, Want, valid_token};

/// How long a process waits for a sibling's refresh before giving up.
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Everything the use cases touch outside memory; `main` builds the real one, tests their own.
pub struct Deps {
    pub env: Env,
    pub paths: Paths,
    pub out: Box<dyn Write>,
    pub err: Box<dyn Write>,
    pub clock: Box<dyn Clock>,
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
            clock: Box::new(SystemClock),
            stdin_is_tty: std::io::stdin().is_terminal(),
            stderr_is_tty: std::io::stderr().is_terminal(),
        }
    }

    /// Unix seconds now, from the clock seam.
    pub fn now(&self) -> i64 {
        self.clock.now()
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

/// Run one invocation and report its outcome; returns the process exit code.
pub fn main_with(cli: Cli, deps: &mut Deps) -> u8 {
    // With --check, the JSON report is already on stdout when a check fails; the error goes to stderr only.
    let json_errors = matches!(&cli.command, Some(Command::Status(StatusArgs { json: true, check: false })));
    match run(cli, deps) {
        // A closed stdout (`| head`) is the reader's choice, not our failure.
        Ok(()) => {
            let _ = deps.out.flush();
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

/// Dispatch a parsed command line: handlers only parse and call (STYLE habit 5).
pub fn run(cli: Cli, deps: &mut Deps) -> Result<()> {
    let flags =
        Flags { server: cli.global.server.clone(), config: cli.global.config.clone(), store: cli.global.store.clone() };
    deps.verbose = cli.global.verbose;
    match cli.command {
        None => orientation(deps),
        Some(Command::Status(args)) => status::status(&flags, &args, deps),
        Some(Command::Login(args)) => login::login(&flags, &args, deps),
        Some(Command::Token(args)) => token::token(&flags, &args, deps),
        Some(Command::Logout(args)) => logout::logout(&flags, &args, deps),
        Some(Command::Exec(args)) if args.proxy => proxy::exec(&flags, &args, deps),
        Some(Command::Exec(args)) => token::exec(&flags, &args, deps),
        Some(Command::Proxy(args)) => proxy::proxy(&flags, &args, deps),
        Some(Command::Completions { shell }) => {
            let mut buf = Vec::new();
            crate::cli::completions(shell, &mut buf);
            write_out(deps, &buf)
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            crate::cli::man_page(&mut buf).map_err(|e| Error::io("cannot render the man page", e))?;
            write_out(deps, &buf)
        }
    }
}

/// Write the product to stdout; a reader that went away (`| head`) is not an error.
pub fn write_out(deps: &mut Deps, bytes: &[u8]) -> Result<()> {
    match deps.out.write_all(bytes).and_then(|_| deps.out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
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
    let loaded = load_config(flags, deps)?;
    let mut resolved = config::resolve(&loaded.files, &deps.env, flags)?;
    for w in &resolved.warnings {
        deps.note(format!("warning: {w}"));
    }
    let store = open_store(flags, &loaded.files, deps)?;
    resolved.skipped = loaded.skipped;
    Ok((resolved, store))
}

/// The config files, with one warning for each file skipped because another user could have written it.
fn load_config(flags: &Flags, deps: &mut Deps) -> Result<config::Loaded> {
    let loaded = config::load_sources(flags, &deps.env, deps.paths.user_config.as_deref())?;
    for s in &loaded.skipped {
        deps.note(format!("warning: {}", s.warning));
    }
    Ok(loaded)
}

fn open_store(flags: &Flags, files: &[config::ConfigFile], deps: &Deps) -> Result<Store> {
    let choice = config::store_choice(flags, &deps.env, files)?;
    let data_dir = deps
        .paths
        .data_dir
        .clone()
        .ok_or_else(|| Error::store("cannot find a data directory for credentials: set HOME (or XDG_DATA_HOME)"))?;
    let bus_available = !cfg!(target_os = "linux")
        || deps.env.get_lossy("DBUS_SESSION_BUS_ADDRESS").is_some()
        || deps.env.path("XDG_RUNTIME_DIR").is_some_and(|d| d.join("bus").exists());
    let timeout = config::keyring_timeout(&deps.env)?;
    let settings =
        StoreSettings { mode: choice.mode, mode_source: choice.source, data_dir, bus_available, now: deps.now() };
    Ok(Store::new(settings, Box::new(crate::keyring_store::os_keyring(timeout))))
}

/// Print the store's warnings once.
fn flush_store_warnings(store: &Store, deps: &mut Deps) {
    for w in store.take_warnings() {
        deps.note(format!("warning: {w}"));
    }
}

/// Which token this server is given.
pub fn token_kind(c: &ServerConfig) -> TokenKind {
    if c.use_id_token { TokenKind::IdToken } else { TokenKind::AccessToken }
}

fn http_for(c: Option<&ServerConfig>, env: &Env) -> Result<Http> {
    Http::new(&config::http_settings(c, env)?)
}

/// Network access for one command: the agent and the provider's metadata, built on first use.
struct Provider {
    http: Http,
    discovered: Discovered,
}

impl Provider {
    fn connect(c: &ServerConfig, deps: &mut Deps) -> Result<Provider> {
        let http = http_for(Some(c), &deps.env)?;
        let cache = deps.paths.cache_dir.clone();
        let discovered = discovery::discover(&http, cache.as_deref(), &c.issuer, deps.now(), false)?;
        if let Some(w) = &discovered.warning {
            deps.note(format!("warning: {w}"));
        }
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
        let fresh = discovery::discover(&self.http, cache.as_deref(), &c.issuer, deps.now(), true)?;
        let changed = fresh.metadata != self.discovered.metadata;
        self.discovered = fresh;
        Ok(changed)
    }
}

/// The machine grant of `c` (client credentials, token exchange or JWT bearer; platform tokens re-read from
/// their sources): the one routine `login` and `token` call. Machine grants issue no refresh token, so each
/// renewal comes here.
fn machine_grant(c: &ServerConfig, provider: &Provider, now: i64) -> Result<TokenSet> {
    let flows = Flows::new(c, &provider.discovered.metadata)?;
    crate::flow::machine_grant(&flows, &provider.http, now)
}

/// The token this server is given must be in the set.
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

#[cfg(test)]
mod tests;
