//! Validators for values whose shape matters for security or interoperability: issuer and redirect URIs,
//! resource indicators, authorization parameters, booleans and durations.

use super::DEFAULT_REDIRECT_URI;
use crate::error::{Error, Result};
use crate::http::is_loopback_host;

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
    // https is resolved (so `status` shows it, as the plugin accepted it) and served only with the user's own
    // certificate (`redirect-tls-cert`/`-key`; `login` says so otherwise): issue 16.
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad(
            "must use http:// (RFC 8252 §7.3), or https:// with `redirect-tls-cert` and `redirect-tls-key`",
        ));
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

/// Parameters we set ourselves must not be overridden by `auth-params` (that would break PKCE or state checks).
pub(crate) fn check_auth_param(k: &str, at: &str) -> Result<()> {
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
pub(crate) fn check_resource(r: &str, at: &str) -> Result<()> {
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

/// Seconds from "300", "300s", "5m" or "1h".
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last() {
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b'h') => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a duration: use seconds (300) or a number with s, m or h (5m)"))
}
