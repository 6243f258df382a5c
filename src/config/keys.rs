//! THE settings table: every configuration key and environment variable, with its type, default, where it may
//! be set and a one-line doc. Parsing, unknown-key suggestions, `status` and docs/reference/settings.md (generated
//! by [`reference_markdown`], kept in step by tests/docs.rs) all read it.

/// The type of a setting's value, which decides how a block's TOML value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    /// A path; relative paths in a file are relative to that file.
    Path,
    Url,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A table of strings (`auth-params = { prompt = "login" }`); env: `k=v&k2=v2`.
    Params,
    /// A string or an array of strings; env: space-separated.
    List,
    /// An array of port numbers; env: comma-separated.
    Ports,
    /// A duration: seconds, or a number with s, m or h.
    Duration,
    /// An array of absolute directory paths, or `["*"]` for all (as git's `safe.directory`).
    Dirs,
}

impl Kind {
    fn describe(self) -> String {
        match self {
            Kind::Str => "string".into(),
            Kind::Bool => "boolean".into(),
            Kind::Path => "path".into(),
            Kind::Url => "URL".into(),
            Kind::Choice(words) => words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(" \\| "),
            Kind::Params => "table of strings".into(),
            Kind::List => "string or array of strings".into(),
            Kind::Ports => "array of ports".into(),
            Kind::Duration => "duration".into(),
            Kind::Dirs => "array of directories".into(),
        }
    }
}

/// Where a setting may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A `[[…tracking-servers]]` block (project, explicit or user file), overridden by its environment variable.
    Block,
    /// The top level of the user config file (or an explicit user-style file), a flag, or its variable.
    User,
    /// Only the environment.
    Env,
}

/// One setting.
#[derive(Debug)]
pub struct Setting {
    /// The key in a file (`""` for environment-only settings).
    pub key: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The name in `status --json`'s `sources` (`""` when `status` does not show it).
    pub field: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub scope: Scope,
    /// From a project file, used only once the user trusts that file (`mlflow-oidc trust`): the setting makes
    /// the binary read, run, sign with or send something of the user's (a file, a variable, a key, a command).
    pub needs_trust: bool,
    pub doc: &'static str,
}

impl Setting {
    /// The allowed words of a choice, for messages: "a, b or c".
    pub fn choices(&self) -> String {
        match self.kind {
            Kind::Choice(words) => match words.split_last() {
                Some((last, [])) => last.to_string(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            },
            _ => String::new(),
        }
    }
}

macro_rules! settings {
    ($($name:ident = $key:literal, $env:literal, $field:literal, $kind:expr, $scope:ident $(+ $trust:ident)?, $default:literal, $doc:literal;)*) => {
        $(pub const $name: &Setting = &Setting {
            key: $key, env: $env, field: $field, kind: $kind, default: $default, scope: Scope::$scope,
            needs_trust: false $(|| settings!(@trust $trust))?, doc: $doc,
        };)*
        /// Every setting, in the order of the reference.
        pub const SETTINGS: &[&Setting] = &[$($name),*];
    };
    (@trust TRUST) => { true };
}

settings! {
    URI = "uri", "MLFLOW_TRACKING_URI", "uri", Kind::Url, Block, "the only configured block",
        "The tracking server this block is for; `MLFLOW_TRACKING_URI` (or `--server`) picks the block.";
    ISSUER = "issuer", "MLFLOW_TRACKING_OIDC_ISSUER", "issuer", Kind::Url, Block, "(required)",
        "The OpenID provider's issuer URL (https, or http on a loopback host).";
    CLIENT_ID = "client-id", "MLFLOW_TRACKING_OIDC_CLIENT_ID", "client_id", Kind::Str, Block, "(required)",
        "The OAuth client id registered at the provider.";
    CLIENT_SECRET = "client-secret", "MLFLOW_TRACKING_OIDC_CLIENT_SECRET", "client_secret", Kind::Str, Block, "none",
        "A confidential client's secret; with `interactive = false` (the default then) the client credentials grant is used.";
    REDIRECT_URI = "redirect-uri", "MLFLOW_TRACKING_OIDC_REDIRECT_URI", "redirect_uri", Kind::Url, Block,
        "http://127.0.0.1:39303/oauth2/callback",
        "The loopback redirect URI (RFC 8252); port 0 picks a free port.";
    SCOPE = "scope", "MLFLOW_TRACKING_OIDC_SCOPE", "scope", Kind::Str, Block, "openid profile email",
        "Space-separated scopes; client credentials sends a scope only when it is configured.";
    AUDIENCE = "audience", "MLFLOW_TRACKING_OIDC_AUDIENCE", "audience", Kind::Str, Block, "the client id",
        "Sent as `audience` on token requests (and on the authorization request when configured).";
    INTERACTIVE = "interactive", "MLFLOW_TRACKING_OIDC_INTERACTIVE", "interactive", Kind::Bool, Block,
        "true without a client secret, else false",
        "Whether a person logs in (browser or device flow) rather than the client credentials grant.";
    USE_ID_TOKEN = "use-id-token", "MLFLOW_TRACKING_OIDC_USE_ID_TOKEN", "use_id_token", Kind::Bool, Block,
        "true without a client secret, else false",
        "Send the ID token instead of the access token.";
    CA_BUNDLE = "ca-bundle", "MLFLOW_TRACKING_OIDC_CA_BUNDLE", "ca_bundle", Kind::Path, Block, "none",
        "PEM file of extra CA certificates trusted for this provider (relative to the file that names it).";
    TOKEN_ENDPOINT_AUTH_METHOD = "token-endpoint-auth-method", "MLFLOW_TRACKING_OIDC_TOKEN_ENDPOINT_AUTH_METHOD",
        "token_endpoint_auth_method", Kind::Choice(&["client_secret_basic", "client_secret_post", "private_key_jwt"]),
        Block, "private_key_jwt with a key or assertion; else client_secret_basic, unless the provider lists only client_secret_post",
        "How a confidential client authenticates at the token endpoint.";
    CLIENT_ASSERTION_KEY = "client-assertion-key", "MLFLOW_TRACKING_OIDC_CLIENT_ASSERTION_KEY", "client_assertion_key",
        Kind::Path, Block + TRUST, "none",
        "PEM private key (RSA or EC P-256, unencrypted) signing private_key_jwt client assertions (RFC 7523); relative to the file.";
    CLIENT_ASSERTION_KID = "client-assertion-kid", "MLFLOW_TRACKING_OIDC_CLIENT_ASSERTION_KID", "client_assertion_kid",
        Kind::Str, Block, "a `kid:` line in the key file, else the RFC 7638 thumbprint",
        "The `kid` header of signed client assertions.";
    CLIENT_ASSERTION = "client-assertion", "MLFLOW_TRACKING_OIDC_CLIENT_ASSERTION", "client_assertion", Kind::Str,
        Block + TRUST, "none", "A platform token sent as a federated client assertion: `file:PATH`, `env:NAME`, `github-actions` or `command:CMD`.";
    GITHUB_ACTIONS_AUDIENCE = "github-actions-audience", "MLFLOW_TRACKING_OIDC_GITHUB_ACTIONS_AUDIENCE",
        "github_actions_audience", Kind::Str, Block, "GitHub's default (the repository owner's URL)",
        "The `audience` asked of GitHub Actions' OIDC token service for `github-actions` sources.";
    GRANT = "grant", "MLFLOW_TRACKING_OIDC_GRANT", "grant",
        Kind::Choice(&["auto", "client-credentials", "token-exchange", "jwt-bearer"]), Block, "auto",
        "The grant of a machine client: `auto` is token-exchange with a `subject-token`, else client-credentials.";
    SUBJECT_TOKEN = "subject-token", "MLFLOW_TRACKING_OIDC_SUBJECT_TOKEN", "subject_token", Kind::Str, Block + TRUST,
        "none",
        "The token to exchange (RFC 8693) or assert (jwt-bearer): `file:PATH`, `env:NAME`, `github-actions` or `command:CMD`.";
    SUBJECT_TOKEN_TYPE = "subject-token-type", "MLFLOW_TRACKING_OIDC_SUBJECT_TOKEN_TYPE", "subject_token_type", Kind::Str,
        Block, "urn:ietf:params:oauth:token-type:jwt", "RFC 8693 `subject_token_type` of the subject token.";
    OFFLINE_ACCESS = "offline-access", "MLFLOW_TRACKING_OIDC_OFFLINE_ACCESS", "offline_access", Kind::Bool, Block,
        "true", "Ask for `offline_access` on interactive logins when the provider lists it, to get a refresh token.";
    REVOCATION_ENDPOINT = "revocation-endpoint", "MLFLOW_TRACKING_OIDC_REVOCATION_ENDPOINT", "revocation_endpoint",
        Kind::Url, Block, "from the provider's metadata",
        "Where `logout` revokes the refresh token when the provider's metadata does not say (RFC 7009).";
    FLOW = "flow", "MLFLOW_TRACKING_OIDC_FLOW", "flow", Kind::Choice(&["auto", "auth-code", "device"]), Block, "auto",
        "The login flow: `auto` uses the browser when one can be opened, else the device flow when offered.";
    DEVICE_AUTHORIZATION_ENDPOINT = "device-authorization-endpoint",
        "MLFLOW_TRACKING_OIDC_DEVICE_AUTHORIZATION_ENDPOINT", "device_authorization_endpoint", Kind::Url, Block,
        "from the provider's metadata", "The device authorization endpoint (RFC 8628) when the metadata lacks it.";
    AUTH_PARAMS = "auth-params", "MLFLOW_TRACKING_OIDC_AUTH_PARAMS", "auth_params", Kind::Params, Block, "none",
        "Extra authorization request parameters (`prompt`, `login_hint`, …); not those mlflow-oidc sets itself.";
    RESOURCE = "resource", "MLFLOW_TRACKING_OIDC_RESOURCE", "resource", Kind::List, Block, "none",
        "RFC 8707 resource indicators (absolute URIs), sent on authorization and token requests.";
    REDIRECT_TLS_CERT = "redirect-tls-cert", "MLFLOW_TRACKING_OIDC_REDIRECT_TLS_CERT", "redirect_tls_cert", Kind::Path,
        Block + TRUST, "none", "PEM certificate (chain) the loopback listener serves for an `https://` redirect URI.";
    REDIRECT_TLS_KEY = "redirect-tls-key", "MLFLOW_TRACKING_OIDC_REDIRECT_TLS_KEY", "redirect_tls_key", Kind::Path,
        Block + TRUST, "none", "The unencrypted PEM private key of `redirect-tls-cert`.";
    REDIRECT_PORTS = "redirect-ports", "MLFLOW_TRACKING_OIDC_REDIRECT_PORTS", "redirect_ports", Kind::Ports, Block,
        "none", "Loopback ports to try in order when the redirect URI's port is in use.";
    STORE = "store", "MLFLOW_OIDC_STORE", "", Kind::Choice(&["auto", "keyring", "file", "memory"]), User, "auto",
        "Where credentials are kept (also `--store`); `auto` uses the OS keyring when it answers, else a 0600 file.";
    SAFE_DIRECTORIES = "safe-directories", "", "", Kind::Dirs, User, "none",
        "Directories whose `pyproject.toml` is used even when another user owns it or may write it, and may redirect a server of this file to another provider; `\"*\"` trusts all. Only in the user config (as git's `safe.directory`, CVE-2022-24765).";
    CONFIG = "", "MLFLOW_OIDC_CONFIG", "", Kind::Path, Env, "none",
        "A config file to use instead of the pyproject.toml walk (also `--config`).";
    KEYRING_TIMEOUT = "", "MLFLOW_OIDC_KEYRING_TIMEOUT", "", Kind::Duration, Env, "3s",
        "How long one OS keyring call may take before `auto` falls back to the file store.";
    HTTP_CONNECT_TIMEOUT = "", "MLFLOW_OIDC_HTTP_CONNECT_TIMEOUT", "", Kind::Duration, Env, "10s",
        "Connect timeout for requests to the provider.";
    HTTP_TIMEOUT = "", "MLFLOW_OIDC_HTTP_TIMEOUT", "", Kind::Duration, Env, "30s",
        "Overall timeout of one request to the provider.";
    SSL_CERT_FILE = "", "SSL_CERT_FILE", "", Kind::Path, Env, "none",
        "PEM file of CA certificates trusted in addition to the OS store.";
    MLFLOW_TRACKING_SERVER_CERT_PATH = "", "MLFLOW_TRACKING_SERVER_CERT_PATH", "", Kind::Path, Env, "none",
        "MLflow's variable, read by `proxy`: PEM file of CA certificates trusted for the tracking server.";
    MLFLOW_TRACKING_CLIENT_CERT_PATH = "", "MLFLOW_TRACKING_CLIENT_CERT_PATH", "", Kind::Path, Env, "none",
        "MLflow's variable, read by `proxy`: PEM file with the client certificate and key shown to the tracking server.";
    MLFLOW_TRACKING_INSECURE_TLS = "", "MLFLOW_TRACKING_INSECURE_TLS", "", Kind::Bool, Env, "false",
        "MLflow's variable: `proxy` refuses to start when it is true (it never sends tokens without TLS verification).";
    PROXY_UPSTREAM_TIMEOUT = "", "MLFLOW_OIDC_PROXY_UPSTREAM_TIMEOUT", "", Kind::Duration, Env, "120s",
        "How long `proxy` waits for the tracking server to start answering a request before it answers 504 (at least MLflow's own `MLFLOW_HTTP_REQUEST_TIMEOUT`).";
}

/// Variables read to understand the environment (not settings of ours); listed in the reference so that it
/// names everything the binary reads.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY",
        "Proxies for requests to the provider, and for `proxy`'s requests to a tracking server not on loopback (lower-case names too).",
    ),
    ("CI", "When set, `token` never starts a browser login."),
    ("SSH_CONNECTION, SSH_TTY", "An SSH session: without a forwarded display, `login` prefers the device flow."),
    ("DISPLAY, WAYLAND_DISPLAY, BROWSER", "Whether a browser can be opened (on Linux)."),
    ("NO_COLOR, TERM", "No colour with `NO_COLOR` set or `TERM=dumb`."),
    ("DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR", "Whether a Secret Service (OS keyring) can be reached on Linux."),
    (
        "HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME, XDG_DATA_HOME",
        "Where the user config, caches and credentials live; the pyproject.toml walk stops above HOME's parent.",
    ),
    (
        "MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD",
        "Set by `exec` (the token), or read by the Python plugin, which steps aside when they are set.",
    ),
    ("MLFLOW_TRACKING_AUTH", "`oidc` selects the Python plugin's auth provider (MLflow 2.8 or newer)."),
    ("MLFLOW_OIDC_BIN", "The binary the Python plugin runs (default: the one installed with it)."),
    (
        "ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "GitHub Actions' OIDC token service, for `github-actions` sources (`permissions: id-token: write`).",
    ),
];

/// The block settings, which a `[[…tracking-servers]]` block may hold.
pub fn block_settings() -> impl Iterator<Item = &'static Setting> {
    SETTINGS.iter().copied().filter(|s| s.scope == Scope::Block)
}

/// The block setting named `key`, exactly.
pub fn block_setting(key: &str) -> Option<&'static Setting> {
    block_settings().find(|s| s.key == key)
}

/// The nearest block key to a misspelt one, for "did you mean" (`client_id` → `client-id`).
pub fn nearest_key(key: &str) -> Option<&'static str> {
    let norm = key.to_ascii_lowercase().replace('_', "-");
    block_settings()
        .map(|s| (edit_distance(&norm, s.key), s.key))
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

/// docs/reference/settings.md, generated from the table (`mlflow-oidc` never reads it).
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "<!-- Generated from src/config/keys.rs by `cargo test --test docs` (UPDATE_GENERATED=1 rewrites it). Do not edit. -->\n\
         # Settings reference\n\n\
         Precedence for a server's settings: the environment variable, then the matching \
         `[[tool.mlflow-oidc-client.tracking-servers]]` block (a project's `pyproject.toml`, `--config`, or the user \
         config's `[[tracking-servers]]`), then the default. See [configuration](../configuration.md).\n\n\
         ## Server settings (in a block, or by environment variable)\n\n\
         A key marked **trust** makes mlflow-oidc read, run, sign with or send something of yours (a file, a \
         variable, a key, a command). In a project's `pyproject.toml` it is ignored, with a warning, until you run \
         `mlflow-oidc trust` for that file's current content; the environment, `--config` and the user config \
         are always trusted. See [configuration](../configuration.md#trusting-a-project).\n\n\
         | key | variable | type | default | project file | meaning |\n|---|---|---|---|---|---|\n",
    );
    for st in block_settings() {
        let trust = if st.needs_trust { "**trust**" } else { "yes" };
        s.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {trust} | {} |\n",
            st.key,
            st.env,
            st.kind.describe(),
            st.default,
            st.doc
        ));
    }
    let row = |s: &mut String, st: &Setting| {
        let key = if st.key.is_empty() { "—".to_string() } else { format!("`{}`", st.key) };
        let var = if st.env.is_empty() { "—".to_string() } else { format!("`{}`", st.env) };
        s.push_str(&format!("| {key} | {var} | {} | {} | {} |\n", st.kind.describe(), st.default, st.doc));
    };
    s.push_str(
        "\n## Process settings (user config top level, flag, or environment)\n\n\
         | key | variable | type | default | meaning |\n|---|---|---|---|---|\n",
    );
    for st in SETTINGS.iter().filter(|s| s.scope != Scope::Block) {
        row(&mut s, st);
    }
    s.push_str("\n## Other variables read\n\n| variable | why |\n|---|---|\n");
    for (vars, why) in ENVIRONMENT {
        s.push_str(&format!(
            "| {} | {why} |\n",
            vars.split(", ").map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_variables_follow_the_plugins_naming_rule() {
        for s in block_settings().filter(|s| s.key != "uri") {
            let want = format!("MLFLOW_TRACKING_OIDC_{}", s.key.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(s.env, want, "{}", s.key);
        }
    }

    #[test]
    fn keys_that_reach_the_users_things_need_trust() {
        let marked: Vec<&str> = block_settings().filter(|s| s.needs_trust).map(|s| s.key).collect();
        assert_eq!(
            marked,
            ["client-assertion-key", "client-assertion", "subject-token", "redirect-tls-cert", "redirect-tls-key"]
        );
        assert!(SETTINGS.iter().filter(|s| s.scope != Scope::Block).all(|s| !s.needs_trust));
        let help = crate::cli::TRUST_AFTER_HELP.replace('\n', " ");
        assert!(marked.iter().all(|k| help.contains(&format!("{k},")) || help.contains(&format!("{k})"))), "{help}");
    }

    #[test]
    fn the_code_takes_its_defaults_from_this_table_so_they_must_parse() {
        for s in SETTINGS.iter().filter(|s| s.kind == Kind::Duration && !s.default.is_empty()) {
            assert!(crate::config::parse_duration(s.default).is_ok(), "{}: default {:?}", s.env, s.default);
        }
        // A one-word default of a choice is a value (some defaults are a rule in words: documentation).
        for s in SETTINGS {
            if let Kind::Choice(words) = s.kind
                && !s.default.contains(' ')
            {
                assert!(s.default.is_empty() || words.contains(&s.default), "{}: default {:?}", s.env, s.default);
            }
        }
        assert_eq!(STORE.choices(), "auto, keyring, file or memory");
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        assert_eq!(nearest_key("client_id"), Some("client-id"));
        assert_eq!(nearest_key("redirect_url"), Some("redirect-uri"));
        assert_eq!(nearest_key("zzzzzzzzzzzz"), None);
    }
}
