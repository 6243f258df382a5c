//! The proxy's HTTP client for the tracking server: the same trust as every other request (OS store,
//! `SSL_CERT_FILE`) plus MLflow's own `MLFLOW_TRACKING_SERVER_CERT_PATH` and `MLFLOW_TRACKING_CLIENT_CERT_PATH`,
//! a connection pool sized for many concurrent clients, and nothing that changes what passes through.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::typestate::AgentScope;

use crate::error::{Error, Result};

/// Idle keep-alive connections kept to the tracking server: as many as the clients we expect at once, so that
/// 16-64 concurrent clients do not open a connection per request.
const POOL: usize = 64;

/// How the agent is built.
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
}

/// The agent for `upstream` (the tracking server's URL); `pooled` keeps connections alive for reuse, else
/// each request has a new connection (for bodies that cannot be replayed, which a stale pooled connection
/// would lose).
pub fn agent(upstream: &url::Url, tls: &UpstreamTls, pooled: bool) -> Result<ureq::Agent> {
    let https = upstream.scheme() == "https";
    let loopback = upstream.host_str().is_some_and(crate::http::is_loopback);
    let mut extra = Vec::new();
    if let Some(p) = &tls.ssl_cert_file {
        extra.extend(crate::http::read_pem(p, "SSL_CERT_FILE")?);
    }
    if let Some(p) = &tls.server_cert {
        extra.extend(crate::http::read_pem(p, "MLFLOW_TRACKING_SERVER_CERT_PATH")?);
    }
    let client_cert = tls.client_cert.as_deref().map(read_client_cert).transpose()?;
    let tls_config = if https {
        TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(crate::http::trust_anchors(&extra))))
            .client_cert(client_cert)
            .build()
    } else {
        TlsConfig::default()
    };
    let pool = if pooled { POOL } else { 0 };
    Ok(config()
        .max_idle_connections(pool)
        .max_idle_connections_per_host(pool)
        .tls_config(tls_config)
        .timeout_connect(Some(tls.connect_timeout))
        // A loopback server cannot be reached through a proxy (issue 12); others honour HTTPS_PROXY & co.
        .proxy(if loopback { None } else { ureq::Proxy::try_from_env() })
        .build()
        .into())
}

fn config() -> ureq::config::ConfigBuilder<AgentScope> {
    ureq::Agent::config_builder()
        // The client sees the server's redirects, statuses and headers as they are.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent(ureq::config::AutoHeaderValue::None)
        .accept(ureq::config::AutoHeaderValue::None)
        .accept_encoding(ureq::config::AutoHeaderValue::None)
        // Any method may carry a body (the client chose it), and any method name passes.
        .allow_non_standard_methods(true)
        // Bodies of any size stream; only waiting for the response head is bounded.
        .timeout_global(None)
        .timeout_recv_response(Some(Duration::from_secs(600)))
}

fn read_client_cert(path: &Path) -> Result<ClientCert> {
    let what = "MLFLOW_TRACKING_CLIENT_CERT_PATH";
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(format!("cannot read {what} {}: {}", path.display(), crate::fsutil::io_reason(&e)))
    })?;
    let (mut chain, mut key) = (Vec::new(), None);
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => chain.push(c.to_owned()),
            Ok(PemItem::PrivateKey(k)) if key.is_none() => key = Some(k.to_owned()),
            Ok(_) => {}
            Err(e) => return Err(Error::config(format!("{what} {} is not valid PEM: {e}", path.display()))),
        }
    }
    match (chain.is_empty(), key) {
        (false, Some(key)) => Ok(ClientCert::new_with_certs(&chain, key)),
        _ => Err(Error::config(format!(
            "{what} {} must hold the client certificate and its private key (PEM), as MLflow takes it",
            path.display()
        ))),
    }
}
