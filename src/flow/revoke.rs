//! Token revocation (RFC 7009), authenticated like every other grant through [`ClientAuth`].

use super::{ClientAuth, check_endpoint};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::token::Secret;

/// Revoke `refresh_token` at `endpoint`. A hand-written form POST: oauth2's revocation refuses plain-http
/// endpoints, which a loopback test provider is (crates.md).
pub fn revoke(http: &Http, endpoint: &str, client: &ClientAuth<'_>, refresh_token: &Secret<String>) -> Result<()> {
    check_endpoint("revocation_endpoint", endpoint)?;
    let mut form = vec![("token", refresh_token.expose().as_str()), ("token_type_hint", "refresh_token")];
    let basic = client.apply(&mut form);
    let resp = http.post_form(endpoint, &form, basic)?;
    if resp.status == 200 {
        return Ok(());
    }
    // A provider may echo what it was sent: the refresh token and the client's credentials in every encoding.
    let sent = client.secret().map(|s| (client.client_id, s));
    let err = serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.as_str())
                .map(|e| crate::http::redact_echo(e, sent, &[refresh_token.expose()]))
        })
        .unwrap_or_else(|| format!("HTTP {}", resp.status));
    Err(Error::provider(format!("the provider refused to revoke the refresh token at {endpoint}: {err}")))
}
