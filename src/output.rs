//! Rendering: `status` in text and JSON. (Token formats join it with the token command.)

use serde_json::{Map, Value, json};

use crate::config::ServerConfig;

/// The `config` member of `status --json`: exactly these fields; the secret itself never appears.
pub fn config_json(c: &ServerConfig) -> Value {
    let sources: Map<String, Value> =
        c.sources.iter().map(|(k, v)| ((*k).to_string(), Value::String(v.to_string()))).collect();
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
        "sources": sources,
    })
}

/// The human `status` lines for the configuration.
pub fn config_text(c: &ServerConfig) -> String {
    let src = |k: &str| c.sources.get(k).map(|s| format!("  ({s})")).unwrap_or_default();
    let mut s = String::new();
    let mut line = |label: &str, value: &str, key: &str| {
        s.push_str(&format!("{label:<15}{value}{}\n", src(key)));
    };
    line("server:", c.uri.as_deref().unwrap_or("(none: environment-only configuration)"), "uri");
    line("issuer:", &c.issuer, "issuer");
    line("client id:", &c.client_id, "client_id");
    line("client secret:", if c.client_secret.is_some() { "set (hidden)" } else { "not set" }, "client_secret");
    line("redirect uri:", &c.redirect_uri, "redirect_uri");
    line("scope:", &c.scope, "scope");
    line("audience:", &c.audience, "audience");
    line("interactive:", if c.interactive { "yes" } else { "no" }, "interactive");
    line("sends:", if c.use_id_token { "the ID token (use-id-token)" } else { "the access token" }, "use_id_token");
    s
}
