//! One command's session: the resolved server configuration, the credential store and, on first use, the
//! provider (HTTP agent and metadata). Built once per command; the proxy keeps one for its lifetime and renews
//! through it (STYLE: kubelogin's `GetToken.Do` takes its collaborators as fields).

use super::Deps;
use crate::config::{self, Flags, ServerConfig, Skipped};
use crate::discovery::{self, Discovered};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::flow::Flows;
use crate::http::Http;
use crate::store::{self, Store, StoreSettings};
use crate::tokenset::{TokenKind, TokenSet};

pub struct Session {
    pub server: ServerConfig,
    /// Config files found but not used (`status` lists them).
    pub skipped: Vec<Skipped>,
    /// A project file whose settings wait for `mlflow-oidc trust` (issue 21; `status` shows it).
    pub untrusted: Option<config::Untrusted>,
    pub store: Store,
    /// The store key of this server.
    pub key: String,
    provider: Option<Provider>,
}

impl Session {
    /// The server's configuration and the credential store, as this invocation's flags, environment and files
    /// say; their warnings go to the command's sink.
    pub fn open(flags: &Flags, deps: &mut Deps) -> Result<Session> {
        let loaded = load_config(flags, deps)?;
        let resolved = config::resolve(&loaded.files, &deps.env, flags)?;
        for w in resolved.warnings {
            deps.warnings.push(w);
        }
        let store = open_store(flags, &loaded.files, deps)?;
        let key = store::server_key(&resolved.server);
        Ok(Session {
            server: resolved.server,
            skipped: loaded.skipped,
            untrusted: resolved.untrusted,
            store,
            key,
            provider: None,
        })
    }

    /// A session on a configuration and store built elsewhere (tests).
    pub fn new(server: ServerConfig, store: Store) -> Session {
        let key = store::server_key(&server);
        Session { server, skipped: Vec::new(), untrusted: None, store, key, provider: None }
    }

    /// Which token this server is given.
    pub fn kind(&self) -> TokenKind {
        token_kind(&self.server)
    }

    /// The configuration and the provider, connected (metadata discovered) on first use.
    pub(super) fn connected(&mut self, deps: &mut Deps) -> Result<(&ServerConfig, &mut Provider)> {
        let provider = match self.provider.take() {
            Some(p) => p,
            None => Provider::connect(&self.server, deps)?,
        };
        Ok((&self.server, self.provider.insert(provider)))
    }

    /// Refetch the provider's metadata when it came from the cache; true when it changed (worth retrying a
    /// request that failed with the cached copy).
    pub(super) fn refetch(&mut self, deps: &mut Deps) -> Result<bool> {
        match &mut self.provider {
            Some(p) => p.refetch(&self.server, deps),
            None => Ok(false),
        }
    }

    /// The machine grant of this server (client credentials, token exchange or JWT bearer; platform tokens re-read
    /// from their sources): the one routine `login` and `token` call. Machine grants issue no refresh token, so
    /// each renewal comes here.
    pub(super) fn machine_grant(&mut self, deps: &mut Deps) -> Result<TokenSet> {
        let now = deps.now();
        let (c, provider) = self.connected(deps)?;
        let flows = Flows::new(c, &provider.discovered.metadata)?;
        let set = crate::flow::machine_grant(&flows, &provider.http, now)?;
        require_kind(c, set)
    }
}

/// The credential store alone, for commands about every server (`logout --all`).
pub(super) fn store_only(flags: &Flags, deps: &mut Deps) -> Result<Store> {
    let loaded = load_config(flags, deps)?;
    open_store(flags, &loaded.files, deps)
}

/// The config files, with a warning for each one skipped because another user could have written it, and each
/// project file marked with whether the user trusted its content (issue 21).
fn load_config(flags: &Flags, deps: &mut Deps) -> Result<config::Loaded> {
    let mut loaded = config::load_files(flags, &deps.env, &deps.paths)?;
    for s in &loaded.skipped {
        deps.warnings.push(s.warning.clone());
    }
    super::trust::mark_allowed(&mut loaded.files, deps)?;
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
    let settings = StoreSettings {
        mode: choice.mode,
        mode_source: choice.source,
        data_dir,
        bus_available,
        now: deps.now(),
        warnings: deps.warnings.clone(),
    };
    Ok(Store::new(settings, Box::new(crate::keyring_store::os_keyring(timeout))))
}

/// Which token this server is given.
pub fn token_kind(c: &ServerConfig) -> TokenKind {
    if c.use_id_token { TokenKind::IdToken } else { TokenKind::AccessToken }
}

/// The HTTP agent for a server's provider (or, without one, the process defaults).
pub(super) fn http_for(c: Option<&ServerConfig>, env: &Env) -> Result<Http> {
    Http::new(&config::http_settings(c, env)?)
}

/// Network access for one command: the agent and the provider's metadata, built on first use.
pub(super) struct Provider {
    pub http: Http,
    pub discovered: Discovered,
}

impl Provider {
    pub(super) fn connect(c: &ServerConfig, deps: &mut Deps) -> Result<Provider> {
        let http = http_for(Some(c), &deps.env)?;
        let cache = deps.paths.cache_dir.clone();
        let discovered = discovery::discover(&http, cache.as_deref(), &c.issuer, deps.now(), false)?;
        if let Some(w) = &discovered.warning {
            deps.warnings.push(w.clone());
        }
        deps.debug(format!(
            "provider metadata for {} {}",
            c.issuer,
            if discovered.from_cache { "from cache" } else { "fetched" }
        ));
        Ok(Provider { http, discovered })
    }

    /// Refetch metadata that came from the cache; true when it changed (worth retrying a failed request).
    pub(super) fn refetch(&mut self, c: &ServerConfig, deps: &mut Deps) -> Result<bool> {
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

/// The token this server is given must be in the set.
pub(super) fn require_kind(c: &ServerConfig, set: TokenSet) -> Result<TokenSet> {
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
