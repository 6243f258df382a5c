//! The one HTTP agent of the process (timeouts, no redirects, user agent, TLS roots, proxy). OAuth requests reach
//! it through `flow/request.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::{Detail, Error, Result};

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

/// The process's HTTP client. Trust anchors are loaded on the first https request only (reading the OS store is
/// most of a refresh's CPU time), and the cached `token` path never builds a client at all.
pub struct Http {
    settings: HttpSettings,
    extra: Vec<Certificate<'static>>,
    /// Built on first use: [plain, plain without proxy, https, https without proxy].
    agents: [std::cell::OnceCell<ureq::Agent>; 4],
    timeout: Duration,
}

impl Http {
    pub fn new(settings: &HttpSettings) -> Result<Http> {
        Ok(Http {
            settings: settings.clone(),
            extra: extra_anchors(settings)?,
            agents: Default::default(),
            timeout: settings.timeout,
        })
    }

    /// The agent for `uri`: the one with the trust anchors for https (the OS store is read only then), and
    /// one without a proxy for loopback hosts, which a proxy cannot reach (issue 12: a loopback issuer was sent
    /// through `HTTPS_PROXY`, as if `NO_PROXY` did not cover 127.0.0.1).
    fn agent_for(&self, uri: &http::Uri) -> Result<&ureq::Agent> {
        let https = uri.scheme_str() == Some("https");
        let loopback = uri.host().is_some_and(is_loopback);
        let cell = &self.agents[usize::from(https) * 2 + usize::from(loopback)];
        Ok(cell.get_or_init(|| {
            let tls = if https {
                let roots = trust_anchors(&self.extra);
                TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(roots))).build()
            } else {
                TlsConfig::default()
            };
            agent(&self.settings, tls, !loopback)
        }))
    }

    /// GET `url` and read its body.
    pub fn get(&self, url: &str) -> Result<Response> {
        let req = http::Request::get(url)
            .header("accept", "application/json")
            .body(Vec::new())
            .map_err(|e| Error::config(format!("invalid URL {url}: {e}")))?;
        self.send(req)
    }

    /// GET `url` with `Authorization: Bearer token`, accepting `accept`: `application/json` for a token service
    /// (GitHub Actions' OIDC endpoint); `*/*` to probe a tracking server as MLflow's clients do, since oauth2-proxy
    /// answers a request that accepts JSON with 401 where they get a 302 to its login page (issue 22).
    pub fn get_bearer(&self, url: &str, token: &str, accept: &str) -> Result<Response> {
        let req = http::Request::get(url)
            .header("accept", accept)
            .header("authorization", format!("Bearer {token}"))
            .body(Vec::new())
            .map_err(|e| Error::config(format!("invalid URL {url}: {e}")))?;
        self.send(req)
    }

    fn send(&self, req: http::Request<Vec<u8>>) -> Result<Response> {
        let (parts, body) = self.call(req)?.into_parts();
        Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    /// Send `req` and read its body (bounded): the one place a request leaves the process.
    pub(crate) fn call(&self, req: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>> {
        let url = req.uri().to_string();
        let agent = self.agent_for(req.uri())?;
        let fail = |e: ureq::Error| describe_error(&url, e, self.timeout);
        let (parts, body) = req.into_parts();
        let resp = if parts.method == http::Method::GET {
            agent.run(http::Request::from_parts(parts, ())).map_err(fail)?
        } else {
            agent.run(http::Request::from_parts(parts, body)).map_err(fail)?
        };
        let (parts, mut body) = resp.into_parts();
        let bytes = body.with_config().limit(MAX_BODY).read_to_vec().map_err(fail)?;
        Ok(http::Response::from_parts(parts, bytes))
    }
}

/// Loopback per RFC 8252 §8.3: 127.0.0.0/8, [::1] and `localhost`. The one rule for issuers, redirects,
/// endpoints and proxy bypass.
pub fn is_loopback_host<S: AsRef<str>>(host: &url::Host<S>) -> bool {
    match host {
        url::Host::Domain(d) => d.as_ref().eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// [`is_loopback_host`] for a host as `http::Uri` or `Url::host_str` gives it (IPv6 in brackets).
pub(crate) fn is_loopback(host: &str) -> bool {
    url::Host::parse(host).is_ok_and(|h| is_loopback_host(&h))
}

fn agent(settings: &HttpSettings, tls: TlsConfig, proxy: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        // No redirects on OAuth endpoints: following them opens SSRF and can leak a code or a secret.
        .max_redirects(0)
        .max_redirects_will_error(false)
        // 4xx bodies carry {"error": …}; they must reach the OAuth error parser, not become transport errors.
        .http_status_as_error(false)
        .timeout_connect(Some(settings.connect_timeout))
        .timeout_global(Some(settings.timeout))
        // A pooled connection older than this is not reused: servers close idle keep-alive connections after a
        // few seconds (Node's default is 5 s), and a POST on one they just closed fails with a broken pipe —
        // seen on device-flow polls after a 6 s slow_down.
        .max_idle_age(Duration::from_secs(2))
        .user_agent(concat!("mlflow-oidc/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .proxy(if proxy { ureq::Proxy::try_from_env() } else { None })
        .build()
        .into()
}

/// RFC 6749 §2.3.1: id and secret are each form-urlencoded, then joined and base64-encoded.
pub fn basic_auth(id: &str, secret: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

/// Every form `secret` takes on the wire, to redact from anything a provider echoes (issue 21): itself,
/// form-urlencoded and percent-encoded (a form body), and with `client_id` the Basic credentials — base64 of
/// `id:secret` with and without RFC 6749 §2.3.1's urlencoding, in the standard and URL-safe alphabets, padded
/// or not. Longest first, so that no form is left half-redacted by a shorter one.
pub fn wire_forms(client_id: Option<&str>, secret: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let form = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
    let percent = form.replace('+', "%20");
    let mut out = vec![secret.to_string(), form.clone(), percent];
    if let Some(id) = client_id {
        let id_form = url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
        for pair in [format!("{id}:{secret}"), format!("{id_form}:{form}")] {
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                out.push(engine.encode(&pair));
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Provider text made printable with every wire form of what we sent redacted, should the provider echo it:
/// `client`'s (id, secret) Basic and form forms, and each of `extra` (a refresh token, an assertion, a code).
pub fn redact_echo(text: &str, client: Option<(&str, &str)>, extra: &[&str]) -> String {
    let mut forms: Vec<String> = extra.iter().flat_map(|x| wire_forms(None, x)).collect();
    if let Some((id, secret)) = client {
        forms.extend(wire_forms(Some(id), secret));
    }
    // Longest first across all of them, so that no form is left half-redacted by a shorter one.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let secrets: Vec<&str> = forms.iter().map(String::as_str).collect();
    crate::error::printable(&crate::error::redact(text, &secrets))
}

fn describe_error(url: &str, e: ureq::Error, timeout: Duration) -> Error {
    let why = match &e {
        ureq::Error::Timeout(_) => format!("no complete answer within {}s (timeout)", timeout.as_secs()),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::BodyExceedsLimit(n) => format!("response body larger than {n} bytes"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        // getaddrinfo's failure, as std words it. The static Linux build's musl has no NSS (issue 23): a name only
        // systemd-resolved, mDNS or LDAP knows resolves for `getent hosts` and not here.
        ureq::Error::Io(io) if cfg!(target_env = "musl") && io.to_string().contains("lookup address") => format!(
            "cannot resolve the host name ({io}); this build looks names up in /etc/hosts and the DNS servers of \
             /etc/resolv.conf only, not through NSS (docs/install.md, \"Name resolution on Linux\")"
        ),
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
    // The transport error stays underneath for `source()`; its words are already in `why`.
    Error::Network(Detail::with_source(format!("cannot reach {url}: {why}"), e))
}

/// The OS trust store plus `SSL_CERT_FILE` plus the server's `ca-bundle`.
pub(crate) fn trust_anchors(extra: &[Certificate<'static>]) -> Vec<Certificate<'static>> {
    // A partially readable OS store still yields its readable certificates; errors are not fatal here.
    let native = rustls_native_certs::load_native_certs();
    let mut roots: Vec<Certificate<'static>> =
        native.certs.into_iter().map(|der| Certificate::from_der(der.as_ref()).to_owned()).collect();
    roots.extend(extra.iter().cloned());
    roots
}

/// The configured CA files (`SSL_CERT_FILE`, `ca-bundle`), read up front so a wrong path is reported at once.
fn extra_anchors(settings: &HttpSettings) -> Result<Vec<Certificate<'static>>> {
    let mut certs = Vec::new();
    if let Some(path) = &settings.ssl_cert_file {
        certs.extend(read_pem(path, "SSL_CERT_FILE")?);
    }
    if let Some(path) = &settings.ca_bundle {
        certs.extend(read_pem(path, "ca-bundle")?);
    }
    Ok(certs)
}

pub(crate) fn read_pem(path: &Path, what: &str) -> Result<Vec<Certificate<'static>>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::config_io(format!("cannot read {what} {}", path.display()), e))?;
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
    fn every_wire_form_of_a_secret_is_known() {
        let forms = wire_forms(Some("svc"), "S3C R3T-CLIENT=");
        for f in ["S3C R3T-CLIENT=", "S3C+R3T-CLIENT%3D", "S3C%20R3T-CLIENT%3D"] {
            assert!(forms.iter().any(|x| x == f), "{f}: {forms:?}");
        }
        // Basic credentials as sent (urlencoded first, RFC 6749 §2.3.1) and as a sloppier provider encodes them.
        let sent = basic_auth("svc", "S3C R3T-CLIENT=");
        assert!(forms.iter().any(|x| sent.ends_with(x.as_str())), "{sent}: {forms:?}");
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.encode("svc:S3C R3T-CLIENT=");
        assert!(forms.contains(&raw), "{raw}");
        assert!(forms.windows(2).all(|w| w[0].len() >= w[1].len()), "longest first");
    }

    #[test]
    fn loopback_hosts_in_every_spelling() {
        for host in ["127.0.0.1", "127.8.9.1", "[::1]", "localhost", "LocalHost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["example.com", "127.0.0.1.example.com", "[::2]", "10.0.0.1", ""] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        // RFC 6749 §2.3.1 example shape: "a b" becomes "a+b" before encoding.
        assert_eq!(basic_auth("a b", "p:w"), "Basic YStiOnAlM0F3");
    }
}
