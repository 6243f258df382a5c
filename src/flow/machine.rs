//! The machine grants beyond client credentials: RFC 8693 token exchange and the RFC 7523 §2.1 JWT-bearer
//! grant, which the `oauth2` crate lacks: form POSTs through `flow/request.rs`, authenticated through
//! [`ClientAuth`](super::ClientAuth).

use super::platform_token::{self, Role};
use super::request::{self, Call, Expect};
use super::{Flows, TokenResponse, to_token_set};
use crate::config::MachineGrant;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::tokenset::TokenSet;

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
        let subject = platform_token::read(c, src, Role::SubjectToken, http, now)?;
        let form: Vec<(&str, &str)> = vec![
            ("grant_type", MachineGrant::TokenExchange.grant_type()),
            ("subject_token", subject.expose()),
            ("subject_token_type", &c.subject_token_type),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        self.post_machine(http, Call::TokenExchange, form, subject.expose(), now)
    }

    /// RFC 7523 §2.1: the subject token as the assertion, or (without one) a JWT signed with the client's key
    /// whose subject is the client itself.
    pub fn jwt_bearer(&self, http: &Http, now: i64) -> Result<TokenSet> {
        let c = self.config;
        let assertion = match (&c.subject_token, &c.client_assertion_key) {
            (Some(src), _) => platform_token::read(c, src, Role::SubjectToken, http, now)?,
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
        let form: Vec<(&str, &str)> =
            vec![("grant_type", MachineGrant::JwtBearer.grant_type()), ("assertion", assertion.expose())];
        self.post_machine(http, Call::JwtBearer, form, assertion.expose(), now)
    }

    /// Add scope, audience, resources and client authentication; POST; an ordinary token set back. `subject`
    /// (the subject token or assertion) is redacted should the provider echo it.
    fn post_machine(
        &self,
        http: &Http,
        call: Call,
        grant: Vec<(&str, &str)>,
        subject: &str,
        now: i64,
    ) -> Result<TokenSet> {
        let c = self.config;
        let extras = self.resource_params(true);
        let scope = c.scope_explicit.then_some(("scope", c.scope.as_str()));
        // Pushed one by one: each pair then borrows no longer than this call (collecting a chain would tie
        // `grant`'s lifetime to the local `extras`).
        let mut form: Vec<(&str, &str)> = Vec::new();
        for (k, v) in grant.into_iter().chain(scope) {
            form.push((k, v));
        }
        for (k, v) in extras.pairs() {
            form.push((k, v));
        }
        let auth = self.client_auth(http, now)?;
        let tr: TokenResponse = request::post(http, &self.token_url, form, &auth, Expect::Json)
            .and_then(|body| request::parse(&body))
            .map_err(|f| self.fail(call, &self.token_url, f, &auth.sent(&[subject])))?;
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
