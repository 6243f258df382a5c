//! Shared harness for integration tests: a real OpenID provider on 127.0.0.1.
//!
//! `Idp::start()` runs `node tests/idp/idp.mjs 0` (npm `oidc-provider` 9.x, see `tests/idp/`),
//! waits until it listens on an ephemeral port, and kills it on drop. The node process also
//! exits by itself when this test process dies (it watches its stdin pipe). Every HTTP request
//! it serves is appended to a JSON-lines log that tests read back with [`Idp::requests`].
//!
//! Needs `node` and `tests/idp/node_modules` (`./scripts/test` installs both; by hand:
//! `cd tests/idp && npm ci`). Depends on std, `tempfile` and `serde_json` only, and on nothing
//! of the crate under test. Use it from a test file with `mod support;`.
//!
//! Defaults of the IdP (change them with [`Idp::start_with`] and the `IDP_*` variables listed
//! at the top of `tests/idp/idp.mjs`):
//! - public native client [`PUBLIC_CLIENT_ID`] (PKCE S256 required; auth code, refresh, device
//!   code); its loopback redirect URIs are `http://127.0.0.1:<any port>/oauth2/callback` and
//!   `http://localhost:<any port>/oauth2/callback`;
//! - confidential client [`CONFIDENTIAL_CLIENT_ID`] / [`CONFIDENTIAL_CLIENT_SECRET`]
//!   (client_credentials; secret by Basic header or form body);
//! - access tokens: RS256 JWTs (`typ` `at+jwt`), `aud` [`AUDIENCE`], 60 s (`IDP_AT_TTL`),
//!   scope `mlflow`; refresh tokens rotate on every use and reuse revokes the grant;
//! - any login name / password works in the browser drivers (`IDP_LOGIN_USER`, default alice).
#![allow(dead_code)] // every test binary uses a different subset

pub mod cases;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const PUBLIC_CLIENT_ID: &str = "mlflow-cli";
pub const CONFIDENTIAL_CLIENT_ID: &str = "mlflow-service";
pub const CONFIDENTIAL_CLIENT_SECRET: &str = "mlflow-service-secret";
/// `aud` of access tokens (resource indicator `urn:mlflow`).
pub const AUDIENCE: &str = "mlflow";
pub const RESOURCE: &str = "urn:mlflow";
/// Path part of the registered loopback redirect URIs.
pub const CALLBACK_PATH: &str = "/oauth2/callback";
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const INSTALL_HINT: &str = "run ./scripts/test, or: cd tests/idp && npm ci";

/// Every `IDP_*` knob idp.mjs reads: removed from the inherited environment so that a
/// developer's shell cannot change what the tests see (set them with `start_with`).
const IDP_KNOBS: &[&str] = &[
    "IDP_AT_FORMAT",
    "IDP_AT_TTL",
    "IDP_AUDIENCE",
    "IDP_AUTO_CONSENT",
    "IDP_CONFIDENTIAL_CLIENT_ID",
    "IDP_CONFIDENTIAL_CLIENT_SECRET",
    "IDP_COOKIE_KEY",
    "IDP_DEVICE_CODE_TTL",
    "IDP_DEVICE_INTERVAL",
    "IDP_DEVICE_SLOW_DOWN",
    "IDP_EXTRA_CLIENTS",
    "IDP_GROUPS",
    "IDP_HOST",
    "IDP_ID_TOKEN_TTL",
    "IDP_ISSUER",
    "IDP_LOG",
    "IDP_PORT",
    "IDP_PUBLIC_CLIENT_ID",
    "IDP_REDIRECT_URIS",
    "IDP_RESOURCE",
    "IDP_RESOURCE_SCOPES",
    "IDP_RT_TTL",
    "IDP_TLS_CERT",
    "IDP_TLS_KEY",
    "IDP_WORKLOAD_AUDIENCE",
    "IDP_WORKLOAD_ISSUER",
];

/// Serialises the first IdP start of a test binary while the cached signing key is missing.
static JWKS_INIT: Mutex<()> = Mutex::new(());

/// `<repo>/tests/idp`: idp.mjs, the browser drivers and their `node_modules`.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("idp")
}

/// Absolute path of `browser-curl.sh`, a `$BROWSER`-compatible driver (bash + curl) that logs
/// in, consents and delivers the redirect to the loopback callback; prints `CALLBACK <url>`
/// (code flow) or `DONE` (device flow / logout) on stdout.
pub fn browser_curl() -> PathBuf {
    idp_dir().join("browser-curl.sh")
}

/// Absolute path of `browser-chromium.mjs`, the same as [`browser_curl`] with headless
/// Chromium through playwright-core (`CHROMIUM_PATH`, default `/usr/bin/chromium`).
pub fn browser_chromium() -> PathBuf {
    idp_dir().join("browser-chromium.mjs")
}

/// Panics with install instructions unless `node` and `tests/idp/node_modules` are present.
pub fn require_node_modules() {
    let marker = idp_dir().join("node_modules").join("oidc-provider").join("package.json");
    assert!(marker.is_file(), "tests/idp/node_modules is missing (needed by the test OpenID provider): {INSTALL_HINT}");
}

fn node() -> Command {
    require_node_modules();
    let mut cmd = Command::new("node");
    cmd.current_dir(idp_dir());
    cmd
}

fn spawn_error(what: &str, e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::NotFound {
        if what == "node" {
            panic!(
                "`node` not found on PATH (Node.js >= 20.18 runs the test OpenID provider): \
                 install Node.js, then {INSTALL_HINT}"
            );
        }
        panic!("`{what}` not found on PATH (needed by the integration tests): {INSTALL_HINT}");
    }
    panic!("cannot run `{what}`: {e}");
}

/// Where the IdP's RSA signing key is cached between runs (key generation costs ~0.5 s per
/// start): next to the test binaries, e.g. `target/debug/test-idp-jwks.json`.
fn jwks_cache() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test binary>
    Some(exe.parent()?.parent()?.join("test-idp-jwks.json"))
}

/// A running `tests/idp/idp.mjs`. Killed on drop.
pub struct Idp {
    /// `http://127.0.0.1:<port>` (no trailing slash); discovery is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    child: Child,
    request_log: PathBuf,
    output: PathBuf,
    dir: TempDir,
}

impl Idp {
    /// Starts an IdP with the default configuration.
    pub fn start() -> Idp {
        Idp::start_with(&[])
    }

    /// Starts an IdP with extra environment, e.g. `&[("IDP_AT_TTL", "5")]`. The variables are
    /// listed at the top of `tests/idp/idp.mjs`; useful ones: `IDP_AT_TTL`, `IDP_RT_TTL`,
    /// `IDP_AT_FORMAT=opaque`, `IDP_AUTO_CONSENT=1`, `IDP_DEVICE_INTERVAL`,
    /// `IDP_DEVICE_SLOW_DOWN=N`, `IDP_REDIRECT_URIS`, `IDP_LOG=1` (events on the output).
    pub fn start_with(env: &[(&str, &str)]) -> Idp {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("mlflow-oidc-idp-").tempdir().expect("create a temp dir for the IdP");
        let ready = dir.path().join("ready");
        let request_log = dir.path().join("requests.jsonl");
        let output = dir.path().join("idp.log");
        let jwks = jwks_cache().unwrap_or_else(|| dir.path().join("jwks.json"));

        // The first start of a binary creates the key file; hold the others until it exists.
        let init_guard = if jwks.is_file() { None } else { Some(JWKS_INIT.lock().unwrap_or_else(|e| e.into_inner())) };

        let out = fs::File::create(&output).expect("create the IdP output file");
        let err = out.try_clone().expect("clone the IdP output file handle");
        let mut cmd = node();
        // idp.mjs takes its port from argv before IDP_PORT: pass a test's IDP_PORT there (an issuer named by
        // IDP_ISSUER needs the port known up front), else 0 for any free port.
        let port = env.iter().find(|(k, _)| *k == "IDP_PORT").map_or("0", |(_, v)| *v);
        cmd.arg(idp_dir().join("idp.mjs")).arg(port);
        for knob in IDP_KNOBS {
            cmd.env_remove(knob);
        }
        cmd.env("IDP_EXIT_ON_STDIN_CLOSE", "1")
            .env("IDP_READY_FILE", &ready)
            .env("IDP_REQUEST_LOG", &request_log)
            .env("IDP_JWKS_FILE", &jwks)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| spawn_error("node", &e));

        let mut idp = Idp { issuer: String::new(), child, request_log, output, dir };
        let deadline = started + READY_TIMEOUT;
        loop {
            if let Ok(text) = fs::read_to_string(&ready) {
                // idp.mjs writes "<issuer>\n"; the newline tells the write is complete.
                if text.ends_with('\n') {
                    idp.issuer = text.trim().to_owned();
                    break;
                }
            }
            if let Ok(Some(status)) = idp.child.try_wait() {
                panic!("the test IdP exited before it was ready ({status}):\n{}", idp.output());
            }
            if Instant::now() > deadline {
                panic!("the test IdP was not ready within {READY_TIMEOUT:?}:\n{}", idp.output());
            }
            thread::sleep(Duration::from_millis(10));
        }
        drop(init_guard);
        idp
    }

    /// `{issuer}{path}`, e.g. `idp.url("/token")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    pub fn token_endpoint(&self) -> String {
        self.url("/token")
    }

    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    /// Process id of the node process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the IdP printed so far (stdout and stderr; warnings, `IDP_LOG=1` events).
    pub fn output(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Scratch directory that lives as long as this IdP (for test files, configs, ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every HTTP request served so far, oldest first, one JSON object each. A line is written
    /// before the response leaves, so a request whose response was received is always there.
    /// Fields (absent when not applicable):
    /// - `method`, `path` (without query), `status` (number), `route` (oidc-provider route
    ///   name: `token`, `authorization`, `discovery`, `device_authorization`, ...),
    /// - `params`: object of the query string of a GET, or of the form body of a POST
    ///   (e.g. GET /auth: `scope`, `nonce`, `state`, `code_challenge`, `resource`, `prompt`),
    /// - `grant_type`: from the form body (POST /token),
    /// - `client_id`: from the form body or the Basic authorization header,
    /// - `auth`: `"basic"`, `"post"` or `"none"`: how the client authenticated (POST to
    ///   /token, /token/introspection, /token/revocation, /device/auth),
    /// - `error`: the OAuth `error` code of an error response (`invalid_grant`, `slow_down`, ...).
    pub fn requests(&self) -> Vec<Value> {
        let text = match fs::read_to_string(&self.request_log) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("read {}: {e}", self.request_log.display()),
        };
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad request log line {line:?}: {e}")))
            .collect()
    }

    /// Requests to the token endpoint (`POST /token`), oldest first.
    pub fn token_requests(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["method"] == "POST" && r["path"] == "/token").collect()
    }

    /// How many token requests with this `grant_type` were made (successful or not), e.g.
    /// `"client_credentials"`, `"authorization_code"`, `"refresh_token"`, [`DEVICE_CODE_GRANT`].
    pub fn count_grants(&self, grant_type: &str) -> usize {
        self.token_requests().iter().filter(|r| r["grant_type"] == grant_type).count()
    }

    /// The `params` (query) of every authorization request (`GET /auth`), oldest first.
    pub fn auth_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] == "GET" && r["path"] == "/auth")
            .map(|r| r["params"].clone())
            .collect()
    }

    /// Closes the IdP's stdin, as the death of the test process would, and waits up to
    /// `timeout` for it to exit. Returns whether it exited.
    pub fn close_stdin_and_wait(&mut self, timeout: Duration) -> bool {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        // idp.mjs appends with O_APPEND, so truncating under it is safe.
        fs::write(&self.request_log, "").expect("truncate the IdP request log");
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
/// The JSON a stack supervisor (tests/mlflow/stack.py and its kin) prints on its `STACK_READY {…}` line, or
/// `None` when it printed none within `timeout` (the caller then shows the supervisor's log).
pub fn stack_ready(stdout: Option<std::process::ChildStdout>, timeout: Duration) -> Option<String> {
    use std::io::{BufRead, BufReader};
    let stdout = stdout?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix("STACK_READY ") {
                let _ = tx.send(json.to_owned());
                return;
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port on 127.0.0.1").port()
}

/// Verifies a JWT access token as a resource server would (signature against `{issuer}/jwks`,
/// `iss`, `aud`, `exp`, `typ: at+jwt`) with `tests/idp/verify-jwt.mjs` (jose), and returns its
/// header `alg`/`kid` merged with the payload. Panics with the verifier's stderr on failure.
pub fn verify_jwt(issuer: &str, token: &str, aud: &str) -> Value {
    verify_jwt_typ(issuer, token, aud, "at+jwt")
}

/// Verifies an ID token: like [`verify_jwt`] but without the `typ` check (ID tokens carry none).
pub fn verify_id_token(issuer: &str, token: &str, aud: &str) -> Value {
    verify_jwt_typ(issuer, token, aud, "-")
}

fn verify_jwt_typ(issuer: &str, token: &str, aud: &str, typ: &str) -> Value {
    let out = node()
        .arg(idp_dir().join("verify-jwt.mjs"))
        .args([issuer, token, aud, typ])
        .output()
        .unwrap_or_else(|e| spawn_error("node", &e));
    assert!(
        out.status.success(),
        "JWT verification failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verify-jwt.mjs prints JSON")
}

/// Decodes the payload of a JWT without verifying it.
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&base64url_decode(part)).expect("JWT payload is JSON")
}

fn base64url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => panic!("invalid base64url character {:?}", c as char),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    out
}

/// A fresh PKCE pair `(code_verifier, S256 code_challenge)` (computed by node's crypto).
pub fn pkce_pair() -> (String, String) {
    let out = node()
        .args([
            "-e",
            "const c=require('crypto');const v=c.randomBytes(32).toString('base64url');\
             console.log(v, c.createHash('sha256').update(v).digest('base64url'))",
        ])
        .output()
        .unwrap_or_else(|e| spawn_error("node", &e));
    assert!(out.status.success(), "node failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (verifier, challenge) = text.trim().split_once(' ').expect("two words");
    (verifier.to_owned(), challenge.to_owned())
}

/// Runs `curl -sS <args>` and returns (HTTP status, body). Panics if curl cannot run or fails
/// at the transport level (connection refused, timeout).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| spawn_error("curl", &e));
    assert!(out.status.success(), "curl {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("curl output is utf-8");
    let (body, code) = text.rsplit_once('\n').expect("curl -w adds the status line");
    (code.trim().parse().expect("HTTP status"), body.to_owned())
}

/// Minimal HTTP/1.0 GET over a std `TcpStream` (plain `http://host:port/path` URLs only);
/// returns (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("set a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("read {url}: {e}"));
    let text = String::from_utf8(raw).expect("response is utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("response has a header");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, body.to_owned())
}

/// Decodes `application/x-www-form-urlencoded` text (`+` and `%XX`).
pub fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Value of query parameter `name` in a URL or request target (decoded), if present.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

/// A one-shot loopback redirect target for tests that play the client themselves: listens on
/// an ephemeral 127.0.0.1 port and records the first request to [`CALLBACK_PATH`] (other
/// paths, e.g. a favicon, get 404 and are skipped).
pub struct CallbackServer {
    pub port: u16,
    /// `http://127.0.0.1:<port>/oauth2/callback` (accepted by the public client).
    pub redirect_uri: String,
    rx: mpsc::Receiver<String>,
}

impl CallbackServer {
    pub fn start() -> CallbackServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the callback listener");
        let port = listener.local_addr().expect("local address").port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = [0u8; 8192];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req);
                let target = req.split_whitespace().nth(1).unwrap_or_default().to_owned();
                if target.starts_with(CALLBACK_PATH) {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n",
                    );
                    let _ = tx.send(target);
                    return;
                }
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        CallbackServer { port, redirect_uri: format!("http://127.0.0.1:{port}{CALLBACK_PATH}"), rx }
    }

    /// The request target (`/oauth2/callback?code=...&state=...&iss=...`) of the callback, or
    /// None if none arrived within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }
}

/// Runs a browser driver (`browser_curl()` or `browser_chromium()`) on `url` in the
/// foreground, with extra environment (`IDP_LOGIN_USER`, `IDP_USER_CODE`, ...); returns its
/// stdout (`CALLBACK <url>` or `DONE`). Panics with its stderr if it fails.
pub fn run_browser(driver: &Path, url: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(driver)
        .arg(url)
        .current_dir(idp_dir())
        .env_remove("BROWSER_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| spawn_error(&driver.display().to_string(), &e));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}",
        driver.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The grant types the test provider registers with `IDP_WORKLOAD_ISSUER` (tests/idp/idp.mjs).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `aud` the test provider requires of workload tokens (`IDP_WORKLOAD_AUDIENCE`'s default).
pub const WORKLOAD_AUDIENCE: &str = "mlflow-idp";
/// The bearer token the workload issuer's `/token` wants, as `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
pub const WORKLOAD_REQUEST_TOKEN: &str = "gh-request-token";

/// A running `tests/idp/workload.mjs`: a stand-in for GitHub Actions' OIDC token service and the signer
/// of Kubernetes- and GitLab-style workload tokens. Killed on drop.
pub struct Workload {
    /// `http://127.0.0.1:<port>`; tokens at `{issuer}/token?audience=…`.
    pub issuer: String,
    child: Child,
    log: PathBuf,
    dir: TempDir,
}

impl Workload {
    pub fn start() -> Workload {
        let dir = tempfile::Builder::new().prefix("mlflow-oidc-wl-").tempdir().expect("temp dir");
        let ready = dir.path().join("ready");
        let log = dir.path().join("requests.jsonl");
        let out = fs::File::create(dir.path().join("wl.log")).expect("log file");
        let child = node()
            .arg(idp_dir().join("workload.mjs"))
            .env("WL_READY_FILE", &ready)
            .env("WL_REQUEST_LOG", &log)
            .env("WL_EXIT_ON_STDIN_CLOSE", "1")
            .env_remove("WL_REQUEST_TOKEN")
            .stdin(Stdio::piped())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| spawn_error("node", &e));
        let mut w = Workload { issuer: String::new(), child, log, dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(text) = fs::read_to_string(&ready)
                && text.ends_with('\n')
            {
                w.issuer = text.trim().to_owned();
                return w;
            }
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!(
                    "workload.mjs exited ({status}): {}",
                    fs::read_to_string(w.dir.path().join("wl.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "workload.mjs was not ready in time");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The GitHub-style token request URL (`ACTIONS_ID_TOKEN_REQUEST_URL`; it already has a query, as GitHub's).
    pub fn request_url(&self) -> String {
        format!("{}/token?api-version=2.0", self.issuer)
    }

    /// A freshly signed token; `query` adds `audience=…&sub=…&iss=…&ttl=…&exp_offset=…`.
    pub fn mint(&self, query: &str) -> String {
        let (status, body) = curl(&[
            "-H",
            &format!("Authorization: Bearer {WORKLOAD_REQUEST_TOKEN}"),
            &format!("{}&{query}", self.request_url()),
        ]);
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        v["value"].as_str().expect("value").to_owned()
    }

    /// The public JWKS (`{"keys":[…]}`), to register with a client that is federated with this issuer.
    pub fn jwks(&self) -> Value {
        let (status, body) = curl(&[&format!("{}/jwks", self.issuer)]);
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("JSON")
    }

    /// `/token` requests so far: `audience`, `authorized`.
    pub fn requests(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client key pair made at test time: the private key as PEM at `pem`, the public JWK (with `kid` = its
/// RFC 7638 thumbprint, as mlflow-oidc derives it) in `jwk`.
pub struct ClientKey {
    pub pem: PathBuf,
    pub jwk: Value,
}

/// `kind`: `rsa` (PKCS#1 PEM), `rsa-pkcs8`, `ec` (SEC 1 PEM) or `ec-pkcs8`; the PEM is written to `pem`.
pub fn client_key(kind: &str, pem: &Path) -> ClientKey {
    let script = r#"
const c = require('crypto');
const kind = process.argv[1];
const ec = kind.startsWith('ec');
const { privateKey, publicKey } = ec
  ? c.generateKeyPairSync('ec', { namedCurve: 'P-256' })
  : c.generateKeyPairSync('rsa', { modulusLength: 2048 });
const type = kind.endsWith('pkcs8') ? 'pkcs8' : (ec ? 'sec1' : 'pkcs1');
const jwk = publicKey.export({ format: 'jwk' });
const members = ec ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
jwk.kid = c.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
jwk.use = 'sig';
console.log(JSON.stringify({ pem: privateKey.export({ format: 'pem', type }), jwk }));
"#;
    let out = node().args(["-e", script, kind]).output().unwrap_or_else(|e| spawn_error("node", &e));
    assert!(out.status.success(), "key generation failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    fs::write(pem, v["pem"].as_str().expect("pem")).expect("write the key");
    ClientKey { pem: pem.to_owned(), jwk: v["jwk"].clone() }
}
