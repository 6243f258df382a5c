//! The device authorization grant (RFC 8628): start it, then poll the token endpoint.

use serde::Deserialize;

use super::{Flows, OAuthError, TokenResponse, check_endpoint, sanitize, sanitize_with, to_token_set};
use crate::error::{Error, Result};
use crate::http::Http;
use crate::token::{Secret, TokenSet};

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
        let mut form: Vec<(&str, &str)> = vec![("scope", &scope), ("audience", &self.config.audience)];
        for r in &self.config.resources {
            form.push(("resource", r));
        }
        let basic = auth.apply(&mut form);
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
            Error::provider(format!(
                "the device authorization endpoint {endpoint} returned an invalid response ({})",
                crate::error::parse_error(&e)
            ))
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
        let auth = self.client_auth(http, now)?;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device.device_code.expose()),
        ];
        let basic = auth.apply(&mut form);
        let resp = http.post_form(&self.token_url, &form, basic)?;
        if resp.status == 200 {
            let tr: TokenResponse = serde_json::from_slice(&resp.body).map_err(|e| {
                Error::provider(format!(
                    "the token endpoint {} returned an invalid device-flow response ({})",
                    self.token_url,
                    crate::error::parse_error(&e)
                ))
            })?;
            let set = to_token_set(tr, now, &self.config.issuer)?;
            self.check_id_token(&set, now, None, None)?;
            return Ok(DevicePoll::Done(set));
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
