//! What the guard in front of a tracking server (oauth2-proxy, mod_auth_openidc, mlflow-oidc-auth) meant by its
//! answer to a request that carried our token: the one place that tells "the proxy did not accept the token" from
//! an MLflow reply (issue 22).
//!
//! MLflow's REST API answers JSON and never redirects. oauth2-proxy without `--api-route` answers a bearer token it
//! refuses (wrong `aud`, `email_verified` false: oauth2-proxy#1350, #2944) with a 302 to its sign-in page, and a
//! client that follows redirects then receives the provider's HTML login form: MLflow's clients report that as a
//! JSON decode error (mlflow/mlflow#17348). Recognised here from the status, `Location` and `Content-Type` alone,
//! so `status --check`, the proxy and the Python plugin (its twin: python/mlflow_oidc/_guard.py) say the same thing.

use std::fmt;

/// The guard's answer, read as a verdict on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// A 3xx on an API call: the guard sent us to its login page (`Location`, when it gave one).
    LoginRedirect { status: u16, location: Option<String> },
    /// A 2xx HTML page where MLflow answers JSON: a login page reached by following a redirect.
    LoginPage { status: u16 },
    /// 401 or 403: the guard refused the token outright.
    Refused { status: u16 },
}

/// The verdict on a response to an MLflow API request sent with a bearer token, or `None` when it is MLflow's own
/// answer (JSON, or an error MLflow produced). `location` and `content_type` are the response's headers.
pub fn diagnose(status: u16, location: Option<&str>, content_type: Option<&str>) -> Option<Diagnosis> {
    let html = content_type.is_some_and(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        t.starts_with("text/html") || t.starts_with("application/xhtml")
    });
    match status {
        300..=399 if status != 304 => {
            Some(Diagnosis::LoginRedirect { status, location: location.map(|l| crate::error::printable(&shorten(l))) })
        }
        200..=299 if html => Some(Diagnosis::LoginPage { status }),
        401 | 403 => Some(Diagnosis::Refused { status }),
        _ => None,
    }
}

/// The login URL without its query (which carries `state`, a nonce, our redirect): enough to name the page.
fn shorten(location: &str) -> String {
    let end = location.find(['?', '#']).unwrap_or(location.len());
    location[..end.min(200)].to_owned()
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WHY: &str = "it did not accept the token (audience? email_verified?)";
        match self {
            Diagnosis::LoginRedirect { status, location: Some(l) } => {
                write!(f, "the tracking server's proxy redirected to its login page (HTTP {status} to {l}): {WHY}")
            }
            Diagnosis::LoginRedirect { status, location: None } => {
                write!(f, "the tracking server's proxy redirected to its login page (HTTP {status}): {WHY}")
            }
            Diagnosis::LoginPage { status } => write!(
                f,
                "the tracking server answered HTTP {status} with an HTML page, not MLflow's JSON: a login page from \
                 its proxy, which means {WHY}"
            ),
            Diagnosis::Refused { status } => write!(f, "the tracking server refused the token (HTTP {status})"),
        }
    }
}

impl Diagnosis {
    /// What to do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            Diagnosis::Refused { .. } => {
                "compare the token's `aud`, `iss` and expiry with what the server's guard requires \
                 (`mlflow-oidc token --format json`); see docs/guards/"
            }
            _ => {
                "give the token the audience the proxy checks (an audience mapper at the provider, or \
                 --oidc-extra-audience / --extra-jwt-issuers on oauth2-proxy), let it accept unverified emails for \
                 service accounts (--insecure-oidc-allow-unverified-email), and set --api-route=^/api/ so API calls \
                 get a 401 instead of a login page; see docs/guards/oauth2-proxy.md"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth2_proxy_redirects_to_its_sign_in_page() {
        let d = diagnose(302, Some("/oauth2/sign_in?rd=%2Fapi%2F2.0%2Fmlflow%2Fexperiments%2Fsearch"), None).unwrap();
        assert_eq!(
            d.to_string(),
            "the tracking server's proxy redirected to its login page (HTTP 302 to /oauth2/sign_in): it did not \
             accept the token (audience? email_verified?)"
        );
        // Keycloak's login URL carries state and a redirect: not repeated.
        let d = diagnose(
            302,
            Some("http://127.0.0.1:8080/realms/r/protocol/openid-connect/auth?state=s3cr3t&client_id=x"),
            Some("text/html"),
        )
        .unwrap();
        assert!(!d.to_string().contains("s3cr3t"), "{d}");
        assert!(matches!(diagnose(307, None, None), Some(Diagnosis::LoginRedirect { location: None, .. })));
    }

    #[test]
    fn an_html_page_where_json_was_due_is_a_login_page() {
        let d = diagnose(200, None, Some("Text/HTML; charset=utf-8")).unwrap();
        assert!(d.to_string().contains("not MLflow's JSON"), "{d}");
        assert!(d.to_string().contains("audience? email_verified?"), "{d}");
    }

    #[test]
    fn mlflow_answers_are_left_alone() {
        assert_eq!(diagnose(200, None, Some("application/json")), None);
        assert_eq!(diagnose(404, None, Some("application/json")), None);
        assert_eq!(diagnose(500, None, Some("text/html")), None);
        assert_eq!(diagnose(304, Some("/x"), None), None);
        assert_eq!(diagnose(401, None, None), Some(Diagnosis::Refused { status: 401 }));
        assert_eq!(diagnose(403, None, Some("text/html")), Some(Diagnosis::Refused { status: 403 }));
    }

    #[test]
    fn a_hostile_location_is_printed_safely() {
        let d = diagnose(302, Some("https://evil.test/\u{1b}[31mred"), None).unwrap();
        assert!(!d.to_string().contains('\u{1b}'), "{d}");
    }
}
