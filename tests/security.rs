//! Security properties, proven through the real binary against the real provider (`tests/support`) unless a
//! provider must misbehave on purpose (the nonce cases use `tests/fake`).
//!
//! Unit tests in `src/` cover the same ground from inside and are not repeated here:
//! `loopback::tests::only_the_exact_path_with_our_state_ends_the_wait`, `loopback::tests::constant_time_comparison`,
//! `loopback::tests::the_request_head_has_one_deadline_across_reads`,
//! `loopback::tests::a_flood_of_idle_connections_evicts_the_oldest_not_the_callback`,
//! `loopback::tests::the_host_header_must_name_the_listener`,
//! `tokenset::tests::secret_debug_is_redacted`, `store::tests::files_are_private_and_replaced_atomically`,
//! `store::tests::a_planted_symlink_is_replaced_not_followed`, and the issuer and redirect validation in
//! `config::tests`. SECURITY.md lists which property each test proves.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod drive;
mod fake;
mod sandbox;
mod support;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use drive::{run_bounded, send, start_login, status_of};
use sandbox::{Out, PUBLIC_CLIENT, Sandbox};
use support::{AUDIENCE, CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET, Idp};

const SERVER: &str = "http://127.0.0.1:5996";
const LIMIT: Duration = Duration::from_secs(60);

/// A project logged in to nothing yet, for the public client of `idp`, with the file store.
fn project(idp: &Idp, extra: &str) -> Sandbox {
    let mut s = Sandbox::with_server(SERVER, &idp.issuer, &format!("{PUBLIC_CLIENT}\n{extra}"));
    s.set("MLFLOW_OIDC_STORE", "file");
    s
}

/// The real provider and a project whose "browser" opens nothing: the test plays both the person and the attacker
/// at the loopback port.
fn silent_browser_login_setup() -> (Idp, Sandbox) {
    let idp = Idp::start();
    let mut s = project(&idp, "");
    s.set("BROWSER", "true");
    (idp, s)
}

fn mo(s: &Sandbox, args: &[&str]) -> Out {
    run_bounded(s.cmd("proj", args), LIMIT)
}

/// LISTEN sockets on `port` in /proc/net/tcp{,6}: their local addresses, as the kernel writes them.
fn listeners(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (f.get(1), f.get(3)) else { continue };
            let (addr, p) = local.rsplit_once(':').unwrap();
            if *state == "0A" && u16::from_str_radix(p, 16).unwrap() == port {
                out.push(addr.to_string());
            }
        }
    }
    out
}

/// Whether this machine has an IPv6 loopback to bind.
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// The address this machine would use to reach the outside, if it has a non-loopback one (no packet is sent).
fn external_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn the_redirect_listener_binds_only_loopback() {
    let (_idp, s) = silent_browser_login_setup();
    // `localhost` is 127.0.0.1 and [::1] (as /proc/net/tcp6 writes it) on one port: issue 12.
    const V6: &str = "00000000000000000000000001000000";
    let localhost: &[&str] = if ipv6_loopback() { &["0100007F", V6] } else { &["0100007F"] };
    for (redirect, want) in
        [("http://127.0.0.1:0/oauth2/callback", &["0100007F"][..]), ("http://localhost:0/oauth2/callback", localhost)]
    {
        let login = drive::start_login_with(&s, "proj", "20", &[("MLFLOW_TRACKING_OIDC_REDIRECT_URI", redirect)]);
        let bound = listeners(login.port);
        assert_eq!(bound, want, "{redirect}: the listener must be on loopback only, not a wildcard: {bound:?}");
        if let Some(ip) = external_address() {
            let reach = TcpStream::connect_timeout(&(ip, login.port).into(), Duration::from_secs(2));
            assert!(reach.is_err(), "{redirect}: the listener answered on {ip}, a non-loopback address");
        }
        // A real login still works through it.
        let printed = support::run_browser(&support::browser_curl(), &login.url, &[]);
        assert!(printed.contains("CALLBACK"), "{printed}");
        let out = login.finish(LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    // A wildcard or public redirect address is refused before anything is bound (more in tests/bad_input.rs).
    for redirect in ["http://0.0.0.0:0/oauth2/callback", "http://[::]:0/oauth2/callback", "http://192.0.2.1:0/cb"] {
        let mut cmd = s.cmd("proj", &["login"]);
        cmd.env("MLFLOW_TRACKING_OIDC_REDIRECT_URI", redirect);
        let out = run_bounded(cmd, LIMIT);
        assert_eq!(out.code, 2, "{redirect}: {}", out.stderr);
        assert!(out.stderr.contains("loopback"), "{}", out.stderr);
    }
}

#[test]
fn only_the_exact_redirect_path_ends_a_login() {
    let (idp, s) = silent_browser_login_setup();
    let login = start_login(&s, "proj", "60");
    for target in [
        "/oauth2/callback/",
        "/oauth2/callbackx",
        "/OAUTH2/callback",
        "/oauth2/Callback",
        "//oauth2/callback",
        "/oauth2/./callback",
        "/oauth2/callback/../callback",
        "/oauth2/%63allback",
        "/oauth2/callback;jsessionid=1",
        "/oauth2/callback%3F",
        "/",
        "*",
    ] {
        let r = send(login.port, format!("GET {target}?code=forged&state={} HTTP/1.1\r\n\r\n", login.state).as_bytes());
        assert_eq!(status_of(&r), 404, "{target} must not be served: {r}");
    }
    let printed = support::run_browser(&support::browser_curl(), &login.url, &[]);
    assert!(printed.contains("CALLBACK"), "{printed}");
    let out = login.finish(LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(idp.count_grants("authorization_code"), 1, "only the real code was redeemed");
}

#[test]
fn state_is_exact_fresh_and_single_use() {
    let (idp, s) = silent_browser_login_setup();

    // 1. Near misses of the state are refused, then the real login completes.
    let login = start_login(&s, "proj", "60");
    let first_url = login.url.clone();
    let st = login.state.clone();
    assert!(st.len() >= 22, "state carries at least 128 bits: {st}");
    let mut flipped = st.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let first = {
        let mut f = st.clone().into_bytes();
        f[0] = if f[0] == b'A' { b'B' } else { b'A' };
        String::from_utf8(f).unwrap()
    };
    for near in [
        String::from_utf8(flipped).unwrap(),
        first,
        st[..st.len() - 1].to_string(),
        format!("{st}x"),
        st.to_lowercase(),
        String::new(),
    ] {
        if near == st {
            continue;
        }
        let r = login.get(&format!("code=forged&state={near}"));
        assert_eq!(status_of(&r), 400, "state {near:?}: {r}");
        assert!(r.contains("state mismatch"), "{r}");
    }
    let printed = support::run_browser(&support::browser_curl(), &login.url, &[]);
    let callback = printed.trim().strip_prefix("CALLBACK ").unwrap().to_string();
    let (old_port, old_path_query) = {
        let u = url::Url::parse(&callback).unwrap();
        (u.port().unwrap(), format!("{}?{}", u.path(), u.query().unwrap()))
    };
    let out = login.finish(LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // 2. The listener is gone once the login is over: nothing answers on its port.
    assert!(TcpStream::connect(("127.0.0.1", old_port)).is_err(), "the loopback listener outlived its login");

    // 3. Replaying the old callback into a new login is refused: each login has its own state.
    let second = start_login(&s, "proj", "5");
    let second_url = second.url.clone();
    assert_ne!(second.state, st, "a fresh state per login");
    let r = second.get(old_path_query.split_once('?').unwrap().1);
    assert_eq!(status_of(&r), 400, "{r}");
    assert!(r.contains("state mismatch"), "{r}");
    let out = second.finish(LIMIT);
    assert_eq!(out.code, 1, "the replay did not complete the login: {}", out.stderr);
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    assert_eq!(idp.count_grants("authorization_code"), 1, "the replayed code was never redeemed again");

    // 4. The nonce is fresh per login too, and as long.
    let nonces: Vec<String> =
        [&first_url, &second_url].iter().map(|u| support::query_param(u, "nonce").unwrap()).collect();
    assert_ne!(nonces[0], nonces[1]);
    assert!(nonces.iter().all(|n| n.len() >= 22), "{nonces:?}");
}

/// The scripted provider, a project using it in ID-token mode (so a nonce is sent and checked).
fn fake_project(f: &fake::Fake) -> Sandbox {
    Sandbox::for_fake(SERVER, &f.base, fake::CLIENT_ID, "http://127.0.0.1:0/oauth2/callback")
}

#[test]
fn the_id_token_nonce_must_match_the_login() {
    let f = fake::Fake::start();
    let s = fake_project(&f);
    for (nonce, ok) in [(Some("wrong-nonce"), false), (Some(fake::NO_NONCE), false), (None, true)] {
        let login = start_login(&s, "proj", "30");
        let sent = support::query_param(&login.url, "nonce").expect("a nonce is sent with scope openid");
        assert!(sent.len() >= 22, "{sent}");
        f.id_token_nonce(nonce.unwrap_or(&sent));
        let r = login.get(&format!("code={}&state={}", fake::CODE, login.state));
        // The browser is answered after the ID token was checked, so it hears about a refused nonce too.
        assert_eq!(status_of(&r), if ok { 200 } else { 400 }, "{r}");
        assert_eq!(r.contains("You are logged in"), ok, "{r}");
        let out = login.finish(LIMIT);
        if ok {
            assert_eq!(out.code, 0, "{}", out.stderr);
        } else {
            assert!(r.contains("nonce") && r.contains("Look at the terminal"), "{r}");
            assert_eq!(out.code, 1, "nonce {nonce:?} accepted: {}", out.stderr);
            assert!(out.stderr.contains("nonce"), "{}", out.stderr);
            assert!(
                !s.tokens_dir().exists()
                    || std::fs::read_dir(s.tokens_dir())
                        .unwrap()
                        .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".json") }),
                "nothing is stored from a refused login"
            );
        }
    }
}

#[test]
fn the_pkce_verifier_is_random_well_formed_and_matches_its_challenge() {
    use base64::Engine;
    use sha2::Digest;
    let idp = Idp::start();
    let s = project(&idp, "");
    for _ in 0..3 {
        assert_eq!(mo(&s, &["login"]).code, 0);
    }
    let challenges: Vec<String> =
        idp.auth_requests().iter().map(|a| a["code_challenge"].as_str().unwrap().to_string()).collect();
    let verifiers: Vec<String> = idp
        .token_requests()
        .iter()
        .filter(|r| r["grant_type"] == "authorization_code")
        .map(|r| r["params"]["code_verifier"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(verifiers.len(), 3);
    for (v, c) in verifiers.iter().zip(&challenges) {
        // RFC 7636 §4.1: 43–128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
        assert!((43..=128).contains(&v.len()), "{v}");
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)), "{v}");
        // S256: the challenge is base64url(sha256(verifier)).
        let expect = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v.as_bytes()));
        assert_eq!(&expect, c);
        // 32 random bytes look random: many distinct characters, no long runs.
        let distinct: std::collections::BTreeSet<u8> = v.bytes().collect();
        assert!(distinct.len() >= 20, "a verifier with {} distinct characters is not random: {v}", distinct.len());
    }
    let unique: std::collections::BTreeSet<&String> = verifiers.iter().collect();
    assert_eq!(unique.len(), 3, "a fresh verifier per login");
    for a in idp.auth_requests() {
        assert_eq!(a["code_challenge_method"], "S256", "never the plain method");
    }
}

#[test]
fn http_issuers_are_refused_unless_loopback() {
    let s = Sandbox::new();
    let refused = [
        "http://idp.example.com",
        "http://idp.example.com:443/realms/ml",
        "http://10.0.0.1",
        "http://192.168.1.1:8080",
        "http://0.0.0.0:8080",
        "http://[::]:8080",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "ws://127.0.0.1",
        "file:///etc/passwd",
    ];
    let accepted = [
        "http://127.0.0.1:8080",
        "http://127.3.2.1",
        "http://localhost:8080/realms/dev",
        "http://LOCALHOST",
        "http://[::1]:8080",
        "https://idp.example.com",
        "https://10.0.0.1/realms/ml",
    ];
    for (issuer, ok) in refused.iter().map(|i| (i, false)).chain(accepted.iter().map(|i| (i, true))) {
        let out = s.run(
            "proj",
            &["status", "--json"],
            &[("MLFLOW_TRACKING_OIDC_ISSUER", issuer), ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c")],
        );
        if ok {
            assert_eq!(out.code, 0, "{issuer} must be accepted: {}", out.stderr);
        } else {
            assert_eq!(out.code, 2, "{issuer} must be refused: {}", out.stderr);
            assert!(
                out.stderr.contains("MLFLOW_TRACKING_OIDC_ISSUER") && out.stderr.contains(issuer),
                "{}",
                out.stderr
            );
            if issuer.starts_with("http://") {
                assert!(out.stderr.contains("must use https://"), "{}", out.stderr);
            }
        }
    }
}

#[test]
fn tokens_never_appear_in_a_command_line() {
    let idp = Idp::start();
    let s = project(&idp, "");
    assert_eq!(mo(&s, &["login"]).code, 0);
    let token = mo(&s, &["token"]).ok().trim().to_string();
    let mut child = s.cmd("proj", &["exec", "--no-login", "--", "sleep", "3"]).spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    // Watch the process from start to `sleep`: its command line never holds the token, its environment does.
    let environ = loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!text.contains(&token), "the token is in argv: {text}");
        if !seen.contains(&text) {
            seen.push(text.clone());
        }
        if text.trim() == "sleep 3" {
            break std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        }
        assert!(Instant::now() < deadline, "exec never became `sleep 3`: {seen:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.split('\0').any(|kv| kv == format!("MLFLOW_TRACKING_TOKEN={token}")),
        "the token is handed over in the environment"
    );
    assert!(environ.split('\0').any(|kv| kv == format!("MLFLOW_TRACKING_URI={SERVER}")));
    assert!(child.wait().unwrap().success());
}

fn assert_private_tree(root: &Path) {
    for entry in walk(root) {
        let m = std::fs::symlink_metadata(&entry).unwrap();
        let mode = m.permissions().mode() & 0o777;
        if m.is_dir() {
            assert_eq!(mode, 0o700, "{} is a directory others can enter", entry.display());
        } else {
            assert_eq!(mode, 0o600, "{} is a file others can read", entry.display());
        }
    }
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn files_are_0600_in_0700_directories_whatever_the_umask() {
    let idp = Idp::start();
    let mut s = project(&idp, "use-id-token = false");
    // auto with no session bus: the fallback also writes the remembered store choice.
    s.set("MLFLOW_OIDC_STORE", "auto");
    let umask0 = |args: &[&str]| {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(env!("CARGO_BIN_EXE_mlflow-oidc")).args(args);
        let template = s.cmd("proj", &[]);
        c.current_dir(template.get_current_dir().unwrap()).env_clear();
        for (k, v) in template.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        run_bounded(c, LIMIT)
    };
    let out = umask0(&["login"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = umask0(&["token", "--min-valid", "2m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(s.data_dir().join("store-choice.json").is_file());
    assert!(s.cache_dir().join("discovery").is_dir());
    assert_private_tree(&s.data_dir());
    assert_private_tree(&s.cache_dir());
}

#[test]
fn verbose_output_never_shows_a_token_or_a_secret() {
    let idp = Idp::start();
    let s = project(&idp, "use-id-token = false");
    let mut outs: Vec<(String, Out)> = Vec::new();
    let mut run = |label: &str, args: &[&str]| {
        let out = mo(&s, args);
        assert_eq!(out.code, 0, "{label}: {}", out.stderr);
        outs.push((label.to_string(), out));
    };
    run("login", &["-v", "login"]);
    let first = s.stored_entry();
    run("token (cached)", &["-v", "token"]);
    run("token (refresh)", &["-v", "token", "--min-valid", "2m"]);
    let second = s.stored_entry();
    run("token --format json", &["-v", "token", "--format", "json"]);
    run("exec", &["-v", "exec", "--", "true"]);
    run("status", &["-v", "status"]);
    run("logout", &["-v", "logout"]);

    // A confidential client in the environment, client credentials.
    let conf = Sandbox::new();
    let env = [
        ("MLFLOW_TRACKING_URI", SERVER),
        ("MLFLOW_TRACKING_OIDC_ISSUER", idp.issuer.as_str()),
        ("MLFLOW_TRACKING_OIDC_CLIENT_ID", CONFIDENTIAL_CLIENT_ID),
        ("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", CONFIDENTIAL_CLIENT_SECRET),
        ("MLFLOW_TRACKING_OIDC_AUDIENCE", AUDIENCE),
        ("MLFLOW_OIDC_STORE", "file"),
    ];
    for args in [&["-v", "login"][..], &["-v", "token"], &["-v", "status"], &["-v", "logout"]] {
        let out = conf.run("home", args, &env);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        outs.push((format!("confidential {args:?}"), out));
    }

    let mut secrets: Vec<String> = vec![CONFIDENTIAL_CLIENT_SECRET.to_string()];
    for e in [&first, &second] {
        for k in ["access_token", "refresh_token", "id_token"] {
            if let Some(t) = e["tokens"][k].as_str() {
                secrets.push(t.to_string());
            }
        }
    }
    for r in idp.token_requests() {
        for k in ["code", "code_verifier", "refresh_token"] {
            if let Some(v) = r["params"][k].as_str() {
                secrets.push(v.to_string());
            }
        }
    }
    assert!(secrets.len() >= 8, "{secrets:?}");
    let mut verbose_lines = 0;
    for (label, out) in &outs {
        verbose_lines += out.stderr.lines().filter(|l| l.starts_with("mlflow-oidc: ")).count();
        for secret in &secrets {
            assert!(!out.stderr.contains(secret.as_str()), "{label}: a secret on stderr:\n{}", out.stderr);
            if label.starts_with("token") {
                continue; // checked below: only the token itself
            }
            assert!(!out.stdout.contains(secret.as_str()), "{label}: a secret on stdout:\n{}", out.stdout);
        }
    }
    assert!(verbose_lines >= 3, "-v explained something: {outs:#?}");
    let tokens: Vec<&str> =
        outs.iter().filter(|(l, _)| l.starts_with("token")).map(|(_, o)| o.stdout.as_str()).collect();
    assert_eq!(tokens[0], format!("{}\n", first["tokens"]["access_token"].as_str().unwrap()));
    assert_eq!(tokens[1], format!("{}\n", second["tokens"]["access_token"].as_str().unwrap()));
}

/// Autoref specialisation (dtolnay): `(&Probe(x)).kind()` says whether `x: Display`, at run time, on stable.
struct Probe<T>(T);
trait ViaDisplay {
    fn kind(&self) -> &'static str;
}
impl<T: std::fmt::Display> ViaDisplay for Probe<T> {
    fn kind(&self) -> &'static str {
        "Display"
    }
}
trait ViaAnything {
    fn kind(&self) -> &'static str;
}
impl<T> ViaAnything for &Probe<T> {
    fn kind(&self) -> &'static str {
        "not Display"
    }
}

#[test]
#[allow(clippy::needless_borrow)] // the borrow is the probe: it makes the by-value impl win when it applies
fn the_secret_type_has_no_display_and_a_redacted_debug() {
    use mlflow_oidc::tokenset::{Secret, TokenSet};
    let secret = Secret::new("hunter2-secret".to_string());
    assert_eq!((&Probe("x".to_string())).kind(), "Display", "the probe itself works");
    assert_eq!((&Probe(secret.clone())).kind(), "not Display", "Secret must not implement Display");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    assert_eq!(format!("{secret:#?}"), "Secret(<redacted>)");

    // Nor through the types that hold one.
    let set = TokenSet {
        access_token: Some(Secret::new("at-hunter2".into())),
        refresh_token: Some(Secret::new("rt-hunter2".into())),
        id_token: Some(Secret::new("id-hunter2".into())),
        ..TokenSet::default()
    };
    let debug = format!("{set:?} {set:#?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let entry = mlflow_oidc::store::Entry {
        version: 1,
        server: None,
        issuer: "https://i".into(),
        client_id: "c".into(),
        tokens: set,
        refresh_token_in: None,
    };
    assert!(!format!("{entry:?}").contains("hunter2"));

    // A resolved configuration with a client secret (what -v or an error path might format).
    let env = mlflow_oidc::env::Env::from_pairs([
        ("MLFLOW_TRACKING_OIDC_ISSUER", "https://idp.example.com"),
        ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c"),
        ("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", "cs-hunter2"),
    ]);
    let resolved = mlflow_oidc::config::resolve(&[], &env, &mlflow_oidc::config::Flags::default()).unwrap();
    let debug = format!("{resolved:?}");
    assert!(!debug.contains("hunter2") && debug.contains("client_secret"), "{debug}");

    // Serialisation is the one deliberate way out (the token file); it is the plain value, not a wrapper.
    assert_eq!(serde_json::to_string(&secret).unwrap(), "\"hunter2-secret\"");
}

// ---------------------------------------------------------------------------------------------------------------
// The loopback listener's trust boundaries (issue 12).

/// `GET <path>?<query>` to `addr:port` with this `Host`, and the whole answer.
fn get_on(addr: std::net::IpAddr, port: u16, path_query: &str, host: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect((addr, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET {path_query} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The browser's callback from a real login in `browser-curl`, which stops short of delivering it.
fn undelivered_callback(login: &drive::PendingLogin) -> String {
    let printed = support::run_browser(&support::browser_curl(), &login.url, &[("IDP_NO_CALLBACK", "1")]);
    let url = url::Url::parse(printed.trim().strip_prefix("CALLBACK ").unwrap()).unwrap();
    format!("{}?{}", url.path(), url.query().unwrap())
}

#[test]
fn seventy_slow_connections_do_not_stall_the_real_login() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (_idp, s) = silent_browser_login_setup();
    let login = start_login(&s, "proj", "40");
    let (port, stop, opened) = (login.port, Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    // 70 clients that each drip one byte every 2 s, and reconnect when closed: more than the connection cap, and
    // each read well inside any per-read limit (a per-read limit is what let this stall a login before).
    let slow: Vec<_> = (0..70)
        .map(|_| {
            let (stop, opened) = (stop.clone(), opened.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else { return };
                    opened.fetch_add(1, Ordering::SeqCst);
                    for b in b"GET /oauth2/callback?state=x HTTP/1.1\r\n".iter().cycle() {
                        if stop.load(Ordering::SeqCst) || c.write_all(&[*b]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_secs(2));
                    }
                }
            })
        })
        .collect();
    while opened.load(Ordering::SeqCst) < 70 {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let printed = support::run_browser(&support::browser_curl(), &login.url, &[]);
    assert!(printed.contains("CALLBACK"), "{printed}");
    let out = login.finish(LIMIT);
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(out.code, 0, "the slow connections stalled the login: {}", out.stderr);
    assert!(out.stderr.contains("Logged in to"), "{}", out.stderr);
    assert!(took < Duration::from_secs(20), "the login took {took:?} behind the slow connections");
    for t in slow {
        t.join().unwrap();
    }
}

#[test]
fn a_localhost_redirect_holds_both_loopback_addresses_and_answers_on_ipv6() {
    let (_idp, s) = silent_browser_login_setup();
    let redirect = "http://localhost:0/oauth2/callback";
    let login = drive::start_login_with(&s, "proj", "30", &[("MLFLOW_TRACKING_OIDC_REDIRECT_URI", redirect)]);
    let port = login.port;
    assert!(login.url.contains(&format!("localhost%3A{port}")), "the redirect URI keeps `localhost`: {}", login.url);
    // Another local user cannot take either address of the port while the login waits.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err(), "127.0.0.1:{port} could be taken");
    if !ipv6_loopback() {
        eprintln!("no IPv6 loopback here: only the IPv4 half is checked");
        let _ = login.finish(LIMIT);
        return;
    }
    assert!(std::net::TcpListener::bind(("::1", port)).is_err(), "[::1]:{port} could be taken by another user");
    // A browser that tries IPv6 first delivers the callback over [::1], with the `localhost` Host it resolved.
    let callback = undelivered_callback(&login);
    let page = get_on(std::net::Ipv6Addr::LOCALHOST.into(), port, &callback, &format!("localhost:{port}"));
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.contains("You are logged in"), "{page}");
    let out = login.finish(LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn the_browser_says_logged_in_only_after_the_code_was_redeemed() {
    let (idp, s) = silent_browser_login_setup();
    // A code the provider refuses: the browser hears that, not "logged in", and the CLI says what the provider said.
    let login = start_login(&s, "proj", "30");
    let iss = url::form_urlencoded::byte_serialize(idp.issuer.as_bytes()).collect::<String>();
    let page = login.get(&format!("code=made-up-code&state={}&iss={iss}", login.state));
    let out = login.finish(LIMIT);
    assert_eq!(status_of(&page), 400, "{page}");
    assert!(!page.contains("You are logged in"), "{page}");
    assert!(page.contains("invalid_grant") && page.contains("Look at the terminal"), "{page}");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("invalid_grant"), "{}", out.stderr);
    assert_eq!(idp.count_grants("authorization_code"), 1);
    // A real login: by the time the page arrives, the code has been redeemed.
    let login = start_login(&s, "proj", "30");
    let callback = undelivered_callback(&login);
    let page = get_on([127, 0, 0, 1].into(), login.port, &callback, &format!("127.0.0.1:{}", login.port));
    assert_eq!(idp.count_grants("authorization_code"), 2, "the page came before the exchange");
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(page.contains("You are logged in"), "{page}");
    assert_eq!(login.finish(LIMIT).code, 0);
}

#[test]
fn a_callback_without_iss_is_refused_when_the_provider_always_sends_it() {
    let (idp, s) = silent_browser_login_setup();
    // oidc-provider advertises authorization_response_iss_parameter_supported: true (RFC 9207 §3), so a response
    // without `iss` may come from another provider the person was tricked into (a mix-up): never redeem it.
    let login = start_login(&s, "proj", "30");
    let callback = undelivered_callback(&login);
    let without_iss: String = url::form_urlencoded::parse(callback.split_once('?').unwrap().1.as_bytes())
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
        .collect::<Vec<_>>()
        .join("&");
    let page = login.get(&without_iss);
    let out = login.finish(LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("RFC 9207") && out.stderr.contains(&idp.issuer), "{}", out.stderr);
    assert_eq!(status_of(&page), 400, "{page}");
    assert!(page.contains("RFC 9207") && !page.contains("You are logged in"), "{page}");
    assert_eq!(idp.count_grants("authorization_code"), 0, "the code was sent to the token endpoint");
}

// ---------------------------------------------------------------------------------------------------------------
// Files another user could have written (git `safe.directory` for CVE-2022-24765, ssh StrictModes).

const NOBODY: u32 = 65534;

/// Give `path` to another user. Tests run as root here; without the right to chown the test cannot prove
/// anything, so it fails rather than skip.
fn give_to_nobody(path: &Path) {
    if let Err(e) = std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)) {
        panic!(
            "cannot chown {} to uid {NOBODY} ({e}): this test needs a second user and must run as root (or with \
             CAP_CHOWN), as the container's test run does",
            path.display()
        );
    }
}

/// A block for the confidential client at `issuer`; the secret comes from the environment, as in CI.
fn machine_block(table: &str, issuer: &str) -> String {
    format!(
        "[[{table}]]\nuri = \"{SERVER}\"\nissuer = \"{issuer}\"\nclient-id = \"{CONFIDENTIAL_CLIENT_ID}\"\n\
         audience = \"{AUDIENCE}\"\n"
    )
}

fn machine_env(s: &mut Sandbox) {
    s.set("MLFLOW_OIDC_STORE", "file");
    s.set("MLFLOW_TRACKING_URI", SERVER);
    s.set("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", CONFIDENTIAL_CLIENT_SECRET);
}

#[test]
fn a_pyproject_another_user_owns_or_may_write_is_skipped_unless_its_directory_is_safe() {
    let evil = Idp::start();
    let mut s = Sandbox::new();
    machine_env(&mut s);
    // In the parent of the project directory, as in a shared /tmp or /scratch.
    let planted = s.write("pyproject.toml", &machine_block("tool.mlflow-oidc-client.tracking-servers", &evil.issuer));
    give_to_nobody(&planted);
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 2, "no configuration is left: {}", out.stderr);
    let warning = format!("ignoring config file {}: owned by uid {NOBODY}", planted.display());
    assert!(out.stderr.contains(&warning), "{}", out.stderr);
    assert!(out.stderr.contains("mode 0644") && out.stderr.contains("safe-directories = ["), "{}", out.stderr);
    assert_eq!(out.stderr.matches("ignoring config file").count(), 1, "one warning: {}", out.stderr);
    assert!(evil.requests().is_empty(), "the planted issuer was contacted: {:?}", evil.requests());
    assert!(!out.all().contains(CONFIDENTIAL_CLIENT_SECRET));

    // status (configured by the environment) lists the skipped file and why, in text and JSON.
    let env_only =
        [("MLFLOW_TRACKING_OIDC_ISSUER", "https://idp.example.com"), ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c")];
    let out = s.run("proj", &["status"], &env_only);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = format!("skipped: {} (owned by uid {NOBODY}", planted.display());
    assert!(out.stdout.contains(&line) && out.stdout.contains("mode 0644)"), "{}", out.stdout);
    let out = s.run("proj", &["status", "--json"], &env_only);
    let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(v["skipped"][0]["file"], planted.display().to_string(), "{v}");
    assert!(v["skipped"][0]["why"].as_str().unwrap().contains("mode 0644"), "{v}");

    // Our own file, but writable by the group: skipped the same way.
    std::os::unix::fs::chown(&planted, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&planted, PermissionsExt::from_mode(0o664)).unwrap();
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("writable by other users") && out.stderr.contains("mode 0664"), "{}", out.stderr);
    assert!(evil.requests().is_empty());

    // The user trusts that directory: the file is used (here the "evil" provider is simply the configured one).
    give_to_nobody(&planted);
    let root = s.root().canonicalize().unwrap();
    s.write(
        "home/.config/mlflow-oidc/config.toml",
        &format!("safe-directories = [{:?}]\n", root.display().to_string()),
    );
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("ignoring"), "{}", out.stderr);
    assert_eq!(evil.count_grants("client_credentials"), 1);
    // `"*"` trusts every directory, as git's safe.directory does.
    std::fs::remove_dir_all(s.data_dir()).unwrap();
    s.write("home/.config/mlflow-oidc/config.toml", "safe-directories = [\"*\"]\n");
    assert_eq!(mo(&s, &["token"]).code, 0);
}

#[test]
fn a_user_config_another_user_may_write_is_skipped_with_its_safe_directories() {
    let s = Sandbox::new();
    let planted = s.write("pyproject.toml", &machine_block("tool.mlflow-oidc-client.tracking-servers", "https://i"));
    give_to_nobody(&planted);
    let user = s.write("home/.config/mlflow-oidc/config.toml", "safe-directories = [\"*\"]\n");
    std::fs::set_permissions(&user, PermissionsExt::from_mode(0o666)).unwrap();
    let out = mo(&s, &["status"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("ignoring config file {}: writable", user.display())), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("ignoring config file {}: owned by uid", planted.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn the_walk_stops_above_the_home_directorys_parent() {
    let mut s = Sandbox::new();
    // HOME is <tmp>/home/user; a pyproject in <tmp>/home (HOME's parent, like /home) or <tmp> is not read,
    // even when it is ours and private.
    std::fs::create_dir_all(s.path("home/user/proj")).unwrap();
    s.set("HOME", s.path("home/user").to_str().unwrap());
    for at in ["home/pyproject.toml", "pyproject.toml"] {
        let f = s.write(at, &machine_block("tool.mlflow-oidc-client.tracking-servers", "https://i.example.com"));
        let out = s.run("home/user/proj", &["status"], &[]);
        assert_eq!(out.code, 2, "{at} was used: {}", out.stdout);
        assert!(out.stderr.contains("no pyproject.toml with [tool.mlflow-oidc-client] was found"), "{}", out.stderr);
        std::fs::remove_file(f).unwrap();
    }
    // HOME itself is still part of the walk.
    s.write(
        "home/user/pyproject.toml",
        &machine_block("tool.mlflow-oidc-client.tracking-servers", "https://i.example.com"),
    );
    let out = s.run("home/user/proj", &["status"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_project_block_cannot_redirect_a_server_of_the_user_config() {
    let idp = Idp::start();
    let evil = Idp::start();
    let mut s = Sandbox::new();
    machine_env(&mut s);
    let user = s.write("home/.config/mlflow-oidc/config.toml", &machine_block("tracking-servers", &idp.issuer));
    // Our own, private project file (a cloned repository, say): it still may not move the user's server.
    let project =
        s.write("proj/pyproject.toml", &machine_block("tool.mlflow-oidc-client.tracking-servers", &evil.issuer));
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for needle in [
        format!("IGNORING the block for {SERVER} in {}", project.display()),
        "`issuer`".to_string(),
        format!("your own block in {}", user.display()),
        "safe-directories".to_string(),
    ] {
        assert!(out.stderr.contains(&needle), "no {needle:?}: {}", out.stderr);
    }
    assert!(evil.requests().is_empty(), "the project's issuer got {:?}", evil.requests());
    assert_eq!(idp.count_grants("client_credentials"), 1);
    // Listed in safe-directories, the project block wins as before.
    let dir = project.parent().unwrap().canonicalize().unwrap();
    std::fs::write(
        &user,
        format!(
            "safe-directories = [{:?}]\n{}",
            dir.display().to_string(),
            machine_block("tracking-servers", &idp.issuer)
        ),
    )
    .unwrap();
    std::fs::remove_dir_all(s.data_dir()).unwrap();
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("IGNORING"), "{}", out.stderr);
    assert_eq!(evil.count_grants("client_credentials"), 1);
}

/// A project logged in with the confidential client (one token file), for the store cases below.
fn machine_project(idp: &Idp) -> (Sandbox, std::path::PathBuf) {
    let mut s = Sandbox::new();
    machine_env(&mut s);
    s.write("proj/pyproject.toml", &machine_block("tool.mlflow-oidc-client.tracking-servers", &idp.issuer));
    let first = mo(&s, &["token"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let file = s.token_file();
    (s, file)
}

#[test]
fn a_token_file_another_user_owns_is_refused_not_printed() {
    let idp = Idp::start();
    let (s, file) = machine_project(&idp);
    let theirs = mo(&s, &["token"]).ok().to_string();
    // Another user's token file, readable by all, in a tokens directory anyone may write to.
    std::fs::set_permissions(s.tokens_dir(), PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).unwrap();
    give_to_nobody(&file);
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stdout.contains(theirs.trim()), "another user's token was printed");
    let needle = format!("refusing to use {}: owned by uid {NOBODY}", file.display());
    assert!(out.stderr.contains(&needle) && out.stderr.contains("mode 0644"), "{}", out.stderr);
    assert!(out.stderr.contains("rm ") && out.stderr.contains("mlflow-oidc login"), "{}", out.stderr);
    assert!(std::fs::metadata(&file).unwrap().is_file(), "the planted file is reported, not overwritten");
}

#[test]
fn a_token_file_others_may_write_is_refused_and_one_they_may_read_is_made_private() {
    let idp = Idp::start();
    let (s, file) = machine_project(&idp);
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o666)).unwrap();
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("refusing to use {}: writable by other users", file.display())));
    assert_eq!(out.stdout, "");
    // Readable only: the content is ours (only we or root could write it), so it is kept, made 0600, and
    // the user is told the token may have been read.
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).unwrap();
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // `status` says so (the cached `token` path prints no store warnings today).
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).unwrap();
    let out = mo(&s, &["status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("was readable by other users (mode 0644)"), "{}", out.stderr);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_symlinked_token_file_is_not_followed() {
    let idp = Idp::start();
    let (s, file) = machine_project(&idp);
    // A link to a valid entry elsewhere (e.g. another user's): its token must not be printed.
    let elsewhere = s.path("elsewhere.json");
    std::fs::rename(&file, &elsewhere).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(&elsewhere).unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("is a symbolic link: not followed"), "{}", out.stderr);
    let printed = out.stdout.trim();
    assert_ne!(Some(printed), theirs["tokens"]["access_token"].as_str(), "the linked entry's token was printed");
    assert!(!std::fs::symlink_metadata(&file).unwrap().file_type().is_symlink(), "replaced by our own file");
    assert_eq!(idp.count_grants("client_credentials"), 2, "a new token was obtained");
}

#[test]
fn a_discovery_cache_file_another_user_owns_is_ignored_and_refetched() {
    let idp = Idp::start();
    let (s, _) = machine_project(&idp);
    let cache = std::fs::read_dir(s.cache_dir().join("discovery")).unwrap().flatten().next().unwrap().path();
    give_to_nobody(&cache);
    std::fs::remove_dir_all(s.tokens_dir()).unwrap();
    idp.clear_requests();
    let out = mo(&s, &["token"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let needle = format!("ignoring the discovery cache {}: owned by uid {NOBODY}", cache.display());
    assert!(out.stderr.contains(&needle) && out.stderr.contains("refetching"), "{}", out.stderr);
    assert!(idp.requests().iter().any(|r| r["route"] == "discovery"), "refetched: {:?}", idp.requests());
    use std::os::unix::fs::MetadataExt;
    assert_ne!(std::fs::metadata(&cache).unwrap().uid(), NOBODY, "the refetch replaced it with our own file");
}
