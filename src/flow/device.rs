//! The device authorization grant (RFC 8628): start it, then poll the token endpoint, one request at a time.
//!
//! Our own requests, not oauth2's `exchange_device_code`/`exchange_device_access_token`: its polling loop sends
//! one client assertion on every poll (providers refuse a repeated `jti`, RFC 7523 §3), keeps polling through
//! transport errors until the deadline (a dead provider reported as "not approved in time"), and its
//! authorization response takes `expires_in`/`interval` as numbers only (some providers send strings).

use serde::Deserialize;

use super::request::{self, Call, ErrorCode, Expect, Failure, Refusal};
use super::{Flows, TokenResponse, check_endpoint, sanitize, to_token_set};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::tokenset::{Secret, TokenSet};

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

impl Flows<'_> {
    /// Start the device flow at `endpoint`.
    pub fn start_device(&self, http: &Http, endpoint: &str) -> Result<DeviceAuthorization> {
        check_endpoint("device_authorization_endpoint", endpoint)?;
        let scope = self.interactive_scopes().join(" ");
        // The one request without a clock from the caller: an assertion's iat/exp follow the system clock.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let auth = self.client_auth(http, now)?;
        let extras = self.resource_params(true);
        let mut form: Vec<(&str, &str)> = vec![("scope", &scope)];
        form.extend(extras.pairs());
        let d: DeviceResponse = request::post(http, endpoint, form, &auth, Expect::Json)
            .and_then(|body| request::parse(&body))
            .map_err(|f| self.fail(Call::DeviceAuthorization, endpoint, f, &auth.sent(&[])))?;
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

    /// Poll once for the device flow's tokens (RFC 8628 §3.4, §3.5).
    pub fn poll_device(&self, http: &Http, device: &DeviceAuthorization, now: i64) -> Result<DevicePoll> {
        let auth = self.client_auth(http, now)?;
        let code = device.device_code.expose().as_str();
        let form = vec![("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", code)];
        let reply = request::post(http, &self.token_url, form, &auth, Expect::Json)
            .and_then(|body| request::parse::<TokenResponse>(&body));
        let failure = match reply {
            Ok(tr) => {
                let set = to_token_set(tr, now, &self.config.issuer)?;
                self.check_id_token(&set, now, None, None)?;
                return Ok(DevicePoll::Done(set));
            }
            Err(f) => f,
        };
        let sent = auth.sent(&[code]);
        if let Failure::Refused(Refusal::OAuth { code, description, .. }) = &failure {
            let desc = description.as_ref().map(|d| format!(" ({})", sent.clean(d))).unwrap_or_default();
            match code {
                ErrorCode::AuthorizationPending => return Ok(DevicePoll::Pending),
                ErrorCode::SlowDown => return Ok(DevicePoll::SlowDown),
                ErrorCode::AccessDenied => {
                    return Err(Error::provider(format!(
                        "the login was denied at the provider{desc}: run `mlflow-oidc login` again to retry"
                    )));
                }
                ErrorCode::ExpiredToken => {
                    return Err(Error::interaction(format!(
                        "the device code expired before the login was approved{desc}: run `mlflow-oidc login` again"
                    )));
                }
                _ => {}
            }
        }
        Err(self.fail(Call::DevicePoll, &self.token_url, failure, &sent))
    }
}
