//! Secrets that cannot print by accident, the cached token set, freshness, and JWT claim peeking.

use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// A value that must never be printed: no `Display`, a redacted `Debug`; [`Secret::expose`] marks the one
/// place it leaves the type.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

/// Which token is handed to the tracking server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    AccessToken,
    IdToken,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "access_token",
            TokenKind::IdToken => "id_token",
        }
    }
}

/// Tokens from one grant, as cached. Times are Unix seconds recorded against the local clock.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenSet {
    pub access_token: Option<Secret<String>>,
    /// Access-token expiry from `expires_in`, recorded when the response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When these tokens were received.
    #[serde(default)]
    pub obtained_at: i64,
}

impl TokenSet {
    /// The token of `kind`, if present.
    pub fn token(&self, kind: TokenKind) -> Option<&Secret<String>> {
        match kind {
            TokenKind::AccessToken => self.access_token.as_ref(),
            TokenKind::IdToken => self.id_token.as_ref(),
        }
    }

    /// When the token of `kind` expires: the earlier of `expires_in` (access token only) and the JWT `exp`.
    pub fn expires_at(&self, kind: TokenKind) -> Option<i64> {
        let token = self.token(kind)?;
        let jwt_exp = Claims::peek(token.expose()).and_then(|c| c.exp);
        let from_response = match kind {
            TokenKind::AccessToken => self.access_expires_at,
            TokenKind::IdToken => None,
        };
        match (from_response, jwt_exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the token of `kind` is usable for at least `min_valid` more seconds at `now`.
    pub fn freshness(&self, kind: TokenKind, now: i64, min_valid: MinValid) -> Result<i64, StaleReason> {
        if self.token(kind).is_none() {
            return Err(StaleReason::Missing(kind));
        }
        let Some(exp) = self.expires_at(kind) else { return Err(StaleReason::UnknownExpiry(kind)) };
        let min_valid = match min_valid {
            MinValid::Exactly(s) => s,
            // A default margin longer than half the lifetime would renew short-lived tokens on every call.
            MinValid::Default(s) => s.min(exp.saturating_sub(self.obtained_at).max(0) / 2),
        };
        // Saturating: expiries come from JWTs and cache files, which may hold any number.
        let left = exp.saturating_sub(now);
        if left <= min_valid { Err(StaleReason::Expiring { kind, expires_in: left }) } else { Ok(exp) }
    }
}

/// How long a token must still be valid to be used as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinValid {
    /// Asked for explicitly (`--min-valid`).
    Exactly(i64),
    /// The default margin, capped at half the token's lifetime.
    Default(i64),
}

/// Why a cached token cannot be used as is; shown in `--verbose` logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleReason {
    Missing(TokenKind),
    UnknownExpiry(TokenKind),
    Expiring { kind: TokenKind, expires_in: i64 },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::Missing(k) => write!(f, "no {} cached", k.as_str()),
            StaleReason::UnknownExpiry(k) => write!(f, "the cached {} has no known expiry", k.as_str()),
            StaleReason::Expiring { kind, expires_in } if *expires_in <= 0 => {
                write!(f, "the cached {} expired {}s ago", kind.as_str(), expires_in.saturating_neg())
            }
            StaleReason::Expiring { kind, expires_in } => {
                write!(f, "the cached {} expires in {expires_in}s", kind.as_str())
            }
        }
    }
}

/// The JWT claims we read without verifying: for expiry and for saying who is logged in.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub sub: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub nonce: Option<String>,
    pub iss: Option<String>,
    pub azp: Option<String>,
    #[serde(default)]
    pub aud: Option<serde_json::Value>,
}

impl Claims {
    /// Decode a JWT's payload without checking its signature (the tracking server's proxy does that).
    pub fn peek(jwt: &str) -> Option<Claims> {
        let mut parts = jwt.split('.');
        let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        // Tolerate numeric claims sent as floats (some providers do).
        let mut claims: Claims = serde_json::from_value(strip_numbers(value.clone())).unwrap_or_default();
        claims.exp = value.get("exp").and_then(as_i64);
        claims.iat = value.get("iat").and_then(as_i64);
        Some(claims)
    }

    /// The best human name for the subject: preferred_username, else email, else sub.
    /// Who the token is for, as printed: provider-chosen text, so through [`crate::error::printable`].
    pub fn who(&self) -> Option<String> {
        self.preferred_username
            .as_deref()
            .or(self.email.as_deref())
            .or(self.sub.as_deref())
            .map(crate::error::printable)
    }
}

fn as_i64(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15).map(|f| f as i64))
}

fn strip_numbers(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("exp");
        o.remove("iat");
        for key in ["sub", "preferred_username", "email", "nonce", "iss", "azp"] {
            if o.get(key).is_some_and(|x| !x.is_string()) {
                o.remove(key);
            }
        }
    }
    v
}

/// RFC 3339 UTC ("2026-11-26T15:53:08Z") for Unix seconds, without a date-time dependency.
pub fn rfc3339(unix: i64) -> String {
    // Years 0000-9999: RFC 3339 has four digits, and a hostile `exp` must not print nonsense.
    let unix = unix.clamp(-62_167_219_200, 253_402_300_799);
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Compare without an early exit, so timing does not reveal how much of a guessed state was right.
/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. Every token we
/// accept from a provider is one, so none can carry a line break into a header or an escape into a terminal.
pub fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// "1h 5m", "4m 10s", "12s".
pub fn human_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", e.encode(r#"{"alg":"RS256"}"#), e.encode(payload))
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let set = TokenSet { refresh_token: Some(s), ..Default::default() };
        assert!(!format!("{set:?}").contains("hunter2"));
    }

    #[test]
    fn expiry_is_the_earlier_of_expires_in_and_exp() {
        let set = TokenSet {
            access_token: Some(Secret::new(jwt(r#"{"exp":1000}"#))),
            access_expires_at: Some(900),
            id_token: Some(Secret::new(jwt(r#"{"exp":2000,"sub":"alice"}"#))),
            ..Default::default()
        };
        assert_eq!(set.expires_at(TokenKind::AccessToken), Some(900));
        assert_eq!(set.expires_at(TokenKind::IdToken), Some(2000));
        assert_eq!(set.freshness(TokenKind::AccessToken, 800, MinValid::Exactly(60)), Ok(900));
        assert_eq!(
            set.freshness(TokenKind::AccessToken, 850, MinValid::Exactly(60)),
            Err(StaleReason::Expiring { kind: TokenKind::AccessToken, expires_in: 50 })
        );
        let opaque = TokenSet { access_token: Some(Secret::new("opaque".into())), ..Default::default() };
        assert_eq!(
            opaque.freshness(TokenKind::AccessToken, 0, MinValid::Exactly(60)),
            Err(StaleReason::UnknownExpiry(TokenKind::AccessToken))
        );
        assert_eq!(
            TokenSet::default().freshness(TokenKind::IdToken, 0, MinValid::Exactly(0)),
            Err(StaleReason::Missing(TokenKind::IdToken))
        );
    }

    #[test]
    fn extreme_expiries_do_not_overflow() {
        let set = TokenSet {
            access_token: Some(Secret::new(jwt(&format!("{{\"exp\":{}}}", i64::MIN)))),
            access_expires_at: Some(i64::MAX),
            obtained_at: i64::MIN,
            ..Default::default()
        };
        let stale = set.freshness(TokenKind::AccessToken, i64::MAX, MinValid::Default(60)).unwrap_err();
        assert!(stale.to_string().contains("expired"), "{stale}");
    }

    #[test]
    fn the_default_margin_is_capped_at_half_the_lifetime() {
        // A 60 s token obtained at 0: with the default 60 s margin it would never be used from cache.
        let set = TokenSet {
            access_token: Some(Secret::new("opaque".into())),
            access_expires_at: Some(60),
            obtained_at: 0,
            ..Default::default()
        };
        assert_eq!(set.freshness(TokenKind::AccessToken, 10, MinValid::Default(60)), Ok(60));
        assert!(set.freshness(TokenKind::AccessToken, 31, MinValid::Default(60)).is_err());
        assert!(set.freshness(TokenKind::AccessToken, 10, MinValid::Exactly(60)).is_err());
    }

    #[test]
    fn claims_peek_tolerates_odd_payloads() {
        let c = Claims::peek(&jwt(r#"{"exp":1.7e9,"sub":5,"preferred_username":"alice"}"#)).unwrap();
        assert_eq!(c.exp, Some(1_700_000_000));
        assert_eq!(c.sub, None);
        assert_eq!(c.who().as_deref(), Some("alice"));
        assert!(Claims::peek("not-a-jwt").is_none());
        assert!(Claims::peek("a.!!!.c").is_none());
    }

    #[test]
    fn only_b64tokens_pass() {
        for ok in ["eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "a-b_c~d+e/f==", "2YotnFZFEjr1zCsicMWpAA"] {
            assert!(is_b64token(ok), "{ok}");
        }
        for bad in ["", "===", "x\r\nX-Injected: yes", "a b", "a\u{1b}]52;c;x\u{7}", "tök", "a=b", "a\t"] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_702_365), "2026-11-26T14:12:45Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
    }
}
