//! The proxy's HTTP client for the tracking server (hyper-util's pooled client on the proxy's runtime): the same
//! trust as every other request (OS store, `SSL_CERT_FILE`) plus MLflow's own `MLFLOW_TRACKING_SERVER_CERT_PATH`
//! and `MLFLOW_TRACKING_CLIENT_CERT_PATH`, `HTTPS_PROXY`/`NO_PROXY` for a server that is not on loopback, and
//! nothing that changes what passes through.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Idle keep-alive connections kept to the tracking server: as many as the clients we expect at once.
const POOL: usize = 64;
/// An idle pooled connection is dropped after this long: below the keep-alive timeout of common front ends
/// (Apache's `KeepAliveTimeout` is 5 s), so that a request is rarely written into a connection the server is
/// closing at that moment.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// The body type of every request to the tracking server.
pub type ReqBody = BoxBody<Bytes, super::idle::BoxError>;
/// The client the proxy forwards with.
pub type Client = HyperClient<hyper_rustls::HttpsConnector<Connect>, ReqBody>;

/// How the client is built.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    /// `SSL_CERT_FILE`.
    pub ssl_cert_file: Option<PathBuf>,
    /// `MLFLOW_TRACKING_SERVER_CERT_PATH`: CA file (PEM) for the tracking server, as MLflow's client takes it.
    pub server_cert: Option<PathBuf>,
    /// `MLFLOW_TRACKING_CLIENT_CERT_PATH`: a PEM file with the client certificate (chain) and its private key, as
    /// MLflow (`requests`' `cert=`) takes it.
    pub client_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` (either case), as read from the environment
    /// snapshot: (variable, value).
    pub proxy_env: Vec<(&'static str, String)>,
}

/// The proxy variables, upper-case first as curl and ureq read them.
pub const PROXY_VARIABLES: &[&str] =
    &["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"];

/// How a connection to the tracking server is opened: directly, or through the user's HTTP or SOCKS5 proxy
/// (decided once: there is one upstream origin).
#[derive(Clone)]
pub enum Connect {
    Direct(HttpConnector),
    Tunnel(Tunnel<HttpConnector>),
    Socks(SocksV5<HttpConnector>),
}

type Connecting = Pin<Box<dyn Future<Output = std::result::Result<TokioIo<tokio::net::TcpStream>, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Connect {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        match self {
            Connect::Direct(c) => c.poll_ready(cx).map_err(Into::into),
            Connect::Tunnel(c) => c.poll_ready(cx).map_err(Into::into),
            Connect::Socks(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, dst: http::Uri) -> Connecting {
        match self {
            Connect::Direct(c) => {
                let f = c.call(dst);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
            Connect::Tunnel(c) => {
                let f = c.call(dst);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
            Connect::Socks(c) => {
                let f = c.call(dst);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
        }
    }
}

/// The client for `upstream` (the tracking server's URL); `pooled` keeps connections alive for reuse, else
/// each request has a new connection (for the resend after a pooled connection the server had closed: under
/// load Apache closes several at once, and the pool would hand out another of them).
pub fn client(upstream: &url::Url, tls: &UpstreamTls, pooled: bool) -> Result<Client> {
    let loopback = upstream.host_str().is_some_and(crate::http::is_loopback);
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(tls.connect_timeout));
    http.set_nodelay(true);
    let target: http::Uri = upstream
        .as_str()
        .parse()
        .map_err(|e| Error::config(format!("the tracking URI {upstream} is not valid: {e}")))?;
    // A loopback server cannot be reached through a proxy (issue 12); others honour HTTPS_PROXY & co.
    let intercept = if loopback { None } else { matcher(&tls.proxy_env).intercept(&target) };
    let connect = match intercept {
        None => Connect::Direct(http),
        Some(i) => {
            let proxy = i.uri().clone();
            match proxy.scheme_str() {
                Some("socks5" | "socks5h") => {
                    let mut s = SocksV5::new(proxy.clone(), http).local_dns(proxy.scheme_str() == Some("socks5"));
                    if let Some((user, pass)) = i.raw_auth() {
                        s = s.with_auth(user.to_owned(), pass.to_owned());
                    }
                    Connect::Socks(s)
                }
                Some("http") => {
                    let mut t = Tunnel::new(proxy, http);
                    if let Some(auth) = i.basic_auth() {
                        t = t.with_auth(auth.clone());
                    }
                    Connect::Tunnel(t)
                }
                _ => {
                    return Err(Error::config(format!(
                        "the proxy variable for {} names {}: only http:// and socks5:// proxies are supported",
                        upstream.origin().ascii_serialization(),
                        crate::error::printable(&format!("{}://…", proxy.scheme_str().unwrap_or("")))
                    )));
                }
            }
        }
    };
    let tls_config = tls_config(tls, upstream.scheme() == "https")?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connect);
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(if pooled { POOL } else { 0 })
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // Bytes as the server sent them: the client sees its redirects, statuses and headers.
        .set_host(true)
        .build(https))
}

fn matcher(env: &[(&'static str, String)]) -> Matcher {
    let get = |upper: &str| {
        let lower = upper.to_ascii_lowercase();
        env.iter().find(|(k, _)| *k == upper).or_else(|| env.iter().find(|(k, _)| *k == lower)).map(|(_, v)| v.clone())
    };
    let mut b = Matcher::builder();
    if let Some(v) = get("ALL_PROXY") {
        b = b.all(v);
    }
    if let Some(v) = get("HTTP_PROXY") {
        b = b.http(v);
    }
    if let Some(v) = get("HTTPS_PROXY") {
        b = b.https(v);
    }
    if let Some(v) = get("NO_PROXY") {
        b = b.no(v);
    }
    b.build()
}

/// The TLS settings; with no `https` the connector never uses them, and the OS store is not read.
fn tls_config(tls: &UpstreamTls, https: bool) -> Result<rustls::ClientConfig> {
    let mut extra = Vec::new();
    if let Some(p) = &tls.ssl_cert_file {
        extra.extend(crate::http::read_pem(p, "SSL_CERT_FILE")?);
    }
    if let Some(p) = &tls.server_cert {
        extra.extend(crate::http::read_pem(p, "MLFLOW_TRACKING_SERVER_CERT_PATH")?);
    }
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let anchors = crate::http::trust_anchors(&extra);
        roots.add_parsable_certificates(anchors.iter().map(|c| CertificateDer::from(c.der().to_vec())));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("cannot set up TLS for the tracking server: {e}")))?
        .with_root_certificates(roots);
    let config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let (chain, key) = read_client_cert(path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::config(format!("MLFLOW_TRACKING_CLIENT_CERT_PATH {}: {e}", path.display())))?
        }
    };
    Ok(config)
}

fn read_client_cert(path: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let what = "MLFLOW_TRACKING_CLIENT_CERT_PATH";
    let bytes =
        std::fs::read(path).map_err(|e| Error::config_io(format!("cannot read {what} {}", path.display()), e))?;
    let invalid =
        |e: rustls::pki_types::pem::Error| Error::config(format!("{what} {} is not valid PEM: {e}", path.display()));
    let chain = CertificateDer::pem_slice_iter(&bytes).collect::<std::result::Result<Vec<_>, _>>().map_err(invalid)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).ok();
    match (chain.is_empty(), key) {
        (false, Some(key)) => Ok((chain, key)),
        _ => Err(Error::config(format!(
            "{what} {} must hold the client certificate and its private key (PEM), as MLflow takes it",
            path.display()
        ))),
    }
}
