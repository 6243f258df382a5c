//! TLS on the loopback listener, for `https://` redirect URIs (issue 16; the plugin this replaces accepted them):
//! served with the user's own certificate and key (`redirect-tls-cert`, `redirect-tls-key`, PEM, as kubelogin's
//! `--local-server-cert`/`--local-server-key`). There is deliberately no bundled certificate: its private key
//! would ship with every copy, so any local program could serve it and read the redirect.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The PEM files of an https loopback redirect.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A server configuration from the PEM files; errors name the file and what is wrong with it.
pub(super) fn server_config(files: &TlsFiles<'_>) -> Result<Arc<rustls::ServerConfig>> {
    let bad = |what: &str, path: &Path, why: String| {
        Error::config(format!("`redirect-tls-{what}` {}: {why}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.cert)
        .map_err(|e| bad("cert", files.cert, format!("cannot read it ({e})")))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad("cert", files.cert, format!("not a PEM certificate chain ({e})")))?;
    if certs.is_empty() {
        return Err(bad("cert", files.cert, "holds no PEM certificate".into()));
    }
    // The key decides who can serve this login's redirect: not one another user owns or may rewrite.
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(files.key)
        && let Some(why) = crate::fsutil::distrust(&meta)
    {
        return Err(bad("key", files.key, format!("refused: it is {why}; make it yours with mode 0600")));
    }
    let key = PrivateKeyDer::from_pem_file(files.key)
        .map_err(|e| bad("key", files.key, format!("no unencrypted PEM private key in it ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS for the loopback redirect: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::config(format!(
                "`redirect-tls-cert` {} and `redirect-tls-key` {} do not make a usable pair: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    Ok(Arc::new(config))
}

/// One browser connection, plain or TLS; the TCP socket stays reachable for timeouts and shutdown.
pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Conn {
    /// Wrap `stream`; the handshake happens on the first read, within the request head's deadline.
    pub(super) fn new(stream: TcpStream, tls: Option<&Arc<rustls::ServerConfig>>) -> Option<Conn> {
        match tls {
            None => Some(Conn::Plain(stream)),
            Some(config) => {
                let conn = rustls::ServerConnection::new(config.clone()).ok()?;
                Some(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, stream))))
            }
        }
    }

    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => {
                s.flush()?;
                // Send close_notify so the browser sees a clean end of the page.
                s.conn.send_close_notify();
                s.conn.complete_io(&mut s.sock).map(|_| ())
            }
        }
    }
}
