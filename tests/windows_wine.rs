//! The Windows build, run under Wine (issue 23): `mlflow-oidc.exe` for x86_64-pc-windows-gnu with the test-only
//! ProcessPrng shim beside it, in a Wine prefix made once per machine (scripts/wine-env, which ./scripts/test runs),
//! against the loopback provider. Client credentials, the device flow with the browser driver, the Credential
//! Manager store (refresh token kept there, read back for a refresh, removed by `logout`), a refresh token larger
//! than one Windows credential holds, and concurrent refreshes under the lock. Tested under Wine; real Windows
//! runs in the release workflow (docs/releasing.md).
//!
//! The token larger than a credential comes from the scripted provider (tests/fake): no real provider issues a
//! 3,000-character refresh token on demand.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod drive;
mod fake;
mod sandbox;
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sandbox::{Out, PUBLIC_CLIENT, Sandbox};
use support::{CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET, DEVICE_CODE_GRANT, Idp};

/// A Wine process start is slower than a native one, and the first one in a run starts wineserver.
const LIMIT: Duration = Duration::from_secs(90);

struct Lane {
    exe: PathBuf,
    prefix: PathBuf,
}

fn lane() -> &'static Lane {
    static LANE: OnceLock<Lane> = OnceLock::new();
    LANE.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wine-env");
        let check = Command::new(&script).arg("--check").output().unwrap_or_else(|e| panic!("run {script:?}: {e}"));
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr).trim());
        let ask = |flag: &str| {
            let o = Command::new(&script).arg(flag).output().unwrap();
            PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
        };
        Lane { exe: ask("--exe"), prefix: ask("--prefix") }
    })
}

/// `wine mlflow-oidc.exe ARGS` in the sandbox's project directory, with its environment (Wine hands it on).
fn exe(s: &Sandbox, args: &[&str]) -> Command {
    let l = lane();
    let base = s.cmd("proj", &[]);
    let mut c = Command::new("wine");
    c.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.env("WINEPREFIX", &l.prefix)
        .env("WINEDEBUG", "-all")
        // The shim beside the .exe, before any bcryptprimitives Wine may have; and no winebrowser (xdg-open)
        // for the address the device flow opens: the test is the browser.
        .env("WINEDLLOVERRIDES", "bcryptprimitives=n,b;mscoree,mshtml=;winebrowser.exe=d")
        .current_dir(s.path("proj"))
        .arg(&l.exe)
        .args(args);
    c
}

fn run(s: &Sandbox, args: &[&str]) -> Out {
    drive::run_bounded(exe(s, args), LIMIT)
}

/// The Credential Manager's entries (Wine keeps them in the registry) whose names contain `needle`.
fn credentials(needle: &str) -> Vec<String> {
    let o = Command::new("wine")
        .args(["reg", "query", r"HKCU\Software\Wine\Credential Manager"])
        .env("WINEPREFIX", &lane().prefix)
        .env("WINEDEBUG", "-all")
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// Make the cached access token of `issuer`'s entry look expired (the file store's JSON, in the Wine prefix's
/// %LOCALAPPDATA%, shared by this run's tests: found by its issuer).
fn expire(issuer: &str) {
    let dir = lane()
        .prefix
        .join("drive_c/users")
        .read_dir()
        .unwrap()
        .flatten()
        .map(|u| u.path().join("AppData/Local/mlflow-oidc/data/tokens"));
    let file = dir
        .flat_map(|d| d.read_dir().into_iter().flatten().flatten().map(|e| e.path()))
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&format!("\"{issuer}\""))))
        .unwrap_or_else(|| panic!("no token file for {issuer} in the Wine prefix"));
    let mut e: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    e["tokens"]["access_expires_at"] = serde_json::json!(1);
    std::fs::write(&file, serde_json::to_vec(&e).unwrap()).unwrap();
}

fn project(issuer: &str, server: &str, lines: &str) -> Sandbox {
    let mut s = Sandbox::with_server(server, issuer, lines);
    // The browser is the test's business (the device flow's URL is read from stderr).
    s.set("BROWSER", "");
    s
}

#[test]
fn client_credentials_give_a_token() {
    let idp = Idp::start();
    let s = project(
        &idp.issuer,
        "http://127.0.0.1:5981",
        &format!("client-id = \"{CONFIDENTIAL_CLIENT_ID}\"\nclient-secret = \"{CONFIDENTIAL_CLIENT_SECRET}\""),
    );
    let v = run(&s, &["--version"]);
    assert!(v.stdout.starts_with("mlflow-oidc "), "{}{}", v.stdout, v.stderr);
    let out = run(&s, &["token"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    support::verify_jwt(&idp.issuer, out.stdout.trim(), support::AUDIENCE);
    assert_eq!(idp.count_grants("client_credentials"), 1);
}

/// `login --device`, approved by the browser driver at the address the binary printed.
fn device_login(s: &Sandbox) -> Out {
    let mut c = exe(s, &["login", "--device", "--timeout", "60"]);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("user_code=") {
                let _ = tx.send(line.trim().to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = rx.recv_timeout(LIMIT).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("no verification address on stderr within {LIMIT:?}")
    });
    support::run_browser(&support::browser_curl(), &url, &[]);
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("login --device did not finish within {LIMIT:?} after approval");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    Out { code: status.code().unwrap_or(-1), stdout, stderr: reader.join().unwrap() }
}

#[test]
fn the_device_flow_keeps_the_refresh_token_in_the_credential_manager_refreshes_under_the_lock_and_logs_out() {
    let idp = Idp::start_with(&[("IDP_AUTO_CONSENT", "1")]);
    let s = project(&idp.issuer, "http://127.0.0.1:5982", &format!("{PUBLIC_CLIENT}\nuse-id-token = false"));
    let port = idp.issuer.rsplit(':').next().unwrap().to_string();

    let out = device_login(&s);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(idp.count_grants(DEVICE_CODE_GRANT) >= 1);
    let status: serde_json::Value = serde_json::from_str(run(&s, &["status", "--json"]).ok()).unwrap();
    assert_eq!(status["store"]["backend"], "keyring", "{status}");
    assert_eq!(status["login"]["refresh_token"], true, "{status}");
    assert_eq!(credentials(&port).len(), 1, "one Credential Manager entry for this provider");

    // The cached access token expired; four processes at once: one refresh grant, the others wait on the lock
    // and take its result.
    expire(&idp.issuer);
    idp.clear_requests();
    let children: Vec<_> = (0..4)
        .map(|_| exe(&s, &["token"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn())
        .collect::<Result<_, _>>()
        .unwrap();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(idp.count_grants("refresh_token"), 1, "one refresh for four concurrent calls");

    let out = run(&s, &["logout"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("Revoked the refresh token"), "{}", out.stderr);
    assert!(credentials(&port).is_empty(), "logout removed the Credential Manager entry");
}

#[test]
fn a_refresh_token_larger_than_one_credential_is_split_and_read_back_whole() {
    let f = fake::Fake::start();
    let big = format!("rt-{}", "b".repeat(3000));
    let device = f.url("/device");
    f.set(
        "/.well-known/openid-configuration",
        fake::Reply::json(
            200,
            f.metadata_with(|m| {
                m.insert("device_authorization_endpoint".into(), device.clone().into());
            }),
        ),
    );
    f.set(
        "/device",
        fake::Reply::json(
            200,
            serde_json::json!({"device_code": fake::DEVICE_CODE, "user_code": "WINE-CODE",
                "verification_uri": f.url("/verify"), "expires_in": 60, "interval": 1})
            .to_string(),
        ),
    );
    f.set(
        "/token",
        fake::Reply::json(
            200,
            serde_json::json!({"access_token": fake::AT_LOGIN, "token_type": "Bearer", "expires_in": 60,
                "refresh_token": big})
            .to_string(),
        ),
    );
    let s = project(
        &f.base,
        "http://127.0.0.1:5983",
        &format!("client-id = \"{}\"\nuse-id-token = false", fake::CLIENT_ID),
    );
    let needle = format!("127.0.0.1:{}", f.port);

    let out = run(&s, &["login", "--device", "--timeout", "30"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let entries = credentials(&needle);
    assert!(entries.len() >= 3, "3,000 characters take three credentials of 1,280: {entries:?}");

    f.clear();
    let out = run(&s, &["token", "--min-valid", "2m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sent: Vec<_> = f.requests().iter().filter_map(|r| r.form("refresh_token")).collect();
    assert_eq!(sent.len(), 1, "one refresh");
    assert!(sent[0] == big, "the refresh token came back whole from the Credential Manager ({} chars)", sent[0].len());

    let out = run(&s, &["logout"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(credentials(&needle).is_empty(), "logout removed every piece: {:?}", credentials(&needle));
}
