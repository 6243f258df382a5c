//! The machine grants beyond client credentials: RFC 8693 token exchange and the RFC 7523 §2.1 JWT-bearer
//! grant, as hand-written form POSTs authenticated through [`ClientAuth`](super::ClientAuth).

use super::source::{self, Role};
use super::{Flows, OAuthError, TokenResponse, invalid_client_hint, sanitize_with, to_token_set};
use crate::config::MachineGrant;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::token::TokenSet;

/// RFC 8693 §3: the token type asked for.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl Flows<'_> {
    /// RFC 8693: exchange the subject token (read from its source now) for an access token.
    pub fn token_exchange(&self, http: &Http, now: i64) -> Result<TokenSet> {
        let c = self.config;
        let src = c
            .subject_token
            .as_ref()
            .ok_or_else(|| Error::config(format!("{}: token exchange needs `subject-token`", c.display_name())))?;
        let subject = source::read(c, src, Role::SubjectToken, http, now)?;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", MachineGrant::TokenExchange.grant_type()),
            ("subject_token", subject.expose()),
            ("subject_token_type", &c.subject_token_type),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        self.post_machine(http, MachineGrant::TokenExchange, &mut form, &[subject.expose()], now)
    }

    /// RFC 7523 §2.1: the subject token as the assertion, or (without one) a JWT signed with the client's key
    /// whose subject is the client itself.
    pub fn jwt_bearer(&self, http: &Http, now: i64) -> Result<TokenSet> {
        let c = self.config;
        let assertion = match (&c.subject_token, &c.client_assertion_key) {
            (Some(src), _) => source::read(c, src, Role::SubjectToken, http, now)?,
            (None, Some(path)) => {
                let key = crate::jws::SigningKey::load(path, c.client_assertion_kid.as_deref())?;
                let alg = key.alg(self.metadata.token_endpoint_auth_signing_alg_values_supported.as_deref());
                key.sign(alg, &crate::jws::assertion_claims(&c.client_id, &self.token_url, now))?
            }
            (None, None) => {
                return Err(Error::config(format!(
                    "{}: the jwt-bearer grant needs `subject-token` or `client-assertion-key`",
                    c.display_name()
                )));
            }
        };
        let mut form: Vec<(&str, &str)> =
            vec![("grant_type", MachineGrant::JwtBearer.grant_type()), ("assertion", assertion.expose())];
        self.post_machine(http, MachineGrant::JwtBearer, &mut form, &[assertion.expose()], now)
    }

    /// Add scope, audience, resources and client authentication; POST; an ordinary token set back.
    fn post_machine<'f>(
        &'f self,
        http: &Http,
        grant: MachineGrant,
        form: &mut Vec<(&'f str, &'f str)>,
        secrets: &[&str],
        now: i64,
    ) -> Result<TokenSet> {
        let c = self.config;
        if c.scope_explicit {
            form.push(("scope", &c.scope));
        }
        form.push(("audience", &c.audience));
        for r in &c.resources {
            form.push(("resource", r));
        }
        let auth = self.client_auth(http, now)?;
        let mut form = form.clone();
        let basic = auth.apply(&mut form);
        let mut hidden: Vec<&str> = secrets.to_vec();
        hidden.extend(auth.secret());
        let url = &self.token_url;
        let resp = http.post_form(url, &form, basic)?;
        let what = grant.as_str();
        if resp.status != 200 {
            return Err(match serde_json::from_slice::<OAuthError>(&resp.body) {
                Ok(e) => {
                    let mut msg = format!(
                        "the provider refused the {what} request at {url}: {}",
                        sanitize_with(c, &e.error, &hidden)
                    );
                    if let Some(d) = &e.error_description {
                        msg.push_str(&format!(" ({})", sanitize_with(c, d, &hidden)));
                    }
                    match e.error.as_str() {
                        "invalid_client" => msg.push_str(&invalid_client_hint(c, self.metadata)),
                        "invalid_grant" | "invalid_request" if grant == MachineGrant::TokenExchange => msg.push_str(
                            ": check that the provider trusts the subject token's issuer and audience, and \
                             `subject-token-type`",
                        ),
                        "unsupported_grant_type" | "unauthorized_client" => msg.push_str(&format!(
                            ": enable the {} grant for this client at the provider, or set `grant`",
                            grant.grant_type()
                        )),
                        _ => {}
                    }
                    Error::provider(msg)
                }
                Err(_) => Error::provider(format!(
                    "the token endpoint {url} answered the {what} request with HTTP {}",
                    resp.status
                )),
            });
        }
        let tr: TokenResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            Error::provider(format!(
                "the token endpoint {url} returned an invalid {what} response ({})",
                crate::error::parse_error(&e)
            ))
        })?;
        let set = to_token_set(tr, now, &self.config.issuer)?;
        self.check_id_token(&set, now, None, None)?;
        Ok(set)
    }
}

/// The token set of a machine grant: the one routine `login` and `token` call.
pub fn machine_grant(flows: &Flows<'_>, http: &Http, now: i64) -> Result<TokenSet> {
    match flows.config.machine_grant() {
        MachineGrant::ClientCredentials => flows.client_credentials(http, now),
        MachineGrant::TokenExchange => flows.token_exchange(http, now),
        MachineGrant::JwtBearer => flows.jwt_bearer(http, now),
    }
}
