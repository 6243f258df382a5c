//! The one HTTP agent of the process (timeouts, no redirects, user agent, TLS roots, proxy) and the adapter that
//! lets the `oauth2` crate use it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::{Error, Result};

/// Responses bigger than this are refused: a provider's JSON is a few kilobytes, and a hostile one must not
/// make us buffer gigabytes.
const MAX_BODY: u64 = 1 << 20;

/// How the agent is built; from the environment and the server's configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Per-server extra trust anchors (`ca-bundle`).
    pub ca_bundle: Option<PathBuf>,
    /// `SSL_CERT_FILE`: trusted in addition to the OS store.
    pub ssl_cert_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            ca_bundle: None,
            ssl_cert_file: None,
        }
    }
}

/// A response whose body has been read (bounded).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The process's HTTP client. Building it loads trust anchors, so the cached `token` path never builds one.
pub struct Http {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Http {
    pub fn new(settings: &HttpSettings) -> Result<Http> {
        let roots = trust_anchors(settings)?;
        let tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(roots))).build();
        let config = ureq::Agent::config_builder()
            // No redirects on OAuth endpoints: following them opens SSRF and can leak a code or a secret.
            .max_redirects(0)
            .max_redirects_will_error(false)
            // 4xx bodies carry {"error": …}; they must reach the OAuth error parser, not become transport errors.
            .http_status_as_error(false)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_global(Some(settings.timeout))
            .user_agent(concat!("mlflow-oidc/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .proxy(ureq::Proxy::try_from_env())
            .build();
        Ok(Http { agent: config.into(), timeout: settings.timeout })
    }

    /// GET `url` and read its body.
    pub fn get(&self, url: &str) -> Result<Response> {
        let req = http::Request::get(url)
            .header("accept", "application/json")
            .body(Vec::new())
            .map_err(|e| Error::config(format!("invalid URL {url}: {e}")))?;
        self.send(req)
    }

    /// POST a form to `url`, optionally with HTTP Basic client authentication.
    pub fn post_form(&self, url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Result<Response> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut req = http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        if let Some((id, secret)) = basic {
            req = req.header("authorization", basic_auth(id, secret));
        }
        let req = req.body(body.into_bytes()).map_err(|e| Error::config(format!("invalid URL {url}: {e}")))?;
        self.send(req)
    }

    fn send(&self, req: http::Request<Vec<u8>>) -> Result<Response> {
        let url = req.uri().to_string();
        let resp = self.call(req).map_err(|e| describe_error(&url, &e, self.timeout))?;
        let (parts, body) = resp.into_parts();
        Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    fn call(&self, req: http::Request<Vec<u8>>) -> std::result::Result<http::Response<Vec<u8>>, ureq::Error> {
        let (parts, body) = req.into_parts();
        let resp = if parts.method == http::Method::GET {
            self.agent.run(http::Request::from_parts(parts, ()))?
        } else {
            self.agent.run(http::Request::from_parts(parts, body))?
        };
        let (parts, mut body) = resp.into_parts();
        let bytes = body.with_config().limit(MAX_BODY).read_to_vec()?;
        Ok(http::Response::from_parts(parts, bytes))
    }
}

/// RFC 6749 §2.3.1: id and secret are each form-urlencoded, then joined and base64-encoded.
pub fn basic_auth(id: &str, secret: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

impl oauth2::SyncHttpClient for Http {
    type Error = HttpError;
    fn call(&self, req: oauth2::HttpRequest) -> std::result::Result<oauth2::HttpResponse, HttpError> {
        let url = req.uri().to_string();
        Http::call(self, req).map_err(|e| HttpError(describe_error(&url, &e, self.timeout).to_string()))
    }
}

/// A transport failure, already phrased for the user.
#[derive(Debug)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for HttpError {}

fn describe_error(url: &str, e: &ureq::Error, timeout: Duration) -> Error {
    let why = match e {
        ureq::Error::Timeout(_) => format!("no complete answer within {}s (timeout)", timeout.as_secs()),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::BodyExceedsLimit(n) => format!("response body larger than {n} bytes"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            format!("no answer within {}s (timeout)", timeout.as_secs())
        }
        // rustls reports certificate failures as InvalidData I/O errors.
        ureq::Error::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData && io.to_string().contains("certificate") =>
        {
            format!(
                "TLS failure: {io} (if the provider uses a private CA, set `ca-bundle` in the server block, \
                 MLFLOW_TRACKING_OIDC_CA_BUNDLE or SSL_CERT_FILE to its PEM file)"
            )
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => format!(
            "TLS failure: {e} (if the provider uses a private CA, set `ca-bundle` in the server block, \
             MLFLOW_TRACKING_OIDC_CA_BUNDLE or SSL_CERT_FILE to its PEM file)"
        ),
        other => other.to_string(),
    };
    Error::network(format!("cannot reach {url}: {why}"))
}

/// The OS trust store plus `SSL_CERT_FILE` plus the server's `ca-bundle`.
fn trust_anchors(settings: &HttpSettings) -> Result<Vec<Certificate<'static>>> {
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    // A partially readable OS store still yields its readable certificates; errors are not fatal here.
    let native = rustls_native_certs::load_native_certs();
    roots.extend(native.certs.into_iter().map(|der| Certificate::from_der(der.as_ref()).to_owned()));
    if let Some(path) = &settings.ssl_cert_file {
        roots.extend(read_pem(path, "SSL_CERT_FILE")?);
    }
    if let Some(path) = &settings.ca_bundle {
        roots.extend(read_pem(path, "ca-bundle")?);
    }
    Ok(roots)
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<Certificate<'static>>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(format!("cannot read {what} {}: {}", path.display(), crate::config::io_reason(&e)))
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(Error::config(format!("{what} {} is not valid PEM: {e}", path.display()))),
        }
    }
    if certs.is_empty() {
        return Err(Error::config(format!("{what} {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        // RFC 6749 §2.3.1 example shape: "a b" becomes "a+b" before encoding.
        assert_eq!(basic_auth("a b", "p:w"), "Basic YStiOnAlM0F3");
    }
}
