//! The real stack for the MLflow end-to-end tests, started once per test binary and shared.
//!
//! ```text
//! mlflow-oidc / MLflow client ──token──▶ oidc-provider  https://127.0.0.1:P1  (test CA made at start)
//!            └──Bearer──▶ Apache + mod_auth_openidc  http://127.0.0.1:P2  (JWKS over https, iss + aud required)
//!                                   └──▶ mlflow server --workers 1 (SQLite)  http://127.0.0.1:P3
//! ```
//!
//! [`stack()`] makes a test CA (`tests/mlflow/make-certs.sh`), starts the provider over HTTPS
//! (`tests/idp/idp.mjs` with `IDP_TLS_*`, access tokens living [`AT_TTL`] s), and runs
//! `tests/mlflow/stack.py`, which starts MLflow and Apache and tears both down, whole process trees
//! included, when its stdin closes — that is, when this test process ends, however it ends. The
//! provider exits the same way. Python, MLflow and the mlflow-oidc wheel come from the venv that
//! `scripts/e2e-venv` maintains ([`venv()`]); when it is missing or stale the tests fail and say
//! what to run.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::sandbox::Sandbox;
use crate::support::{ClientKey, Idp, Workload, client_key};

/// The stack's private_key_jwt client (its key: [`Stack::key`]), the client federated with [`Stack::workload`],
/// and the public client allowed RFC 8693 token exchange of the workload issuer's tokens.
pub const PK_CLIENT: &str = "mlflow-pk";
pub const FED_CLIENT: &str = "mlflow-federated";
pub const EXCHANGE_CLIENT: &str = "mlflow-exchange";

/// Lifetime of the provider's access tokens in the shared stack: short, so that the long-run
/// test sees several expiries within a minute.
pub const AT_TTL: u64 = 20;
const STACK_TIMEOUT: Duration = Duration::from_secs(240);

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The test venv: `mlflow`, `maturin` and the installed `mlflow-oidc` wheel.
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }
    /// The `mlflow-oidc` that the wheel installed into the venv's scripts folder.
    pub fn oidc(&self) -> PathBuf {
        self.bin("mlflow-oidc")
    }
}

/// The venv, checked once: panics with what to run when it is missing or older than the sources.
pub fn venv() -> &'static Venv {
    static VENV: OnceLock<Venv> = OnceLock::new();
    VENV.get_or_init(|| {
        let script = repo().join("scripts").join("e2e-venv");
        let check = Command::new(&script).arg("--check").output().unwrap_or_else(|e| panic!("run {script:?}: {e}"));
        let note = String::from_utf8_lossy(&check.stderr);
        assert!(check.status.success(), "{}", note.trim());
        if !note.trim().is_empty() {
            eprintln!("{}", note.trim());
        }
        let path = Command::new(&script).arg("--path").output().unwrap();
        Venv { dir: PathBuf::from(String::from_utf8(path.stdout).unwrap().trim()) }
    })
}

/// The running stack. Lives until the test process ends.
pub struct Stack {
    pub idp: Idp,
    /// The test CA that signed the provider's certificate.
    pub ca: PathBuf,
    /// Apache: `http://127.0.0.1:<port>`, the tracking URI clients use.
    pub proxy: String,
    /// MLflow itself, without the proxy (no authentication).
    pub backend: String,
    pub access_log: PathBuf,
    pub error_log: PathBuf,
    pub mlflow_log: PathBuf,
    pub startup_seconds: f64,
    /// The stand-in workload issuer (GitHub Actions' token service, Kubernetes token signer).
    pub workload: Workload,
    /// The private key of [`PK_CLIENT`].
    pub key: ClientKey,
    /// Holds the supervisor's stdin: its closing (at process exit) stops MLflow and Apache.
    supervisor: Mutex<Child>,
}

/// The shared stack, started by the first test that asks for it.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(start)
}

fn start() -> Stack {
    let venv = venv();
    // Apache's children run as www-data: everything they read must be reachable by them.
    let dir = tempfile::Builder::new().prefix("mlflow-oidc-e2e-").tempdir().unwrap().keep();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tls = dir.join("tls");
    let certs = Command::new(repo().join("tests/mlflow/make-certs.sh")).arg(&tls).output().unwrap();
    assert!(certs.status.success(), "make-certs.sh failed: {}", String::from_utf8_lossy(&certs.stderr));

    let ttl = AT_TTL.to_string();
    // Workload identity (issue 14): a stand-in workload issuer, and clients without a secret.
    let workload = Workload::start();
    let key = client_key("rsa", &dir.join("client.pem"));
    let none: [&str; 0] = [];
    let clients = serde_json::json!([
        {"client_id": PK_CLIENT, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.jwk]},
         "grant_types": ["client_credentials"], "response_types": none, "redirect_uris": none},
        {"client_id": FED_CLIENT, "token_endpoint_auth_method": "private_key_jwt", "jwks": workload.jwks(),
         "grant_types": ["client_credentials"], "response_types": none, "redirect_uris": none},
        {"client_id": EXCHANGE_CLIENT, "token_endpoint_auth_method": "none",
         "grant_types": [crate::support::TOKEN_EXCHANGE_GRANT], "response_types": none, "redirect_uris": none},
    ])
    .to_string();
    let idp = Idp::start_with(&[
        ("IDP_TLS_CERT", tls.join("server.pem").to_str().unwrap()),
        ("IDP_TLS_KEY", tls.join("server.key").to_str().unwrap()),
        ("IDP_AT_TTL", &ttl),
        ("IDP_EXTRA_CLIENTS", &clients),
        ("IDP_WORKLOAD_ISSUER", &workload.issuer),
    ]);
    assert!(idp.issuer.starts_with("https://"), "the provider must serve https: {}", idp.issuer);

    let log = std::fs::File::create(dir.join("supervisor.log")).unwrap();
    let mut child = Command::new(venv.python())
        .arg(repo().join("tests/mlflow/stack.py"))
        .args(["--dir", dir.join("stack").to_str().unwrap()])
        .args(["--issuer", &idp.issuer])
        .args(["--ca", tls.join("ca.pem").to_str().unwrap()])
        .args(["--mlflow", venv.bin("mlflow").to_str().unwrap()])
        .args(["--remove", dir.to_str().unwrap(), "--remove", idp.dir().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", venv.python()));

    let supervisor_log = || std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
    let ready = match crate::support::stack_ready(child.stdout.take(), STACK_TIMEOUT) {
        Some(json) => json,
        None => {
            let log = supervisor_log();
            let _ = child.kill();
            panic!("the MLflow stack did not start within {STACK_TIMEOUT:?}:\n{log}");
        }
    };
    let info: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let s = |k: &str| info[k].as_str().unwrap().to_owned();
    Stack {
        ca: tls.join("ca.pem"),
        proxy: s("proxy"),
        backend: s("backend"),
        access_log: s("access_log").into(),
        error_log: s("error_log").into(),
        mlflow_log: s("mlflow_log").into(),
        startup_seconds: info["startup_seconds"].as_f64().unwrap(),
        idp,
        workload,
        key,
        supervisor: Mutex::new(child),
    }
}

impl Stack {
    /// The proxy's access log lines (`host - user [time] "request" status bytes micros`).
    pub fn access(&self) -> Vec<Access> {
        std::fs::read_to_string(&self.access_log).unwrap_or_default().lines().filter_map(Access::parse).collect()
    }

    /// The end of the Apache error log and the MLflow log, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!("--- apache error log\n{}\n--- mlflow log\n{}", tail(&self.error_log), tail(&self.mlflow_log))
    }
}

/// One access log line.
#[derive(Debug, Clone)]
pub struct Access {
    pub user: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Access {
    fn parse(line: &str) -> Option<Access> {
        let mut words = line.split(' ');
        let user = words.nth(2)?.to_owned();
        let request = line.split('"').nth(1)?;
        let mut r = request.split(' ');
        let (method, path) = (r.next()?.to_owned(), r.next()?.to_owned());
        let status = line.rsplit('"').next()?.split_whitespace().next()?.parse().ok()?;
        Some(Access { user, method, path, status })
    }
}

/// The public client with a person's login (refresh tokens) as `user`, access tokens for the `mlflow` audience.
pub fn logged_in(user: &str) -> Sandbox {
    let st = stack();
    let mut s = project(&format!(
        "client-id = \"{}\"\nscope = \"openid profile email mlflow\"\nuse-id-token = false\n\
         ca-bundle = \"{}\"",
        crate::support::PUBLIC_CLIENT_ID,
        st.ca.display()
    ));
    // The browser driver (curl) talks to the provider too: it trusts the CA through SSL_CERT_FILE.
    s.set("BROWSER", crate::support::browser_curl().to_str().unwrap());
    s.set("SSL_CERT_FILE", st.ca.to_str().unwrap());
    s.set("IDP_LOGIN_USER", user);
    let login = s.mo(&["login"]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    s
}

/// A sandbox whose project has one `[[tool.mlflow-oidc-client.tracking-servers]]` block for the
/// proxy, with `extra` lines, and the venv's `bin` first on PATH.
pub fn project(extra: &str) -> Sandbox {
    let st = stack();
    let mut s = Sandbox::new();
    s.write(
        "proj/pyproject.toml",
        &format!(
            "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{}\"\nissuer = \"{}\"\n\
             redirect-uri = \"http://127.0.0.1:0/oauth2/callback\"\n{extra}\n",
            st.proxy, st.idp.issuer
        ),
    );
    s.set("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", venv().dir.join("bin").display()));
    s.set("MLFLOW_DISABLE_TELEMETRY", "true");
    s.set("DO_NOT_TRACK", "true");
    s
}

/// The confidential client (client credentials), trusting the test CA through `ca-bundle`;
/// access tokens, since the proxy requires `aud` = mlflow.
pub fn machine_project() -> Sandbox {
    project(&format!(
        "client-id = \"{}\"\nclient-secret = \"{}\"\naudience = \"{}\"\nca-bundle = \"{}\"",
        crate::support::CONFIDENTIAL_CLIENT_ID,
        crate::support::CONFIDENTIAL_CLIENT_SECRET,
        crate::support::AUDIENCE,
        stack().ca.display()
    ))
}

/// A token for a script or request that sends it as is (a static `MLFLOW_TRACKING_TOKEN`, curl): at least
/// `ttl - 5` s of its `ttl` left. Plain `token` may hand back one with only half its life left, which a
/// Python start and a few MLflow calls can outlive on a loaded 2-core machine.
pub fn fresh_token(s: &Sandbox, ttl: u64) -> String {
    s.mo(&["token", "--min-valid", &(ttl - 5).to_string()]).ok().trim().to_owned()
}

/// A command for `program` with the sandbox's environment (HOME, XDG dirs, PATH, everything set
/// with `Sandbox::set`) and working directory `proj`.
pub fn command(s: &Sandbox, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let base = s.cmd("proj", &[]);
    let mut c = Command::new(program);
    c.env_clear().stdin(Stdio::null());
    if let Some(dir) = base.get_current_dir() {
        c.current_dir(dir);
    }
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c
}

/// Runs a Python script from `tests/mlflow/` with the venv's python; returns the output.
pub fn python(s: &Sandbox, script: &str, args: &[&str], env: &[(&str, &str)]) -> crate::sandbox::Out {
    let mut c = command(s, venv().python());
    c.arg(repo().join("tests/mlflow").join(script)).args(args).envs(env.iter().copied());
    crate::sandbox::Out::from(c.output().unwrap())
}

/// The last line of `out`'s stdout as JSON (MLflow prints its own lines before it).
pub fn last_json(out: &crate::sandbox::Out) -> serde_json::Value {
    let line = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no JSON result on the last line ({e}); exit {}\nstdout:\n{}\nstderr:\n{}",
            out.code, out.stdout, out.stderr
        )
    })
}

/// A `MLFLOW_OIDC_BIN` wrapper that appends its arguments to `log` and execs the venv's
/// `mlflow-oidc`: counts how often the plugin runs the binary.
pub fn counting_wrapper(s: &Sandbox, log: &Path) -> PathBuf {
    let path = s.write(
        "counting-mlflow-oidc.sh",
        &format!("#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n", log.display(), venv().oidc().display()),
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Lines of a counting wrapper's log.
pub fn invocations(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// A project whose block names `client_id` and `lines` and no secret, trusting the test CA, for access
/// tokens with the proxy's audience.
/// A project configuring workload identity, trusted by its user (`mlflow-oidc trust`, issue 21).
pub fn workload_project(client_id: &str, lines: &str) -> Sandbox {
    let s = project(&format!(
        "client-id = \"{client_id}\"\naudience = \"{}\"\nca-bundle = \"{}\"\n{lines}",
        crate::support::AUDIENCE,
        stack().ca.display()
    ));
    let out = s.mo(&["trust"]);
    assert_eq!(out.code, 0, "trust: {}", out.stderr);
    s
}
