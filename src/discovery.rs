//! Provider metadata: fetch `<issuer>/.well-known/openid-configuration`, check its issuer, and cache it on disk
//! per issuer so that a refresh costs one HTTP request.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, hash_key};
use crate::http::Http;

/// How long a discovery document is trusted without `Cache-Control: max-age`.
pub const DEFAULT_TTL: i64 = 24 * 3600;

/// The fields of the provider's metadata we use; unknown fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_url")]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_url")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_url")]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_url")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_url")]
    pub end_session_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_url")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_words")]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_words")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_words")]
    pub grant_types_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "clean_words")]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    /// RFC 9207 §3: the provider always sends `iss` with the authorization response, so one without it is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authorization_response_iss_parameter_supported: bool,
}

impl Metadata {
    pub fn token_endpoint(&self) -> Result<&str> {
        self.token_endpoint.as_deref().ok_or_else(|| {
            Error::provider(format!(
                "the provider {} advertises no token_endpoint in its discovery document",
                self.issuer
            ))
        })
    }
    pub fn supports_scope(&self, scope: &str) -> bool {
        self.scopes_supported.as_ref().is_some_and(|s| s.iter().any(|x| x == scope))
    }
}

/// Provider text is made safe to print by construction (issue 12: an OSC 52 sequence in metadata wrote to the
/// clipboard of the terminal running `status --check`): every endpoint goes through `url::Url`, which
/// percent-encodes control characters, and a value that is not a URL keeps only its printable characters (the
/// endpoint checks then refuse it by name). The `issuer` is compared, not cleaned, and printed only via
/// `printable`.
fn clean_url<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    Ok(raw.map(|s| {
        if !s.chars().any(char::is_control) {
            return s;
        }
        match url::Url::parse(&s) {
            Ok(u) if !u.as_str().chars().any(char::is_control) => u.to_string(),
            _ => crate::error::printable(&s),
        }
    }))
}

/// Lists of words (`scopes_supported`, …): entries with control characters are dropped.
fn clean_words<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<String>>, D::Error> {
    let raw = Option::<Vec<String>>::deserialize(d)?;
    Ok(raw.map(|v| v.into_iter().filter(|w| !w.chars().any(char::is_control)).collect()))
}

/// Metadata plus whether it came from the on-disk cache (a cached document that fails is refetched once).
#[derive(Debug, Clone)]
pub struct Discovered {
    pub metadata: Metadata,
    pub from_cache: bool,
    /// Why the cache file was not used, when it was refused (printed once by the caller).
    pub warning: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    fetched_at: i64,
    expires_at: i64,
    metadata: Metadata,
}

/// The discovery URL: the issuer with one trailing slash ignored and its path kept, as the plugin builds it.
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.strip_suffix('/').unwrap_or(issuer))
}

fn cache_path(cache_dir: &Path, issuer: &str) -> PathBuf {
    cache_dir.join("discovery").join(format!("{}.json", hash_key(&[issuer])))
}

/// Cached metadata for `issuer` if still fresh at `now`.
pub fn cached(cache_dir: Option<&Path>, issuer: &str, now: i64) -> Option<Metadata> {
    read_cache(cache_dir, issuer, now).0
}

/// The cache file's metadata, or a warning when the file is one we must not trust: a symlink, or a file another
/// user owns or may write (ssh StrictModes). A planted document names the token endpoint our refresh token and
/// client secret are sent to; ignoring it costs one request, and the refetch replaces it.
fn read_cache(cache_dir: Option<&Path>, issuer: &str, now: i64) -> (Option<Metadata>, Option<String>) {
    use std::io::Read;
    let Some(dir) = cache_dir else { return (None, None) };
    let path = cache_path(dir, issuer);
    let mut f = match crate::fsutil::open_nofollow(&path) {
        Ok(f) => f,
        Err(e) if crate::fsutil::is_symlink_refusal(&e) => {
            let w =
                format!("ignoring the discovery cache {}: a symbolic link, not followed; refetching", path.display());
            return (None, Some(w));
        }
        Err(_) => return (None, None),
    };
    #[cfg(unix)]
    if let Ok(meta) = f.metadata()
        && let Some(why) = crate::fsutil::distrust(&meta)
    {
        return (None, Some(format!("ignoring the discovery cache {}: {why}; refetching", path.display())));
    }
    let mut text = Vec::new();
    if f.read_to_end(&mut text).is_err() {
        return (None, None);
    }
    let Ok(entry) = serde_json::from_slice::<CacheEntry>(&text) else { return (None, None) };
    let fresh = entry.expires_at > now && entry.metadata.issuer_matches(issuer);
    (fresh.then_some(entry.metadata), None)
}

/// Metadata for `issuer`: from the cache when fresh (unless `force`), else fetched, checked and cached.
pub fn discover(http: &Http, cache_dir: Option<&Path>, issuer: &str, now: i64, force: bool) -> Result<Discovered> {
    let mut warning = None;
    if !force {
        let (found, w) = read_cache(cache_dir, issuer, now);
        if let Some(metadata) = found {
            return Ok(Discovered { metadata, from_cache: true, warning: None });
        }
        warning = w;
    }
    let url = discovery_url(issuer);
    let resp = http.get(&url)?;
    if resp.status != 200 {
        return Err(Error::provider(format!(
            "discovery at {url} answered HTTP {}: check `issuer` ({issuer}) — it must be the provider's issuer URL",
            resp.status
        )));
    }
    let metadata: Metadata = serde_json::from_slice(&resp.body).map_err(|e| {
        Error::provider(format!(
            "discovery at {url} did not return a valid OpenID configuration document ({})",
            crate::error::parse_error(&e)
        ))
    })?;
    if !metadata.issuer_matches(issuer) {
        return Err(Error::provider(format!(
            "the provider's discovery document at {url} names issuer \"{}\" but the configuration says \"{issuer}\": \
             set `issuer` to the provider's value",
            crate::error::printable(&metadata.issuer)
        )));
    }
    metadata.token_endpoint()?;
    if let Some(dir) = cache_dir {
        let ttl = max_age(resp.header("cache-control")).unwrap_or(DEFAULT_TTL);
        let entry = CacheEntry { fetched_at: now, expires_at: now.saturating_add(ttl), metadata: metadata.clone() };
        // A cache we cannot write only costs a request next time.
        if let Ok(bytes) = serde_json::to_vec(&entry) {
            let _ = atomic_write(&cache_path(dir, issuer), &bytes);
        }
    }
    Ok(Discovered { metadata, from_cache: false, warning })
}

/// RFC 8414 authorization-server metadata, which some providers fill where their OIDC document does not
/// (e.g. `revocation_endpoint`). Tried at the RFC's path-inserted location, then appended. Best effort.
pub fn authorization_server_metadata(http: &Http, issuer: &str) -> Option<Metadata> {
    let u = url::Url::parse(issuer).ok()?;
    let path = u.path().trim_end_matches('/');
    let origin = u.origin().ascii_serialization();
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{}/.well-known/oauth-authorization-server", issuer.trim_end_matches('/')),
    ];
    candidates.iter().find_map(|url| {
        let resp = http.get(url).ok().filter(|r| r.status == 200)?;
        serde_json::from_slice::<Metadata>(&resp.body).ok().filter(|m| m.issuer_matches(issuer))
    })
}

impl Metadata {
    /// Equal, or different only by a trailing slash.
    pub fn issuer_matches(&self, configured: &str) -> bool {
        self.issuer.strip_suffix('/').unwrap_or(&self.issuer) == configured.strip_suffix('/').unwrap_or(configured)
    }
}

/// `max-age` seconds from a Cache-Control header; `no-store`/`no-cache` mean 0.
fn max_age(header: Option<&str>) -> Option<i64> {
    let h = header?;
    let mut age = None;
    for part in h.split(',').map(str::trim) {
        let lower = part.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<i64>().ok().map(|n| n.clamp(0, 30 * 86_400));
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_keeps_the_path_and_ignores_one_slash() {
        assert_eq!(discovery_url("https://a/realms/x/"), "https://a/realms/x/.well-known/openid-configuration");
        assert_eq!(discovery_url("https://a"), "https://a/.well-known/openid-configuration");
    }

    #[test]
    fn issuer_match_tolerates_only_a_trailing_slash() {
        let m = Metadata { issuer: "https://a/x/".into(), ..Default::default() };
        assert!(m.issuer_matches("https://a/x"));
        assert!(m.issuer_matches("https://a/x/"));
        assert!(!m.issuer_matches("https://a/y"));
        assert!(!m.issuer_matches("https://A/x"));
    }

    #[test]
    fn cache_control() {
        assert_eq!(max_age(Some("public, max-age=600")), Some(600));
        assert_eq!(max_age(Some("no-store")), Some(0));
        assert_eq!(max_age(Some("private")), None);
        assert_eq!(max_age(None), None);
        assert_eq!(max_age(Some("max-age=99999999999")), Some(30 * 86_400));
    }
}
