//! Client authentication at the provider (RFC 6749 §2.3.1, RFC 7523 §2.2): a secret, a signed assertion or a
//! platform token, decided once per request and applied the same way to every endpoint.

use super::*;

/// A client's credentials for one form POST to a provider endpoint (RFC 6749 §2.3.1, RFC 7523 §2.2).
pub struct ClientAuth<'a> {
    pub client_id: &'a str,
    pub credential: Credential<'a>,
}

/// What a client proves itself with.
pub enum Credential<'a> {
    /// A public client: its `client_id` only.
    None,
    Secret {
        secret: &'a Secret<String>,
        basic: bool,
    },
    /// A JWT (signed with the client's key, or a platform token), good for one request.
    Assertion(Secret<String>),
}

impl<'a> ClientAuth<'a> {
    /// A public client.
    pub fn public(client_id: &'a str) -> Self {
        ClientAuth { client_id, credential: Credential::None }
    }

    /// Add the credentials to `form`, or return the (id, secret) pair for HTTP Basic. A public client sends only
    /// its `client_id`.
    pub fn apply<'b>(&'b self, form: &mut Vec<(&'b str, &'b str)>) -> Option<(&'b str, &'b str)> {
        match &self.credential {
            Credential::Secret { secret, basic: true } => Some((self.client_id, secret.expose())),
            Credential::Secret { secret, basic: false } => {
                form.push(("client_id", self.client_id));
                form.push(("client_secret", secret.expose()));
                None
            }
            Credential::Assertion(a) => {
                form.push(("client_id", self.client_id));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION));
                form.push(("client_assertion", a.expose()));
                None
            }
            Credential::None => {
                form.push(("client_id", self.client_id));
                None
            }
        }
    }

    /// What this sends that a provider might echo, with `others` (a refresh token, a device code, a subject
    /// token), to redact from its text.
    pub fn sent<'s>(&'s self, others: &[&'s str]) -> Sent<'s> {
        let mut sent = Sent { client: None, secrets: others.to_vec() };
        match &self.credential {
            Credential::Secret { secret, .. } => sent.client = Some((self.client_id, secret.expose().as_str())),
            Credential::Assertion(a) => sent.secrets.push(a.expose()),
            Credential::None => {}
        }
        sent
    }
}

/// The credentials of `config`'s client for one request: the one routine every grant, the device flow and
/// revocation authenticate through. A signed assertion: iss = sub = client id, aud = the token endpoint
/// (RFC 7523 §3; providers also accept it at their other endpoints), a fresh jti, two minutes.
pub fn client_auth<'a>(config: &'a ServerConfig, metadata: &Metadata, http: &Http, now: i64) -> Result<ClientAuth<'a>> {
    let client_id = config.client_id.as_str();
    let credential = match auth_method(config, metadata) {
        AuthMethod::None => Credential::None,
        m @ (AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost) => match &config.client_secret {
            Some(secret) => Credential::Secret { secret, basic: m == AuthMethod::ClientSecretBasic },
            None => Credential::None,
        },
        AuthMethod::PrivateKeyJwt => {
            let path = config.client_assertion_key.as_deref().ok_or_else(|| {
                Error::config("token-endpoint-auth-method is private_key_jwt but `client-assertion-key` is not set")
            })?;
            let key = crate::jws::SigningKey::load(path, config.client_assertion_kid.as_deref())?;
            let alg = key.alg(metadata.token_endpoint_auth_signing_alg_values_supported.as_deref());
            let aud = metadata.token_endpoint()?;
            Credential::Assertion(key.sign(alg, &crate::jws::assertion_claims(client_id, aud, now))?)
        }
        AuthMethod::FederatedAssertion => {
            let src = config.client_assertion.as_ref().ok_or_else(|| {
                Error::config("token-endpoint-auth-method is private_key_jwt but `client-assertion` is not set")
            })?;
            Credential::Assertion(platform_token::read(config, src, platform_token::Role::ClientAssertion, http, now)?)
        }
    };
    Ok(ClientAuth { client_id, credential })
}

/// What to check when the provider says `invalid_client`, by how this client authenticates.
pub(crate) fn invalid_client_hint(config: &ServerConfig, metadata: &Metadata) -> String {
    match auth_method(config, metadata) {
        AuthMethod::PrivateKeyJwt => format!(
            ": check `client-id`, and that the provider has the public key of {} registered for this client (and \
             its `kid`)",
            config.client_assertion_key.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
        ),
        AuthMethod::FederatedAssertion => format!(
            ": check `client-id`, and the provider's federated credential for this client (issuer, subject and \
             audience of the token from {})",
            config.client_assertion.as_ref().map(|s| s.describe()).unwrap_or_default()
        ),
        _ => ": check `client-id` and `client-secret`".into(),
    }
}
