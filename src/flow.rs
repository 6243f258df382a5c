//! The OAuth grants over the `oauth2` crate: authorization code + PKCE, client credentials and refresh; the
//! machine grants (token exchange, JWT bearer) in `flow/machine.rs`; client authentication written once
//! ([`ClientAuth`]: a secret, a signed private_key_jwt, or a federated platform token). Every request reaches the
//! provider, and every reply is read, through `flow/request.rs`.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::config::{AuthMethod, ServerConfig};
use crate::discovery::Metadata;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::tokenset::{Secret, TokenSet};

mod client_auth;
mod device;
mod machine;
pub mod platform_token;
pub(crate) mod request;
mod revoke;
#[cfg(test)]
mod tests;
pub(crate) use client_auth::invalid_client_hint;
pub use client_auth::{ClientAuth, Credential, client_auth};
pub use device::{DeviceAuthorization, DevicePoll};
pub use machine::machine_grant;
use request::{Call, ErrorCode, Failure, Refusal, Sent, Wire};
pub use revoke::revoke;

/// RFC 7523 §2.2: `client_assertion_type` of a JWT client assertion (signed or federated).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The `id_token` that `BasicTokenResponse` would drop.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenFields {}

pub(crate) type TokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type OAuthClient = Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The grants for one server, against one provider's metadata.
pub struct Flows<'a> {
    pub config: &'a ServerConfig,
    pub metadata: &'a Metadata,
    client: OAuthClient,
    token_url: String,
}

/// An authorization request in progress: the URL to open and what the callback must match.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: Option<String>,
    verifier: PkceCodeVerifier,
}

impl<'a> Flows<'a> {
    pub fn new(config: &'a ServerConfig, metadata: &'a Metadata) -> Result<Self> {
        let token_url = metadata.token_endpoint()?.to_string();
        check_endpoint("token_endpoint", &token_url)?;
        if let Some(a) = &metadata.authorization_endpoint {
            check_endpoint("authorization_endpoint", a)?;
        }
        let token = TokenUrl::new(token_url.clone())
            .map_err(|e| Error::provider(format!("the provider's token_endpoint {token_url} is not a URL ({e})")))?;
        let auth = match &metadata.authorization_endpoint {
            Some(u) => Some(AuthUrl::new(u.clone()).map_err(|e| {
                Error::provider(format!("the provider's authorization_endpoint {u} is not a URL ({e})"))
            })?),
            None => None,
        };
        let mut client = Client::new(ClientId::new(config.client_id.clone()))
            .set_auth_uri_option(auth)
            .set_token_uri(token)
            .set_auth_type(match auth_method(config, metadata) {
                AuthMethod::ClientSecretPost => AuthType::RequestBody,
                _ => AuthType::BasicAuth,
            });
        // oauth2 authenticates its own requests only with a secret; assertions go in as extra form parameters
        // (`assertion_params`), with no secret set, so that the client_id travels in the body.
        if let Some(secret) = &config.client_secret
            && matches!(auth_method(config, metadata), AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
        {
            client = client.set_client_secret(ClientSecret::new(secret.expose().clone()));
        }
        Ok(Flows { config, metadata, client, token_url })
    }

    /// The scopes to request interactively: the configured ones plus `offline_access` when the provider lists it,
    /// because the plugin's default scope yields no refresh token on many providers.
    pub fn interactive_scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self.config.scope.split_whitespace().map(str::to_string).collect();
        if self.config.offline_access
            && self.metadata.supports_scope("offline_access")
            && !scopes.iter().any(|s| s == "offline_access")
        {
            scopes.push("offline_access".into());
        }
        scopes
    }

    /// Build the authorization URL for `redirect_uri` with PKCE S256, a random state and (for `openid`) a nonce.
    pub fn authorize(&self, redirect_uri: &str) -> Result<Authorization> {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| Error::config(format!("redirect URI {redirect_uri} is not a URL ({e})")))?;
        let client = self.client.clone().set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let scopes = self.interactive_scopes();
        let nonce = scopes.iter().any(|s| s == "openid").then(|| CsrfToken::new_random().secret().clone());
        let mut req = client
            .authorize_url(CsrfToken::new_random)
            .map_err(|_| {
                Error::provider(format!(
                    "the provider {} advertises no authorization_endpoint, so a browser login is impossible; \
                     configure a client secret for the client credentials flow",
                    self.metadata.issuer
                ))
            })?
            .add_scopes(scopes.into_iter().map(Scope::new))
            .set_pkce_challenge(challenge);
        if let Some(n) = &nonce {
            req = req.add_extra_param("nonce", n.clone());
        }
        // `audience` in the browser's URL only when configured: a provider that does not know it may refuse it.
        let extras = self.resource_params(self.config.audience_explicit);
        for (k, v) in extras.pairs() {
            req = req.add_extra_param(k, v.to_string());
        }
        for (k, v) in &self.config.auth_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let (url, state) = req.url();
        Ok(Authorization { url: url.to_string(), state: state.secret().clone(), nonce, verifier })
    }

    /// Redeem the authorization code; checks the ID token's claims and nonce.
    pub fn exchange_code(
        &self,
        http: &Http,
        auth: Authorization,
        code: &str,
        redirect_uri: &str,
        now: i64,
    ) -> Result<TokenSet> {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| Error::config(format!("redirect URI {redirect_uri} is not a URL ({e})")))?;
        let client = self.client.clone().set_redirect_uri(redirect);
        let extras = self.extras(http, now, true)?;
        let req = client.exchange_code(AuthorizationCode::new(code.to_string())).set_pkce_verifier(auth.verifier);
        let req = extras.pairs().fold(req, |r, (k, v)| r.add_extra_param(k, v));
        let resp = req
            .request(&Wire(http))
            .map_err(|e| self.fail(Call::AuthorizationCode, &self.token_url, e.into(), &self.sent(&extras, &[code])))?;
        let set = to_token_set(resp, now, &self.config.issuer)?;
        self.check_id_token(&set, now, auth.nonce.as_deref(), None)?;
        Ok(set)
    }

    /// The client credentials grant; scope only when configured explicitly.
    pub fn client_credentials(&self, http: &Http, now: i64) -> Result<TokenSet> {
        if self.config.client_secret.is_none() && auth_method(self.config, self.metadata) == AuthMethod::None {
            return Err(Error::config(format!(
                "{} is not interactive but has no client credential: set `client-secret`, `client-assertion-key` \
                 or `client-assertion` (or their MLFLOW_TRACKING_OIDC_* variables), or set interactive = true",
                self.config.display_name()
            )));
        }
        let extras = self.extras(http, now, true)?;
        let mut req = self.client.exchange_client_credentials();
        if self.config.scope_explicit {
            req = req.add_scopes(self.config.scope.split_whitespace().map(|s| Scope::new(s.to_string())));
        }
        let req = extras.pairs().fold(req, |r, (k, v)| r.add_extra_param(k, v));
        let resp = req
            .request(&Wire(http))
            .map_err(|e| self.fail(Call::ClientCredentials, &self.token_url, e.into(), &self.sent(&extras, &[])))?;
        let set = to_token_set(resp, now, &self.config.issuer)?;
        self.check_id_token(&set, now, None, None)?;
        Ok(set)
    }

    /// The refresh-token grant. `Ok(None)` means the refresh token is no longer valid (`invalid_grant`). A new
    /// ID token must be for the same person as `previous_id` (OIDC Core §12.2).
    pub fn refresh(
        &self,
        http: &Http,
        refresh_token: &Secret<String>,
        previous_id: Option<&Secret<String>>,
        now: i64,
    ) -> Result<Option<TokenSet>> {
        let rt = RefreshToken::new(refresh_token.expose().clone());
        let extras = self.extras(http, now, false)?;
        let req = self.client.exchange_refresh_token(&rt);
        let req = extras.pairs().fold(req, |r, (k, v)| r.add_extra_param(k, v));
        match req.request(&Wire(http)).map_err(Failure::from) {
            Ok(resp) => {
                let mut set = to_token_set(resp, now, &self.config.issuer)?;
                self.check_id_token(&set, now, None, previous_id.map(|p| p.expose().as_str()))?;
                // Providers that do not rotate return no refresh token (or an empty one): keep using the old one.
                if set.refresh_token.is_none() {
                    set.refresh_token = Some(refresh_token.clone());
                }
                Ok(Some(set))
            }
            Err(Failure::Refused(r)) if refresh_token_dead(&r) => Ok(None),
            Err(e) => Err(self.fail(Call::Refresh, &self.token_url, e, &self.sent(&extras, &[refresh_token.expose()]))),
        }
    }

    /// Every ID token received is checked before anything is stored (OIDC Core §3.1.3.7, §12.2).
    pub(crate) fn check_id_token(
        &self,
        set: &TokenSet,
        now: i64,
        nonce: Option<&str>,
        previous: Option<&str>,
    ) -> Result<()> {
        let Some(id) = &set.id_token else { return Ok(()) };
        let expected = crate::idtoken::Expected {
            issuer: &self.metadata.issuer,
            client_id: &self.config.client_id,
            now,
            nonce,
            previous,
        };
        crate::idtoken::validate(id.expose(), &expected).map(|_| ())
    }

    /// How this client authenticates at the provider's endpoints, for one request (an assertion is fresh each
    /// time: providers refuse a repeated `jti`).
    pub(crate) fn client_auth(&self, http: &Http, now: i64) -> Result<ClientAuth<'a>> {
        client_auth(self.config, self.metadata, http, now)
    }

    /// What every token request carries beyond its grant's own, decided once: `audience` (when `audience`),
    /// the RFC 8707 `resource`s, and for oauth2's request builders the client's assertion (RFC 7523 §2.2), which
    /// they cannot send themselves. Our own requests authenticate through [`ClientAuth`] instead.
    fn extras(&self, http: &Http, now: i64, audience: bool) -> Result<Extras> {
        let mut extras = self.resource_params(audience);
        if let Credential::Assertion(a) = self.client_auth(http, now)?.credential {
            extras.assertion = Some(a);
        }
        Ok(extras)
    }

    /// `audience` (when asked for) and the RFC 8707 `resource`s.
    pub(crate) fn resource_params(&self, audience: bool) -> Extras {
        let c = self.config;
        let mut params = Vec::new();
        if audience {
            params.push(("audience", c.audience.clone()));
        }
        params.extend(c.resources.iter().map(|r| ("resource", r.clone())));
        Extras { params, assertion: None }
    }

    /// What was sent that a provider might echo: the client's secret, the assertion of `extras`, `others`.
    pub(crate) fn sent<'s>(&'s self, extras: &'s Extras, others: &[&'s str]) -> Sent<'s> {
        let c = self.config;
        let mut secrets: Vec<&str> = others.to_vec();
        secrets.extend(extras.assertion.as_ref().map(|a| a.expose().as_str()));
        Sent { client: c.client_secret.as_ref().map(|s| (c.client_id.as_str(), s.expose().as_str())), secrets }
    }

    /// The error a failed request to `url` is, with the hint for what the provider said.
    pub(crate) fn fail(&self, call: Call, url: &str, failure: Failure, sent: &Sent<'_>) -> Error {
        let hint = match &failure {
            Failure::Refused(r) => self.hint(call, r),
            _ => String::new(),
        };
        request::error(call, url, failure, sent, &hint)
    }

    /// What to check when the provider refused `call` as `r` says.
    fn hint(&self, call: Call, r: &Refusal) -> String {
        let machine = matches!(call, Call::TokenExchange | Call::JwtBearer);
        let mut hint = match r.code() {
            Some(ErrorCode::InvalidClient) => invalid_client_hint(self.config, self.metadata),
            Some(ErrorCode::InvalidGrant | ErrorCode::InvalidRequest) if call == Call::TokenExchange => {
                ": check that the provider trusts the subject token's issuer and audience, and `subject-token-type`"
                    .into()
            }
            Some(ErrorCode::UnsupportedGrantType | ErrorCode::UnauthorizedClient) if machine => format!(
                ": enable the {} grant for this client at the provider, or set `grant`",
                self.config.machine_grant().grant_type()
            ),
            _ => String::new(),
        };
        // Client credentials without an explicit scope is the likeliest cause of a bare refusal: several
        // providers (authentik, some Entra set-ups) require one and say so only in their logs.
        if call == Call::ClientCredentials && !self.config.scope_explicit && matches!(r.status(), 400 | 401 | 403) {
            hint.push_str(
                "; this provider may need a scope for machine clients: set `scope = \"…\"` in the server block \
                 (client credentials sends a scope only when one is configured)",
            );
        }
        hint
    }
}

/// What a token request carries beyond its grant's own.
pub(crate) struct Extras {
    /// `audience` and the RFC 8707 `resource`s.
    params: Vec<(&'static str, String)>,
    /// The client's assertion (RFC 7523 §2.2), for oauth2's request builders, which cannot send one themselves.
    assertion: Option<Secret<String>>,
}

impl Extras {
    /// Every parameter, the assertion's among them.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let assertion = self
            .assertion
            .iter()
            .flat_map(|a| [("client_assertion_type", JWT_BEARER_ASSERTION), ("client_assertion", a.expose().as_str())]);
        self.params.iter().map(|(k, v)| (*k, v.as_str())).chain(assertion)
    }
}

/// Whether a refused refresh means "log in again": `invalid_grant`, or a 400/401 without an OAuth error — a
/// provider that killed a refresh-token family (reuse detection) often answers so (issue 16). An explicit OAuth
/// error other than invalid_grant (invalid_client, …) says something else and is reported as such.
fn refresh_token_dead(r: &Refusal) -> bool {
    match r {
        Refusal::OAuth { code, .. } => *code == ErrorCode::InvalidGrant,
        Refusal::Status { status, .. } => matches!(status, 400 | 401),
        Refusal::NotJson { .. } => false,
    }
}

/// The device authorization endpoint: the provider's metadata, else the configured one.
pub fn device_endpoint(config: &ServerConfig, metadata: &Metadata) -> Option<String> {
    metadata.device_authorization_endpoint.clone().or_else(|| config.device_authorization_endpoint.clone())
}

/// The configured method; else a federated assertion when `client-assertion` is set; else private_key_jwt with
/// a key (unless a secret is configured too and the provider lists methods without private_key_jwt); else, with
/// a secret, Basic unless the provider advertises only `client_secret_post`; else none (a public client).
pub fn auth_method(config: &ServerConfig, metadata: &Metadata) -> AuthMethod {
    if let Some(m) = config.token_endpoint_auth_method {
        return m;
    }
    let listed = metadata.token_endpoint_auth_methods_supported.as_deref();
    if config.client_assertion.is_some() {
        return AuthMethod::FederatedAssertion;
    }
    if config.client_assertion_key.is_some()
        && (config.client_secret.is_none() || listed.is_none_or(|m| m.iter().any(|x| x == "private_key_jwt")))
    {
        return AuthMethod::PrivateKeyJwt;
    }
    if config.client_secret.is_none() {
        return AuthMethod::None;
    }
    match &metadata.token_endpoint_auth_methods_supported {
        Some(methods)
            if methods.iter().any(|m| m == "client_secret_post")
                && !methods.iter().any(|m| m == "client_secret_basic") =>
        {
            AuthMethod::ClientSecretPost
        }
        _ => AuthMethod::ClientSecretBasic,
    }
}

pub(crate) fn sanitize(s: &str) -> String {
    crate::error::printable(s)
}

/// Endpoints from the provider's metadata must be https, as the issuer (RFC 8414 §2), except on loopback.
pub fn check_endpoint(name: &str, url: &str) -> Result<()> {
    let parsed =
        url::Url::parse(url).map_err(|e| Error::provider(format!("the provider's {name} {url} is not a URL ({e})")))?;
    match (parsed.scheme(), parsed.host()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(h)) if crate::http::is_loopback_host(&h) => Ok(()),
        _ => Err(Error::provider(format!(
            "the provider's {name} {url} must use https:// (plain http is accepted only on loopback hosts): \
             refusing to send credentials there"
        ))),
    }
}

/// The tokens of a token response, each checked where it arrives (issue 21): an access, ID or refresh token
/// that is not an RFC 6750 §2.1 `b64token` (visible ASCII letters, digits and `-._~+/`, then `=` padding) is
/// refused, before anything is stored. A CR/LF would split `token --format header` into two headers, an ESC or
/// BEL would reach the terminal that prints the token.
pub(crate) fn to_token_set(resp: TokenResponse, now: i64, issuer: &str) -> Result<TokenSet> {
    let set = TokenSet {
        access_token: Some(Secret::new(resp.access_token().secret().clone())),
        access_expires_at: resp.expires_in().map(|d| now.saturating_add(d.as_secs().min(10 * 365 * 86_400) as i64)),
        id_token: resp.extra_fields().id_token.clone().filter(|t| !t.is_empty()).map(Secret::new),
        refresh_token: resp.refresh_token().filter(|r| !r.secret().is_empty()).map(|r| Secret::new(r.secret().clone())),
        scope: resp.scopes().map(|s| s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")),
        obtained_at: now,
    };
    for (what, token) in [
        ("an access token", &set.access_token),
        ("an ID token", &set.id_token),
        ("a refresh token", &set.refresh_token),
    ] {
        if let Some(t) = token
            && !crate::tokenset::is_b64token(t.expose())
        {
            return Err(Error::provider(format!(
                "the provider {} returned {what} with characters a bearer token may not hold (RFC 6750 \
                 §2.1: only visible ASCII letters, digits and -._~+/ then =; this one has spaces, line breaks, \
                 control characters or non-ASCII text): refused, nothing was stored. Ask the provider's \
                 administrator to check its token format",
                crate::error::printable(issuer)
            )));
        }
    }
    Ok(set)
}
