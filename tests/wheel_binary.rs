//! What a static musl binary could break, checked on the binary the wheel installs (issue 23): the one in
//! the e2e venv (scripts/e2e-venv), `<arch>-unknown-linux-musl`, static-pie. Nothing of glibc is there to
//! lean on: libdbus is compiled in and talks to the Secret Service itself, `~` and the XDG directories come
//! from the environment, the trust store is read from the files the distributions put it in, and names are
//! resolved by musl, which reads /etc/hosts and resolv.conf and knows nothing of NSS (docs/install.md).
//!
//! The name-resolution and trust-store cases run the binary in a private mount namespace
//! (`unshare --user --map-root-user --mount`) where the test's own /etc/hosts, /etc/resolv.conf and
//! system CA bundle are bind-mounted over the machine's: the only place the test CA or the name can come from
//! is the file under test.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::print_stderr)]

mod e2e;
mod sandbox;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::venv;
use sandbox::{Out, PUBLIC_CLIENT, Sandbox};
use support::{CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET, Idp};

const SERVER: &str = "http://127.0.0.1:5997";
/// The machine's CA bundle, where Debian's ca-certificates puts it and openssl-probe (rustls-native-certs) looks
/// first (/usr/lib/ssl/cert.pem links to it).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn bus() -> String {
    std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap_or_else(|_| {
        panic!("no D-Bus session: run ./scripts/test (it wraps cargo test in dbus-run-session with gnome-keyring)")
    })
}

/// The wheel's `mlflow-oidc` with the sandbox's environment, in its project directory.
fn wheel(s: &Sandbox, args: &[&str]) -> Command {
    let mut c = e2e::command(s, venv().oidc());
    c.args(args);
    c
}

fn run(mut c: Command) -> Out {
    Out::from(c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}")))
}

fn token_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
        .unwrap_or_default()
}

fn keyring_items_for(issuer: &str) -> Vec<String> {
    let o =
        Command::new("secret-tool").args(["search", "--all", "service", "mlflow-oidc"]).output().unwrap_or_else(|e| {
            panic!("secret-tool not found ({e}): run ./scripts/test or apt-get install libsecret-tools")
        });
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let needle = format!(" at {issuer} for ");
    out.split("\n[").filter(|item| item.contains(&needle)).map(str::to_string).collect()
}

#[test]
fn the_refresh_token_goes_to_the_secret_service_through_the_compiled_in_libdbus_and_back() {
    let idp = Idp::start();
    let mut s = Sandbox::with_server(SERVER, &idp.issuer, &format!("{PUBLIC_CLIENT}\nuse-id-token = false"));
    s.set("DBUS_SESSION_BUS_ADDRESS", bus());

    let out = run(wheel(&s, &["login"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = token_files(&s.tokens_dir()).pop().unwrap_or_else(|| panic!("no token file: {}", out.stderr));
    let entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(entry["refresh_token_in"], "keyring", "{entry}");
    assert!(entry["tokens"].get("refresh_token").is_none(), "{entry}");
    assert_eq!(keyring_items_for(&idp.issuer).len(), 1, "one Secret Service item for this provider");

    // A refresh reads the refresh token back from the Secret Service.
    idp.clear_requests();
    let out = run(wheel(&s, &["token", "--min-valid", "2m"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(idp.count_grants("refresh_token"), 1, "{}", out.stderr);

    let out = run(wheel(&s, &["logout"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(keyring_items_for(&idp.issuer).is_empty(), "logout removed the Secret Service item");
}

#[test]
fn the_user_config_and_the_token_files_follow_home_and_the_xdg_variables() {
    let idp = Idp::start();
    let config = format!(
        "store = \"file\"\n[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{}\"\nclient-id = \"{CONFIDENTIAL_CLIENT_ID}\"\n\
         client-secret = \"{CONFIDENTIAL_CLIENT_SECRET}\"\n",
        idp.issuer
    );
    let xdg = ["XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"];

    // HOME alone: ~/.config and ~/.local/share.
    let mut s = Sandbox::new();
    s.set("MLFLOW_TRACKING_URI", SERVER);
    s.write("home/.config/mlflow-oidc/config.toml", &config);
    let mut c = wheel(&s, &["token"]);
    for k in xdg {
        c.env_remove(k);
    }
    let out = run(c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(token_files(&s.path("home/.local/share/mlflow-oidc/tokens")).len(), 1, "{}", out.stderr);

    // The XDG variables, elsewhere than HOME: the config is read and the token written there, nothing under HOME.
    let mut s = Sandbox::new();
    s.set("MLFLOW_TRACKING_URI", SERVER);
    s.write("xdg/config/mlflow-oidc/config.toml", &config);
    let mut c = wheel(&s, &["token"]);
    for (k, dir) in xdg.iter().zip(["config", "cache", "data", "state"]) {
        c.env(k, s.path(&format!("xdg/{dir}")));
    }
    let out = run(c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(token_files(&s.path("xdg/data/mlflow-oidc/tokens")).len(), 1, "{}", out.stderr);
    assert!(token_files(&s.path("home/.local/share/mlflow-oidc/tokens")).is_empty());
}

/// A provider over HTTPS named `https://localhost:PORT` (the test CA's certificate names localhost), and a
/// confidential-client project for it that persists nothing.
struct TlsSetup {
    s: Sandbox,
    ca: PathBuf,
    issuer: String,
    _idp: Idp,
}

fn tls_setup() -> TlsSetup {
    let port = support::free_port().to_string();
    let issuer = format!("https://localhost:{port}");
    let mut s = Sandbox::with_server(
        SERVER,
        &issuer,
        &format!("client-id = \"{CONFIDENTIAL_CLIENT_ID}\"\nclient-secret = \"{CONFIDENTIAL_CLIENT_SECRET}\""),
    );
    // Nothing cached between the cases: each one asks the provider.
    s.set("MLFLOW_OIDC_STORE", "memory");
    let tls = s.path("tls");
    let certs = Command::new(e2e::repo().join("tests/mlflow/make-certs.sh")).arg(&tls).output().unwrap();
    assert!(certs.status.success(), "make-certs.sh failed: {}", String::from_utf8_lossy(&certs.stderr));
    let idp = Idp::start_with(&[
        ("IDP_TLS_CERT", tls.join("server.pem").to_str().unwrap()),
        ("IDP_TLS_KEY", tls.join("server.key").to_str().unwrap()),
        ("IDP_PORT", &port),
        ("IDP_ISSUER", &issuer),
    ]);
    TlsSetup { s, ca: tls.join("ca.pem"), issuer, _idp: idp }
}

/// `mlflow-oidc token` in a private mount namespace whose /etc/hosts holds `hosts`, whose resolv.conf points at
/// a name server that is not there (one try, 1 s), and whose system CA bundle is `bundle` (None: the machine's).
fn token_in_namespace(t: &TlsSetup, hosts: &str, bundle: Option<&Path>, env: &[(&str, &str)]) -> Out {
    let hosts_file = t.s.write("ns/hosts", hosts);
    let resolv = t.s.write("ns/resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    let script = "set -e; mount --bind \"$1\" /etc/hosts; mount --bind \"$2\" /etc/resolv.conf; \
                  if [ -n \"$3\" ]; then mount --bind \"$3\" \"$4\"; fi; shift 4; exec \"$@\"";
    let mut c = e2e::command(&t.s, "unshare");
    c.args(["--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"])
        .arg(hosts_file)
        .arg(resolv)
        .arg(bundle.map(Path::as_os_str).unwrap_or_default())
        .arg(SYSTEM_BUNDLE)
        .arg(venv().oidc())
        .arg("token")
        .envs(env.iter().copied());
    let out = run(c);
    assert!(
        !out.stderr.contains("unshare:") && !out.stderr.contains("mount:"),
        "cannot set up the private mount namespace (unprivileged user namespaces disabled?): {}",
        out.stderr
    );
    out
}

#[test]
fn names_come_from_etc_hosts_and_roots_from_the_system_bundle_or_ssl_cert_file() {
    assert!(Path::new(SYSTEM_BUNDLE).is_file(), "no {SYSTEM_BUNDLE}: apt-get install ca-certificates");
    let t = tls_setup();
    let hosts = "127.0.0.1 localhost\n";

    // The test CA as the system bundle, localhost from /etc/hosts: a token.
    let out = token_in_namespace(&t, hosts, Some(&t.ca), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.trim().is_empty());

    // The machine's bundle, without the test CA: refused, and the message says where a private CA goes.
    let out = token_in_namespace(&t, hosts, None, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("certificate") && out.stderr.contains("SSL_CERT_FILE"), "{}", out.stderr);

    // SSL_CERT_FILE adds it.
    let out = token_in_namespace(&t, hosts, None, &[("SSL_CERT_FILE", t.ca.to_str().unwrap())]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // An /etc/hosts without localhost and no name server: the name does not resolve (musl has no other source),
    // and the error names the provider's URL and where the static build looks names up.
    let out = token_in_namespace(&t, "127.0.0.1 elsewhere.invalid\n", Some(&t.ca), &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(&t.issuer) && !out.stderr.contains("certificate"), "{}", out.stderr);
    assert!(out.stderr.contains("/etc/hosts") && out.stderr.contains("docs/install.md"), "{}", out.stderr);
}
