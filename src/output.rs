//! Rendering: token formats and `status` in text and JSON.

use serde_json::{Map, Value, json};

use crate::config::{ServerConfig, Skipped};
use crate::error::{shell_word, strip_controls};
pub use crate::tokenset::human_duration;
use crate::tokenset::{Claims, TokenKind, TokenSet, rfc3339};

/// How `token` prints the token (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The token alone
    Raw,
    /// `Authorization: Bearer <token>`
    Header,
    /// One JSON object with the token, its kind and expiry
    Json,
    /// `export MLFLOW_TRACKING_URI=… MLFLOW_TRACKING_TOKEN=…` lines for eval
    Env,
}

/// The `config` member of `status --json`: exactly these fields; the secret itself never appears.
pub fn config_json(c: &ServerConfig) -> Value {
    let sources: Map<String, Value> =
        c.origins.iter().map(|(k, v)| ((*k).to_string(), Value::String(v.to_string()))).collect();
    json!({
        "uri": c.uri,
        "issuer": c.issuer,
        "client_id": c.client_id,
        "client_secret_set": c.client_secret.is_some(),
        "redirect_uri": c.redirect_uri,
        "scope": c.scope,
        "audience": c.audience,
        "interactive": c.interactive,
        "use_id_token": c.use_id_token,
        "credential": credential_json(c),
        "sources": sources,
    })
}

/// What the client proves itself with and, for a machine client, its grant: kinds and sources, never the key,
/// assertion or subject token.
fn credential_json(c: &ServerConfig) -> Value {
    let (kind, source) = credential(c);
    json!({
        "kind": kind,
        "source": source,
        "grant": c.is_machine().then(|| c.machine_grant().grant_type()),
        "subject_token": c.subject_token.as_ref().map(|s| s.describe()),
    })
}

/// (kind, where it comes from) of the client's credential.
pub fn credential(c: &ServerConfig) -> (&'static str, Option<String>) {
    if let Some(src) = &c.client_assertion {
        ("federated_assertion", Some(src.describe()))
    } else if let Some(key) = &c.client_assertion_key {
        let kid = c.client_assertion_kid.as_ref().map(|k| format!(", kid {k}")).unwrap_or_default();
        ("private_key_jwt", Some(format!("key {}{kid}", key.display())))
    } else if c.client_secret.is_some() {
        ("client_secret", None)
    } else {
        ("none", None)
    }
}

/// The human `status` lines for the configuration.
pub fn config_text(c: &ServerConfig) -> String {
    let src = |k: &str| c.origins.get(k).map(|s| format!("  ({s})")).unwrap_or_default();
    let mut s = String::new();
    let mut line = |label: &str, value: &str, key: &str| {
        // Values come from files a cloned repository may have written: printed through the one filter.
        s.push_str(&format!("{label:<15}{}{}\n", strip_controls(value), strip_controls(&src(key))));
    };
    line("server:", c.uri.as_deref().unwrap_or("(none: environment-only configuration)"), "uri");
    line("issuer:", &c.issuer, "issuer");
    line("client id:", &c.client_id, "client_id");
    line("client secret:", if c.client_secret.is_some() { "set (hidden)" } else { "not set" }, "client_secret");
    let redirect = match (c.redirect_uri.starts_with("https://"), &c.redirect_tls) {
        (true, Some((cert, key))) => format!("{} (TLS: {} + {})", c.redirect_uri, cert.display(), key.display()),
        (true, None) => format!(
            "{} (TLS not configured: `login` will refuse it until redirect-tls-cert and redirect-tls-key are set)",
            c.redirect_uri
        ),
        (false, _) => c.redirect_uri.clone(),
    };
    line("redirect uri:", &redirect, "redirect_uri");
    line("scope:", &c.scope, "scope");
    // The request parameter, not the token's `aud` (that is under `token claims`): issue 16.
    line("audience:", &format!("{} (request parameter)", c.audience), "audience");
    if !c.resources.is_empty() {
        line("resource:", &c.resources.join(" "), "resource");
    }
    line("interactive:", if c.interactive { "yes" } else { "no" }, "interactive");
    line("sends:", if c.use_id_token { "the ID token (use-id-token)" } else { "the access token" }, "use_id_token");
    let (kind, source) = credential(c);
    if kind != "none" && kind != "client_secret" {
        let text = match kind {
            "federated_assertion" => format!("federated client assertion from {}", source.unwrap_or_default()),
            _ => format!("private_key_jwt, {}", source.unwrap_or_default()),
        };
        let key = if kind == "federated_assertion" { "client_assertion" } else { "client_assertion_key" };
        line("credential:", &text, key);
    }
    if c.is_machine() {
        let mut grant = c.machine_grant().as_str().to_string();
        if let Some(src) = &c.subject_token {
            grant.push_str(&format!(", subject token from {}", src.describe()));
        }
        line("grant:", &grant, "grant");
    }
    s
}

/// The `skipped` member of `status --json`: config files found but not used, and why.
pub fn skipped_json(skipped: &[Skipped]) -> Value {
    Value::Array(skipped.iter().map(|s| json!({ "file": s.path.display().to_string(), "why": s.why })).collect())
}

/// One `skipped: <file> (<why>)` line per config file found but not used.
pub fn skipped_text(skipped: &[Skipped]) -> String {
    skipped.iter().map(|s| strip_controls(&format!("skipped: {} ({})", s.path.display(), s.why)) + "\n").collect()
}

/// The `untrusted` member of `status --json`: the project file whose keys wait for `mlflow-oidc trust`, or null.
pub fn untrusted_json(u: Option<&crate::config::Untrusted>) -> Value {
    u.map_or(
        Value::Null,
        |u| json!({ "file": u.file.display().to_string(), "ignored_keys": u.keys, "trust_command": u.command() }),
    )
}

/// `untrusted: <file> ignores <keys>: run `mlflow-oidc trust <file>``, when a project file waits for trust.
pub fn untrusted_text(u: Option<&crate::config::Untrusted>) -> String {
    u.map_or(String::new(), |u| {
        let line = format!(
            "{:<15}{} ignores {} until you run `{}`",
            "untrusted:",
            u.file.display(),
            u.keys.join(", "),
            u.command()
        );
        strip_controls(&line) + "\n"
    })
}

/// One token in the requested format. The token type is always `Bearer` (the plugin copied `bearer` verbatim).
pub fn render_token(format: Format, token: &str, kind: TokenKind, exp: i64, now: i64, server: Option<&str>) -> String {
    match format {
        Format::Raw => format!("{token}\n"),
        Format::Header => format!("Authorization: Bearer {token}\n"),
        Format::Json => {
            // Field order is part of the contract; serde_json's map would sort it.
            let q = |s: &str| Value::String(s.to_string()).to_string();
            format!(
                "{{\"token\":{},\"token_type\":\"Bearer\",\"kind\":\"{}\",\"expires_at\":\"{}\",\"expires_in\":{},\"server\":{}}}\n",
                q(token),
                kind.as_str(),
                rfc3339(exp),
                exp.saturating_sub(now).max(0),
                server.map(q).unwrap_or_else(|| "null".into())
            )
        }
        Format::Env => {
            let mut s = String::new();
            if let Some(uri) = server {
                s.push_str(&format!("export MLFLOW_TRACKING_URI={}\n", shell_word(uri)));
            }
            s.push_str(&format!("export MLFLOW_TRACKING_TOKEN={}\n", shell_word(token)));
            s
        }
    }
}

/// Which credential store is in use, where, and why (for `status`).
pub struct StoreInfo {
    pub backend: &'static str,
    pub location: String,
    pub reason: String,
}

/// What `status` says about the login, without the network and without printing any token.
pub struct LoginState {
    logged_in: bool,
    kind: TokenKind,
    expires_at: Option<i64>,
    expires_in: Option<i64>,
    claims: Option<Claims>,
    /// The claims of the token that is sent (peeked, unverified): what a server compares with its expected `aud`.
    sent: Option<Claims>,
    refresh_token: bool,
    /// A machine client gets a new token by client credentials, not by logging in.
    machine: bool,
    store: StoreInfo,
}

impl LoginState {
    pub fn new(
        tokens: Option<&TokenSet>,
        refresh_token: bool,
        kind: TokenKind,
        now: i64,
        machine: bool,
        store: StoreInfo,
    ) -> Self {
        let expires_at = tokens.and_then(|t| t.expires_at(kind));
        let fresh = expires_at.is_some_and(|e| e > now);
        let claims = tokens
            .and_then(|t| t.id_token.as_ref().or(t.access_token.as_ref()).and_then(|tok| Claims::peek(tok.expose())));
        let sent = tokens.and_then(|t| t.token(kind)).and_then(|tok| Claims::peek(tok.expose()));
        LoginState {
            logged_in: fresh || refresh_token,
            kind,
            expires_at,
            expires_in: expires_at.map(|e| e.saturating_sub(now)),
            claims,
            sent,
            refresh_token,
            machine,
            store,
        }
    }

    /// The `store` member of `status --json`.
    pub fn store_json(&self) -> Value {
        json!({ "backend": self.store.backend, "location": self.store.location, "reason": self.store.reason })
    }

    pub fn json(&self) -> Value {
        let c = self.claims.as_ref();
        json!({
            "logged_in": self.logged_in,
            "token_kind": self.kind.as_str(),
            "expires_at": self.expires_at.map(rfc3339),
            "expires_in": self.expires_in,
            "subject": c.and_then(|c| c.sub.as_deref().map(strip_controls)),
            "username": c.and_then(|c| c.preferred_username.as_deref().map(strip_controls)),
            "email": c.and_then(|c| c.email.as_deref().map(strip_controls)),
            "refresh_token": self.refresh_token,
            "token_claims": self.sent.as_ref().map(|t| json!({
                "iss": t.iss.as_deref().map(strip_controls),
                "aud": t.aud.as_ref().map(audience_text),
                "exp": t.exp.map(rfc3339),
            })),
        })
    }

    pub fn text(&self, c: &ServerConfig) -> String {
        let mut s = String::new();
        let store = format!("{:<15}{} ({})\n", "store:", self.store.location, self.store.reason);
        if !self.logged_in && self.expires_at.is_none() {
            let server = c.uri.as_deref().map(|u| format!(" --server {}", shell_word(u))).unwrap_or_default();
            s.push_str(&format!("{:<15}not logged in: run `mlflow-oidc login{server}`\n", "login:"));
            s.push_str(&store);
            return s;
        }
        let who = self.claims.as_ref().and_then(Claims::who).unwrap_or_else(|| "(unknown subject)".into());
        s.push_str(&format!("{:<15}{}\n", "logged in as:", who));
        if let (Some(at), Some(left)) = (self.expires_at, self.expires_in) {
            let state = if left > 0 { format!("valid for {}", human_duration(left)) } else { "expired".to_string() };
            s.push_str(&format!("{:<15}{} until {} ({state})\n", "token:", self.kind.as_str(), rfc3339(at)));
        }
        // Issue 16: the configured `audience` is a request parameter; what a server checks is the token's own
        // `aud`, so show that (peeked, never the token).
        if let Some(t) = &self.sent {
            let iss = t.iss.as_deref().map(strip_controls).unwrap_or_else(|| "-".into());
            let aud = t.aud.as_ref().map(audience_text).unwrap_or_else(|| "-".into());
            s.push_str(&format!("{:<15}iss {iss}, aud {aud}\n", "token claims:"));
        }
        let refresh = match (self.refresh_token, self.machine) {
            (true, _) => "held (renews silently)",
            (false, true) => "none (a machine client: the next `token` asks for a new client-credentials token)",
            (false, false) => "none (expiry means a new login)",
        };
        s.push_str(&format!("{:<15}{refresh}\n", "refresh token:"));
        s.push_str(&store);
        s
    }
}

/// A JWT `aud` (a string or an array of strings) for display.
fn audience_text(aud: &Value) -> String {
    match aud {
        Value::String(s) => strip_controls(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(strip_controls).collect::<Vec<_>>().join(" "),
        other => strip_controls(&other.to_string()),
    }
}

/// The `checks` member of `status --check --json`.
pub fn checks_json(checks: &[crate::check::Check]) -> Value {
    Value::Array(checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "warning": c.warning, "detail": strip_controls(&c.detail), "fix": c.fix.as_deref().map(strip_controls)})).collect())
}

/// `status --check` lines: ✓ or ✗, the check, what was found, and the fix.
pub fn checks_text(checks: &[crate::check::Check], color: bool) -> String {
    let mut s = String::from("\nchecks:\n");
    for c in checks {
        let mark = match (c.ok, c.warning, color) {
            (true, false, false) => "✓",
            (true, true, false) => "!",
            (false, _, false) => "✗",
            (true, false, true) => "\x1b[32m✓\x1b[0m",
            (true, true, true) => "\x1b[33m!\x1b[0m",
            (false, _, true) => "\x1b[31m✗\x1b[0m",
        };
        // Details quote provider metadata: the one rendering function strips what a terminal would obey.
        s.push_str(&format!("  {mark} {:<24}{}\n", c.name, strip_controls(&c.detail)));
        if let Some(fix) = &c.fix {
            s.push_str(&format!("    fix: {}\n", strip_controls(fix)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_formats_are_pinned() {
        let t = "eyJ.x.y";
        assert_eq!(render_token(Format::Raw, t, TokenKind::IdToken, 100, 40, Some("http://m")), "eyJ.x.y\n");
        assert_eq!(
            render_token(Format::Header, t, TokenKind::IdToken, 100, 40, None),
            "Authorization: Bearer eyJ.x.y\n"
        );
        assert_eq!(
            render_token(Format::Json, t, TokenKind::AccessToken, 1_795_702_365, 1_795_702_305, Some("https://m/")),
            "{\"token\":\"eyJ.x.y\",\"token_type\":\"Bearer\",\"kind\":\"access_token\",\"expires_at\":\"2026-11-26T14:12:45Z\",\"expires_in\":60,\"server\":\"https://m/\"}\n"
        );
        assert_eq!(
            render_token(Format::Env, "a'b", TokenKind::IdToken, 0, 0, Some("http://h:1/x y")),
            "export MLFLOW_TRACKING_URI='http://h:1/x y'\nexport MLFLOW_TRACKING_TOKEN='a'\\''b'\n"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(3900), "1h 5m");
        assert_eq!(human_duration(250), "4m 10s");
        assert_eq!(human_duration(12), "12s");
    }
}
