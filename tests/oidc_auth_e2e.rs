//! mlflow-oidc against the `mlflow-oidc-auth` server plugin (issue 16): no proxy, MLflow itself
//! checks the bearer JWT against the provider's JWKS.
//!
//! ```text
//! mlflow-oidc / MLflow client ──token──▶ oidc-provider  http://127.0.0.1:P1  (groups claim, 20 s tokens)
//!            └──Bearer──▶ mlflow server --app-name oidc-auth  http://127.0.0.1:P2  (iss, aud = mlflow)
//! ```
//!
//! Started by the first test that asks: one provider (`tests/idp/idp.mjs` with `IDP_GROUPS=mlflow`,
//! access and ID tokens living [`TTL`] s) and two servers, [`stack()`] for access tokens
//! (`OIDC_AUDIENCE=mlflow`, every test but one) and [`id_token_stack()`] for ID tokens
//! (`OIDC_AUDIENCE=mlflow-cli`), each run by `tests/mlflow/oidc_auth_stack.py` from the venv that
//! `scripts/e2e-auth-venv` maintains (mlflow-oidc-auth pinned in
//! tests/mlflow/requirements-oidc-auth.txt, with the mlflow-oidc wheel for the client side). The
//! settings it uses are the ones docs/mlflow-oidc-auth.md gives. Run with
//! `cargo test --test oidc_auth_e2e -- --nocapture` to see the long run's figures.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::print_stderr)]

mod e2e;
mod sandbox;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use e2e::{command, fresh_token, invocations, last_json, repo};
use sandbox::{Out, PUBLIC_CLIENT, Sandbox};
use support::{CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET, Idp, PUBLIC_CLIENT_ID};

/// Lifetime of access and ID tokens: short, so that the long run sees several expiries.
const TTL: u64 = 20;
/// The server's `OIDC_AUDIENCE`: the `aud` of the provider's access tokens for `urn:mlflow`.
const AUDIENCE: &str = support::AUDIENCE;
const STACK_TIMEOUT: Duration = Duration::from_secs(240);
const SEARCH: &str = "/api/2.0/mlflow/experiments/search?max_results=5";

// --- the stack --------------------------------------------------------------------------------

/// `target/e2e-auth-venv` (or `$MLFLOW_OIDC_TEST_AUTH_VENV`), checked once: panics with what to
/// run when it is missing or holds another wheel than `target/e2e-wheels`.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let script = repo().join("scripts").join("e2e-auth-venv");
        let check = Command::new(&script).arg("--check").output().unwrap_or_else(|e| panic!("run {script:?}: {e}"));
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr).trim());
        let path = Command::new(&script).arg("--path").output().unwrap();
        PathBuf::from(String::from_utf8(path.stdout).unwrap().trim())
    })
}

fn bin(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}

struct Stack {
    idp: &'static Idp,
    /// `http://127.0.0.1:<port>`: the tracking URI.
    uri: String,
    log: PathBuf,
    /// Holds the supervisor's stdin: its closing (at process exit) stops the server.
    _supervisor: Mutex<Child>,
}

/// The provider both servers trust.
fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| {
        let ttl = TTL.to_string();
        Idp::start_with(&[("IDP_AT_TTL", &ttl), ("IDP_ID_TOKEN_TTL", &ttl), ("IDP_GROUPS", "mlflow")])
    })
}

/// The server for access tokens: `OIDC_AUDIENCE` = [`AUDIENCE`].
fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| start(AUDIENCE))
}

/// A second server, for ID tokens: `OIDC_AUDIENCE` = the public client's id.
fn id_token_stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| start(PUBLIC_CLIENT_ID))
}

fn start(audience: &str) -> Stack {
    let python = bin("python");
    let idp = idp();
    let dir = tempfile::Builder::new().prefix("mlflow-oidc-auth-e2e-").tempdir().unwrap().keep();
    let log = std::fs::File::create(dir.join("supervisor.log")).unwrap();
    let mut child = Command::new(&python)
        .arg(repo().join("tests/mlflow/oidc_auth_stack.py"))
        .args(["--dir", dir.join("stack").to_str().unwrap()])
        .args(["--issuer", &idp.issuer, "--audience", audience])
        .args(["--mlflow", bin("mlflow").to_str().unwrap()])
        .args(["--remove", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let Some(ready) = support::stack_ready(child.stdout.take(), STACK_TIMEOUT) else {
        let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
        let _ = child.kill();
        panic!("mlflow server --app-name oidc-auth did not start within {STACK_TIMEOUT:?}:\n{log}");
    };
    let info: serde_json::Value = serde_json::from_str(&ready).unwrap();
    eprintln!("mlflow-oidc-auth server (OIDC_AUDIENCE={audience}) ready after {} s", info["startup_seconds"]);
    Stack {
        idp,
        uri: info["uri"].as_str().unwrap().to_owned(),
        log: info["mlflow_log"].as_str().unwrap().into(),
        _supervisor: Mutex::new(child),
    }
}

impl Stack {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the server's log, for failure messages: the cause of a 401 is only there.
    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!("--- mlflow-oidc-auth server log\n{}", lines[lines.len().saturating_sub(25)..].join("\n"))
    }

    /// Uvicorn's access lines: (method, path, status).
    fn served(&self) -> Vec<(String, String, u16)> {
        self.log()
            .lines()
            .filter_map(|l| {
                let request = l.split(" - \"").nth(1)?;
                let (request, rest) = request.split_once("\" ")?;
                let mut r = request.split(' ');
                let (method, path) = (r.next()?.to_owned(), r.next()?.to_owned());
                Some((method, path, rest.split(' ').next()?.parse().ok()?))
            })
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.uri)
    }
}

// --- helpers -----------------------------------------------------------------------------------

/// A sandbox whose project has one block for the access-token server with `extra` lines, the
/// auth venv's `bin` first on PATH, and the curl browser driver logging in as `user`.
fn project(extra: &str, user: &str) -> Sandbox {
    project_for(stack(), extra, user)
}

fn project_for(st: &Stack, extra: &str, user: &str) -> Sandbox {
    let mut s = Sandbox::with_server(&st.uri, &st.idp.issuer, extra);
    s.set("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", venv().join("bin").display()));
    s.set("IDP_LOGIN_USER", user);
    s.set("MLFLOW_DISABLE_TELEMETRY", "true");
    s.set("DO_NOT_TRACK", "true");
    s
}

/// The public client with access tokens for the `mlflow` audience: the working client block.
fn person(user: &str) -> Sandbox {
    let s = project(&format!("{PUBLIC_CLIENT}\nuse-id-token = false"), user);
    let login = s.mo(&["login"]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    s
}

/// Runs a script from tests/mlflow with the auth venv's python.
fn python(s: &Sandbox, script: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = command(s, bin("python"));
    c.arg(repo().join("tests/mlflow").join(script)).args(args).envs(env.iter().copied());
    Out::from(c.output().unwrap())
}

/// A `MLFLOW_OIDC_BIN` that logs its arguments and runs the wheel's `mlflow-oidc`.
fn counting_wrapper(s: &Sandbox, log: &Path) -> PathBuf {
    s.script(
        "counting-mlflow-oidc.sh",
        &format!("#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n", log.display(), bin("mlflow-oidc").display()),
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{nanos}")
}

// --- the tests ---------------------------------------------------------------------------------

/// (1) A person's login: `mlflow-oidc token` (access token, `aud` = mlflow, a `groups` claim) is
/// accepted, the user is provisioned on the first bearer request and may create; without a token
/// the server says 401.
#[test]
fn a_login_token_is_accepted_and_no_token_is_refused() {
    let st = stack();
    let (status, body) = support::curl(&[&st.url(SEARCH)]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authentication required"), "{body}");
    let (status, _) = support::curl(&["-H", "Authorization: Bearer not-a-jwt", &st.url(SEARCH)]);
    assert_eq!(status, 401);

    let s = person("alice");
    let token = fresh_token(&s, TTL);
    let claims = support::jwt_payload(&token);
    assert_eq!(claims["aud"], AUDIENCE, "{claims}");
    assert_eq!(claims["groups"], serde_json::json!(["mlflow"]), "{claims}");
    let (status, body) = support::curl(&["-H", &bearer(&token), &st.url(SEARCH)]);
    assert_eq!(status, 200, "{body}\n{}", st.tail());
    let name = unique("alice");
    let (status, body) = support::curl(&[
        "-H",
        &bearer(&fresh_token(&s, TTL)),
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!("{{\"name\":\"{name}\"}}"),
        &st.url("/api/2.0/mlflow/experiments/create"),
    ]);
    assert_eq!(status, 200, "{body}\n{}", st.tail());
    assert!(st.log().contains("Provisioned bearer user alice@example.test"), "{}", st.tail());

    // The MLflow CLI through `exec`: the experiment is there.
    let out = s.mo(&["exec", "--", "mlflow", "experiments", "search"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, st.tail());
    assert!(out.stdout.contains(&name), "{}", out.stdout);
}

/// The sharp edges the docs describe, each as the MLflow user meets it: an opaque
/// `Authentication required`, with the cause only in the server's log.
#[test]
fn the_id_token_and_basic_credentials_are_refused_with_the_cause_in_the_server_log() {
    let st = stack();
    // The public client's default is the ID token: its aud is the client id, not OIDC_AUDIENCE.
    let s = project(PUBLIC_CLIENT, "bob");
    assert_eq!(s.mo(&["login"]).code, 0);
    let token = s.mo(&["token"]).ok().trim().to_owned();
    assert_eq!(support::jwt_payload(&token)["aud"], PUBLIC_CLIENT_ID);
    let (status, body) = support::curl(&["-H", &bearer(&token), &st.url(SEARCH)]);
    assert_eq!(status, 401, "{body}");
    let out = python(
        &s,
        "log_run.py",
        &[&unique("idtoken")],
        &[("MLFLOW_TRACKING_URI", &st.uri), ("MLFLOW_TRACKING_AUTH", "oidc")],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Authentication required"), "{}", out.stderr);
    eprintln!("what the MLflow user sees: {}", out.stderr.lines().rfind(|l| l.contains("Authentication")).unwrap());
    assert!(st.log().contains("Bearer auth error: InvalidClaimError"), "the cause, in the server log:\n{}", st.tail());

    let log = st.log();
    let cause = log.lines().rfind(|l| l.contains("Bearer auth error")).unwrap_or_default();
    eprintln!("an ID token at the server: {cause}");

    // MLFLOW_TRACKING_USERNAME/PASSWORD win over MLFLOW_TRACKING_TOKEN (and the header provider)
    // in MLflow's client: Basic is sent, and the server checks it against its own users.
    let s = person("carol");
    let token = s.mo(&["token"]).ok().trim().to_owned();
    let basic = [("MLFLOW_TRACKING_USERNAME", "carol"), ("MLFLOW_TRACKING_PASSWORD", "not-a-token")];
    let mut env = vec![("MLFLOW_TRACKING_URI", st.uri.as_str()), ("MLFLOW_TRACKING_TOKEN", token.as_str())];
    env.extend(basic);
    let out = python(&s, "log_run.py", &[&unique("basic")], &env);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Authentication required"), "{}", out.stderr);
    let log = st.log();
    let cause = log.lines().rfind(|l| l.contains("Invalid basic auth credentials"));
    eprintln!("Basic credentials at the server: {}", cause.unwrap_or_else(|| panic!("{}", st.tail())));
    // MLFLOW_TRACKING_AUTH=oidc is applied last and replaces the Basic header.
    let mut env = vec![("MLFLOW_TRACKING_URI", st.uri.as_str()), ("MLFLOW_TRACKING_AUTH", "oidc")];
    env.extend(basic);
    let out = python(&s, "log_run.py", &[&unique("basic-auth")], &env);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, st.tail());
}

/// (2) The plugin over a run three times longer than a token: a metric every second for 45 s
/// through `MLFLOW_TRACKING_AUTH=oidc`, a person's login renewed by refresh tokens. No failure
/// in the script and no refused metric at the server.
#[test]
fn a_long_run_through_the_plugin_outlives_the_tokens_without_a_failure() {
    let st = stack();
    let s = person("longrun");
    let log = s.path("bin.log");
    let wrapper = counting_wrapper(&s, &log);
    let refreshes_before = st.idp.count_grants("refresh_token");
    let seconds: u64 = 45;
    let started = Instant::now();
    let out = python(
        &s,
        "long_run.py",
        &[&unique("long"), &seconds.to_string(), "1"],
        &[
            ("MLFLOW_TRACKING_URI", &st.uri),
            ("MLFLOW_TRACKING_AUTH", "oidc"),
            ("MLFLOW_OIDC_BIN", wrapper.to_str().unwrap()),
        ],
    );
    let r = last_json(&out);
    let refreshes = st.idp.count_grants("refresh_token") - refreshes_before;
    let calls = invocations(&log);
    // Only this test logs metrics one at a time (log_run.py's go as log-batch or log-metric too,
    // but always with a good token): a refused one would be this run's.
    let metrics: Vec<_> =
        st.served().into_iter().filter(|(_, p, _)| p.starts_with("/api/2.0/mlflow/runs/log-metric")).collect();
    let refused: Vec<_> = metrics.iter().filter(|(_, _, status)| *status != 200).collect();
    eprintln!(
        "mlflow-oidc-auth long run: {} s, {} metric steps, {} failures in the script, {} log-metric requests at the \
         server ({} not 200), {} refresh_token grants, {} runs of the binary, tokens of {TTL} s; latency median {} ms, \
         max {} ms; wall {:.1} s",
        r["seconds"],
        r["steps"],
        r["failures"],
        metrics.len(),
        refused.len(),
        refreshes,
        calls.len(),
        r["latency_ms_median"],
        r["latency_ms_max"],
        started.elapsed().as_secs_f64()
    );
    assert_eq!(r["failures"], 0, "{}\n{}", r["errors"], st.tail());
    assert!(refused.is_empty(), "{refused:?}\n{}", st.tail());
    let steps = r["steps"].as_u64().unwrap();
    assert!(steps >= seconds - 5, "{r}");
    assert_eq!(r["history_len"].as_u64().unwrap(), steps, "every metric was stored");
    assert!(metrics.len() as u64 >= steps, "the metrics reached this server: {}", metrics.len());
    let lifetimes = seconds / TTL;
    assert!((lifetimes..=2 * lifetimes + 2).contains(&(refreshes as u64)), "refreshes: {refreshes}");
    assert!((lifetimes as usize..=2 * lifetimes as usize + 3).contains(&calls.len()), "binary runs: {calls:?}");
}

/// (3) A service account: the confidential client's client-credentials token (`sub` = client id,
/// no email) is a user named by `sub`, provisioned by its `groups` claim, and logs a whole run.
#[test]
fn a_client_credentials_service_account_logs_a_run() {
    let st = stack();
    let s = project(
        &format!(
            "client-id = \"{CONFIDENTIAL_CLIENT_ID}\"\nclient-secret = \"{CONFIDENTIAL_CLIENT_SECRET}\"\n\
             audience = \"{AUDIENCE}\""
        ),
        "nobody",
    );
    let token = s.mo(&["token"]).ok().trim().to_owned();
    let claims = support::jwt_payload(&token);
    assert_eq!(claims["sub"], CONFIDENTIAL_CLIENT_ID, "{claims}");
    assert!(claims.get("email").is_none() && claims.get("preferred_username").is_none(), "{claims}");

    let name = unique("service");
    let out = python(&s, "log_run.py", &[&name], &[("MLFLOW_TRACKING_URI", &st.uri), ("MLFLOW_TRACKING_AUTH", "oidc")]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, st.tail());
    let r = last_json(&out);
    assert_eq!(r["experiment_name"], name.as_str());
    assert_eq!(r["status"], "FINISHED");
    assert_eq!(r["history"], serde_json::json!([1.0, 0.5, 1.0 / 3.0]));
    assert_eq!(r["artifacts"], serde_json::json!(["note.txt"]));
    assert!(st.log().contains(&format!("Provisioned bearer user {CONFIDENTIAL_CLIENT_ID} ")), "{}", st.tail());
}

/// The other pair: a server whose `OIDC_AUDIENCE` is the public client's id accepts the default
/// ID token (its `groups` claim provisions the user), and the refreshed one after the first has
/// expired; it refuses the access token that the other server accepts.
#[test]
fn the_id_token_pair_works_and_refreshed_id_tokens_are_accepted() {
    let st = id_token_stack();
    let s = project_for(st, PUBLIC_CLIENT, "dave");
    assert_eq!(s.mo(&["login"]).code, 0);
    let token = s.mo(&["token"]).ok().trim().to_owned();
    let claims = support::jwt_payload(&token);
    assert_eq!(claims["aud"], PUBLIC_CLIENT_ID, "{claims}");
    assert_eq!(claims["groups"], serde_json::json!(["mlflow"]), "{claims}");
    let (status, body) = support::curl(&["-H", &bearer(&token), &st.url(SEARCH)]);
    assert_eq!(status, 200, "{body}\n{}", st.tail());
    assert!(st.log().contains("Provisioned bearer user dave@example.test"), "{}", st.tail());

    // Asking for more life than an ID token has left forces the refresh grant: a new ID token.
    // One second later, or it is byte for byte the same (same iat and exp, RS256 is deterministic).
    std::thread::sleep(Duration::from_millis(1100));
    let refreshes = idp().count_grants("refresh_token");
    let renewed = s.mo(&["token", "--min-valid", &(TTL + 5).to_string()]);
    let renewed = renewed.ok().trim().to_owned();
    assert_eq!(idp().count_grants("refresh_token"), refreshes + 1);
    let renewed_claims = support::jwt_payload(&renewed);
    assert!(renewed_claims["iat"].as_u64() > claims["iat"].as_u64(), "{renewed_claims}");
    assert_eq!(renewed_claims["groups"], serde_json::json!(["mlflow"]), "{renewed_claims}");
    let (status, body) = support::curl(&["-H", &bearer(&renewed), &st.url(SEARCH)]);
    assert_eq!(status, 200, "{body}\n{}", st.tail());

    // The reverse mismatch: an access token for `mlflow` is refused here.
    let access = person("erin").mo(&["token"]).ok().trim().to_owned();
    let (status, _) = support::curl(&["-H", &bearer(&access), &st.url(SEARCH)]);
    assert_eq!(status, 401, "{}", st.tail());
}
