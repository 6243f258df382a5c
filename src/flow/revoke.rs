//! Token revocation (RFC 7009), authenticated like every other request through [`ClientAuth`].

use super::request::{self, Call, Expect};
use super::{ClientAuth, check_endpoint};
use crate::error::Result;
use crate::http::Http;
use crate::tokenset::Secret;

/// Revoke `refresh_token` at `endpoint`. Our own request, not oauth2's `revoke_token`: that refuses every
/// non-https endpoint (RFC 7009 §2), where we accept plain http on loopback hosts like every other endpoint
/// ([`check_endpoint`]; a loopback test provider is one).
pub fn revoke(http: &Http, endpoint: &str, client: &ClientAuth<'_>, refresh_token: &Secret<String>) -> Result<()> {
    check_endpoint("revocation_endpoint", endpoint)?;
    let rt = refresh_token.expose().as_str();
    let form = vec![("token", rt), ("token_type_hint", "refresh_token")];
    // RFC 7009 §2.2: a 200 says it all; its body is ignored.
    request::post(http, endpoint, form, client, Expect::Nothing)
        .map(drop)
        // A provider may echo what it was sent: the refresh token and the client's credentials in every encoding.
        .map_err(|f| request::error(Call::Revocation, endpoint, f, &client.sent(&[rt]), ""))
}
