//! A scripted OpenID provider for the cases a real one will not produce on demand: HTML instead of JSON, a
//! wrong issuer, a 2 MiB body, an answer trickled byte by byte, a connection held open without a word.
//!
//! It is deliberately tiny (std `TcpListener`, one thread per connection) and speaks just enough HTTP/1.1. By
//! default it behaves: discovery, and a token endpoint that redeems [`CODE`] for [`AT_LOGIN`] + [`RT`],
//! [`RT`] for [`AT_NEW`] (without rotating it), and client credentials [`CLIENT_ID_CONF`] / [`CLIENT_SECRET`]
//! for [`AT_CC`]. [`Fake::set`] replaces the answer of one path until [`Fake::reset`]. Every request is
//! recorded. Everything else about providers is tested against the real one in `tests/support`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The authorization code the fake redeems.
pub const CODE: &str = "catalogue-code-4b1d";
/// The refresh token the fake issues at login and accepts afterwards.
pub const RT: &str = "rt-CATALOGUE-51d0e2c7";
/// The access token issued at login.
pub const AT_LOGIN: &str = "at-LOGIN-CATALOGUE-0a9f";
/// The access token issued by a refresh.
pub const AT_NEW: &str = "at-NEW-CATALOGUE-77c2";
/// The access token issued by client credentials.
pub const AT_CC: &str = "at-CC-CATALOGUE-e13b";
pub const CLIENT_ID: &str = "catalogue-cli";
pub const CLIENT_ID_CONF: &str = "catalogue-service";
pub const CLIENT_SECRET: &str = "cs-CATALOGUE-7f3a9c55";

/// The device code of the device flow (RFC 8628): whoever holds it collects the tokens once the person approves.
pub const DEVICE_CODE: &str = "dc-CATALOGUE-3e8a1f";

/// Passed to [`Fake::id_token_nonce`]: an ID token without a `nonce` claim.
pub const NO_NONCE: &str = "<none>";

/// The signature part of every workload token ([`workload_token`]): a platform token sent as an assertion or
/// exchanged is a credential too.
pub const WORKLOAD_SIG: &str = "wlsigCATALOGUE9d4c";
/// The bearer token of a GitHub Actions token request (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
pub const GH_REQUEST_TOKEN: &str = "ghreq-CATALOGUE-51aa";

/// Every value that must never be printed, except a token on the stdout of the command that hands it out.
pub const SECRETS: &[&str] =
    &[RT, AT_LOGIN, AT_NEW, AT_CC, CLIENT_SECRET, CODE, DEVICE_CODE, WORKLOAD_SIG, GH_REQUEST_TOKEN];

/// A platform token (Kubernetes, GitLab, GitHub style) with these claims, "signed" with [`WORKLOAD_SIG`].
pub fn workload_token(payload: &serde_json::Value) -> String {
    let unsigned = jwt(payload);
    format!("{}.{WORKLOAD_SIG}", unsigned.rsplit_once('.').map(|(a, _)| a).unwrap_or_default())
}

/// How the fake answers one path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response: status, content type, body.
    Status(u16, &'static str, String),
    /// These bytes, verbatim, then close.
    Raw(Vec<u8>),
    /// Read the request, then close without a byte.
    Close,
    /// Read the request, then say nothing for this long.
    Hang(Duration),
    /// A 200 head announcing 4096 bytes of JSON, then one byte per interval (slow-loris).
    Trickle(Duration),
    /// A redirect with this status to this location.
    Redirect(u16, String),
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::Status(status, "application/json", body.into())
    }
    pub fn html(status: u16, body: impl Into<String>) -> Reply {
        Reply::Status(status, "text/html", body.into())
    }
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::Status(status, "text/plain", body.into())
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// The target without its query.
    pub path: String,
    pub target: String,
    /// The head, lower-cased header names as sent.
    pub head: String,
    pub body: String,
}

impl Req {
    /// A form field of the body, decoded.
    pub fn form(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.body.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    log: Vec<Req>,
    /// Extra claims for the ID token of an authorization code grant (`nonce` is taken from here).
    id_token_nonce: Option<String>,
    /// Claims merged into the ID token of an authorization code grant (a wrong `aud`, a foreign `iss`).
    id_claims: serde_json::Map<String, serde_json::Value>,
    /// When set, a refresh answers with an ID token too, with these claims merged in (another `sub`).
    refresh_id_claims: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A scripted provider on 127.0.0.1; its issuer is [`Fake::base`].
pub struct Fake {
    pub base: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Fake {
    pub fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State::default()));
        let (st, b) = (state.clone(), base.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, b) = (st.clone(), b.clone());
                thread::spawn(move || serve(stream, &st, &b));
            }
        });
        Fake { base, port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    /// Answer `path` with `reply` until [`Fake::reset`].
    pub fn set(&self, path: &str, reply: Reply) {
        self.state.lock().unwrap().routes.insert(path.to_string(), reply);
    }

    /// Back to the well-behaved provider.
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.routes.clear();
        s.id_token_nonce = None;
        s.id_claims.clear();
        s.refresh_id_claims = None;
    }

    /// Make the authorization code grant return an ID token whose `nonce` is this ([`NO_NONCE`]: no nonce claim).
    pub fn id_token_nonce(&self, nonce: &str) {
        self.state.lock().unwrap().id_token_nonce = Some(nonce.to_string());
    }

    /// Merge these claims into the login's ID token (see [`Fake::id_token_nonce`], which must be set too).
    pub fn id_token_claims(&self, claims: serde_json::Value) {
        self.state.lock().unwrap().id_claims = claims.as_object().cloned().unwrap_or_default();
    }

    /// Make refreshes return an ID token with these claims merged into the login's.
    pub fn refresh_id_token(&self, claims: serde_json::Value) {
        self.state.lock().unwrap().refresh_id_claims = Some(claims.as_object().cloned().unwrap_or_default());
    }

    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// The discovery document of a well-behaved provider at `base`.
    pub fn metadata(base: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/auth"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        })
    }

    /// This provider's discovery document with `f` applied.
    pub fn metadata_with(&self, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
        let mut m = Fake::metadata(&self.base);
        f(m.as_object_mut().unwrap());
        m.to_string()
    }
}

/// An unsigned JWT (`alg: none`) with this payload: enough for claim peeking, which never verifies.
pub fn jwt(payload: &serde_json::Value) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.c2ln", e.encode(br#"{"alg":"none","typ":"JWT"}"#), e.encode(payload.to_string()))
}

fn read_request(stream: &mut TcpStream) -> Option<Req> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    Some(Req { method, path, target, head, body: String::from_utf8_lossy(&body).into_owned() })
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
    let _ = stream.flush();
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, base: &str) {
    let Some(req) = read_request(&mut stream) else { return };
    let (route, ids) = {
        let mut s = state.lock().unwrap();
        s.log.push(req.clone());
        let ids = IdTokens {
            nonce: s.id_token_nonce.clone(),
            login: s.id_claims.clone(),
            refresh: s.refresh_id_claims.clone(),
        };
        (s.routes.get(&req.path).cloned(), ids)
    };
    match route {
        Some(Reply::Status(status, ct, body)) => respond(&mut stream, status, ct, &body),
        Some(Reply::Raw(bytes)) => {
            let _ = stream.write_all(&bytes);
        }
        Some(Reply::Close) => {}
        Some(Reply::Hang(d)) => thread::sleep(d),
        Some(Reply::Trickle(every)) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for _ in 0..4096 {
                thread::sleep(every);
                if stream.write_all(b" ").and_then(|_| stream.flush()).is_err() {
                    return;
                }
            }
        }
        Some(Reply::Redirect(status, location)) => {
            let head = format!(
                "HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
        }
        None => behave(&mut stream, &req, base, ids),
    }
}

/// What the ID tokens of this answer carry.
struct IdTokens {
    nonce: Option<String>,
    login: serde_json::Map<String, serde_json::Value>,
    refresh: Option<serde_json::Map<String, serde_json::Value>>,
}

fn id_claims(base: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    serde_json::json!({"iss": base, "sub": "catalogue-user", "aud": CLIENT_ID, "exp": now + 3600, "iat": now})
}

/// The well-behaved provider.
fn behave(stream: &mut TcpStream, req: &Req, base: &str, ids: IdTokens) {
    let nonce = ids.nonce;
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => {
            respond(stream, 200, "application/json", &Fake::metadata(base).to_string())
        }
        ("POST", "/token") => {
            let ok = |body: serde_json::Value| body.to_string();
            let grant = req.form("grant_type").unwrap_or_default();
            let (status, body) = match grant.as_str() {
                "authorization_code" if req.form("code").as_deref() == Some(CODE) => {
                    let mut tokens = serde_json::json!({
                        "access_token": AT_LOGIN, "token_type": "Bearer", "expires_in": 3600, "refresh_token": RT,
                        "scope": "openid offline_access",
                    });
                    if let Some(n) = nonce {
                        let mut claims = id_claims(base);
                        claims["nonce"] = n.clone().into();
                        if n == NO_NONCE {
                            claims.as_object_mut().unwrap().remove("nonce");
                        }
                        claims.as_object_mut().unwrap().extend(ids.login.clone());
                        tokens["id_token"] = jwt(&claims).into();
                    }
                    (200, ok(tokens))
                }
                "refresh_token" if req.form("refresh_token").as_deref() == Some(RT) => {
                    let mut tokens =
                        serde_json::json!({"access_token": AT_NEW, "token_type": "Bearer", "expires_in": 3600});
                    if let Some(extra) = ids.refresh {
                        let mut claims = id_claims(base);
                        claims.as_object_mut().unwrap().extend(extra);
                        tokens["id_token"] = jwt(&claims).into();
                    }
                    (200, ok(tokens))
                }
                "client_credentials" if client_authenticated(req) => {
                    (200, ok(serde_json::json!({"access_token": AT_CC, "token_type": "Bearer", "expires_in": 3600})))
                }
                "client_credentials" => (401, ok(serde_json::json!({"error": "invalid_client"}))),
                _ => (400, ok(serde_json::json!({"error": "invalid_grant"}))),
            };
            respond(stream, status, "application/json", &body)
        }
        _ => respond(stream, 404, "text/plain", "not found"),
    }
}

fn client_authenticated(req: &Req) -> bool {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID_CONF}:{CLIENT_SECRET}"));
    req.header("authorization").as_deref() == Some(&format!("Basic {basic}"))
        || (req.form("client_id").as_deref() == Some(CLIENT_ID_CONF)
            && req.form("client_secret").as_deref() == Some(CLIENT_SECRET))
}
