//! The Keycloak stack for tests/keycloak_e2e.rs, started once per test binary and shared (issue 22).
//!
//! ```text
//! mlflow-oidc / MLflow clients ──token──▶ Keycloak 26 (dev mode, realm tests/keycloak/realm.json)  http://127.0.0.1:P1
//!            └──Bearer──▶ oauth2-proxy "api" (--api-route: 401)  http://127.0.0.1:P2 ─┐
//!            └──Bearer──▶ oauth2-proxy "web" (no --api-route: 302 to login)  P3 ───────┴─▶ mlflow server  P4
//! ```
//!
//! `tests/keycloak/stack.py` (run with the e2e venv's python) starts them and tears them down when this process's
//! end closes its stdin. Keycloak, its JDK, oauth2-proxy and MLflow's Java client come from the cache that
//! `./scripts/test` fills (`~/.cache/mlflow-oidc-test`, described by its `components.json`); when it is missing the
//! tests fail and say what to run.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::e2e::{repo, venv};
use crate::sandbox::Sandbox;

/// Access-token lifetime in the realm (`accessTokenLifespan`): the long runs last three of them.
pub const AT_TTL: u64 = 20;
pub const PUBLIC_CLIENT: &str = "mlflow-cli";
pub const MACHINE_CLIENT: &str = "mlflow-machine";
pub const MACHINE_SECRET: &str = "mlflow-machine-secret";
/// A service account without the audience mapper: oauth2-proxy refuses its tokens.
pub const NOAUD_CLIENT: &str = "mlflow-machine-noaud";
pub const NOAUD_SECRET: &str = "mlflow-machine-noaud-secret";
/// A service account with the audience mapper whose email is not verified: oauth2-proxy refuses its tokens.
pub const UNVERIFIED_CLIENT: &str = "mlflow-machine-unverified";
pub const UNVERIFIED_SECRET: &str = "mlflow-machine-unverified-secret";
pub const EXCHANGE_CLIENT: &str = "mlflow-exchange";
pub const EXCHANGE_SECRET: &str = "mlflow-exchange-secret";
const STACK_TIMEOUT: Duration = Duration::from_secs(420);

/// What `./scripts/test` installed, from `components.json` in the cache.
#[derive(Debug, Clone)]
pub struct Components {
    pub keycloak: PathBuf,
    pub keycloak_version: String,
    pub java_home: PathBuf,
    pub oauth2_proxy: PathBuf,
    pub oauth2_proxy_version: String,
    pub java_client_classpath: String,
    pub java_client_version: String,
}

pub fn cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"),
    }
    .join("mlflow-oidc-test")
}

pub fn components() -> &'static Components {
    static C: OnceLock<Components> = OnceLock::new();
    C.get_or_init(|| {
        let path = cache_dir().join("components.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: Keycloak, oauth2-proxy and MLflow's Java client are installed by ./scripts/test \
                 (from Maven Central and the Go module proxy, cached there)",
                path.display()
            )
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{}: no {k}; rerun ./scripts/test", path.display()));
        let c = Components {
            keycloak: s("keycloak").into(),
            keycloak_version: s("keycloak_version").into(),
            java_home: s("java_home").into(),
            oauth2_proxy: s("oauth2_proxy").into(),
            oauth2_proxy_version: s("oauth2_proxy_version").into(),
            java_client_classpath: s("java_client_classpath").into(),
            java_client_version: s("java_client_version").into(),
        };
        for p in [&c.keycloak.join("bin/kc.sh"), &c.java_home.join("bin/java"), &c.oauth2_proxy] {
            assert!(p.exists(), "{} is missing: rerun ./scripts/test", p.display());
        }
        c
    })
}

pub struct Stack {
    pub issuer: String,
    pub keycloak: String,
    /// oauth2-proxy with --api-route: the tracking URI the journeys use.
    pub api: String,
    /// oauth2-proxy without --api-route.
    pub web: String,
    pub backend: String,
    pub keycloak_log: PathBuf,
    pub api_log: PathBuf,
    pub web_log: PathBuf,
    pub mlflow_log: PathBuf,
    pub keycloak_seconds: f64,
    pub startup_seconds: f64,
    supervisor: Mutex<Child>,
}

pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(start)
}

fn start() -> Stack {
    let c = components();
    let venv = venv();
    let dir = tempfile::Builder::new().prefix("mlflow-oidc-kc-").tempdir().unwrap().keep();
    let log = std::fs::File::create(dir.join("supervisor.log")).unwrap();
    let mut child = Command::new(venv.python())
        .arg(repo().join("tests/keycloak/stack.py"))
        .args(["--dir", dir.join("stack").to_str().unwrap()])
        .args(["--keycloak", c.keycloak.to_str().unwrap()])
        .args(["--java-home", c.java_home.to_str().unwrap()])
        .args(["--oauth2-proxy", c.oauth2_proxy.to_str().unwrap()])
        .args(["--mlflow", venv.bin("mlflow").to_str().unwrap()])
        .args(["--remove", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", venv.python()));
    let ready = match crate::support::stack_ready(child.stdout.take(), STACK_TIMEOUT) {
        Some(json) => json,
        None => {
            let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
            let _ = child.kill();
            panic!("the Keycloak stack did not start within {STACK_TIMEOUT:?}:\n{log}");
        }
    };
    let info: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let s = |k: &str| info[k].as_str().unwrap().to_owned();
    let st = Stack {
        issuer: s("issuer"),
        keycloak: s("keycloak"),
        api: s("api"),
        web: s("web"),
        backend: s("backend"),
        keycloak_log: s("keycloak_log").into(),
        api_log: s("api_log").into(),
        web_log: s("web_log").into(),
        mlflow_log: s("mlflow_log").into(),
        keycloak_seconds: info["keycloak_seconds"].as_f64().unwrap(),
        startup_seconds: info["startup_seconds"].as_f64().unwrap(),
        supervisor: Mutex::new(child),
    };
    eprintln!(
        "keycloak stack: Keycloak {} ready in {:.1} s, oauth2-proxy {}, whole stack {:.1} s",
        c.keycloak_version, st.keycloak_seconds, c.oauth2_proxy_version, st.startup_seconds
    );
    st
}

impl Stack {
    /// The ends of the component logs, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(12)..].join("\n")
        };
        format!(
            "--- oauth2-proxy (api)\n{}\n--- oauth2-proxy (web)\n{}\n--- keycloak\n{}",
            tail(&self.api_log),
            tail(&self.web_log),
            tail(&self.keycloak_log)
        )
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/protocol/openid-connect/token", self.issuer)
    }
}

/// A sandbox whose project has one block for `uri` (a proxy of the stack) with Keycloak as issuer and `extra`
/// lines; the venv's `bin` first on PATH and the headless Chromium driver as `$BROWSER`.
pub fn project(uri: &str, extra: &str) -> Sandbox {
    let st = stack();
    let mut s = Sandbox::new();
    s.write(
        "proj/pyproject.toml",
        &format!(
            "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{uri}\"\nissuer = \"{}\"\n\
             redirect-uri = \"http://127.0.0.1:0/oauth2/callback\"\n{extra}\n",
            st.issuer
        ),
    );
    s.set("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", venv().dir.join("bin").display()));
    s.set("MLFLOW_DISABLE_TELEMETRY", "true");
    s.set("DO_NOT_TRACK", "true");
    s.set("MLFLOW_OIDC_STORE", "file");
    s.set("BROWSER", crate::support::browser_chromium().to_str().unwrap());
    s.set("BROWSER_LOG", s.path("browser.log").to_str().unwrap());
    s.set("IDP_LOGIN_USER", "alice");
    s.set("IDP_LOGIN_PASSWORD", "secret");
    s
}

/// The public PKCE client, access tokens (they carry the oauth2-proxy audience).
pub fn person(uri: &str) -> Sandbox {
    project(uri, &format!("client-id = \"{PUBLIC_CLIENT}\"\nuse-id-token = false"))
}

/// The confidential client with a service account.
pub fn machine(uri: &str) -> Sandbox {
    project(uri, &format!("client-id = \"{MACHINE_CLIENT}\"\nclient-secret = \"{MACHINE_SECRET}\""))
}
