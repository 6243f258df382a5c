//! The OAuth grants over the `oauth2` crate: authorization code + PKCE, client credentials and refresh.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::config::{AuthMethod, ServerConfig};
use crate::discovery::Metadata;
use crate::error::{Error, Result};
use crate::http::{Http, HttpError};
use crate::token::{Secret, TokenSet};

/// The `id_token` that `BasicTokenResponse` would drop.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenFields {}

type TokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;
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
                AuthMethod::ClientSecretBasic => AuthType::BasicAuth,
                AuthMethod::ClientSecretPost => AuthType::RequestBody,
            });
        if let Some(secret) = &config.client_secret {
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
        for r in &self.config.resources {
            req = req.add_extra_param("resource", r.clone());
        }
        for (k, v) in &self.config.auth_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        if self.config.sources.get("audience").is_some_and(|s| *s != crate::config::Source::Default) {
            req = req.add_extra_param("audience", self.config.audience.clone());
        }
        let (url, state) = req.url();
        Ok(Authorization { url: url.to_string(), state: state.secret().clone(), nonce, verifier })
    }

    /// Redeem the authorization code; checks the ID token's nonce.
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
        let mut req = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(auth.verifier)
            .add_extra_param("audience", self.config.audience.clone());
        for r in &self.config.resources {
            req = req.add_extra_param("resource", r.clone());
        }
        let resp = req.request(http).map_err(|e| self.grant_error("authorization code", e, &[code]))?;
        let set = to_token_set(resp, now);
        if let Some(expected) = &auth.nonce
            && let Some(id) = &set.id_token
        {
            let got = crate::token::Claims::peek(id.expose()).and_then(|c| c.nonce);
            if !got.as_deref().is_some_and(|g| crate::loopback::constant_time_eq(g.as_bytes(), expected.as_bytes())) {
                return Err(Error::provider(
                    "the ID token's nonce does not match this login (a replayed or injected response): log in again",
                ));
            }
        }
        Ok(set)
    }

    /// The client credentials grant; scope only when configured explicitly.
    pub fn client_credentials(&self, http: &Http, now: i64) -> Result<TokenSet> {
        if self.config.client_secret.is_none() {
            return Err(Error::config(format!(
                "{} is not interactive but has no client secret: set `client-secret` (or MLFLOW_TRACKING_OIDC_CLIENT_SECRET), \
                 or set interactive = true",
                self.config.display_name()
            )));
        }
        let mut req =
            self.client.exchange_client_credentials().add_extra_param("audience", self.config.audience.clone());
        if self.config.scope_explicit {
            req = req.add_scopes(self.config.scope.split_whitespace().map(|s| Scope::new(s.to_string())));
        }
        for r in &self.config.resources {
            req = req.add_extra_param("resource", r.clone());
        }
        let resp = req.request(http).map_err(|e| self.grant_error("client credentials", e, &[]))?;
        Ok(to_token_set(resp, now))
    }

    /// The refresh-token grant. `Ok(None)` means the refresh token is no longer valid (`invalid_grant`).
    pub fn refresh(&self, http: &Http, refresh_token: &Secret<String>, now: i64) -> Result<Option<TokenSet>> {
        let rt = RefreshToken::new(refresh_token.expose().clone());
        let mut req = self.client.exchange_refresh_token(&rt);
        for r in &self.config.resources {
            req = req.add_extra_param("resource", r.clone());
        }
        match req.request(http) {
            Ok(resp) => {
                let mut set = to_token_set(resp, now);
                // Providers that do not rotate return no refresh token (or an empty one): keep using the old one.
                if set.refresh_token.is_none() {
                    set.refresh_token = Some(refresh_token.clone());
                }
                Ok(Some(set))
            }
            Err(RequestTokenError::ServerResponse(r))
                if matches!(r.error(), oauth2::basic::BasicErrorResponseType::InvalidGrant) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.grant_error("refresh", e, &[refresh_token.expose()])),
        }
    }

    fn grant_error(&self, grant: &str, e: RequestTokenError<HttpError, BasicErrorResponse>, secrets: &[&str]) -> Error {
        let url = &self.token_url;
        match e {
            RequestTokenError::ServerResponse(r) => {
                let code = sanitize_with(self.config, r.error().as_ref(), secrets);
                let mut msg = format!("the provider refused the {grant} request at {url}: {code}");
                if let Some(d) = r.error_description() {
                    msg.push_str(&format!(" ({})", sanitize_with(self.config, d, secrets)));
                }
                if matches!(r.error(), oauth2::basic::BasicErrorResponseType::InvalidClient) {
                    msg.push_str(": check `client-id` and `client-secret`");
                }
                Error::provider(msg)
            }
            RequestTokenError::Request(e) => Error::network(e.0),
            // The body may hold tokens: name what was wrong, never echo it.
            RequestTokenError::Parse(e, _body) => Error::provider(format!(
                "the token endpoint {url} returned an invalid {grant} response ({}): the provider may be misconfigured",
                e.inner()
            )),
            RequestTokenError::Other(m) => Error::provider(format!(
                "the {grant} request to {url} failed: {}",
                sanitize_with(self.config, &m, secrets)
            )),
        }
    }
}

/// RFC 8628 §3.2: what the person is shown and what we poll with.
pub struct DeviceAuthorization {
    device_code: Secret<String>,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: u64,
}

#[derive(Deserialize)]
struct DeviceResponse {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default, alias = "verification_url_complete")]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    interval: Option<serde_json::Value>,
}

/// One poll of the token endpoint in the device flow.
pub enum DevicePoll {
    Pending,
    SlowDown,
    Done(TokenSet),
}

/// RFC 6749 §5.2 error body.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Flows<'_> {
    fn client_auth<'b>(&'b self, form: &mut Vec<(&'b str, &'b str)>) -> Option<(&'b str, &'b str)> {
        match &self.config.client_secret {
            Some(secret) if auth_method(self.config, self.metadata) == AuthMethod::ClientSecretBasic => {
                Some((self.config.client_id.as_str(), secret.expose().as_str()))
            }
            Some(secret) => {
                form.push(("client_id", &self.config.client_id));
                form.push(("client_secret", secret.expose()));
                None
            }
            None => {
                form.push(("client_id", &self.config.client_id));
                None
            }
        }
    }

    /// Start the device flow at `endpoint`.
    pub fn start_device(&self, http: &Http, endpoint: &str) -> Result<DeviceAuthorization> {
        check_endpoint("device_authorization_endpoint", endpoint)?;
        let scope = self.interactive_scopes().join(" ");
        let mut form: Vec<(&str, &str)> = vec![("scope", &scope), ("audience", &self.config.audience)];
        for r in &self.config.resources {
            form.push(("resource", r));
        }
        let basic = self.client_auth(&mut form);
        let resp = http.post_form(endpoint, &form, basic)?;
        if resp.status != 200 {
            return Err(match serde_json::from_slice::<OAuthError>(&resp.body) {
                Ok(e) => Error::provider(format!(
                    "the provider refused to start the device flow at {endpoint}: {}{}",
                    sanitize_with(self.config, &e.error, &[]),
                    e.error_description
                        .map(|d| format!(" ({})", sanitize_with(self.config, &d, &[])))
                        .unwrap_or_default()
                )),
                Err(_) => Error::provider(format!(
                    "the device authorization endpoint {endpoint} answered HTTP {}",
                    resp.status
                )),
            });
        }
        let d: DeviceResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            Error::provider(format!("the device authorization endpoint {endpoint} returned an invalid response ({e})"))
        })?;
        let number = |v: &Option<serde_json::Value>, default: u64| {
            v.as_ref().and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(default)
        };
        Ok(DeviceAuthorization {
            device_code: Secret::new(d.device_code),
            user_code: sanitize(&d.user_code),
            // Shown to the person and opened in a browser: no terminal escapes from the provider.
            verification_uri: sanitize(&d.verification_uri),
            verification_uri_complete: d.verification_uri_complete.as_deref().map(sanitize),
            // RFC 8628 §3.2: expires_in is required; interval defaults to 5 s.
            expires_in: number(&d.expires_in, 600).clamp(1, 3600),
            interval: number(&d.interval, 5).clamp(1, 60),
        })
    }

    /// Poll once for the device flow's tokens.
    pub fn poll_device(&self, http: &Http, device: &DeviceAuthorization, now: i64) -> Result<DevicePoll> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device.device_code.expose()),
        ];
        let basic = self.client_auth(&mut form);
        let resp = http.post_form(&self.token_url, &form, basic)?;
        if resp.status == 200 {
            let tr: TokenResponse = serde_json::from_slice(&resp.body).map_err(|e| {
                Error::provider(format!(
                    "the token endpoint {} returned an invalid device-flow response ({e})",
                    self.token_url
                ))
            })?;
            return Ok(DevicePoll::Done(to_token_set(tr, now)));
        }
        let code = device.device_code.expose().as_str();
        let err = serde_json::from_slice::<OAuthError>(&resp.body).map_err(|_| {
            Error::provider(format!(
                "the token endpoint {} answered HTTP {} while polling",
                self.token_url, resp.status
            ))
        })?;
        let desc = err
            .error_description
            .map(|d| format!(" ({})", sanitize_with(self.config, &d, &[code])))
            .unwrap_or_default();
        match err.error.as_str() {
            "authorization_pending" => Ok(DevicePoll::Pending),
            "slow_down" => Ok(DevicePoll::SlowDown),
            "access_denied" => Err(Error::provider(format!(
                "the login was denied at the provider{desc}: run `mlflow-oidc login` again to retry"
            ))),
            "expired_token" => Err(Error::interaction(format!(
                "the device code expired before the login was approved{desc}: run `mlflow-oidc login` again"
            ))),
            other => Err(Error::provider(format!(
                "the provider refused the device flow: {}{desc}",
                sanitize_with(self.config, other, &[code])
            ))),
        }
    }
}

/// The device authorization endpoint: the provider's metadata, else the configured one.
pub fn device_endpoint(config: &ServerConfig, metadata: &Metadata) -> Option<String> {
    metadata.device_authorization_endpoint.clone().or_else(|| config.device_authorization_endpoint.clone())
}

/// Basic unless the configuration says otherwise or the provider advertises only `client_secret_post`.
pub fn auth_method(config: &ServerConfig, metadata: &Metadata) -> AuthMethod {
    if let Some(m) = config.token_endpoint_auth_method {
        return m;
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

/// Keep provider-supplied text printable and short.
/// Provider text made printable, with our secrets (client secret, `extra`) redacted should it echo them.
fn sanitize_with(config: &ServerConfig, s: &str, extra: &[&str]) -> String {
    let mut secrets: Vec<&str> = extra.to_vec();
    if let Some(secret) = &config.client_secret {
        secrets.push(secret.expose());
    }
    crate::error::printable(&crate::error::redact(s, &secrets))
}

fn sanitize(s: &str) -> String {
    crate::error::printable(s)
}

/// Endpoints from the provider's metadata must be https, as the issuer (RFC 8414 §2), except on loopback.
pub fn check_endpoint(name: &str, url: &str) -> Result<()> {
    let parsed =
        url::Url::parse(url).map_err(|e| Error::provider(format!("the provider's {name} {url} is not a URL ({e})")))?;
    match (parsed.scheme(), parsed.host()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(h)) if crate::config::is_loopback_host(&h) => Ok(()),
        _ => Err(Error::provider(format!(
            "the provider's {name} {url} must use https:// (plain http is accepted only on loopback hosts): \
             refusing to send credentials there"
        ))),
    }
}

fn to_token_set(resp: TokenResponse, now: i64) -> TokenSet {
    TokenSet {
        access_token: Some(Secret::new(resp.access_token().secret().clone())),
        access_expires_at: resp.expires_in().map(|d| now.saturating_add(d.as_secs().min(10 * 365 * 86_400) as i64)),
        id_token: resp.extra_fields().id_token.clone().filter(|t| !t.is_empty()).map(Secret::new),
        refresh_token: resp.refresh_token().filter(|r| !r.secret().is_empty()).map(|r| Secret::new(r.secret().clone())),
        scope: resp.scopes().map(|s| s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")),
        obtained_at: now,
    }
}
