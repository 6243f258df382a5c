//! Configuration resolution, compatible with the `mlflow-oidc-client` plugin: config files found on disk
//! (I/O, in [`load_sources`]) and a pure [`resolve`] from (flags, environment, file texts) to one
//! [`ServerConfig`] plus where each value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::token::Secret;

pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:39303/oauth2/callback";
pub const DEFAULT_SCOPE: &str = "openid profile email";
/// The table the plugin reads in pyproject.toml: `[[tool.mlflow-oidc-client.tracking-servers]]`.
const TOOL_TABLE: &str = "mlflow-oidc-client";
const SERVERS_KEY: &str = "tracking-servers";

/// Where a resolved value came from, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env,
    File(PathBuf),
    Flag,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env => f.write_str("env"),
            Source::File(p) => write!(f, "file:{}", p.display()),
            Source::Flag => f.write_str("flag"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// How the client authenticates at the token endpoint when it has a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

/// The resolved configuration of the one tracking server this invocation works on.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The tracking URI (from `--server`, `MLFLOW_TRACKING_URI` or the only configured block).
    pub uri: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
    pub redirect_uri: String,
    pub scope: String,
    /// True when the scope was configured rather than defaulted (client credentials sends only an explicit scope).
    pub scope_explicit: bool,
    pub audience: String,
    pub interactive: bool,
    pub use_id_token: bool,
    pub ca_bundle: Option<PathBuf>,
    pub token_endpoint_auth_method: Option<AuthMethod>,
    /// Ask for `offline_access` when the provider supports it and the scope lacks it.
    pub offline_access: bool,
    /// Where to revoke refresh tokens when the provider's metadata does not say.
    pub revocation_endpoint: Option<String>,
    /// Which login flow to use.
    pub flow: FlowChoice,
    /// The device authorization endpoint when the provider's metadata does not say.
    pub device_authorization_endpoint: Option<String>,
    /// Extra authorization-request parameters (`prompt`, `login_hint`, `access_type`, …).
    pub auth_params: Vec<(String, String)>,
    /// RFC 8707 resource indicators, sent on authorization and token requests.
    pub resources: Vec<String>,
    /// Loopback ports to try in order when the redirect URI's port is busy.
    pub redirect_ports: Vec<u16>,
    /// For each field name (`uri`, `issuer`, `client_id`, …), where its value came from.
    pub sources: BTreeMap<&'static str, Source>,
}

impl ServerConfig {
    /// A name for this server in messages: the tracking URI, else the issuer.
    pub fn display_name(&self) -> &str {
        self.uri.as_deref().unwrap_or(&self.issuer)
    }

    /// A machine client: it has a secret and no person logs in, so it uses the client credentials grant. The
    /// one place this is decided (login, token and status --check ask here).
    pub fn is_machine(&self) -> bool {
        self.client_secret.is_some() && !self.interactive
    }
}

/// Which store the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Auto,
    Keyring,
    File,
    Memory,
}

impl StoreMode {
    pub fn parse(s: &str) -> Option<StoreMode> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(StoreMode::Auto),
            "keyring" => Some(StoreMode::Keyring),
            "file" => Some(StoreMode::File),
            "memory" => Some(StoreMode::Memory),
            _ => None,
        }
    }
}

/// The login flow a server block asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowChoice {
    /// Authorization code when a local browser is plausible, else the device flow when the provider has one.
    Auto,
    AuthCode,
    Device,
}

impl FlowChoice {
    pub fn parse(s: &str) -> Option<FlowChoice> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => Some(FlowChoice::Auto),
            "auth-code" | "authorization-code" | "code" => Some(FlowChoice::AuthCode),
            "device" | "device-code" => Some(FlowChoice::Device),
            _ => None,
        }
    }
}

/// What a config file is, which decides where its blocks live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A `pyproject.toml` (found by walking up, or given explicitly): blocks under `[tool.mlflow-oidc-client]`.
    Project,
    /// The user config file: blocks at the top level. An explicit `--config` file may be either shape.
    User,
    /// `--config PATH` / `MLFLOW_OIDC_CONFIG`: either shape, detected from its content.
    Explicit,
}

/// One configuration file's text, read by [`load_sources`].
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub kind: FileKind,
    pub text: String,
    /// A project file in a directory the user listed in `safe-directories`: its blocks may redirect a URI the
    /// user config also configures (see [`resolve`]).
    pub trusted: bool,
    /// The text parsed once: the walk, the servers and the store setting all read it (parsing is most of
    /// the cached `token` path's work on a typical pyproject.toml).
    parsed: std::cell::OnceCell<std::result::Result<toml::Table, toml::de::Error>>,
}

impl ConfigFile {
    pub fn new(path: PathBuf, kind: FileKind, text: String) -> Self {
        ConfigFile { path, kind, text, trusted: false, parsed: std::cell::OnceCell::new() }
    }

    pub fn trusted(mut self, trusted: bool) -> Self {
        self.trusted = trusted;
        self
    }

    fn doc(&self) -> std::result::Result<&toml::Table, &toml::de::Error> {
        self.parsed
            .get_or_init(|| match self.kind {
                // A project file is read only for `tool.mlflow-oidc-client`; the rest is parsed, not built.
                FileKind::Project => view::project_view(&self.text),
                FileKind::User | FileKind::Explicit => self.text.parse::<toml::Table>(),
            })
            .as_ref()
    }
}

/// What the command line contributes to resolution.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub server: Option<String>,
    pub config: Option<PathBuf>,
    pub store: Option<String>,
}

/// The result of resolution: the server, plus warnings to print on stderr.
#[derive(Debug)]
pub struct Resolved {
    pub server: ServerConfig,
    pub warnings: Vec<String>,
    /// Config files found but not used (filled by the caller from [`Loaded`]; `status` lists them).
    pub skipped: Vec<Skipped>,
}

/// One `tracking-servers` block, parsed and type-checked, values still raw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Block {
    pub file: PathBuf,
    pub uri: Option<String>,
    pub strings: BTreeMap<&'static str, String>,
    pub bools: BTreeMap<&'static str, bool>,
    pub auth_params: Option<Vec<(String, String)>>,
    pub resources: Option<Vec<String>>,
    pub redirect_ports: Option<Vec<u16>>,
    /// From a project file the walk found outside `safe-directories`.
    pub guarded: bool,
}

/// The keys that decide where credentials go or whom the client trusts: a project block that changes one of
/// them for a URI the user configured could send the user's secret, or tokens, to another provider.
const GUARDED_KEYS: &[&str] = &[
    keys::ISSUER.key,
    keys::CA_BUNDLE.key,
    keys::CLIENT_SECRET.key,
    keys::TOKEN_ENDPOINT_AUTH_METHOD.key,
    keys::REVOCATION_ENDPOINT.key,
    keys::DEVICE_AUTHORIZATION_ENDPOINT.key,
];

/// Whether a block may stay. The user's own block for a URI beats a project block that disagrees on a guarded
/// key, unless the project's directory is in `safe-directories`: anyone who can write a parent directory (or
/// a cloned repository) writes the project file, while only the user writes their config, so the user's
/// choice of provider for their own server is not the project's to override. A project block that agrees on
/// those keys still wins (it may set scope, flow, redirect ports, …), as the plugin's last-block-wins rule says.
fn keep_project_block(b: &Block, user_blocks: &[Block], warnings: &mut Vec<String>) -> bool {
    if !b.guarded {
        return true;
    }
    let Some(uri) = b.uri.as_deref() else { return true };
    let want = normalize_uri(uri);
    let Some(user) = user_blocks.iter().rev().find(|u| u.uri.as_deref().map(normalize_uri).as_deref() == Some(&want))
    else {
        return true;
    };
    let differ: Vec<&str> = GUARDED_KEYS
        .iter()
        .copied()
        .filter(|k| b.strings.get(k).is_some_and(|v| user.strings.get(k) != Some(v)))
        .collect();
    if differ.is_empty() {
        return true;
    }
    warnings.push(format!(
        "IGNORING the block for {uri} in {}: it changes {} from your own block in {}, which is used instead. \
         A project file must not send your credentials to another provider; if you trust {}, add its directory \
         to `safe-directories` in {}",
        b.file.display(),
        differ.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        user.file.display(),
        b.file.display(),
        user.file.display()
    ));
    false
}

/// Resolve the configuration of one server. Pure: all I/O happened in [`load_sources`].
pub fn resolve(files: &[ConfigFile], env: &Env, flags: &Flags) -> Result<Resolved> {
    let mut warnings = Vec::new();
    let mut blocks = Vec::new();
    let mut user_blocks = Vec::new();
    for file in files {
        let parsed = files::parse_file(file, &mut warnings)?;
        match file.kind {
            FileKind::User => user_blocks.extend(parsed.iter().cloned()),
            // A project block may not take a URI the user configured to another provider (below).
            FileKind::Project if !file.trusted => {
                blocks.extend(parsed.into_iter().map(|b| Block { guarded: true, ..b }));
                continue;
            }
            _ => {}
        }
        blocks.extend(parsed);
    }
    blocks.retain(|b| keep_project_block(b, &user_blocks, &mut warnings));
    let known_uris: Vec<String> = blocks.iter().filter_map(|b| b.uri.clone()).collect();

    let (target, uri_source) = match &flags.server {
        Some(s) if !s.is_empty() => (Some(s.clone()), Source::Flag),
        _ => match env.get("MLFLOW_TRACKING_URI")? {
            Some(s) => (Some(s.to_string()), Source::Env),
            None => (None, Source::Default),
        },
    };
    let env_complete =
        env.get("MLFLOW_TRACKING_OIDC_ISSUER")?.is_some() && env.get("MLFLOW_TRACKING_OIDC_CLIENT_ID")?.is_some();

    let (block, uri, uri_source) = match &target {
        Some(t) => match find_block(&blocks, t) {
            Some(b) => (Some(b), Some(t.clone()), uri_source),
            None if env_complete => (None, Some(t.clone()), uri_source),
            None => return Err(no_match_error(t, &uri_source, files, &known_uris)),
        },
        None => {
            let with_uri: Vec<&Block> = blocks.iter().filter(|b| b.uri.is_some()).collect();
            match with_uri.as_slice() {
                [] if env_complete => (None, None, Source::Default),
                [] => return Err(nothing_configured_error(files)),
                [only] => (Some(*only), only.uri.clone(), Source::File(only.file.clone())),
                many => {
                    let list = many.iter().filter_map(|b| b.uri.as_deref()).collect::<Vec<_>>().join(", ");
                    return Err(Error::config(format!(
                        "{} tracking servers are configured ({list}): choose one with --server URI or MLFLOW_TRACKING_URI",
                        many.len()
                    )));
                }
            }
        }
    };

    let server = build::build_server(block, env, uri, uri_source)?;
    Ok(Resolved { server, warnings, skipped: Vec::new() })
}

fn no_match_error(target: &str, source: &Source, files: &[ConfigFile], known: &[String]) -> Error {
    let from = match source {
        Source::Flag => "--server",
        _ => "MLFLOW_TRACKING_URI",
    };
    let where_ = if files.is_empty() {
        "no config file was found".to_string()
    } else {
        format!("looked in {}", files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", "))
    };
    let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
    Error::NoServer(format!(
        "no tracking server matches {target} (from {from}); {where_}; configured servers: {known}. \
         Add a [[tool.mlflow-oidc-client.tracking-servers]] block with uri = \"{target}\", \
         or set MLFLOW_TRACKING_OIDC_ISSUER and MLFLOW_TRACKING_OIDC_CLIENT_ID"
    ))
}

fn nothing_configured_error(files: &[ConfigFile]) -> Error {
    let where_ = if files.is_empty() {
        "no pyproject.toml with [tool.mlflow-oidc-client] was found from the current directory up, and no user config file exists".to_string()
    } else {
        format!(
            "{} configure no tracking server with a uri",
            files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    };
    Error::NoServer(format!(
        "no tracking server is configured: {where_}. Add a [[tool.mlflow-oidc-client.tracking-servers]] block \
         to pyproject.toml, or set MLFLOW_TRACKING_OIDC_ISSUER and MLFLOW_TRACKING_OIDC_CLIENT_ID"
    ))
}

/// An exact string match wins over a normalised one; among equal matches the last block wins (as the plugin).
fn find_block<'a>(blocks: &'a [Block], target: &str) -> Option<&'a Block> {
    let exact = blocks.iter().rev().find(|b| b.uri.as_deref() == Some(target));
    exact.or_else(|| {
        let want = normalize_uri(target);
        blocks.iter().rev().find(|b| b.uri.as_deref().map(normalize_uri).as_deref() == Some(want.as_str()))
    })
}

/// Scheme and host lower-cased, default ports dropped, one trailing slash ignored.
pub fn normalize_uri(uri: &str) -> String {
    let trimmed = uri.trim();
    match url::Url::parse(trimmed) {
        Ok(u) if u.has_host() => {
            let mut s = format!("{}://", u.scheme());
            s.push_str(&u.host_str().unwrap_or_default().to_ascii_lowercase());
            if let Some(p) = u.port() {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(u.path().strip_suffix('/').unwrap_or(u.path()));
            if let Some(q) = u.query() {
                s.push('?');
                s.push_str(q);
            }
            s
        }
        _ => trimmed.strip_suffix('/').unwrap_or(trimmed).to_string(),
    }
}

mod build;
mod files;
pub mod keys;
mod runtime;
mod validate;
mod view;

pub use files::{Loaded, Skipped, load_sources, store_setting};
pub use runtime::{StoreChoice, http_settings, keyring_timeout, store_choice};
pub use validate::{is_loopback_host, parse_bool, parse_duration, validate_issuer, validate_redirect_uri};

#[cfg(test)]
mod tests;
