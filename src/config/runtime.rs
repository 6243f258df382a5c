//! Process-wide settings that are not a server's: the credential store (flag, variable, user config), the
//! keyring timeout and the HTTP agent's timeouts and trust anchors.

use std::time::Duration;

use super::keys::{self, Setting};
use super::validate::parse_duration;
use super::{ConfigFile, Flags, ServerConfig, StoreMode, files::store_setting};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::http::HttpSettings;

/// The store mode and where the choice came from (for `status`).
pub struct StoreChoice {
    pub mode: StoreMode,
    pub source: String,
}

/// `--store`, else `MLFLOW_OIDC_STORE`, else `store` in the user config, else `auto`.
pub fn store_choice(flags: &Flags, env: &Env, files: &[ConfigFile]) -> Result<StoreChoice> {
    let (mode, source) = if let Some(m) = &flags.store {
        (m.clone(), "--store".to_string())
    } else if let Some(m) = env.get(keys::STORE.env)? {
        (m.to_string(), keys::STORE.env.to_string())
    } else if let Some((m, file)) = store_setting(files)? {
        (m, format!("`store` in {}", file.display()))
    } else {
        (keys::STORE.default.to_string(), "default".to_string())
    };
    let mode = StoreMode::parse(&mode)
        .ok_or_else(|| Error::config(format!("{source} is \"{mode}\"; use {}", keys::STORE.choices())))?;
    Ok(StoreChoice { mode, source })
}

/// How long one keyring call may take.
pub fn keyring_timeout(env: &Env) -> Result<Duration> {
    duration(env, keys::KEYRING_TIMEOUT)
}

/// How long `proxy` waits for the tracking server's response head (issue 20: at least MLflow's 120 s).
pub fn proxy_upstream_timeout(env: &Env) -> Result<Duration> {
    duration(env, keys::PROXY_UPSTREAM_TIMEOUT)
}

/// The HTTP agent's settings for requests about `server` (its `ca-bundle`), or about no configured server.
pub fn http_settings(server: Option<&ServerConfig>, env: &Env) -> Result<HttpSettings> {
    Ok(HttpSettings {
        connect_timeout: duration(env, keys::HTTP_CONNECT_TIMEOUT)?,
        timeout: duration(env, keys::HTTP_TIMEOUT)?,
        ca_bundle: server.and_then(|c| c.ca_bundle.clone()),
        ssl_cert_file: env.path(keys::SSL_CERT_FILE.env),
    })
}

/// The variable's duration, else the settings table's default (the one place it is written).
fn duration(env: &Env, s: &Setting) -> Result<Duration> {
    match env.get(s.env)? {
        None => Ok(Duration::from_secs(parse_duration(s.default).unwrap_or_default())),
        Some(v) => parse_duration(v).map(Duration::from_secs).map_err(|e| Error::config(format!("{}: {e}", s.env))),
    }
}
