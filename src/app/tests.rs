//! In-process tests of the use-case branches (STYLE habit 13): a fake clock, captured streams, a fake browser
//! and keyring, and a scripted provider on 127.0.0.1 (the branches need provider answers no real provider gives
//! on cue: a refresh rejected right after a sibling rotated the token, `slow_down`). The black-box tests against
//! the real `oidc-provider` stay in tests/.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Deps;
use super::login::{LoginOpts, interactive_login};
use super::session::{Provider, Session};
use super::token::obtain;
use crate::browser::Browser;
use crate::clock::FakeClock;
use crate::config::{self, FlowChoice, ServerConfig, StoreMode};
use crate::env::Env;
use crate::error::Error;
use crate::keyring_store::MemorySecrets;
use crate::paths::Paths;
use crate::store::{self, Backend, Entry, Store, StoreSettings, TokenStore};
use crate::tokenset::{MinValid, Secret, TokenSet};

const NOW: i64 = 1_800_000_000;

#[derive(Clone, Default)]
struct Captured(Rc<RefCell<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow()).into_owned()
    }
}

struct NoBrowser;

impl Browser for NoBrowser {
    fn open(&self, _url: &str) -> Result<(), String> {
        Err("no browser in tests".into())
    }
    fn plausible(&self) -> bool {
        false
    }
}

/// One request the scripted provider saw: its path and form body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A provider on 127.0.0.1 that serves its discovery document and answers every other request with `script`.
struct ScriptedIdp {
    issuer: String,
    seen: Seen,
}

impl ScriptedIdp {
    fn start(script: impl Fn(&str, &str) -> (u16, String) + Send + 'static) -> ScriptedIdp {
        // tiny_http (the proxy's server) speaks the HTTP; the script only decides the answers.
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen: Seen = Arc::default();
        let (log, base) = (seen.clone(), issuer.clone());
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let path = req.url().to_string();
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let (status, reply) = if path == "/.well-known/openid-configuration" {
                    (200, discovery(&base))
                } else {
                    log.lock().unwrap().push((path.clone(), body.clone()));
                    script(&path, &body)
                };
                let json = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                let _ = req.respond(tiny_http::Response::from_string(reply).with_status_code(status).with_header(json));
            }
        });
        ScriptedIdp { issuer, seen }
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn discovery(base: &str) -> String {
    serde_json::json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "device_authorization_endpoint": format!("{base}/device"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
    })
    .to_string()
}

fn tokens(access: &str, refresh: Option<&str>, expires_in: i64) -> String {
    let mut v = serde_json::json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in});
    if let Some(r) = refresh {
        v["refresh_token"] = r.into();
    }
    v.to_string()
}

struct World {
    deps: Deps,
    err: Captured,
    _dir: tempfile::TempDir,
    data: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let err = Captured::default();
    let deps = Deps {
        env: Env::from_pairs([]),
        paths: Paths { user_config: None, cache_dir: Some(dir.path().join("cache")), data_dir: Some(data.clone()) },
        out: Box::new(Captured::default()),
        err: Box::new(err.clone()),
        clock: Box::new(FakeClock::at(NOW)),
        stdin_is_tty: false,
        stderr_is_tty: false,
        browser: Box::new(NoBrowser),
        verbose: true,
        color_err: false,
        color_out: false,
        warnings: Default::default(),
    };
    World { deps, err, _dir: dir, data }
}

/// A public client (or a machine one, with `secret`) of `issuer` that sends the access token.
fn server(issuer: &str, secret: Option<&str>) -> ServerConfig {
    let mut env = vec![
        ("MLFLOW_TRACKING_OIDC_ISSUER", issuer),
        ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "cli"),
        ("MLFLOW_TRACKING_OIDC_USE_ID_TOKEN", "false"),
    ];
    if let Some(s) = secret {
        env.push(("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", s));
    }
    config::resolve(&[], &Env::from_pairs(env), &config::Flags::default()).unwrap().server
}

fn store(data: &Path, mode: StoreMode, keyring_fails: bool) -> Store {
    let settings = StoreSettings {
        mode,
        mode_source: "test".into(),
        data_dir: data.to_path_buf(),
        bus_available: true,
        now: NOW,
        warnings: Default::default(),
    };
    Store::new(settings, Box::new(MemorySecrets::failing(keyring_fails)))
}

fn set(access: &str, refresh: Option<&str>, expires_at: i64) -> TokenSet {
    TokenSet {
        access_token: Some(Secret::new(access.into())),
        access_expires_at: Some(expires_at),
        id_token: None,
        refresh_token: refresh.map(|r| Secret::new(r.into())),
        scope: None,
        obtained_at: NOW - 100,
    }
}

fn save(store: &Store, c: &ServerConfig, tokens: TokenSet) {
    let key = store::server_key(c);
    let lock = store.lock(&key, Duration::from_secs(1)).unwrap();
    store.save(&key, &Entry::new(c, tokens), &lock).unwrap();
}

fn access(t: &TokenSet) -> &str {
    t.access_token.as_ref().unwrap().expose()
}

/// A file the scripted provider writes when it is called: (path, content).
type Planted = (PathBuf, Vec<u8>);

const MIN: MinValid = MinValid::Default(60);

#[test]
fn tokens_a_sibling_renewed_while_we_waited_for_the_lock_are_used_without_the_network() {
    let mut w = world();
    // Nothing listens here: any request would fail the test.
    let c = server("http://127.0.0.1:9", None);
    let mut sess = Session::new(c.clone(), store(&w.data, StoreMode::File, false));
    save(&sess.store, &c, set("fresh", Some("rt"), NOW + 3600));
    let got = obtain(&mut sess, MIN, false, 60, &mut w.deps).unwrap();
    assert_eq!(access(&got), "fresh");
    assert!(w.err.text().contains("another process renewed the tokens meanwhile"), "{}", w.err.text());
}

#[test]
fn a_refresh_persists_the_rotated_refresh_token() {
    let idp = ScriptedIdp::start(|_, body| match body.contains("refresh_token=rt1") {
        true => (200, tokens("at2", Some("rt2"), 300)),
        false => (400, r#"{"error":"invalid_grant"}"#.into()),
    });
    let mut w = world();
    let c = server(&idp.issuer, None);
    let mut sess = Session::new(c.clone(), store(&w.data, StoreMode::File, false));
    save(&sess.store, &c, set("old", Some("rt1"), NOW - 1));
    let key = store::server_key(&c);
    let got = obtain(&mut sess, MIN, false, 60, &mut w.deps).unwrap();
    assert_eq!(access(&got), "at2");
    assert_eq!(got.access_expires_at, Some(NOW + 300), "expiry from the fake clock");
    let stored = sess.store.load(&key).unwrap().unwrap();
    assert_eq!(sess.store.refresh_token(&key, &stored).unwrap().unwrap().expose(), "rt2");
    assert_eq!(idp.requests().len(), 1, "one request per refresh");
}

#[test]
fn a_refresh_token_rejected_because_a_sibling_just_rotated_it_yields_the_siblings_tokens() {
    let mut w = world();
    let data = w.data.clone();
    let shared: Arc<Mutex<Option<Planted>>> = Arc::default();
    let planted = shared.clone();
    let idp = ScriptedIdp::start(move |_, _| {
        // The sibling's write lands between our read and our refresh, as when its lock wait timed out.
        if let Some((path, bytes)) = planted.lock().unwrap().take() {
            std::fs::write(path, bytes).unwrap();
        }
        (400, r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#.into())
    });
    let c = server(&idp.issuer, None);
    let mut sess = Session::new(c.clone(), store(&data, StoreMode::File, false));
    save(&sess.store, &c, set("old", Some("rt1"), NOW - 1));
    let key = store::server_key(&c);
    let sibling = Entry::new(&c, set("sibling", Some("rt2"), NOW + 3600));
    *shared.lock().unwrap() =
        Some((data.join("tokens").join(format!("{key}.json")), serde_json::to_vec(&sibling).unwrap()));
    let got = obtain(&mut sess, MIN, false, 60, &mut w.deps).unwrap();
    assert_eq!(access(&got), "sibling");
}

#[test]
fn a_rejected_refresh_token_without_a_terminal_asks_for_a_login_and_keeps_the_entry() {
    let idp = ScriptedIdp::start(|_, _| (400, r#"{"error":"invalid_grant"}"#.into()));
    let mut w = world();
    let c = server(&idp.issuer, None);
    let mut sess = Session::new(c.clone(), store(&w.data, StoreMode::File, false));
    save(&sess.store, &c, set("old", Some("rt1"), NOW - 1));
    let key = store::server_key(&c);
    let e = obtain(&mut sess, MIN, false, 60, &mut w.deps).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("rejected the stored refresh token"), "{e}");
    assert!(sess.store.load(&key).unwrap().is_some(), "nothing deleted");
}

#[test]
fn a_machine_client_uses_client_credentials_with_basic_authentication() {
    let idp = ScriptedIdp::start(|_, body| match body.contains("grant_type=client_credentials") {
        true => (200, tokens("machine", None, 300)),
        false => (400, r#"{"error":"unsupported_grant_type"}"#.into()),
    });
    let mut w = world();
    let c = server(&idp.issuer, Some("s3cret"));
    assert!(c.is_machine());
    let mut sess = Session::new(c.clone(), store(&w.data, StoreMode::File, false));
    let got = obtain(&mut sess, MIN, false, 60, &mut w.deps).unwrap();
    assert_eq!(access(&got), "machine");
    let (_, body) = &idp.requests()[0];
    assert!(!body.contains("s3cret"), "the secret goes in the Authorization header, not the form: {body}");
}

#[test]
fn a_dead_keyring_in_auto_mode_falls_back_to_the_file_and_says_so() {
    let idp = ScriptedIdp::start(|_, _| (200, tokens("at2", Some("rt2"), 300)));
    let mut w = world();
    let c = server(&idp.issuer, None);
    let mut sess = Session::new(c.clone(), store(&w.data, StoreMode::Auto, true));
    save(&sess.store, &c, set("old", Some("rt1"), NOW - 1));
    let key = store::server_key(&c);
    obtain(&mut sess, MIN, false, 60, &mut w.deps).unwrap();
    assert_eq!(sess.store.backend().0, Backend::File);
    let stored = sess.store.load(&key).unwrap().unwrap();
    assert_eq!(stored.tokens.refresh_token.as_ref().map(|r| r.expose().as_str()), Some("rt2"));
    let warnings = sess.store.take_warnings().join("\n");
    assert!(warnings.contains("test keyring is unavailable"), "{warnings}");
}

#[test]
fn the_device_flow_slows_down_when_asked_and_gives_up_when_the_code_expires() {
    let idp = ScriptedIdp::start(|path, _| {
        match path {
        "/device" => (
            200,
            r#"{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://idp.test/device","expires_in":30,"interval":5}"#.into(),
        ),
        _ => (400, r#"{"error":"slow_down"}"#.into()),
    }
    });
    let mut w = world();
    let c = server(&idp.issuer, None);
    let provider = Provider::connect(&c, &mut w.deps).unwrap();
    let opts = LoginOpts { timeout: 600, flow: Some(FlowChoice::Device), no_browser: true };
    let started = std::time::Instant::now();
    let e = interactive_login(&c, &provider, opts, &mut w.deps).unwrap_err();
    assert!(matches!(e, Error::Interaction(_)), "{e}");
    assert!(e.to_string().contains("not approved in time"), "{e}");
    // Polls at 5 s, then 10 s later (RFC 8628 §3.5 adds 5 s per slow_down), then 15 s later: at 5, 15 and 30 s,
    // when the code expires. Without the slow-downs there would have been six.
    let polls = idp.requests().iter().filter(|(p, _)| p == "/token").count();
    assert_eq!(polls, 3, "{:?}", idp.requests());
    assert!(w.deps.clock.now() >= NOW + 30, "the fake clock moved, not the real one");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(w.err.text().contains("ABCD-EFGH"));
}
