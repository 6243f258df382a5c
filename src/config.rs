//! Configuration resolution, compatible with the `mlflow-oidc-client` plugin: config files found on disk
//! (I/O, in [`load_files`]) and a pure [`resolve`] from (flags, environment, file texts) to one
//! [`ServerConfig`] plus where each value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::tokenset::Secret;

pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:39303/oauth2/callback";
pub const DEFAULT_SCOPE: &str = "openid profile email";
/// The table the plugin reads in pyproject.toml: `[[tool.mlflow-oidc-client.tracking-servers]]`.
const TOOL_TABLE: &str = "mlflow-oidc-client";
const SERVERS_KEY: &str = "tracking-servers";

/// Where a resolved value came from, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Env,
    File(PathBuf),
    Flag,
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env => f.write_str("env"),
            Origin::File(p) => write!(f, "file:{}", p.display()),
            Origin::Flag => f.write_str("flag"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with `client-assertion-key` (RFC 7523 §2.2, OIDC Core §9).
    PrivateKeyJwt,
    /// A platform token from `client-assertion` sent as the client assertion (RFC 7521 §4.2, "federated").
    FederatedAssertion,
    /// A public client: its `client_id` only.
    None,
}

impl AuthMethod {
    /// The name in `token_endpoint_auth_methods_supported` (providers list federated assertions as
    /// `private_key_jwt`: the assertion type is the same).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt | AuthMethod::FederatedAssertion => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

/// Where a platform token (a federated client assertion or a subject token) comes from; read on every use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformToken {
    /// A file re-read on every use (a Kubernetes projected token, `AZURE_FEDERATED_TOKEN_FILE`).
    File(PathBuf),
    /// An environment variable (GitLab CI `id_tokens`); its value as captured at start-up.
    Env { name: String, value: Option<Secret<String>> },
    /// GitHub Actions' OIDC token service: the two request variables as captured at start-up.
    GithubActions { request_url: Option<String>, request_token: Option<Secret<String>> },
    /// A command whose stdout is the token; only from the user config or the environment.
    Command(String),
}

impl PlatformToken {
    /// What `status` and messages call it: never the token.
    pub fn describe(&self) -> String {
        match self {
            PlatformToken::File(p) => format!("file {}", p.display()),
            PlatformToken::Env { name, .. } => format!("environment variable {name}"),
            PlatformToken::GithubActions { .. } => "GitHub Actions OIDC token service".into(),
            PlatformToken::Command(c) => format!("command `{c}`"),
        }
    }
}

/// Which grant a machine client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantChoice {
    Auto,
    ClientCredentials,
    TokenExchange,
    JwtBearer,
}

/// The grant a machine client actually uses, `auto` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineGrant {
    ClientCredentials,
    TokenExchange,
    JwtBearer,
}

impl MachineGrant {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineGrant::ClientCredentials => "client credentials",
            MachineGrant::TokenExchange => "token exchange (RFC 8693)",
            MachineGrant::JwtBearer => "JWT bearer (RFC 7523)",
        }
    }
    /// The `grant_type` value.
    pub fn grant_type(self) -> &'static str {
        match self {
            MachineGrant::ClientCredentials => "client_credentials",
            MachineGrant::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            MachineGrant::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
        }
    }
}

pub const DEFAULT_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

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
    /// True when the audience was configured rather than defaulted to the client id (the authorization request
    /// then names it too).
    pub audience_explicit: bool,
    pub interactive: bool,
    pub use_id_token: bool,
    pub ca_bundle: Option<PathBuf>,
    /// The certificate and key an `https://` loopback redirect is served with.
    pub redirect_tls: Option<(PathBuf, PathBuf)>,
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
    /// A PEM private key for private_key_jwt (relative paths resolved against the file that names it).
    pub client_assertion_key: Option<PathBuf>,
    pub client_assertion_kid: Option<String>,
    /// A platform token sent as a federated client assertion.
    pub client_assertion: Option<PlatformToken>,
    /// The `audience` asked of GitHub Actions' token service.
    pub github_actions_audience: Option<String>,
    pub grant: GrantChoice,
    /// The token to exchange (RFC 8693) or assert (RFC 7523 §2.1).
    pub subject_token: Option<PlatformToken>,
    pub subject_token_type: String,
    /// For each field name (`uri`, `issuer`, `client_id`, …), where its value came from.
    pub origins: BTreeMap<&'static str, Origin>,
}

impl ServerConfig {
    /// A name for this server in messages: the tracking URI, else the issuer.
    pub fn display_name(&self) -> &str {
        self.uri.as_deref().unwrap_or(&self.issuer)
    }

    /// The TLS files of the loopback listener, for an `https://` redirect URI.
    pub fn redirect_tls_files(&self) -> Option<crate::loopback::TlsFiles<'_>> {
        self.redirect_tls.as_ref().map(|(cert, key)| crate::loopback::TlsFiles { cert, key })
    }

    /// A machine client: it has a credential of its own (a secret, a signing key, a platform token to assert or
    /// to exchange) and no person logs in, so it uses a machine grant. The one place this is decided (login,
    /// token and status --check ask here).
    pub fn is_machine(&self) -> bool {
        self.has_machine_credential() && !self.interactive
    }

    /// Whether the block configures a credential that needs no person.
    pub fn has_machine_credential(&self) -> bool {
        self.client_secret.is_some()
            || self.client_assertion_key.is_some()
            || self.client_assertion.is_some()
            || self.subject_token.is_some()
    }

    /// The grant a machine client uses: `auto` is token exchange with a subject token, else client credentials.
    pub fn machine_grant(&self) -> MachineGrant {
        match self.grant {
            GrantChoice::ClientCredentials => MachineGrant::ClientCredentials,
            GrantChoice::TokenExchange => MachineGrant::TokenExchange,
            GrantChoice::JwtBearer => MachineGrant::JwtBearer,
            GrantChoice::Auto if self.subject_token.is_some() => MachineGrant::TokenExchange,
            GrantChoice::Auto => MachineGrant::ClientCredentials,
        }
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

/// One configuration file's text, read by [`load_files`].
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub kind: FileKind,
    pub text: String,
    /// A project file in a directory the user listed in `safe-directories`: its blocks may redirect a URI the
    /// user config also configures (see [`resolve`]).
    pub trusted: bool,
    /// The user trusted this content (`mlflow-oidc trust`): its settings marked `needs_trust` are used. Always
    /// true for the user config and `--config` files, which the user chose; a project file found by the walk
    /// may be a repository just cloned (issue 21, as `direnv allow` and `mise trust`).
    pub allowed: bool,
    /// The text parsed once: the walk, the servers and the store setting all read it (parsing is most of
    /// the cached `token` path's work on a typical pyproject.toml).
    parsed: std::cell::OnceCell<std::result::Result<toml::Table, toml::de::Error>>,
}

impl ConfigFile {
    pub fn new(path: PathBuf, kind: FileKind, text: String) -> Self {
        let allowed = kind != FileKind::Project;
        ConfigFile { path, kind, text, trusted: false, allowed, parsed: std::cell::OnceCell::new() }
    }

    pub fn allowed(mut self, allowed: bool) -> Self {
        self.allowed = allowed;
        self
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
    /// The chosen block's file when it sets keys that wait for `mlflow-oidc trust` (ignored until then).
    pub untrusted: Option<Untrusted>,
}

/// A project file whose settings that reach the user's files, variables or keys were ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    pub file: PathBuf,
    /// The keys ignored, in key order.
    pub keys: Vec<&'static str>,
}

impl Untrusted {
    /// The command that trusts the file.
    pub fn command(&self) -> String {
        format!("mlflow-oidc trust {}", crate::error::shell_word(&self.file.display().to_string()))
    }

    /// The one warning printed for it.
    pub fn warning(&self) -> String {
        format!(
            "ignoring {} in {}: a project file may not use your files, variables or keys until you trust it. \
             If you trust this file as it is now, run `{}`",
            self.keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            self.file.display(),
            self.command()
        )
    }
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
    /// Keys of this block ignored because its file is not trusted (see [`ConfigFile::allowed`]), with their raw
    /// values: never resolved, only compared with the user's own block (see `select::keep_project_block`).
    pub untrusted: BTreeMap<&'static str, String>,
}

mod build;
mod cache;
mod files;
pub mod keys;
mod runtime;
mod select;
mod validate;
mod view;

pub use files::{Loaded, Skipped, load_files, store_setting};

/// The keys of a project file's blocks that wait for `mlflow-oidc trust` (for `trust` to say what it unlocks).
pub fn keys_needing_trust(path: PathBuf, text: String) -> Result<Vec<&'static str>, crate::error::Error> {
    let file = ConfigFile::new(path, FileKind::Project, text);
    let mut keys: Vec<&'static str> =
        files::parse_file(&file, &mut Vec::new())?.into_iter().flat_map(|b| b.untrusted.into_keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}
pub use runtime::{StoreChoice, http_settings, keyring_timeout, proxy_upstream_timeout, store_choice};
pub use select::{normalize_uri, resolve};
pub use validate::{parse_bool, parse_duration, validate_issuer, validate_redirect_uri};

#[cfg(test)]
mod tests;
