//! The one way a grant or revocation reaches the provider, and the one reading of its reply (RFC 6749 §5.2):
//! the `oauth2` crate's grants call [`Wire`], the ones it lacks [`post`]; both end in a [`Failure`] that
//! [`message`] words.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ClientAuth;
use crate::error::{Detail, Error, printable};
use crate::http::Http;

/// What a request asks the provider for: it names the request in messages and decides which hints apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    AuthorizationCode,
    ClientCredentials,
    Refresh,
    /// RFC 8628 §3.1: start the device flow.
    DeviceAuthorization,
    /// RFC 8628 §3.4: one poll of the token endpoint.
    DevicePoll,
    /// RFC 8693.
    TokenExchange,
    /// RFC 7523 §2.1.
    JwtBearer,
    /// RFC 7009.
    Revocation,
}

impl Call {
    /// The request, as messages name it.
    pub fn what(self) -> &'static str {
        match self {
            Call::AuthorizationCode => "authorization code",
            Call::ClientCredentials => "client credentials",
            Call::Refresh => "refresh",
            Call::DeviceAuthorization => "device authorization",
            Call::DevicePoll => "device flow",
            Call::TokenExchange => "token exchange (RFC 8693)",
            Call::JwtBearer => "JWT bearer (RFC 7523)",
            Call::Revocation => "revocation",
        }
    }

    /// The endpoint it goes to, as messages name it.
    fn endpoint(self) -> &'static str {
        match self {
            Call::DeviceAuthorization => "device authorization endpoint",
            Call::Revocation => "revocation endpoint",
            _ => "token endpoint",
        }
    }
}

/// The RFC 6749 §5.2 and RFC 8628 §3.5 error codes something depends on; any other as the provider spelled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    Other(String),
}

impl ErrorCode {
    fn parse(code: &str) -> ErrorCode {
        match code {
            "invalid_request" => ErrorCode::InvalidRequest,
            "invalid_client" => ErrorCode::InvalidClient,
            "invalid_grant" => ErrorCode::InvalidGrant,
            "unauthorized_client" => ErrorCode::UnauthorizedClient,
            "unsupported_grant_type" => ErrorCode::UnsupportedGrantType,
            "authorization_pending" => ErrorCode::AuthorizationPending,
            "slow_down" => ErrorCode::SlowDown,
            "access_denied" => ErrorCode::AccessDenied,
            "expired_token" => ErrorCode::ExpiredToken,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    /// The code as the provider sent it (not yet made printable).
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::Other(s) => s,
        }
    }
}

/// A reply that is not the success asked for, by its shape.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// An RFC 6749 §5.2 error object, whatever the status.
    OAuth { status: u16, code: ErrorCode, description: Option<String>, uri: Option<String> },
    /// An error status whose body is no OAuth error: empty, an HTML page, plain text, other JSON.
    Status { status: u16, content_type: Option<String>, empty: bool },
    /// 200, but with an empty body or one declared as something other than JSON (a login page, a proxy's page).
    NotJson { content_type: Option<String>, empty: bool },
}

impl Refusal {
    /// The OAuth error code, when the provider sent one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Refusal::OAuth { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Refusal::OAuth { status, .. } | Refusal::Status { status, .. } => *status,
            Refusal::NotJson { .. } => 200,
        }
    }
}

/// Why a request to the provider did not give what it asked for.
#[derive(Debug)]
pub enum Failure {
    /// No answer (connection, TLS, timeout, a body over the limit): already worded, naming the URL.
    Transport(Error),
    /// The provider answered, and not with a success.
    Refused(Refusal),
    /// A success whose JSON is not what the request's RFC says (which field, where; never the values).
    Invalid(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(e) => write!(f, "{e}"),
            Failure::Refused(r) => write!(f, "refused: HTTP {}", r.status()),
            Failure::Invalid(why) => f.write_str(why),
        }
    }
}
impl std::error::Error for Failure {}

impl From<oauth2::RequestTokenError<Failure, oauth2::basic::BasicErrorResponse>> for Failure {
    fn from(e: oauth2::RequestTokenError<Failure, oauth2::basic::BasicErrorResponse>) -> Failure {
        match e {
            oauth2::RequestTokenError::Request(f) => f,
            // Not reached through [`Wire`], whose `check` already turns an error object sent with 200 into a
            // refusal; the crate's own reading of the same thing, kept for the match.
            oauth2::RequestTokenError::ServerResponse(r) => Failure::Refused(Refusal::OAuth {
                status: 200,
                code: ErrorCode::parse(r.error().as_ref()),
                description: r.error_description().cloned(),
                uri: r.error_uri().cloned(),
            }),
            oauth2::RequestTokenError::Parse(e, _body) => {
                Failure::Invalid(invalid_json(e.inner(), &e.path().to_string()))
            }
            // What is left after [`Wire`]: the crate could not build the request (its wording, no provider text).
            oauth2::RequestTokenError::Other(m) => {
                Failure::Transport(Error::config(format!("cannot build the request to the provider: {m}")))
            }
        }
    }
}

/// The http client function the `oauth2` crate calls: a reply that is not a usable success comes back as a
/// [`Failure::Refused`] carrying its status and content type, which the crate keeps for none of its error
/// shapes and which the message needs (issue 16: "HTTP 403 with an empty body", "log in again" on a 400).
pub struct Wire<'h>(pub &'h Http);

impl oauth2::SyncHttpClient for Wire<'_> {
    type Error = Failure;
    fn call(&self, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, Failure> {
        let resp = self.0.call(req).map_err(Failure::Transport)?;
        check(&resp, Expect::Json).map_err(Failure::Refused)?;
        Ok(resp)
    }
}

/// What a success carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A JSON document (RFC 6749 §5.1, RFC 8628 §3.2).
    Json,
    /// Nothing we read: RFC 7009 §2.2, "the content of the response body is ignored".
    Nothing,
}

/// POST `form` with `client`'s credentials to `url`: the request path of the grants the crate lacks
/// (RFC 8693, RFC 7523 §2.1), of the device flow and of revocation. Only a usable success comes back.
pub fn post<'f>(
    http: &Http,
    url: &str,
    mut form: Vec<(&'f str, &'f str)>,
    client: &'f ClientAuth<'_>,
    expect: Expect,
) -> Result<Vec<u8>, Failure> {
    let basic = client.apply(&mut form);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let mut req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    if let Some((id, secret)) = basic {
        req = req.header("authorization", crate::http::basic_auth(id, secret));
    }
    let req = req
        .body(body.into_bytes())
        .map_err(|e| Failure::Transport(Error::config(format!("invalid URL {url}: {e}"))))?;
    let resp = http.call(req).map_err(Failure::Transport)?;
    check(&resp, expect).map_err(Failure::Refused)?;
    Ok(resp.into_body())
}

/// Parse a success's JSON as `T`: what is wrong, never the values (they may be tokens).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
        .map_err(|e| Failure::Invalid(invalid_json(e.inner(), &e.path().to_string())))
}

fn invalid_json(e: &serde_json::Error, path: &str) -> String {
    let at = if path.is_empty() || path == "." { String::new() } else { format!(" at `{}`", printable(path)) };
    format!("{}{at}", crate::error::parse_error(e))
}

/// RFC 6749 §5.2 error body. `error` must be a string: `{"error": 5}` is no OAuth error.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_uri: Option<String>,
}

/// The one reading of a reply: `Ok` for a usable success (200, RFC 6749 §5.1; a JSON body when one is
/// expected), else its shape.
pub fn check(resp: &http::Response<Vec<u8>>, expect: Expect) -> Result<(), Refusal> {
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.body();
    let oauth_error = || {
        serde_json::from_slice::<ErrorBody>(body).ok().map(|e| Refusal::OAuth {
            status,
            code: ErrorCode::parse(&e.error),
            description: e.error_description,
            uri: e.error_uri,
        })
    };
    if status != 200 {
        return Err(oauth_error().unwrap_or(Refusal::Status { status, content_type, empty: body.is_empty() }));
    }
    // RFC 7231 §3.1.1.1: media types are case-insensitive and may carry parameters (`; charset=utf-8`).
    let json = content_type.as_deref().is_none_or(|ct| ct.trim().to_ascii_lowercase().starts_with("application/json"));
    if expect == Expect::Json && (body.is_empty() || !json) {
        return Err(Refusal::NotJson { content_type, empty: body.is_empty() });
    }
    // An error object sent with 200, against RFC 6749 §5.2 but as GitHub's device flow answers
    // `authorization_pending` and `slow_down`: the error it is, not a token response missing its fields.
    if expect == Expect::Json
        && let Some(refusal) = oauth_error()
    {
        return Err(refusal);
    }
    Ok(())
}

/// What we sent that a provider might echo back, to redact from its text (issue 21).
#[derive(Default)]
pub struct Sent<'a> {
    /// The client's id and secret (every wire form of the Basic credentials too).
    pub client: Option<(&'a str, &'a str)>,
    /// A refresh token, an assertion, a code, a device code, a subject token.
    pub secrets: Vec<&'a str>,
}

impl Sent<'_> {
    /// Provider text, printable and with what we sent redacted.
    pub fn clean(&self, text: &str) -> String {
        crate::http::redact_echo(text, self.client, &self.secrets)
    }
}

/// The one message for a failed request to `url`, before any hint of the caller's.
pub fn message(call: Call, url: &str, failure: &Failure, sent: &Sent<'_>) -> String {
    let what = call.what();
    let answered = |status: u16, ct: &Option<String>| match ct {
        Some(ct) if !ct.to_ascii_lowercase().contains("json") => format!("HTTP {status} ({})", printable(ct)),
        _ => format!("HTTP {status}"),
    };
    match failure {
        Failure::Transport(e) => e.to_string(),
        Failure::Refused(Refusal::OAuth { code, description, uri, .. }) => {
            let mut msg = format!("the provider refused the {what} request at {url}: {}", sent.clean(code.as_str()));
            if let Some(d) = description {
                msg.push_str(&format!(" ({})", sent.clean(d)));
            }
            if let Some(u) = uri {
                msg.push_str(&format!(" [{}]", sent.clean(u)));
            }
            msg
        }
        Failure::Refused(Refusal::Status { status, content_type, empty }) => format!(
            "the provider refused the {what} request at {url}: {} with {}",
            answered(*status, content_type),
            if *empty { "an empty body" } else { "a body that is not an OAuth error response" }
        ),
        Failure::Refused(Refusal::NotJson { content_type, empty }) => format!(
            "the {} {url} answered the {what} request with HTTP 200 and {}, not JSON: the provider may be \
             misconfigured, or something else (a proxy, a login page) answered in its place",
            call.endpoint(),
            // A body without a content type is taken for JSON; so only an empty one ends here without one.
            match content_type {
                Some(ct) if !empty => format!("a body of type {}", printable(ct)),
                _ => "an empty body".into(),
            }
        ),
        Failure::Invalid(why) => format!(
            "the {} {url} returned an invalid {what} response ({why}): the provider may be misconfigured",
            call.endpoint()
        ),
    }
}

/// The error a failure is: the transport's own, else the provider's answer worded by [`message`].
pub fn error(call: Call, url: &str, failure: Failure, sent: &Sent<'_>, hint: &str) -> Error {
    match failure {
        Failure::Transport(e) => e,
        // The failure stays underneath (its Display is only "refused: HTTP 400", never the provider's text).
        f => Error::Provider(Detail::with_source(format!("{}{hint}", message(call, url, &f, sent)), f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, content_type: Option<&str>, body: &str) -> http::Response<Vec<u8>> {
        let mut b = http::Response::builder().status(status);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(body.as_bytes().to_vec()).unwrap()
    }

    fn refused(status: u16, content_type: Option<&str>, body: &str) -> String {
        let r = check(&reply(status, content_type, body), Expect::Json).unwrap_err();
        let sent = Sent { client: Some(("svc", "S3CRET-VALUE")), secrets: vec!["RT-12345"] };
        message(Call::Refresh, "https://idp.example.com/token", &Failure::Refused(r), &sent)
    }

    #[test]
    fn a_refusal_stays_underneath_the_provider_error_and_its_debug_shows_no_provider_text() {
        let r = check(
            &reply(400, Some("application/json"), r#"{"error":"invalid_grant","error_description":"RT-12345"}"#),
            Expect::Json,
        )
        .unwrap_err();
        let sent = Sent { client: None, secrets: vec!["RT-12345"] };
        let e = error(Call::Refresh, "https://idp.example.com/token", Failure::Refused(r), &sent, "");
        assert!(matches!(e, Error::Provider(_)), "{e:?}");
        assert_eq!(std::error::Error::source(&e).map(|s| s.to_string()).as_deref(), Some("refused: HTTP 400"));
        assert!(!format!("{e:?}").contains("RT-12345"), "{e:?}");
    }

    // One case per shape of a provider's reply; the scripted provider of tests/bad_input.rs drives the same
    // shapes end to end.
    #[test]
    fn an_oauth_error_names_code_description_and_uri_with_our_secrets_redacted() {
        let body = r#"{"error":"invalid_request","error_description":"RT-12345 and S3CRET-VALUE\u001b[2J","error_uri":"https://idp.example.com/help"}"#;
        assert_eq!(
            refused(400, Some("application/json"), body),
            "the provider refused the refresh request at https://idp.example.com/token: invalid_request \
             (<redacted> and <redacted>[2J) [https://idp.example.com/help]"
        );
    }

    #[test]
    fn an_error_status_without_an_oauth_body_names_status_and_content_type() {
        let at = "the provider refused the refresh request at https://idp.example.com/token";
        assert_eq!(
            refused(500, Some("text/plain"), "oops"),
            format!("{at}: HTTP 500 (text/plain) with a body that is not an OAuth error response")
        );
        assert_eq!(refused(403, None, ""), format!("{at}: HTTP 403 with an empty body"));
        // JSON, but not an error object: `error` must be a string.
        assert_eq!(
            refused(400, Some("application/json"), r#"{"error":5}"#),
            format!("{at}: HTTP 400 with a body that is not an OAuth error response")
        );
        assert_eq!(
            refused(401, Some("application/json"), r#"{"message":"no"}"#),
            format!("{at}: HTTP 401 with a body that is not an OAuth error response")
        );
        assert_eq!(
            refused(502, Some("text/html"), "<html>Bad Gateway</html>"),
            format!("{at}: HTTP 502 (text/html) with a body that is not an OAuth error response")
        );
    }

    #[test]
    fn a_success_that_is_not_json_is_not_parsed() {
        let login_page = refused(200, Some("text/html; charset=utf-8"), "<html>Sign in</html>");
        assert_eq!(
            login_page,
            "the token endpoint https://idp.example.com/token answered the refresh request with HTTP 200 and a body \
             of type text/html; charset=utf-8, not JSON: the provider may be misconfigured, or something else (a \
             proxy, a login page) answered in its place"
        );
        for ct in [None, Some("application/json")] {
            assert!(refused(200, ct, "").contains("with HTTP 200 and an empty body, not JSON"), "{ct:?}");
        }
        assert!(check(&reply(200, Some("Application/JSON; charset=UTF-8"), "{}"), Expect::Json).is_ok());
        assert!(check(&reply(200, Some("text/html"), ""), Expect::Nothing).is_ok(), "RFC 7009 §2.2: body ignored");
    }

    #[test]
    fn an_invalid_success_names_the_field_never_its_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            access_token: String,
        }
        let f = parse::<T>(br#"{"access_token":["echo-me-4f1c"]}"#).unwrap_err();
        let m = message(Call::TokenExchange, "https://idp.example.com/token", &f, &Sent::default());
        assert!(m.starts_with("the token endpoint https://idp.example.com/token returned an invalid token exchange (RFC 8693) response (a field is missing or has the wrong type at line 1, column"), "{m}");
        assert!(m.contains("at `access_token`") && !m.contains("echo-me"), "{m}");
    }

    #[test]
    fn error_codes_are_decided_by_type() {
        for (s, c) in [
            ("invalid_grant", ErrorCode::InvalidGrant),
            ("slow_down", ErrorCode::SlowDown),
            ("x_y", ErrorCode::Other("x_y".into())),
        ] {
            assert_eq!(ErrorCode::parse(s), c);
            assert_eq!(c.as_str(), s);
        }
    }
}
