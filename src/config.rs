//! Configuration resolution, compatible with the `mlflow-oidc-client` plugin: config files found on disk
//! (I/O, in [`load_sources`]) and a pure [`resolve`] from (flags, environment, file texts) to one
//! [`ServerConfig`] plus where each value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::token::Secret;

pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:39303/oauth2/callback";
pub const DEFAULT_SCOPE: &str = "openid profile email";
/// The table the plugin reads in pyproject.toml: `[[tool.mlflow-oidc-client.tracking-servers]]`.
const TOOL_TABLE: &str = "mlflow-oidc-client";
const SERVERS_KEY: &str = "tracking-servers";

/// Keys a `tracking-servers` block may hold; anything else is warned about with the nearest suggestion.
pub const KNOWN_KEYS: &[&str] = &[
    "uri",
    "issuer",
    "client-id",
    "client-secret",
    "redirect-uri",
    "scope",
    "audience",
    "interactive",
    "use-id-token",
    "ca-bundle",
    "token-endpoint-auth-method",
    "offline-access",
    "revocation-endpoint",
    "flow",
    "device-authorization-endpoint",
    "auth-params",
    "resource",
    "redirect-ports",
];

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
    /// The text parsed once: the walk, the servers and the store setting all read it (parsing is most of
    /// the cached `token` path's work on a typical pyproject.toml).
    parsed: std::cell::OnceCell<std::result::Result<toml::Table, toml::de::Error>>,
}

impl ConfigFile {
    pub fn new(path: PathBuf, kind: FileKind, text: String) -> Self {
        ConfigFile { path, kind, text, parsed: std::cell::OnceCell::new() }
    }

    fn doc(&self) -> std::result::Result<&toml::Table, &toml::de::Error> {
        self.parsed.get_or_init(|| self.text.parse::<toml::Table>()).as_ref()
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
    /// Every configured server URI, in file order, for `status`.
    pub known_uris: Vec<String>,
}

/// Find and read the configuration files: the explicit one (`--config`/`MLFLOW_OIDC_CONFIG`) or the nearest
/// `pyproject.toml` with a `[tool.mlflow-oidc-client]` table walking up from the working directory, then the
/// user config file. Returns them with the user file first, so project blocks win ties (last block wins).
pub fn load_sources(flags: &Flags, env: &Env, user_config: Option<&Path>) -> Result<Vec<ConfigFile>> {
    let mut files = Vec::new();
    if let Some(path) = user_config
        && let Some(text) = read_optional(path)?
    {
        files.push(ConfigFile::new(path.to_path_buf(), FileKind::User, text));
    }
    let explicit = match &flags.config {
        Some(p) => Some((p.clone(), "--config")),
        None => env.path("MLFLOW_OIDC_CONFIG").map(|p| (p, "MLFLOW_OIDC_CONFIG")),
    };
    if let Some((path, origin)) = explicit {
        let path = match env.cwd() {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path,
        };
        let text = read_optional(&path)?.ok_or_else(|| {
            Error::config(format!("config file {} (from {origin}) does not exist: check the path", path.display()))
        })?;
        files.push(ConfigFile::new(path, FileKind::Explicit, text));
    } else if let Some(cwd) = env.cwd() {
        for dir in cwd.ancestors() {
            let candidate = dir.join("pyproject.toml");
            if let Some(text) = read_optional(&candidate)? {
                // Only a pyproject that configures us stops the walk: a sub-package's own pyproject must not
                // hide the project's configuration. A cheap text test first keeps unrelated files unparsed.
                if text.contains(TOOL_TABLE) {
                    let file = ConfigFile::new(candidate, FileKind::Project, text);
                    if has_tool_table(&file) {
                        files.push(file);
                        break;
                    }
                }
            }
        }
    }
    Ok(files)
}

fn has_tool_table(file: &ConfigFile) -> bool {
    match file.doc() {
        Ok(t) => t.get("tool").and_then(|t| t.as_table()).is_some_and(|t| t.contains_key(TOOL_TABLE)),
        // A broken file that mentions our table is ours to report, not to skip.
        Err(_) => true,
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::config(format!("config file {} is not valid UTF-8", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if path.is_dir() => {
            let _ = e;
            Err(Error::config(format!("config file {} is a directory, not a file", path.display())))
        }
        Err(e) => Err(Error::config(format!("cannot read config file {}: {}", path.display(), io_reason(&e)))),
    }
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => {
            let s = e.to_string();
            // std's messages are capitalised and carry "(os error N)"; keep ours lower-case and short.
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// The `store` key at the top level of the user config file (or an explicit user-style file), with its file.
pub fn store_setting(files: &[ConfigFile]) -> Result<Option<(String, PathBuf)>> {
    let mut found = None;
    for f in files.iter().filter(|f| f.kind != FileKind::Project) {
        let Ok(doc) = f.doc() else { continue };
        if let Some(v) = doc.get("store") {
            let s = v.as_str().ok_or_else(|| {
                Error::config(format!(
                    "`store` in {} must be a string (auto, keyring, file or memory)",
                    f.path.display()
                ))
            })?;
            found = Some((s.to_string(), f.path.clone()));
        }
    }
    Ok(found)
}

/// One `tracking-servers` block, parsed and type-checked, values still raw.
#[derive(Debug, Clone, Default)]
struct Block {
    file: PathBuf,
    uri: Option<String>,
    strings: BTreeMap<&'static str, String>,
    bools: BTreeMap<&'static str, bool>,
    auth_params: Option<Vec<(String, String)>>,
    resources: Option<Vec<String>>,
    redirect_ports: Option<Vec<u16>>,
}

/// Resolve the configuration of one server. Pure: all I/O happened in [`load_sources`].
pub fn resolve(files: &[ConfigFile], env: &Env, flags: &Flags) -> Result<Resolved> {
    let mut warnings = Vec::new();
    let mut blocks = Vec::new();
    for file in files {
        blocks.extend(parse_file(file, &mut warnings)?);
    }
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

    let server = build_server(block, env, uri, uri_source)?;
    Ok(Resolved { server, warnings, known_uris })
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

fn parse_file(file: &ConfigFile, warnings: &mut Vec<String>) -> Result<Vec<Block>> {
    let path = file.path.display();
    let doc: &toml::Table = file.doc().map_err(|e: &toml::de::Error| {
        let at = e
            .span()
            .map(|span| {
                let (line, col) = line_col(&file.text, span.start);
                format!(" at line {line}, column {col}")
            })
            .unwrap_or_default();
        let msg = e.message().trim_end().to_string();
        Error::config(format!("invalid TOML in {path}{at}: {msg}"))
    })?;

    let (servers, key_path) = match file.kind {
        FileKind::Project => (project_servers(doc, &path.to_string())?, "tool.mlflow-oidc-client.tracking-servers"),
        FileKind::User => (doc.get(SERVERS_KEY), SERVERS_KEY),
        FileKind::Explicit => match project_servers(doc, &path.to_string())? {
            Some(v) => (Some(v), "tool.mlflow-oidc-client.tracking-servers"),
            None => (doc.get(SERVERS_KEY), SERVERS_KEY),
        },
    };
    let Some(servers) = servers else { return Ok(Vec::new()) };
    let arr = servers.as_array().ok_or_else(|| {
        Error::config(format!(
            "{key_path} in {path} must be an array of tables ([[{key_path}]] blocks), not {}",
            type_name(servers)
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        let n = i + 1;
        let table = item.as_table().ok_or_else(|| {
            Error::config(format!("{key_path} entry #{n} in {path} must be a table, not {}", type_name(item)))
        })?;
        let mut block = Block { file: file.path.clone(), ..Block::default() };
        for (key, value) in table {
            let Some(&known) = KNOWN_KEYS.iter().find(|k| **k == key.as_str()) else {
                let hint = nearest_key(key).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                warnings.push(format!("unknown key `{key}` in {key_path} entry #{n} of {path}: ignored{hint}"));
                continue;
            };
            let at = || format!("`{known}` in {key_path} entry #{n} of {path}");
            match known {
                "interactive" | "use-id-token" | "offline-access" => {
                    let b = match value {
                        toml::Value::Boolean(b) => *b,
                        toml::Value::String(s) if s.is_empty() => continue,
                        toml::Value::String(s) => parse_bool(s)
                            .ok_or_else(|| Error::config(format!("{} must be true or false, not \"{s}\"", at())))?,
                        toml::Value::Integer(1) => true,
                        toml::Value::Integer(0) => false,
                        other => {
                            return Err(Error::config(format!(
                                "{} must be true or false, not {}",
                                at(),
                                type_name(other)
                            )));
                        }
                    };
                    block.bools.insert(known, b);
                }
                "auth-params" => {
                    let t = value.as_table().ok_or_else(|| {
                        Error::config(format!(
                            "{} must be a table of strings, e.g. auth-params = {{ prompt = \"login\" }}, not {}",
                            at(),
                            type_name(value)
                        ))
                    })?;
                    let mut params = Vec::new();
                    for (k, v) in t {
                        let v = match v {
                            toml::Value::String(s) => s.clone(),
                            toml::Value::Integer(i) => i.to_string(),
                            toml::Value::Boolean(b) => b.to_string(),
                            other => {
                                return Err(Error::config(format!(
                                    "{}: `{k}` must be a string, not {}",
                                    at(),
                                    type_name(other)
                                )));
                            }
                        };
                        check_auth_param(k, &at())?;
                        params.push((k.clone(), v));
                    }
                    block.auth_params = Some(params);
                }
                "resource" => {
                    let list = match value {
                        toml::Value::String(s) => vec![s.clone()],
                        toml::Value::Array(a) => {
                            a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>().ok_or_else(
                                || Error::config(format!("{} must be a string or an array of strings", at())),
                            )?
                        }
                        other => {
                            return Err(Error::config(format!(
                                "{} must be a string or an array of strings, not {}",
                                at(),
                                type_name(other)
                            )));
                        }
                    };
                    for r in &list {
                        check_resource(r, &at())?;
                    }
                    block.resources = Some(list);
                }
                "redirect-ports" => {
                    let ports = value
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|v| v.as_integer().and_then(|i| u16::try_from(i).ok()))
                                .collect::<Option<Vec<u16>>>()
                        })
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| {
                            Error::config(format!(
                                "{} must be a non-empty array of port numbers (0-65535), e.g. [39303, 39304]",
                                at()
                            ))
                        })?;
                    block.redirect_ports = Some(ports);
                }
                _ => {
                    let s = value
                        .as_str()
                        .ok_or_else(|| Error::config(format!("{} must be a string, not {}", at(), type_name(value))))?;
                    if s.is_empty() {
                        continue; // empty strings count as unset, as the plugin's `or` chains do
                    }
                    if known == "uri" {
                        block.uri = Some(s.to_string());
                    } else {
                        block.strings.insert(known, s.to_string());
                    }
                }
            }
        }
        if block.uri.is_none() {
            warnings.push(format!("{key_path} entry #{n} in {path} has no `uri`: skipped"));
            continue;
        }
        out.push(block);
    }
    Ok(out)
}

fn project_servers<'a>(doc: &'a toml::Table, path: &str) -> Result<Option<&'a toml::Value>> {
    let Some(tool) = doc.get("tool") else { return Ok(None) };
    let tool = tool
        .as_table()
        .ok_or_else(|| Error::config(format!("`tool` in {path} must be a table, not {}", type_name(tool))))?;
    let Some(ours) = tool.get(TOOL_TABLE) else { return Ok(None) };
    let ours = ours.as_table().ok_or_else(|| {
        Error::config(format!("`tool.{TOOL_TABLE}` in {path} must be a table, not {}", type_name(ours)))
    })?;
    Ok(ours.get(SERVERS_KEY))
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// Parameters we set ourselves must not be overridden by `auth-params` (that would break PKCE or state checks).
fn check_auth_param(k: &str, at: &str) -> Result<()> {
    const OURS: &[&str] = &[
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "scope",
    ];
    if OURS.contains(&k) {
        return Err(Error::config(format!(
            "{at}: `{k}` is set by mlflow-oidc itself and cannot be overridden (use `scope` for scopes)"
        )));
    }
    Ok(())
}

/// RFC 8707 §2: a resource indicator is an absolute URI without a fragment.
fn check_resource(r: &str, at: &str) -> Result<()> {
    match url::Url::parse(r) {
        Ok(u) if u.fragment().is_none() => Ok(()),
        _ => Err(Error::config(format!(
            "{at}: resource \"{r}\" must be an absolute URI without a fragment (RFC 8707), e.g. https://mlflow.example.com or urn:mlflow"
        ))),
    }
}

/// true/false, yes/no, 1/0, on/off in any case; anything else is `None`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

fn nearest_key(key: &str) -> Option<&'static str> {
    let norm = key.to_ascii_lowercase().replace('_', "-");
    KNOWN_KEYS
        .iter()
        .map(|k| (edit_distance(&norm, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The environment variable that overrides each key, as the plugin names them.
fn env_var(key: &str) -> String {
    format!("MLFLOW_TRACKING_OIDC_{}", key.to_ascii_uppercase().replace('-', "_"))
}

fn build_server(block: Option<&Block>, env: &Env, uri: Option<String>, uri_source: Source) -> Result<ServerConfig> {
    let mut sources = BTreeMap::new();
    sources.insert("uri", uri_source);

    // env, then the matched block, then (for the caller) a default — as the plugin's `env or file or default`.
    let mut string = |key: &'static str, field: &'static str| -> Result<Option<(String, Source)>> {
        let var = env_var(key);
        if let Some(v) = env.get(&var)? {
            sources.insert(field, Source::Env);
            return Ok(Some((v.to_string(), Source::Env)));
        }
        if let Some(b) = block
            && let Some(v) = b.strings.get(key)
        {
            sources.insert(field, Source::File(b.file.clone()));
            return Ok(Some((v.clone(), Source::File(b.file.clone()))));
        }
        Ok(None)
    };

    let issuer = string("issuer", "issuer")?;
    let client_id = string("client-id", "client_id")?;
    let client_secret = string("client-secret", "client_secret")?;
    let redirect = string("redirect-uri", "redirect_uri")?;
    let scope = string("scope", "scope")?;
    let audience = string("audience", "audience")?;
    let ca_bundle = string("ca-bundle", "ca_bundle")?;
    let auth_method = string("token-endpoint-auth-method", "token_endpoint_auth_method")?;
    let revocation_endpoint = string("revocation-endpoint", "revocation_endpoint")?.map(|(v, _)| v);
    let flow = string("flow", "flow")?;
    let device_endpoint = string("device-authorization-endpoint", "device_authorization_endpoint")?.map(|(v, _)| v);

    let name = uri.clone().unwrap_or_else(|| "the environment-only configuration".into());
    let (Some((issuer, issuer_src)), Some((client_id, _))) = (issuer, client_id) else {
        let missing = match (sources.contains_key("issuer"), sources.contains_key("client_id")) {
            (false, false) => "issuer and client-id",
            (false, true) => "issuer",
            _ => "client-id",
        };
        let in_block = block.map(|b| format!(" in the block for {} in {}", name, b.file.display())).unwrap_or_default();
        return Err(Error::config(format!(
            "missing {missing}{in_block}: a valid OIDC client configuration requires at least the issuer and client ID \
             (set `issuer` and `client-id` in the block, or MLFLOW_TRACKING_OIDC_ISSUER and MLFLOW_TRACKING_OIDC_CLIENT_ID)"
        )));
    };
    validate_issuer(&issuer, &describe(&issuer_src, "issuer"))?;

    let redirect_uri = match redirect {
        Some((r, src)) => {
            validate_redirect_uri(&r, &describe(&src, "redirect-uri"))?;
            r
        }
        None => {
            sources.insert("redirect_uri", Source::Default);
            DEFAULT_REDIRECT_URI.to_string()
        }
    };
    let (scope, scope_explicit) = match scope {
        Some((s, _)) => (s, true),
        None => {
            sources.insert("scope", Source::Default);
            (DEFAULT_SCOPE.to_string(), false)
        }
    };
    let audience = match audience {
        Some((a, _)) => a,
        None => {
            sources.insert("audience", Source::Default);
            client_id.clone()
        }
    };
    // An empty client-secret is no secret (the plugin took "" for a secret and then failed to log in).
    let client_secret = client_secret.map(|(s, _)| Secret::new(s));
    let has_secret = client_secret.is_some();

    let mut boolean = |key: &'static str, field: &'static str, default: bool| -> Result<bool> {
        let var = env_var(key);
        if let Some(v) = env.get(&var)? {
            sources.insert(field, Source::Env);
            return parse_bool(v).ok_or_else(|| {
                Error::config(format!("{var} must be true or false (or yes/no, 1/0, on/off), not \"{v}\""))
            });
        }
        if let Some(b) = block.and_then(|b| b.bools.get(key).map(|v| (*v, b.file.clone()))) {
            sources.insert(field, Source::File(b.1));
            return Ok(b.0);
        }
        sources.insert(field, Source::Default);
        Ok(default)
    };
    let interactive = boolean("interactive", "interactive", !has_secret)?;
    let use_id_token = boolean("use-id-token", "use_id_token", !has_secret)?;
    let offline_access = boolean("offline-access", "offline_access", true)?;

    let ca_bundle = ca_bundle.map(|(p, src)| match (&src, block) {
        // A relative path in a file is relative to that file, so a project can commit its CA next to it.
        (Source::File(_), Some(b)) if Path::new(&p).is_relative() => {
            b.file.parent().map(|d| d.join(&p)).unwrap_or_else(|| PathBuf::from(&p))
        }
        _ => PathBuf::from(p),
    });
    let token_endpoint_auth_method = match auth_method {
        None => None,
        Some((m, src)) => Some(match m.to_ascii_lowercase().as_str() {
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "client_secret_post" => AuthMethod::ClientSecretPost,
            _ => {
                return Err(Error::config(format!(
                    "{} must be client_secret_basic or client_secret_post, not \"{m}\"",
                    describe(&src, "token-endpoint-auth-method")
                )));
            }
        }),
    };

    let flow = match flow {
        None => FlowChoice::Auto,
        Some((f, src)) => FlowChoice::parse(&f).ok_or_else(|| {
            Error::config(format!("{} must be auto, auth-code or device, not \"{f}\"", describe(&src, "flow")))
        })?,
    };
    let auth_params = match env.get("MLFLOW_TRACKING_OIDC_AUTH_PARAMS")? {
        Some(v) => {
            let mut params = Vec::new();
            for (k, v) in url::form_urlencoded::parse(v.as_bytes()) {
                check_auth_param(&k, "MLFLOW_TRACKING_OIDC_AUTH_PARAMS")?;
                params.push((k.into_owned(), v.into_owned()));
            }
            params
        }
        None => block.and_then(|b| b.auth_params.clone()).unwrap_or_default(),
    };
    let resources = match env.get("MLFLOW_TRACKING_OIDC_RESOURCE")? {
        Some(v) => {
            let list: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            for r in &list {
                check_resource(r, "MLFLOW_TRACKING_OIDC_RESOURCE")?;
            }
            list
        }
        None => block.and_then(|b| b.resources.clone()).unwrap_or_default(),
    };
    let redirect_ports = match env.get("MLFLOW_TRACKING_OIDC_REDIRECT_PORTS")? {
        Some(v) => v
            .split([',', ' '])
            .filter(|p| !p.is_empty())
            .map(|p| p.trim().parse::<u16>())
            .collect::<std::result::Result<Vec<u16>, _>>()
            .map_err(|_| {
                Error::config(format!(
                    "MLFLOW_TRACKING_OIDC_REDIRECT_PORTS must be port numbers separated by commas, not \"{v}\""
                ))
            })?,
        None => block.and_then(|b| b.redirect_ports.clone()).unwrap_or_default(),
    };

    Ok(ServerConfig {
        uri,
        issuer,
        client_id,
        client_secret,
        redirect_uri,
        scope,
        scope_explicit,
        audience,
        interactive,
        use_id_token,
        ca_bundle,
        token_endpoint_auth_method,
        offline_access,
        revocation_endpoint,
        flow,
        device_authorization_endpoint: device_endpoint,
        auth_params,
        resources,
        redirect_ports,
        sources,
    })
}

/// "MLFLOW_TRACKING_OIDC_ISSUER" or "`issuer` in /path/pyproject.toml", for error messages.
fn describe(src: &Source, key: &str) -> String {
    match src {
        Source::File(p) => format!("`{key}` in {}", p.display()),
        _ => env_var(key),
    }
}

/// Loopback per RFC 8252 §8.3: 127.0.0.0/8, [::1] and `localhost`.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// The issuer must be an absolute https URL; plain http only on a loopback host.
pub fn validate_issuer(issuer: &str, what: &str) -> Result<()> {
    let u = url::Url::parse(issuer)
        .map_err(|e| Error::config(format!("{what} \"{issuer}\" is not an absolute URL ({e}): use https://host/…")))?;
    let host = u.host().ok_or_else(|| Error::config(format!("{what} \"{issuer}\" has no host")))?;
    match u.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            return Err(Error::config(format!(
                "{what} \"{issuer}\" must use https:// (plain http is allowed only for loopback hosts such as 127.0.0.1)"
            )));
        }
        other => return Err(Error::config(format!("{what} \"{issuer}\" must be an https:// URL, not {other}://"))),
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(Error::config(format!("{what} \"{issuer}\" must not have a query or fragment")));
    }
    Ok(())
}

/// The redirect URI must be `http://` on a loopback host with an explicit port (0 = any free port) and a path.
pub fn validate_redirect_uri(uri: &str, what: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::config(format!(
            "{what} \"{uri}\" {why}: use a loopback URI such as {DEFAULT_REDIRECT_URI} (port 0 picks a free port)"
        ))
    };
    let u = url::Url::parse(uri).map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
    if u.scheme() != "http" {
        return Err(bad("must use http:// (the loopback listener serves plain HTTP, RFC 8252 §7.3)"));
    }
    let host = u.host().ok_or_else(|| bad("has no host"))?;
    if !is_loopback_host(&host) {
        return Err(bad("must name a loopback host (127.0.0.1, [::1] or localhost)"));
    }
    let rest = &uri[uri.find("://").map(|i| i + 3).unwrap_or(0)..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let port_part = authority.rsplit_once(']').map(|(_, p)| p).unwrap_or(authority);
    if !port_part.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("needs an explicit port"));
    }
    if !rest[authority.len()..].starts_with('/') {
        return Err(bad("needs a path, e.g. /oauth2/callback"));
    }
    if u.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
