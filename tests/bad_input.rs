//! The bad-input catalogue: broken configuration, misbehaving providers, hostile callbacks and damaged stores,
//! each through the real binary. Every case asserts the same five things (see [`check`]):
//!
//! 1. the exit code (0 ok, 1 runtime failure, 2 configuration or usage, 3 login required);
//! 2. stderr names the culprit (the file, key, variable, URL or path at fault);
//! 3. no panic: never exit 101, never "panicked" on stderr, and no hang (each run is bounded in time);
//! 4. no secret (client secret, refresh token, access token, authorization code) on stdout or stderr, except the
//!    one token a successful `token` prints, alone, on stdout;
//! 5. no credential lost: where the case does not destroy it on purpose, the refresh token stored before the case
//!    still yields a token afterwards.
//!
//! Provider misbehaviour uses the scripted provider in `tests/fake` (a real one will not send HTML on demand);
//! callbacks use the real provider (`tests/support`) and a hand-rolled client on the loopback port.
//!
//! Cases are rows of tables, one test per theme, each in its own world; every row runs even when another fails,
//! and the failure names every failing row ([`cases::run_every`]; `MLFLOW_OIDC_TEST_CASE` runs the rows whose names
//! contain it). The cases that need a test of their own have one.
//!
//! The tests run as root in CI, where permission bits do not stop anyone: permission-denied cases are built
//! from things root cannot do either (a directory where a file should be, a path through a regular file, /sys),
//! or are conditional, asserting why.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod drive;
mod fake;
mod sandbox;
mod support;

use std::ffi::OsString;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use drive::{PendingLogin, run_bounded, send, start_login, status_of};
use fake::{AT_CC, AT_NEW, CLIENT_ID, CLIENT_ID_CONF, CLIENT_SECRET, Fake, Reply, SECRETS};
use sandbox::{Out, Sandbox};
use support::cases;

const SERVER: &str = "http://127.0.0.1:5997";
/// No case may take longer than this (the slow ones wait out a 2 s HTTP timeout).
const LIMIT: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------------------------------
// The five properties.

/// The properties every case shares. `printed` is the one secret allowed, alone, on stdout.
fn check(name: &str, out: &Out, code: i32, needles: &[String], secrets: &[&str], printed: Option<&str>) {
    assert_ne!(out.code, 101, "case `{name}`: panicked (exit 101):\n{}", out.stderr);
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "case `{name}`: a panic message on stderr:\n{}",
        out.stderr
    );
    assert_eq!(out.code, code, "case `{name}`: exit code\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    for needle in needles {
        assert!(
            out.stderr.contains(needle.as_str()),
            "case `{name}`: stderr does not name {needle:?}:\n{}",
            out.stderr
        );
    }
    for secret in secrets {
        assert!(!out.stderr.contains(secret), "case `{name}`: secret {secret:?} on stderr:\n{}", out.stderr);
        if Some(*secret) != printed {
            assert!(!out.stdout.contains(secret), "case `{name}`: secret {secret:?} on stdout:\n{}", out.stdout);
        }
    }
    match printed {
        Some(token) => assert_eq!(out.stdout, format!("{token}\n"), "case `{name}`: stdout is the token alone"),
        None if code != 0 => {
            assert_eq!(out.stdout, "", "case `{name}`: nothing on stdout on failure");
            assert!(out.stderr.contains("error: "), "case `{name}`: no `error:` line:\n{}", out.stderr);
        }
        None => {}
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A table row.

type Hook = Box<dyn Fn(&World)>;
type AfterHook = Box<dyn Fn(&World, &Out)>;

struct Case {
    name: &'static str,
    cwd: &'static str,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    code: i32,
    needles: Vec<String>,
    setup: Option<Hook>,
    after: Option<AfterHook>,
    /// Whether the refresh token stored before the case must still work after it.
    keeps: bool,
    /// The token a successful `token` prints.
    prints: Option<&'static str>,
}

/// `token --no-login`, the command most cases run.
fn t(name: &'static str) -> Case {
    case(name, &["token", "--no-login"])
}

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        cwd: "proj",
        args: args.iter().map(OsString::from).collect(),
        env: Vec::new(),
        code: 1,
        needles: Vec::new(),
        setup: None,
        after: None,
        keeps: true,
        prints: None,
    }
}

impl cases::Case for Case {
    fn name(&self) -> &'static str {
        self.name
    }
}

impl Case {
    fn cwd(mut self, cwd: &'static str) -> Self {
        self.cwd = cwd;
        self
    }
    fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.insert(0, a.into());
        self
    }
    fn env(mut self, k: &str, v: impl Into<OsString>) -> Self {
        self.env.push((k.to_string(), v.into()));
        self
    }
    /// The expected exit code and what stderr must name.
    fn fails(mut self, code: i32, needles: &[&str]) -> Self {
        self.code = code;
        self.needles = needles.iter().map(|s| s.to_string()).collect();
        self
    }
    fn succeeds(mut self, prints: &'static str, needles: &[&str]) -> Self {
        self.code = 0;
        self.prints = Some(prints);
        self.needles = needles.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Exit 0 with nothing on stdout (`login`, `logout`).
    fn succeeds_silently(mut self, needles: &[&str]) -> Self {
        self.code = 0;
        self.needles = needles.iter().map(|s| s.to_string()).collect();
        self
    }
    fn setup(mut self, f: impl Fn(&World) + 'static) -> Self {
        self.setup = Some(Box::new(f));
        self
    }
    fn after(mut self, f: impl Fn(&World, &Out) + 'static) -> Self {
        self.after = Some(Box::new(f));
        self
    }
    /// The case destroys the stored credential on purpose (a corrupt file, a refresh token the provider revoked).
    fn loses_credential(mut self) -> Self {
        self.keeps = false;
        self
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The world the configuration, provider and store cases run in: a sandbox logged in to the scripted provider.

struct World {
    s: Sandbox,
    fake: Fake,
    /// The token file of `proj` as it was after the login, with its access token made stale, so that every case
    /// starts from "a refresh token that works" and must go to the provider.
    entry_path: PathBuf,
    entry: Vec<u8>,
}

fn block(issuer: &str, extra: &str) -> String {
    format!(
        "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{issuer}\"\nclient-id = \"{CLIENT_ID}\"\n\
         scope = \"openid\"\nuse-id-token = false\nredirect-uri = \"http://127.0.0.1:0/oauth2/callback\"\n{extra}"
    )
}

/// A `$BROWSER` that plays a person who logs in at once: it sends the code back to the loopback redirect.
const AUTO_BROWSER: &str = r#"#!/bin/bash
url="$1"
ru=$(printf '%s' "$url" | sed -E 's/.*[?&]redirect_uri=([^&]*).*/\1/')
st=$(printf '%s' "$url" | sed -E 's/.*[?&]state=([^&]*).*/\1/')
ru=$(printf '%b' "${ru//%/\\x}")
curl -s -o /dev/null --max-time 20 "$ru?code=CODE&state=$st"
"#;

impl World {
    fn new() -> World {
        let mut s = Sandbox::new();
        let fake = Fake::start();
        s.write("proj/pyproject.toml", &block(&fake.base, ""));
        s.write(
            "conf/pyproject.toml",
            &format!(
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{}\"\n\
                 client-id = \"{CLIENT_ID_CONF}\"\nclient-secret = \"{CLIENT_SECRET}\"\n",
                fake.base
            ),
        );
        let browser = s.write("auto-browser.sh", &AUTO_BROWSER.replace("CODE", fake::CODE));
        std::fs::set_permissions(&browser, PermissionsExt::from_mode(0o755)).unwrap();
        s.set("BROWSER", browser.to_str().unwrap());
        s.set("MLFLOW_OIDC_STORE", "file");
        s.set("MLFLOW_OIDC_HTTP_TIMEOUT", "2s");
        s.set("MLFLOW_OIDC_HTTP_CONNECT_TIMEOUT", "2s");
        let out = run_bounded(s.cmd("proj", &["login", "--timeout", "30"]), LIMIT);
        check("setup: login", &out, 0, &[], SECRETS, None);
        let entry_path = s.token_file();
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry_path).unwrap()).unwrap();
        assert_eq!(v["tokens"]["refresh_token"], fake::RT, "the login stored the refresh token in the file");
        v["tokens"]["access_expires_at"] = 1.into();
        let w = World { s, fake, entry_path, entry: serde_json::to_vec(&v).unwrap() };
        w.restore();
        w
    }

    /// A world, its provider's issuer and its token endpoint's URL, which the token endpoint's cases name.
    fn with_token_url() -> (World, String, String) {
        let w = World::new();
        let (base, token_url) = (w.fake.base.clone(), w.fake.url(TOKEN));
        (w, base, token_url)
    }

    /// Back to the state every case starts from.
    fn restore(&self) {
        self.fake.reset();
        self.fake.clear();
        for p in [self.s.path("home/.local/share"), self.s.path("home/.cache")] {
            make_writable(&p);
            remove_any(&p);
        }
        let tokens = self.s.tokens_dir();
        std::fs::create_dir_all(&tokens).unwrap();
        for d in [self.s.data_dir(), tokens] {
            std::fs::set_permissions(&d, PermissionsExt::from_mode(0o700)).unwrap();
        }
        std::fs::write(&self.entry_path, &self.entry).unwrap();
        std::fs::set_permissions(&self.entry_path, PermissionsExt::from_mode(0o600)).unwrap();
    }

    /// Property 5: the stored refresh token still yields a token from a well-behaved provider.
    fn credential_still_works(&self, name: &str) {
        self.fake.reset();
        self.fake.clear();
        remove_any(&self.s.path("home/.cache/mlflow-oidc"));
        let out = run_bounded(self.s.cmd("proj", &["token", "--no-login", "--min-valid", "2h"]), LIMIT);
        assert_eq!(out.code, 0, "case `{name}`: the stored credential no longer works afterwards:\n{}", out.stderr);
        assert_eq!(out.stdout, format!("{AT_NEW}\n"), "case `{name}`: a refreshed token");
        let refreshed = self.fake.requests().iter().any(|r| r.form("refresh_token").as_deref() == Some(fake::RT));
        assert!(refreshed, "case `{name}`: the stored refresh token was used");
    }

    fn run(&self, c: &Case) -> Out {
        let mut cmd = self.s.cmd(c.cwd, &[]);
        cmd.args(&c.args);
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        run_bounded(cmd, LIMIT)
    }

    /// Run every case of `table` from a restored world ([`cases::run_every`]: each case runs even when an earlier
    /// one fails, and the failures are listed by name at the end); the table has at least `at_least` cases.
    fn run_all(&self, table: &str, at_least: usize, cases: Vec<Case>) {
        cases::run_every(table, at_least, cases, |c| {
            self.restore();
            if let Some(f) = &c.setup {
                f(self);
            }
            let out = self.run(c);
            check(c.name, &out, c.code, &c.needles, SECRETS, c.prints);
            if let Some(f) = &c.after {
                f(self, &out);
            }
            if c.keeps {
                self.restore_permissions();
                self.credential_still_works(c.name);
            }
        });
        self.restore();
    }

    /// Undo what a case did to modes and directories, but not to the token file's content.
    fn restore_permissions(&self) {
        let tokens = self.s.tokens_dir();
        if !tokens.is_dir() {
            let content = std::fs::read(&self.entry_path).ok();
            remove_any(&self.s.path("home/.local/share"));
            std::fs::create_dir_all(&tokens).unwrap();
            std::fs::write(&self.entry_path, content.unwrap_or_else(|| self.entry.clone())).unwrap();
        }
        make_writable(&self.s.path("home/.local/share"));
    }

    /// A file for a case, under cfg/.
    fn file(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let p = self.s.path(&format!("cfg/{name}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// The fake's discovery document edited by `f`, as a reply.
    fn meta(&self, f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)) -> Reply {
        Reply::json(200, self.fake.metadata_with(f))
    }

    /// The stored entry of `proj`, edited by `f` (for store cases).
    fn edit_entry(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let mut v: serde_json::Value = serde_json::from_slice(&self.entry).unwrap();
        f(&mut v);
        std::fs::write(&self.entry_path, serde_json::to_vec(&v).unwrap()).unwrap();
    }
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).unwrap(),
        Ok(_) => std::fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

fn make_writable(p: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(p)
        && m.is_dir()
    {
        let _ = std::fs::set_permissions(p, PermissionsExt::from_mode(0o755));
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration: files, keys, types, URLs, environment values, non-UTF-8. Three tables, each in its own world.

/// A `--config` file's block for [`SERVER`] with a placeholder issuer, plus `extra` lines.
fn server(extra: &str) -> String {
    format!(
        "[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"https://idp.example.com\"\nclient-id = \"c\"\n{extra}"
    )
}

/// The same with `issuer` as the issuer.
fn with_issuer(issuer: &str) -> String {
    format!("[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{issuer}\"\nclient-id = \"c\"\n")
}

/// The same with `redirect` as the redirect URI.
fn with_redirect(redirect: &str) -> String {
    server(&format!("redirect-uri = \"{redirect}\"\n"))
}

// Configuration files: TOML syntax, encodings, paths, shapes, types and keys.

#[test]
fn configuration_file_cases() {
    let w = World::new();
    let base = w.fake.base.clone();
    let ok_block = block(&base, "");
    let tok = ["token", "--no-login"];
    let f = |name: &str, text: &str| w.file(name, text);
    let unclosed = f("unclosed.toml", "[tool.mlflow-oidc-client\nuri = 1\n");
    let escape = f("escape.toml", "[[tracking-servers]]\nuri = \"http://m\\q\"\n");
    let dup = f("dup.toml", "[[tracking-servers]]\nuri = \"a\"\nuri = \"b\"\n");
    let nul = f("nul.toml", "[[tracking-servers]]\nuri = \"a\u{0}b\"\n");
    let deep = f("deep.toml", &format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)));
    let non_utf8 = w.file("latin1.toml", b"[[tracking-servers]]\nuri = \"caf\xe9\"\n");
    let utf16 = w.file("utf16.toml", b"\xff\xfe[\x00[\x00t\x00");
    let bom = w.file("bom.toml", format!("\u{feff}{ok_block}"));
    let int_servers = f("int-servers.toml", "[tool.mlflow-oidc-client]\ntracking-servers = 3\n");
    let table_servers = f("table-servers.toml", "[tool.mlflow-oidc-client.tracking-servers]\nuri = \"x\"\n");
    let tool_string = f("tool-string.toml", "tool = \"x\"\n");
    let ours_array = f("ours-array.toml", "tool = { mlflow-oidc-client = [1] }\n");
    let entry_string = f("entry-string.toml", "tracking-servers = [\"http://m\"]\n");
    let issuer_int =
        f("issuer-int.toml", &format!("[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = 5\nclient-id = \"c\"\n"));
    let id_array = f(
        "id-array.toml",
        &format!("[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"https://i\"\nclient-id = [\"c\"]\n"),
    );
    let scope_table = f("scope-table.toml", &server("scope = { a = 1 }\n"));
    let uri_date = f("uri-date.toml", "[[tracking-servers]]\nuri = 1979-05-27T07:32:00Z\n");
    let perhaps = f("perhaps.toml", &server("interactive = \"perhaps\"\n"));
    let two = f("two.toml", &server("use-id-token = 2\n"));
    let float = f("float.toml", &server("offline-access = 1.5\n"));
    let no_issuer = f("no-issuer.toml", &format!("[[tracking-servers]]\nuri = \"{SERVER}\"\nclient-id = \"c\"\n"));
    let no_id = f("no-id.toml", &format!("[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"https://i\"\n"));
    let auth_method = f("auth-method.toml", &server("token-endpoint-auth-method = \"private_key_jwt\"\n"));
    let store_int = f("store-int.toml", &format!("store = 5\n{}", server("")));
    let store_cloud = f("store-cloud.toml", &format!("store = \"cloud\"\n{}", server("")));
    let typo = f("typo.toml", &format!("{ok_block}clinet-secret = \"x\"\n"));
    let uriless = f(
        "uriless.toml",
        &format!("[[tool.mlflow-oidc-client.tracking-servers]]\nissuer = \"https://i\"\n\n{ok_block}"),
    );
    let empty = f("empty.toml", "");
    let dir = w.s.path("cfg").to_str().unwrap().to_string();
    let through_file = format!("{unclosed}/x.toml");
    let latin1_path = OsString::from_vec(b"/nonexistent/caf\xe9.toml".to_vec());
    let c = |name, path: &String| case(name, &tok).arg(path).arg("--config");
    let cases = vec![
        // Files.
        c("toml: unclosed table header", &unclosed).fails(2, &[&unclosed, "invalid TOML", "line 1"]),
        c("toml: invalid escape", &escape).fails(2, &[&escape, "invalid TOML", "line 2"]),
        c("toml: duplicate key", &dup).fails(2, &[&dup, "invalid TOML", "line 3"]),
        c("toml: NUL byte in a string", &nul).fails(2, &[&nul, "invalid TOML"]),
        c("toml: 100k nested arrays", &deep).fails(2, &[&deep, "invalid TOML"]),
        c("file: Latin-1, not UTF-8", &non_utf8).fails(2, &[&non_utf8, "UTF-8"]),
        c("file: UTF-16", &utf16).fails(2, &[&utf16, "UTF-8"]),
        c("file: UTF-8 with a byte-order mark is fine", &bom).succeeds(AT_NEW, &[]),
        c("file: empty", &empty).fails(2, &[&empty, "no tracking server is configured"]),
        c("file: a directory", &dir).fails(2, &[&dir, "directory"]),
        c("file: a path through a regular file", &through_file).fails(2, &[&through_file]),
        case("file: missing, from --config", &tok)
            .arg("/nonexistent/mlflow.toml")
            .arg("--config")
            .fails(2, &["/nonexistent/mlflow.toml", "--config", "does not exist"]),
        case("file: missing, from MLFLOW_OIDC_CONFIG", &tok)
            .env("MLFLOW_OIDC_CONFIG", "/nonexistent/env.toml")
            .fails(2, &["/nonexistent/env.toml", "MLFLOW_OIDC_CONFIG"]),
        case("file: non-UTF-8 path", &tok)
            .arg(latin1_path)
            .arg("--config")
            .fails(2, &["/nonexistent/caf", "does not exist"]),
        // Shapes and types.
        c("shape: tracking-servers is an integer", &int_servers)
            .fails(2, &[&int_servers, "tracking-servers", "an integer"]),
        c("shape: tracking-servers is one table", &table_servers).fails(2, &[&table_servers, "array of tables"]),
        c("shape: tool is a string", &tool_string).fails(2, &[&tool_string, "`tool`", "a string"]),
        c("shape: our table is an array", &ours_array).fails(2, &[&ours_array, "tool.mlflow-oidc-client", "an array"]),
        c("shape: an entry is a string", &entry_string).fails(2, &[&entry_string, "entry #1", "must be a table"]),
        c("type: issuer is an integer", &issuer_int).fails(2, &[&issuer_int, "`issuer`", "an integer"]),
        c("type: client-id is an array", &id_array).fails(2, &[&id_array, "`client-id`", "an array"]),
        c("type: scope is a table", &scope_table).fails(2, &[&scope_table, "`scope`", "a table"]),
        c("type: uri is a date-time", &uri_date).fails(2, &[&uri_date, "`uri`", "a date-time"]),
        c("bool: interactive = \"perhaps\"", &perhaps).fails(2, &[&perhaps, "`interactive`", "perhaps"]),
        c("bool: use-id-token = 2", &two).fails(2, &[&two, "`use-id-token`", "an integer"]),
        c("bool: offline-access = 1.5", &float).fails(2, &[&float, "`offline-access`", "a float"]),
        c("key: unknown key warns and is ignored", &typo).succeeds(AT_NEW, &["clinet-secret", "client-secret"]),
        c("key: a block without uri is skipped with a warning", &uriless).succeeds(AT_NEW, &["no `uri`", &uriless]),
        c("key: issuer missing", &no_issuer).fails(2, &[&no_issuer, "missing issuer"]),
        c("key: client-id missing", &no_id).fails(2, &[&no_id, "missing client-id"]),
        c("key: store is a number", &store_int).env("MLFLOW_OIDC_STORE", "").fails(2, &[&store_int, "`store`"]),
        c("key: store = \"cloud\"", &store_cloud).env("MLFLOW_OIDC_STORE", "").fails(2, &[&store_cloud, "cloud"]),
        c("key: token-endpoint-auth-method = private_key_jwt", &auth_method)
            .fails(2, &["token-endpoint-auth-method", "private_key_jwt"]),
    ];
    w.run_all("configuration file cases", 33, cases);
}

// Configuration URLs: issuers, redirect URIs, which server is meant.

#[test]
fn configuration_url_cases() {
    let w = World::new();
    let tok = ["token", "--no-login"];
    let f = |name: &str, text: &str| w.file(name, text);
    let http_public = f("http-public.toml", &with_issuer("http://idp.example.com/realms/ml"));
    let http_any = f("http-any.toml", &with_issuer("http://0.0.0.0:8080"));
    let http_lookalike = f("http-lookalike.toml", &with_issuer("http://localhost.evil.example"));
    let ftp = f("ftp.toml", &with_issuer("ftp://idp.example.com"));
    let relative = f("relative.toml", &with_issuer("idp.example.com/realms/ml"));
    let query = f("query.toml", &with_issuer("https://idp.example.com/?realm=ml"));
    let https_redirect = f("https-redirect.toml", &with_redirect("https://127.0.0.1:8080/cb"));
    let public_redirect = f("public-redirect.toml", &with_redirect("http://192.0.2.1:8080/cb"));
    let wildcard_redirect = f("wildcard-redirect.toml", &with_redirect("http://0.0.0.0:8080/cb"));
    let portless = f("portless.toml", &with_redirect("http://127.0.0.1/cb"));
    let pathless = f("pathless.toml", &with_redirect("http://127.0.0.1:8080"));
    let fragment = f("fragment.toml", &with_redirect("http://127.0.0.1:8080/cb#x"));
    let two_servers = f(
        "two-servers.toml",
        "[[tracking-servers]]\nuri = \"https://a.example.com\"\nissuer = \"https://i\"\nclient-id = \"c\"\n\
         [[tracking-servers]]\nuri = \"https://b.example.com\"\nissuer = \"https://i\"\nclient-id = \"c\"\n",
    );
    let c = |name, path: &String| case(name, &tok).arg(path).arg("--config");
    let cases = vec![
        // URLs.
        c("url: http issuer on a public host", &http_public)
            .fails(2, &["http://idp.example.com/realms/ml", "https://"]),
        c("url: http issuer on 0.0.0.0", &http_any).fails(2, &["http://0.0.0.0:8080", "https://"]),
        c("url: http issuer on a localhost look-alike", &http_lookalike)
            .fails(2, &["localhost.evil.example", "https://"]),
        c("url: ftp issuer", &ftp).fails(2, &["ftp://"]),
        c("url: relative issuer", &relative).fails(2, &["idp.example.com/realms/ml", "not an absolute URL"]),
        c("url: issuer with a query", &query).fails(2, &["?realm=ml", "query"]),
        // Issue 16: resolved (status shows it), but `login` needs the user's own certificate.
        case("url: https redirect without TLS files", &["login", "--timeout", "5"])
            .arg(&https_redirect)
            .arg("--config")
            .fails(2, &["https://127.0.0.1:8080/cb", "redirect-tls-cert", "redirect-tls-key"]),
        c("url: redirect on a public address", &public_redirect).fails(2, &["192.0.2.1", "loopback"]),
        c("url: redirect on the wildcard address", &wildcard_redirect).fails(2, &["0.0.0.0", "loopback"]),
        c("url: redirect without a port", &portless).fails(2, &["http://127.0.0.1/cb", "explicit port"]),
        c("url: redirect without a path", &pathless).fails(2, &["http://127.0.0.1:8080", "path"]),
        c("url: redirect with a fragment", &fragment).fails(2, &["#x", "fragment"]),
        c("selection: two servers, none chosen", &two_servers)
            .fails(2, &["https://a.example.com", "https://b.example.com"]),
        case("selection: --server matches nothing", &tok)
            .arg("https://nowhere.example.com")
            .arg("--server")
            .fails(2, &["https://nowhere.example.com", SERVER]),
    ];
    w.run_all("configuration URL cases", 14, cases);
}

// Environment values, the command line, exec and proxy.

#[test]
fn environment_and_usage_cases() {
    let w = World::new();
    let base = w.fake.base.clone();
    let tok = ["token", "--no-login"];
    let f = |name: &str, text: &str| w.file(name, text);
    let plain_http_server = f(
        "plain-http-server.toml",
        &format!(
            "[[tracking-servers]]\nuri = \"http://mlflow.example.com\"\nissuer = \"{base}\"\nclient-id = \"{CLIENT_ID}\"\n"
        ),
    );
    let not_pem = f("not-pem.pem", "this is not a certificate\n");
    let dir = w.s.path("cfg").to_str().unwrap().to_string();
    let cases = vec![
        // Environment values.
        case("env: boolean", &tok)
            .env("MLFLOW_TRACKING_OIDC_INTERACTIVE", "maybe")
            .fails(2, &["MLFLOW_TRACKING_OIDC_INTERACTIVE", "maybe"]),
        case("env: issuer is not UTF-8", &tok)
            .env("MLFLOW_TRACKING_OIDC_ISSUER", OsString::from_vec(b"https://\xff\xfe".to_vec()))
            .fails(2, &["MLFLOW_TRACKING_OIDC_ISSUER", "UTF-8"]),
        case("env: tracking URI is not UTF-8", &tok)
            .env("MLFLOW_TRACKING_URI", OsString::from_vec(b"http://\xc0.example".to_vec()))
            .fails(2, &["MLFLOW_TRACKING_URI", "UTF-8"]),
        case("env: HTTP timeout is not a duration", &tok)
            .env("MLFLOW_OIDC_HTTP_TIMEOUT", "soon")
            .fails(2, &["MLFLOW_OIDC_HTTP_TIMEOUT", "soon"]),
        case("env: negative connect timeout", &tok)
            .env("MLFLOW_OIDC_HTTP_CONNECT_TIMEOUT", "-1")
            .fails(2, &["MLFLOW_OIDC_HTTP_CONNECT_TIMEOUT", "-1"]),
        case("env: keyring timeout", &tok)
            .env("MLFLOW_OIDC_KEYRING_TIMEOUT", "forever")
            .fails(2, &["MLFLOW_OIDC_KEYRING_TIMEOUT", "forever"]),
        case("env: store", &tok).env("MLFLOW_OIDC_STORE", "vault").fails(2, &["MLFLOW_OIDC_STORE", "vault"]),
        case("env: ca-bundle missing", &tok)
            .env("MLFLOW_TRACKING_OIDC_CA_BUNDLE", "/nonexistent/ca.pem")
            .fails(2, &["ca-bundle", "/nonexistent/ca.pem"]),
        case("env: ca-bundle is not PEM", &tok)
            .env("MLFLOW_TRACKING_OIDC_CA_BUNDLE", &not_pem)
            .fails(2, &["ca-bundle", &not_pem]),
        case("env: ca-bundle is a directory", &tok)
            .env("MLFLOW_TRACKING_OIDC_CA_BUNDLE", &dir)
            .fails(2, &["ca-bundle", &dir]),
        case("env: SSL_CERT_FILE missing", &tok)
            .env("SSL_CERT_FILE", "/nonexistent/roots.pem")
            .fails(2, &["SSL_CERT_FILE", "/nonexistent/roots.pem"]),
        // Command line.
        case("usage: --server is not UTF-8", &tok)
            .arg(OsString::from_vec(b"http://\xff".to_vec()))
            .arg("--server")
            .fails(2, &["UTF-8"]),
        case("usage: --min-valid is not a duration", &["token", "--min-valid", "soon"])
            .fails(2, &["--min-valid", "soon"]),
        case("usage: --format xml", &["token", "--format", "xml"]).fails(2, &["--format", "xml"]),
        case("usage: --store vault", &["--store", "vault", "token"]).fails(2, &["--store", "vault"]),
        case("usage: exec without a command", &["exec"]).fails(2, &["COMMAND"]),
        case("usage: exec of a program that does not exist", &["exec", "--no-login", "--", "/nonexistent/prog"])
            .fails(1, &["/nonexistent/prog", "not found"]),
        // MLflow would send these instead of the token exec provides (docs/mlflow-oidc-auth.md).
        case(
            "exec: MLFLOW_TRACKING_USERNAME set next to the token is warned about",
            &["exec", "--no-login", "--", "/nonexistent/prog"],
        )
        .env("MLFLOW_TRACKING_USERNAME", "alice")
        .fails(1, &["MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD are set", "/nonexistent/prog"]),
        // Issue 20: the token would cross the network in clear.
        case("proxy: a plain-http tracking server not on loopback", &["proxy", "--no-login"])
            .arg(&plain_http_server)
            .arg("--config")
            .fails(2, &["http://mlflow.example.com", "plain http", "--allow-plain-http"]),
        case("proxy: an upstream timeout that is no duration", &["proxy", "--no-login"])
            .env("MLFLOW_OIDC_PROXY_UPSTREAM_TIMEOUT", "soon")
            .fails(2, &["MLFLOW_OIDC_PROXY_UPSTREAM_TIMEOUT", "soon"]),
    ];
    w.run_all("environment and usage cases", 20, cases);
}

// ---------------------------------------------------------------------------------------------------------------
// Provider behaviour: discovery, transport and TLS, the token endpoint. Three tables, each in its own world.

const DISCOVERY: &str = "/.well-known/openid-configuration";
/// A window-title change, a screen clear and a colour: what a hostile provider could send a terminal.
const ESCAPE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mred";

/// The fake advertises a device authorization endpoint that starts a flow showing `verification_uri`.
fn device_flow(w: &World, verification_uri: &str) {
    let meta =
        w.fake.metadata_with(|m| drop(m.insert("device_authorization_endpoint".into(), w.fake.url("/device").into())));
    w.fake.set(DISCOVERY, Reply::json(200, meta));
    let start = serde_json::json!({
        "device_code": fake::DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": verification_uri,
        "expires_in": 30, "interval": 1,
    });
    w.fake.set("/device", Reply::json(200, start.to_string()));
}
const TOKEN: &str = "/token";

/// A 2 MiB JSON document, over every limit we read a provider's reply with.
fn huge(issuer: &str) -> String {
    format!("{{\"issuer\":\"{issuer}\",\"pad\":\"{}\"}}", "x".repeat(2 << 20))
}

/// No terminal escape (ESC, BEL) of the provider's reached stderr (issue 12).
fn no_escape_on_stderr(_: &World, out: &Out) {
    assert!(!out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{7}'), "{:?}", out.stderr);
}

/// A setup hook that makes the fake answer `path` with `reply`.
fn on(path: &'static str, reply: Reply) -> impl Fn(&World) + 'static {
    move |w: &World| w.fake.set(path, reply.clone())
}

/// The path was never requested (a redirect was not followed, so nothing was re-sent there).
fn never_requested(path: &'static str) -> impl Fn(&World, &Out) + 'static {
    move |w: &World, _: &Out| {
        let hits: Vec<_> = w.fake.requests().into_iter().filter(|r| r.path == path).collect();
        assert!(hits.is_empty(), "{path} was requested: {hits:?}");
    }
}

/// `openssl s_server` with a self-signed certificate for 127.0.0.1: a TLS peer nobody trusts.
struct TlsPeer {
    child: std::process::Child,
    port: u16,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsPeer {
    fn start() -> TlsPeer {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl is needed for the TLS cases (apt-get install openssl)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        // A private CA and a leaf certificate for 127.0.0.1 signed by it.
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=catalogue CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ]);
        std::fs::write(p("leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ]);
        let (key, cert) = (p("leaf.key"), p("leaf.pem"));
        let port = support::free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            thread::sleep(Duration::from_millis(20));
        }
        TlsPeer { child, port, ca: p("ca.pem"), _dir: dir }
    }
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Discovery (OpenID Connect Discovery 1.0): what the provider's metadata document can be instead of one.
#[test]
fn discovery_cases() {
    let w = World::new();
    let base = w.fake.base.clone();
    let disco = w.fake.discovery_url();
    let escape = ESCAPE;

    let cases = vec![
        t("discovery: 404").setup(on(DISCOVERY, Reply::text(404, "no such realm"))).fails(1, &[&disco, "HTTP 404"]),
        t("discovery: 500").setup(on(DISCOVERY, Reply::text(500, "oops"))).fails(1, &[&disco, "HTTP 500"]),
        t("discovery: an HTML login page")
            .setup(on(DISCOVERY, Reply::html(200, "<html><body>Sign in</body></html>")))
            .fails(1, &[&disco, "not return a valid OpenID configuration"]),
        t("discovery: truncated JSON")
            .setup(on(DISCOVERY, Reply::json(200, format!("{{\"issuer\":\"{base}\",\"token_endp"))))
            .fails(1, &[&disco, "not return a valid OpenID configuration"]),
        t("discovery: empty body").setup(on(DISCOVERY, Reply::json(200, ""))).fails(1, &[&disco, "valid OpenID"]),
        t("discovery: a JSON array").setup(on(DISCOVERY, Reply::json(200, "[]"))).fails(1, &[&disco, "valid OpenID"]),
        t("discovery: issuer is a number")
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.insert("issuer".into(), 5.into())))))
            .fails(1, &[&disco, "valid OpenID"]),
        t("discovery: wrong issuer")
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.insert("issuer".into(), "https://evil.example.com".into())))))
            .fails(1, &[&disco, "https://evil.example.com", &base]),
        t("discovery: terminal escapes in the issuer")
            .setup(on(
                DISCOVERY,
                w.meta(&|m| drop(m.insert("issuer".into(), format!("https://evil.example.com/{escape}").into()))),
            ))
            .fails(1, &[&disco, "https://evil.example.com/"])
            .after(no_escape_on_stderr),
        // Issue 12: provider text reaches no terminal raw, also where the first catalogue missed it.
        case("status --check: terminal escapes in endpoint URLs (OSC 52 included)", &["status", "--check"])
            .setup(on(
                DISCOVERY,
                w.meta(&|m| {
                    for k in [
                        "token_endpoint",
                        "authorization_endpoint",
                        "revocation_endpoint",
                        "device_authorization_endpoint",
                    ] {
                        m.insert(k.into(), format!("{base}/{k}\u{1b}]52;c;cHduZWQ=\u{7}{escape}").into());
                    }
                    m.insert("scopes_supported".into(), serde_json::json!(["openid", format!("x{escape}")]));
                }),
            ))
            .fails(0, &[])
            .after(|_, out| {
                assert!(out.stdout.contains("token endpoint"), "{}", out.stdout);
                assert!(!out.stdout.contains('\u{1b}') && !out.stdout.contains('\u{7}'), "{:?}", out.stdout)
            }),
        t("discovery: no token_endpoint")
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.remove("token_endpoint")))))
            .fails(1, &["token_endpoint", &base]),
        t("discovery: token_endpoint is not a URL")
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.insert("token_endpoint".into(), "::not a url::".into())))))
            .fails(1, &["token_endpoint", "::not a url::"]),
        t("discovery: a redirect is not followed")
            .setup(on(DISCOVERY, Reply::Redirect(302, format!("{base}/elsewhere"))))
            .fails(1, &[&disco, "HTTP 302"])
            .after(never_requested("/elsewhere")),
        t("discovery: 2 MiB body")
            .setup(on(DISCOVERY, Reply::json(200, huge(&base))))
            .fails(1, &[&disco, "larger than"]),
        t("discovery: slow-loris body")
            .setup(on(DISCOVERY, Reply::Trickle(Duration::from_millis(200))))
            .fails(1, &[&disco, "timeout"]),
        t("discovery: accepts and never answers")
            .setup(on(DISCOVERY, Reply::Hang(Duration::from_secs(30))))
            .fails(1, &[&disco, "timeout"]),
        t("discovery: closes without a byte").setup(on(DISCOVERY, Reply::Close)).fails(1, &[&disco, "cannot reach"]),
        t("discovery: not HTTP at all")
            .setup(on(DISCOVERY, Reply::Raw(b"\x16\x03\x01\x00\xffgarbage\r\n\r\n".to_vec())))
            .fails(1, &[&disco, "cannot reach"]),
        t("discovery: 100 KiB of headers")
            .setup(on(
                DISCOVERY,
                Reply::Raw(format!("HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n{{}}", "a".repeat(100 << 10)).into_bytes()),
            ))
            .fails(1, &[&disco, "cannot reach"]),
    ];
    w.run_all("discovery cases", 19, cases);
}

/// Transport and TLS: the provider unreachable, unknown, or behind a certificate nobody trusts.
#[test]
fn transport_and_tls_cases() {
    let w = World::new();
    let tls = TlsPeer::start();
    let tls_issuer = format!("https://127.0.0.1:{}", tls.port);
    let dead = format!("http://127.0.0.1:{}", support::free_port());

    let cases = vec![
        t("transport: connection refused").env("MLFLOW_TRACKING_OIDC_ISSUER", &dead).fails(1, &[&dead, "cannot reach"]),
        t("transport: unknown host")
            .env("MLFLOW_TRACKING_OIDC_ISSUER", "https://idp.nonexistent.invalid")
            .fails(1, &["idp.nonexistent.invalid", "cannot reach"]),
        t("tls: certificate from an unknown CA")
            .env("MLFLOW_TRACKING_OIDC_ISSUER", &tls_issuer)
            .fails(1, &[&tls_issuer, "TLS", "ca-bundle"]),
        t("tls: the CA in ca-bundle gets past the handshake")
            .env("MLFLOW_TRACKING_OIDC_ISSUER", &tls_issuer)
            .env("MLFLOW_TRACKING_OIDC_CA_BUNDLE", &tls.ca)
            .fails(1, &[&tls_issuer, "not return a valid OpenID configuration"]),
        t("tls: plain HTTP behind an https:// issuer")
            .env("MLFLOW_TRACKING_OIDC_ISSUER", format!("https://127.0.0.1:{}", w.fake.port))
            .fails(1, &[&format!("https://127.0.0.1:{}", w.fake.port), "cannot reach"]),
    ];
    w.run_all("transport and TLS cases", 5, cases);
}

/// Refreshing the stored refresh token: the provider says no (RFC 6749 §5.2 and what providers send instead), or
/// sends a reply that is not a usable token response, or no reply at all.
#[test]
fn refresh_cases() {
    let (w, base, token_url) = World::with_token_url();
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let tokens = |v: serde_json::Value| Reply::json(200, v.to_string());
    let jwt_at = |exp: serde_json::Value| {
        tokens(serde_json::json!({"access_token": fake::jwt(&serde_json::json!({"exp": exp, "sub": "x"})),
            "token_type": "Bearer", "expires_in": 3600}))
    };
    let escape = ESCAPE;

    let cases = vec![
        t("refresh: invalid_grant means a new login")
            .setup(on(TOKEN, Reply::json(400, r#"{"error":"invalid_grant"}"#)))
            .fails(3, &["refresh token", "mlflow-oidc login"])
            .loses_credential(),
        // Issue 16: a refresh token the provider killed (reuse detection) answered with an empty or non-OAuth
        // 400/401 is "log in again": exit 3, the dead refresh token dropped, nothing else lost.
        t("refresh: 400 with an empty body means log in again")
            .setup(on(TOKEN, Reply::text(400, "")))
            .fails(3, &["not logged in", "rejected the stored refresh token", "mlflow-oidc login"])
            .after(|w, _| {
                let entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&w.entry_path).unwrap()).unwrap();
                assert!(entry["tokens"].get("refresh_token").is_none(), "the dead refresh token is dropped: {entry}");
                assert_eq!(entry["issuer"], w.fake.base.as_str(), "the rest of the entry stays: {entry}");
            })
            .loses_credential(),
        t("refresh: 401 with an HTML body means log in again")
            .setup(on(TOKEN, Reply::html(401, "<html>Unauthorized</html>")))
            .fails(3, &["not logged in", "mlflow-oidc login"])
            .loses_credential(),
        t("refresh: 500 in plain text")
            .setup(on(TOKEN, Reply::text(500, "Internal Server Error")))
            .fails(1, &[&token_url]),
        t("refresh: 502 from a proxy, in HTML")
            .setup(on(TOKEN, Reply::html(502, "<html><h1>Bad Gateway</h1></html>")))
            .fails(1, &[&token_url]),
        t("refresh: invalid_request with a description")
            .setup(on(
                TOKEN,
                Reply::json(400, r#"{"error":"invalid_request","error_description":"grant is missing a parameter"}"#),
            ))
            .fails(1, &[&token_url, "invalid_request", "grant is missing a parameter"]),
        t("refresh: invalid_client")
            .setup(on(TOKEN, Reply::json(401, r#"{"error":"invalid_client"}"#)))
            .fails(1, &["invalid_client"]),
        t("refresh: an unknown error code")
            .setup(on(TOKEN, Reply::json(400, r#"{"error":"temporarily_unavailable"}"#)))
            .fails(1, &["temporarily_unavailable"]),
        // Not an OAuth error response at 400: like an empty body, "log in again" (issue 16).
        t("refresh: error is not a string")
            .setup(on(TOKEN, Reply::json(400, r#"{"error":5}"#)))
            .fails(3, &["rejected the stored refresh token"])
            .loses_credential(),
        t("refresh: the provider echoes the refresh token")
            .setup(on(
                TOKEN,
                Reply::json(
                    400,
                    format!(
                        r#"{{"error":"invalid_request","error_description":"refresh_token {} is malformed"}}"#,
                        fake::RT
                    ),
                ),
            ))
            .fails(1, &["invalid_request"]),
        t("refresh: terminal escapes in error_description")
            .setup(on(
                TOKEN,
                Reply::json(
                    400,
                    serde_json::json!({"error": "invalid_request", "error_description": escape}).to_string(),
                ),
            ))
            .fails(1, &["invalid_request"])
            .after(no_escape_on_stderr),
        t("refresh: terminal escapes in the error code")
            .setup(on(TOKEN, Reply::json(400, serde_json::json!({"error": escape}).to_string())))
            .fails(1, &[&token_url])
            .after(no_escape_on_stderr),
        t("refresh: a token response with values of the wrong type is not echoed")
            .setup(on(TOKEN, tokens(serde_json::json!({"access_token": ["echo-me-4f1c"], "token_type": "Bearer"}))))
            .fails(1, &[&token_url, "invalid refresh response", "wrong type", "access_token"])
            .after(|_, out| assert!(!out.stderr.contains("echo-me-4f1c"), "{}", out.stderr)),
        t("refresh: 200 without access_token")
            .setup(on(TOKEN, Reply::json(200, r#"{"token_type":"Bearer","expires_in":3600}"#)))
            .fails(1, &[&token_url]),
        t("refresh: 200 with a JSON array").setup(on(TOKEN, Reply::json(200, "[]"))).fails(1, &[&token_url]),
        t("refresh: 200 with HTML").setup(on(TOKEN, Reply::html(200, "<html>hello</html>"))).fails(1, &[&token_url]),
        t("refresh: expires_in is a word")
            .setup(on(TOKEN, tokens(serde_json::json!({"access_token": AT_CC, "token_type": "Bearer", "expires_in": "soon"}))))
            .fails(1, &[&token_url]),
        t("refresh: expires_in is negative")
            .setup(on(TOKEN, tokens(serde_json::json!({"access_token": AT_CC, "token_type": "Bearer", "expires_in": -60}))))
            .fails(1, &[&token_url]),
        t("refresh: expires_in is 1e30")
            .setup(on(TOKEN, tokens(serde_json::json!({"access_token": AT_CC, "token_type": "Bearer", "expires_in": 1e30}))))
            .fails(1, &[&token_url]),
        t("refresh: a JWT access token with exp = i64::MIN")
            .setup(on(TOKEN, jwt_at(i64::MIN.into())))
            .fails(1, &["no usable token"]),
        t("refresh: a JWT access token that expired long ago")
            .setup(on(TOKEN, jwt_at(1000.into())))
            .fails(1, &["no usable token", "expired"]),
        t("refresh: an empty refresh_token does not replace the stored one")
            .setup(on(TOKEN, tokens(serde_json::json!({"access_token": AT_CC, "token_type": "Bearer", "expires_in": 3600, "refresh_token": ""}))))
            .succeeds(AT_CC, &[]),
        t("refresh: a proxy in the environment is bypassed for a loopback provider")
            .env("HTTPS_PROXY", &dead)
            .env("HTTP_PROXY", &dead)
            .env("ALL_PROXY", &dead)
            .succeeds(AT_NEW, &[]),
        t("refresh: 2 MiB body").setup(on(TOKEN, Reply::json(200, huge(&base)))).fails(1, &[&token_url, "larger than"]),
        t("refresh: slow-loris body")
            .setup(on(TOKEN, Reply::Trickle(Duration::from_millis(200))))
            .fails(1, &[&token_url, "timeout"]),
        t("refresh: accepts and never answers")
            .setup(on(TOKEN, Reply::Hang(Duration::from_secs(30))))
            .fails(1, &[&token_url, "timeout"]),
        t("refresh: closes without a byte").setup(on(TOKEN, Reply::Close)).fails(1, &[&token_url]),
        t("refresh: a redirect is not followed (the refresh token is not re-sent)")
            .setup(on(TOKEN, Reply::Redirect(307, format!("{base}/elsewhere"))))
            .fails(1, &[&token_url])
            .after(never_requested("/elsewhere")),
        t("refresh: token endpoint refuses connections")
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.insert("token_endpoint".into(), format!("{dead}/token").into())))))
            .fails(1, &[&format!("{dead}/token"), "cannot reach"]),
        t("refresh: token endpoint over plain http on a public host")
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.insert("token_endpoint".into(), "http://192.0.2.1/token".into())))))
            .fails(1, &["http://192.0.2.1/token", "token_endpoint", "https"]),
    ];
    w.run_all("refresh cases", 30, cases);
}

/// Client credentials (the client secret is at stake), the device flow (RFC 8628: the provider's text reaches
/// the terminal, and the device code is a credential), `status --check` and the browser login's start.
#[test]
fn client_credentials_device_and_login_cases() {
    let (w, base, token_url) = World::with_token_url();

    let cases = vec![
        case("client credentials: 403 with an empty body names the status and the likely cause", &["token", "--no-login"])
            .cwd("conf")
            .setup(on(TOKEN, Reply::text(403, "")))
            .fails(1, &[&token_url, "HTTP 403", "empty body", "scope"]),
        case("status --check: a provider that lists neither refresh nor client_credentials only warns", &["status", "--check"])
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.insert("grant_types_supported".into(), serde_json::json!(["authorization_code"]))))))
            .fails(0, &[])
            .after(|_, out| {
                assert!(out.stdout.contains("! refresh"), "{}", out.stdout);
                assert!(!out.stdout.contains("✗"), "{}", out.stdout);
            }),
        // Client credentials: the client secret is at stake.
        t("client credentials: invalid_client")
            .cwd("conf")
            .setup(on(TOKEN, Reply::json(401, r#"{"error":"invalid_client","error_description":"bad secret"}"#)))
            .fails(1, &["invalid_client", "client-secret"]),
        t("client credentials: the provider echoes the client secret")
            .cwd("conf")
            .setup(on(TOKEN, Reply::json(401, format!(r#"{{"error":"invalid_client","error_description":"client_secret {CLIENT_SECRET} is wrong"}}"#))))
            .fails(1, &["invalid_client"]),
        t("client credentials: 200 without access_token")
            .cwd("conf")
            .setup(on(TOKEN, Reply::json(200, r#"{"token_type":"Bearer"}"#)))
            .fails(1, &[&token_url]),
        t("client credentials: 500 in HTML")
            .cwd("conf")
            .setup(on(TOKEN, Reply::html(500, "<html>error</html>")))
            .fails(1, &[&token_url]),
        t("client credentials: a redirect is not followed (the secret is not re-sent)")
            .cwd("conf")
            .setup(on(TOKEN, Reply::Redirect(307, format!("{base}/elsewhere"))))
            .fails(1, &[&token_url])
            .after(never_requested("/elsewhere")),
        // The device flow (RFC 8628): the provider's text reaches the terminal, and the device code is a credential.
        case("device: terminal escapes in verification_uri", &["login", "--device", "--timeout", "20"])
            .setup(move |w: &World| {
                device_flow(w, &format!("http://127.0.0.1/device{ESCAPE}"));
                w.fake.set(TOKEN, Reply::json(400, r#"{"error":"access_denied"}"#));
            })
            .fails(1, &["denied"])
            .after(no_escape_on_stderr),
        case("device: the provider echoes the device code", &["login", "--device", "--timeout", "20"])
            .setup(move |w: &World| {
                device_flow(w, "http://127.0.0.1/device");
                let body = serde_json::json!({"error": "access_denied", "error_description": format!("device_code {} was denied", fake::DEVICE_CODE)});
                w.fake.set(TOKEN, Reply::json(400, body.to_string()));
            })
            .fails(1, &["denied"]),
        // `status --check` reads the provider's Date header to compare clocks.
        case("status --check: a Date header from the year 9223372036854775807", &["status", "--check"])
            .setup(move |w: &World| {
                let body = w.fake.metadata_with(|m| drop(m.insert("revocation_endpoint".into(), w.fake.url("/revoke").into())));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 9223372036854775807 08:49:37 GMT\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                w.fake.set(DISCOVERY, Reply::Raw([head.into_bytes(), body.into_bytes()].concat()));
            })
            .succeeds_silently(&[])
            .after(|_, out| assert!(out.stdout.contains("clock"), "{}", out.stdout)),
        // Browser login.
        case("login: no authorization_endpoint", &["login", "--timeout", "5"])
            .setup(on(DISCOVERY, w.meta(&|m| drop(m.remove("authorization_endpoint")))))
            .fails(1, &["authorization_endpoint"]),
    ];
    w.run_all("client credentials, device and login cases", 11, cases);
}

// ---------------------------------------------------------------------------------------------------------------
// Workload identity (issue 14): key files, platform-token sources and the provider refusing them. Every case runs
// with -v, and neither the platform token, nor the key, nor the GitHub request token may appear anywhere.

#[test]
fn workload_identity_cases() {
    let w = World::new();
    let base = w.fake.base.clone();
    let tok = ["-v", "token", "--no-login"];
    let machine = |extra: &str| {
        format!(
            "[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{base}\"\nclient-id = \"{CLIENT_ID_CONF}\"\n{extra}\n"
        )
    };
    let live = fake::workload_token(
        &serde_json::json!({"iss": CLIENT_ID_CONF, "sub": CLIENT_ID_CONF, "aud": base, "exp": 4_000_000_000i64}),
    );
    let expired = fake::workload_token(
        &serde_json::json!({"iss": "https://k8s", "sub": "system:serviceaccount:ml:train", "exp": 1_000_000}),
    );
    let live_file = w.file("token-live", &live);
    let expired_file = w.file("token-expired", &expired);
    let empty_file = w.file("token-empty", "\n");
    let key = support::client_key("ec", &w.s.path("cfg/client.pem"));
    let key_body = std::fs::read_to_string(&key.pem).unwrap().lines().nth(1).unwrap().to_owned();
    let encrypted = w.file(
        "encrypted.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG9w0BBQwwDgQIwlsigCATALOGUE9d4c\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let openssh = w.file(
        "id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUwlsigCATALOGUE9d4c\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    let f = |name: &str, extra: &str| w.file(name, machine(extra));
    let missing = f("missing.toml", "client-assertion = \"file:/nonexistent/run/token\"");
    let empty = f("empty-token.toml", &format!("client-assertion = \"file:{empty_file}\""));
    let stale = f("expired.toml", &format!("subject-token = \"file:{expired_file}\""));
    let no_var = f("no-var.toml", "subject-token = \"env:CI_OIDC_TOKEN\"");
    let gh = f("gh.toml", "subject-token = \"github-actions\"");
    let enc = f("enc.toml", &format!("client-assertion-key = \"{encrypted}\""));
    let ssh = f("ssh.toml", &format!("client-assertion-key = \"{openssh}\""));
    let no_key = f("no-key.toml", "client-assertion-key = \"/nonexistent/key.pem\"");
    let fed = f("fed.toml", &format!("client-assertion = \"file:{live_file}\""));
    let pk = f("pk.toml", &format!("client-assertion-key = \"{}\"", key.pem.display()));
    // A copy of the key others may rewrite: refused like ssh refuses such an identity file.
    let loose_key = w.s.path("cfg/loose.pem");
    std::fs::copy(&key.pem, &loose_key).unwrap();
    std::fs::set_permissions(&loose_key, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let loose = f("loose.toml", &format!("client-assertion-key = \"{}\"", loose_key.display()));
    let exch = f("exch.toml", &format!("subject-token = \"file:{live_file}\""));
    let ran = w.s.path("cfg/command-ran");
    w.file("cmdproj/pyproject.toml", block(&base, &format!("client-assertion = \"command:touch {}\"", ran.display())));
    let echo = |what: &str, token: &str| {
        let body = serde_json::json!({"error": what, "error_description": format!("rejected {token} {ESCAPE}")});
        Reply::json(if what == "invalid_client" { 401 } else { 400 }, body.to_string())
    };
    let (live2, live3) = (live.clone(), live.clone());
    let no_key_body = move |_: &World, out: &Out| {
        assert!(!out.all().contains(&key_body), "the private key was printed:\n{}", out.all());
        assert!(!out.all().contains('\u{1b}'), "terminal escapes from the provider:\n{:?}", out.stderr);
    };
    let no_escape = |_: &World, out: &Out| assert!(!out.all().contains('\u{1b}'), "{:?}", out.stderr);
    let c = |name, path: &String| case(name, &tok).arg(path).arg("--config");
    let gh_url = w.fake.url("/gh-token?api-version=2.0");
    let cases = vec![
        c("workload: client-assertion file missing", &missing)
            .fails(2, &["/nonexistent/run/token", "client-assertion", "mounted"]),
        c("workload: client-assertion file empty", &empty).fails(2, &[&empty_file, "empty"]),
        c("workload: an expired subject token", &stale)
            .fails(2, &[&expired_file, "expired"])
            .after(never_requested(TOKEN)),
        c("workload: subject-token variable unset", &no_var).fails(2, &["CI_OIDC_TOKEN", "id_tokens"]),
        c("workload: github-actions without the runner's variables", &gh)
            .fails(2, &["ACTIONS_ID_TOKEN_REQUEST_URL", "permissions: id-token: write"]),
        c("workload: GitHub's token service refuses the request token", &gh)
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", &gh_url)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", fake::GH_REQUEST_TOKEN)
            .setup(on("/gh-token", Reply::json(401, format!("{{\"message\":\"bad {}\"}}", fake::GH_REQUEST_TOKEN))))
            .fails(1, &["HTTP 401", "/gh-token", "permissions: id-token: write"]),
        c("workload: an encrypted key", &enc).fails(2, &[&encrypted, "encrypted", "openssl pkcs8"]),
        c("workload: an OpenSSH key", &ssh).fails(2, &[&openssh, "OPENSSH PRIVATE KEY", "not a private key"]),
        c("workload: key file missing", &no_key).fails(2, &["/nonexistent/key.pem", "client-assertion-key"]),
        c("workload: a key file other users may write", &loose)
            .fails(2, &["refusing the client assertion key", "writable by other users", "chmod 600"])
            .after(never_requested(TOKEN)),
        // Issue 21: ignored until trusted, so the block is the public client already logged in: it refreshes,
        // and the command never runs.
        case("workload: a command from a project's pyproject.toml", &tok)
            .cwd("cfg/cmdproj")
            .succeeds(AT_NEW, &["cfg/cmdproj/pyproject.toml", "`client-assertion`", "mlflow-oidc trust"])
            .after(move |_: &World, _: &Out| assert!(!ran.exists(), "the project's command ran")),
        c("workload: the provider rejects a federated assertion and echoes it", &fed)
            .setup(move |w: &World| w.fake.set(TOKEN, echo("invalid_client", &live2)))
            .fails(1, &["invalid_client", "federated credential", &live_file])
            .after(no_escape),
        c("workload: the provider rejects a private_key_jwt", &pk)
            .fails(1, &["invalid_client", "public key of", &key.pem.display().to_string()])
            .after(no_key_body),
        c("workload: the provider refuses the token exchange and echoes the subject token", &exch)
            .setup(move |w: &World| w.fake.set(TOKEN, echo("invalid_grant", &live3)))
            .fails(1, &["token exchange", "invalid_grant", "subject token's issuer"])
            .after(no_escape),
        c("workload: the provider has no token-exchange grant", &exch)
            .setup(on(TOKEN, Reply::json(400, r#"{"error":"unsupported_grant_type"}"#)))
            .fails(1, &["unsupported_grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"]),
    ];
    w.run_all("workload identity cases", 14, cases);
}

// ---------------------------------------------------------------------------------------------------------------
// Stores: damaged token files, wrong modes, directories where files should be, read-only places, keyrings.

/// Whether this process ignores file permissions (root, or CAP_DAC_OVERRIDE): then mode bits cannot make a
/// file unreadable or a directory unwritable, and the cases built on them assert that instead.
fn privileged() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("locked");
    std::fs::write(&f, "x").unwrap();
    std::fs::set_permissions(&f, PermissionsExt::from_mode(0o000)).unwrap();
    std::fs::read(&f).is_ok()
}

/// The token file of `conf` (client credentials), created by one successful run.
fn conf_entry(w: &World) -> PathBuf {
    let out = run_bounded(w.s.cmd("conf", &["token"]), LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::read_dir(w.s.tokens_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json") && *p != w.entry_path)
        .unwrap()
}

/// A D-Bus peer that accepts connections and never answers.
fn silent_bus(dir: &Path) -> String {
    let path = dir.join("silent-bus");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    format!("unix:path={}", path.display())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The token file's content: damaged (read as "log in again", never as a wrong token) or from another version.
#[test]
fn token_file_content_cases() {
    let w = World::new();
    let entry = w.entry_path.display().to_string();

    let cases = vec![
        t("store: truncated token file")
            .setup(|w| std::fs::write(&w.entry_path, &w.entry[..w.entry.len() / 2]).unwrap())
            .fails(3, &[&entry, "corrupt", "mlflow-oidc login"])
            .loses_credential(),
        t("store: empty token file")
            .setup(|w| std::fs::write(&w.entry_path, "").unwrap())
            .fails(3, &[&entry, "corrupt"])
            .loses_credential(),
        t("store: binary garbage in the token file")
            .setup(|w| std::fs::write(&w.entry_path, b"\x00\xff\xfe\x80garbage").unwrap())
            .fails(3, &[&entry, "corrupt"])
            .loses_credential(),
        t("store: zero-filled tail after a crash")
            .setup(|w| std::fs::write(&w.entry_path, [w.entry.clone(), vec![0; 512]].concat()).unwrap())
            .fails(3, &[&entry, "corrupt"])
            .loses_credential(),
        t("store: JSON of the wrong shape")
            .setup(|w| std::fs::write(&w.entry_path, r#"{"version":1,"tokens":5}"#).unwrap())
            .fails(3, &[&entry, "corrupt"])
            .loses_credential(),
        t("store: a file from a newer version is read")
            .setup(|w| {
                w.edit_entry(|v| {
                    v["version"] = 99.into();
                    v["added_later"] = serde_json::json!({"x": [1, 2]});
                    v["tokens"]["new_field"] = true.into();
                })
            })
            .succeeds(AT_NEW, &[]),
        t("store: access_expires_at = i64::MIN")
            .setup(|w| w.edit_entry(|v| v["tokens"]["access_expires_at"] = i64::MIN.into()))
            .succeeds(AT_NEW, &[]),
        t("store: obtained_at = i64::MIN")
            .setup(|w| w.edit_entry(|v| v["tokens"]["obtained_at"] = i64::MIN.into()))
            .succeeds(AT_NEW, &[]),
    ];
    w.run_all("token file content cases", 8, cases);
}

/// Where the store lives: directories where files should be, places nobody can write, wrong modes, planted links.
#[test]
fn store_place_and_mode_cases() {
    let w = World::new();
    let entry = w.entry_path.display().to_string();
    let tokens = w.s.tokens_dir().display().to_string();
    let tok = ["token", "--no-login"];
    let root = privileged();
    let blocker = w.file("not-a-dir", "a regular file");
    assert!(
        std::fs::create_dir("/sys/mlflow-oidc-catalogue").is_err(),
        "this case needs /sys to refuse mkdir, even to root"
    );

    let cases = vec![
        t("store: the token file is a directory")
            .setup(|w| {
                std::fs::remove_file(&w.entry_path).unwrap();
                std::fs::create_dir(&w.entry_path).unwrap();
            })
            .fails(3, &[&entry, "directory"])
            .loses_credential(),
        case("store: the token file is a directory when saving", &tok)
            .cwd("conf")
            .setup(|w| {
                let p = conf_entry(w);
                std::fs::remove_file(&p).unwrap();
                std::fs::create_dir(&p).unwrap();
            })
            .fails(1, &[&tokens, "directory"]),
        t("store: the tokens directory is a regular file")
            .setup(|w| {
                std::fs::remove_dir_all(w.s.tokens_dir()).unwrap();
                std::fs::write(w.s.tokens_dir(), "not a directory").unwrap();
            })
            .fails(1, &[&tokens])
            .loses_credential(),
        t("store: the data directory lies under a regular file (ENOTDIR)")
            .env("XDG_DATA_HOME", &blocker)
            .fails(1, &[&blocker]),
        t("store: a place even root cannot write (/sys)")
            .env("XDG_DATA_HOME", "/sys/mlflow-oidc-catalogue")
            .fails(1, &["/sys/mlflow-oidc-catalogue", "cannot create directory"]),
        t("store: the lock file is a directory")
            .setup(|w| std::fs::create_dir(w.entry_path.with_extension("lock")).unwrap())
            .fails(1, &[".lock"])
            .after(|w, _| std::fs::remove_dir(w.entry_path.with_extension("lock")).unwrap()),
        t("store: a world-readable token file is replaced by a 0600 one")
            .setup(|w| std::fs::set_permissions(&w.entry_path, PermissionsExt::from_mode(0o644)).unwrap())
            .succeeds(AT_NEW, &[])
            .after(|w, _| assert_eq!(mode(&w.entry_path), 0o600)),
        t("store: a world-writable tokens directory is made private again")
            .setup(|w| std::fs::set_permissions(w.s.tokens_dir(), PermissionsExt::from_mode(0o777)).unwrap())
            .succeeds(AT_NEW, &[])
            .after(|w, _| {
                assert_eq!(mode(&w.entry_path), 0o600);
                assert_eq!(
                    mode(&w.s.tokens_dir()),
                    0o700,
                    "a tokens directory others can write to is a planting ground"
                );
            }),
        if root {
            // Root reads a mode-000 file anyway: the case then shows the tool does not care about the mode.
            t("store: an unreadable token file (root reads it anyway)")
                .setup(|w| std::fs::set_permissions(&w.entry_path, PermissionsExt::from_mode(0o000)).unwrap())
                .succeeds(AT_NEW, &[])
        } else {
            t("store: an unreadable token file")
                .setup(|w| std::fs::set_permissions(&w.entry_path, PermissionsExt::from_mode(0o000)).unwrap())
                .fails(3, &[&entry, "permission denied"])
        },
        if root {
            t("store: a read-only tokens directory (root writes anyway)")
                .setup(|w| std::fs::set_permissions(w.s.tokens_dir(), PermissionsExt::from_mode(0o500)).unwrap())
                .succeeds(AT_NEW, &[])
        } else {
            t("store: a read-only tokens directory")
                .setup(|w| std::fs::set_permissions(w.s.tokens_dir(), PermissionsExt::from_mode(0o500)).unwrap())
                .fails(1, &[&tokens, "permission denied"])
        },
        case("store: a symlink planted at the token file is replaced, not followed", &tok)
            .cwd("conf")
            .setup(|w| {
                let p = conf_entry(w);
                let victim = w.s.path("victim.txt");
                std::fs::write(&victim, "keep me").unwrap();
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(&victim, &p).unwrap();
            })
            // Not read through the link (O_NOFOLLOW): reported as a link, then replaced by our own file.
            .succeeds(AT_CC, &["symbolic link: not followed"])
            .after(|w, _| {
                assert_eq!(std::fs::read_to_string(w.s.path("victim.txt")).unwrap(), "keep me");
                let p = conf_entry(w);
                assert!(!std::fs::symlink_metadata(p).unwrap().file_type().is_symlink());
            }),
    ];
    w.run_all("store place and mode cases", 11, cases);
}

/// The OS keyring absent, silent or pointed at by an entry it no longer holds.
#[test]
fn keyring_cases() {
    let w = World::new();
    let tokens = w.s.tokens_dir().display().to_string();
    let bus = silent_bus(w.s.root());

    let cases = vec![
        t("keyring: asked for, but no session bus").env("MLFLOW_OIDC_STORE", "keyring").fails(1, &["keyring"]),
        t("keyring: a bus that never answers costs the keyring timeout, not a hang")
            .env("MLFLOW_OIDC_STORE", "keyring")
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .env("MLFLOW_OIDC_KEYRING_TIMEOUT", "1s")
            .fails(1, &["keyring", "1s"]),
        t("keyring: auto falls back to the file store when the bus is unreachable")
            .env("MLFLOW_OIDC_STORE", "auto")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .succeeds(AT_NEW, &["keyring is unavailable", &tokens]),
        t("keyring: a corrupt store-choice file is ignored")
            .env("MLFLOW_OIDC_STORE", "auto")
            .setup(|w| std::fs::write(w.s.data_dir().join("store-choice.json"), "{{{").unwrap())
            .succeeds(AT_NEW, &["keyring is unavailable"]),
        t("keyring: the entry points at a keyring that cannot be reached")
            .setup(|w| {
                w.edit_entry(|v| {
                    v["tokens"].as_object_mut().unwrap().remove("refresh_token");
                    v["refresh_token_in"] = "keyring".into();
                })
            })
            .fails(3, &["keyring", "mlflow-oidc login"])
            .loses_credential(),
        case("logout --all: an entry whose file name is not ASCII", &["logout", "--all"])
            .setup(|w| {
                let mut v: serde_json::Value = serde_json::from_slice(&w.entry).unwrap();
                v["tokens"].as_object_mut().unwrap().remove("refresh_token");
                v["refresh_token_in"] = "keyring".into();
                std::fs::write(w.s.tokens_dir().join("abcdefg\u{e9}.json"), serde_json::to_vec(&v).unwrap()).unwrap();
            })
            .succeeds_silently(&["Logged out of"])
            .loses_credential(),
    ];
    w.run_all("keyring cases", 6, cases);
}

// ---------------------------------------------------------------------------------------------------------------
// The runner itself: a table that fails must name every failing row, and one failing row must not stop the rest.

struct Row(&'static str, bool);

impl cases::Case for Row {
    fn name(&self) -> &'static str {
        self.0
    }
}

#[test]
fn a_table_reports_every_failing_row_by_name_and_runs_them_all() {
    // `run_matching` without a filter: MLFLOW_OIDC_TEST_CASE, if the developer set it, must not thin this table.
    let ran = std::cell::Cell::new(0);
    let table = vec![Row("first fails", false), Row("second passes", true), Row("third fails", false)];
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cases::run_matching("a test table", 3, table, None, |r| {
            ran.set(ran.get() + 1);
            assert!(r.1, "case `{}`: exit code\n  left: 1\n right: 2", r.0);
        })
    }));
    let message = *outcome.expect_err("a table with failing rows passed").downcast::<String>().unwrap();
    assert_eq!(ran.get(), 3, "every row ran");
    assert!(message.starts_with("a test table: 2 of 3 cases failed:\n"), "{message}");
    assert!(
        message.contains("`first fails`: case `first fails`: exit code\n      left: 1\n      right: 2"),
        "{message}"
    );
    assert!(message.contains("`third fails`") && !message.contains("second passes"), "{message}");
    // A row lost in an edit is noticed.
    let short =
        std::panic::catch_unwind(|| cases::run_matching("a test table", 4, vec![Row("only", true)], None, |_| {}));
    assert!(short.is_err(), "a table with fewer rows than it had passed");
}

// ---------------------------------------------------------------------------------------------------------------
// Callbacks: whatever reaches the loopback port during a real login (real provider, scripted attacker).

type Junk = Box<dyn Fn(&PendingLogin)>;

struct CallbackCase {
    name: &'static str,
    junk: Junk,
    /// Whether a person then logs in for real in the browser.
    browser: bool,
    code: i32,
    needles: &'static [&'static str],
    timeout: &'static str,
}

fn cb(name: &'static str, junk: impl Fn(&PendingLogin) + 'static) -> CallbackCase {
    CallbackCase { name, junk: Box::new(junk), browser: true, code: 0, needles: &["Logged in"], timeout: "45" }
}

impl cases::Case for CallbackCase {
    fn name(&self) -> &'static str {
        self.name
    }
}

impl CallbackCase {
    /// No real login follows: the junk itself decides the outcome.
    fn ends(mut self, code: i32, needles: &'static [&'static str]) -> Self {
        self.browser = false;
        self.code = code;
        self.needles = needles;
        self
    }
}

/// Every token and code the provider handed out so far, and every token in the store.
fn issued_secrets(idp: &support::Idp, s: &Sandbox) -> Vec<String> {
    let mut v: Vec<String> =
        idp.token_requests().iter().filter_map(|r| r["params"]["code"].as_str().map(str::to_string)).collect();
    if let Ok(text) = std::fs::read(s.token_file()) {
        let e: serde_json::Value = serde_json::from_slice(&text).unwrap();
        for k in ["access_token", "refresh_token", "id_token"] {
            if let Some(t) = e["tokens"][k].as_str() {
                v.push(t.to_string());
            }
        }
    }
    v
}

/// A sandbox logged in to the real provider, whose "browser" then opens nothing: the test plays both the attacker
/// and the person.
struct CallbackWorld {
    idp: support::Idp,
    s: Sandbox,
}

impl CallbackWorld {
    fn new() -> CallbackWorld {
        let idp = support::Idp::start();
        let mut s = Sandbox::new();
        s.write(
            "proj/pyproject.toml",
            &format!(
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{}\"\nclient-id = \"{}\"\n\
                 redirect-uri = \"http://127.0.0.1:0/oauth2/callback\"\nscope = \"openid profile email mlflow\"\nuse-id-token = false\n",
                idp.issuer,
                support::PUBLIC_CLIENT_ID
            ),
        );
        s.set("MLFLOW_OIDC_STORE", "file");
        s.set("BROWSER", support::browser_curl().to_str().unwrap());
        let out = run_bounded(s.cmd("proj", &["login"]), LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
        s.set("BROWSER", "true");
        CallbackWorld { idp, s }
    }

    /// Run every case of `table` ([`cases::run_every`]), which has at least `at_least` cases.
    fn run_all(&self, table: &str, at_least: usize, cases: Vec<CallbackCase>) {
        cases::run_every(table, at_least, cases, |c| {
            let before = issued_secrets(&self.idp, &self.s);
            let login = start_login(&self.s, "proj", c.timeout);
            (c.junk)(&login);
            let mut idle = Vec::new();
            if c.name.contains("idle connections") {
                // Browsers open speculative connections and may never use them; a stranger can do it on purpose.
                idle = (0..16).map(|_| TcpStream::connect(("127.0.0.1", login.port)).unwrap()).collect();
            }
            if c.browser {
                let printed = support::run_browser(&support::browser_curl(), &login.url, &[]);
                assert!(printed.contains("CALLBACK"), "{printed}");
            }
            let out = login.finish(LIMIT + Duration::from_secs(20));
            drop(idle);
            let mut secrets = before;
            secrets.extend(issued_secrets(&self.idp, &self.s));
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let needles: Vec<String> = c.needles.iter().map(|s| s.to_string()).collect();
            check(c.name, &out, c.code, &needles, &secrets, None);
            assert!(
                !out.stderr.contains('\u{1b}'),
                "case `{}`: a terminal escape reached stderr: {:?}",
                c.name,
                out.stderr
            );
            // Whatever happened, the stored login still works.
            let after = run_bounded(self.s.cmd("proj", &["token", "--no-login", "--min-valid", "2m"]), LIMIT);
            assert_eq!(after.code, 0, "case `{}`: the stored credential no longer works:\n{}", c.name, after.stderr);
        })
    }
}

/// A check of the loopback listener's answer to a hand-rolled request: its HTTP status and a text it names.
fn bad(expect: u16, needle: &'static str) -> impl Fn(String) {
    move |response: String| {
        assert_eq!(status_of(&response), expect, "{response}");
        assert!(response.contains(needle), "{response}");
    }
}

/// Junk at the loopback port while a person logs in: refused, and the real login still succeeds.
#[test]
fn callback_junk_cases() {
    let w = CallbackWorld::new();
    let cases = vec![
        cb("callback: a foreign state", move |l| bad(400, "state mismatch")(l.get("code=forged&state=not-ours"))),
        cb("callback: our state, no code", move |l| {
            bad(400, "no authorization code")(l.get(&format!("state={}", l.state)))
        }),
        cb("callback: our state, empty code", move |l| {
            bad(400, "no authorization code")(l.get(&format!("code=&state={}", l.state)))
        }),
        cb("callback: error=access_denied with a foreign state", move |l| {
            bad(400, "state mismatch")(l.get("error=access_denied&state=not-ours"))
        }),
        cb("callback: another path", move |l| {
            let r = send(l.port, format!("GET {}x?code=c&state={} HTTP/1.1\r\n\r\n", l.path, l.state).as_bytes());
            assert_eq!(status_of(&r), 404, "{r}");
        }),
        cb("callback: absolute-form target", move |l| {
            let r = send(
                l.port,
                format!("GET http://127.0.0.1:{}{}?code=c&state={} HTTP/1.1\r\n\r\n", l.port, l.path, l.state)
                    .as_bytes(),
            );
            assert_eq!(status_of(&r), 404, "{r}");
        }),
        cb("callback: POST with our state", move |l| {
            let r = send(
                l.port,
                format!("POST {}?code=c&state={} HTTP/1.1\r\nContent-Length: 0\r\n\r\n", l.path, l.state).as_bytes(),
            );
            assert_eq!(status_of(&r), 405, "{r}");
        }),
        cb("callback: the state twice", move |l| {
            bad(400, "more than once")(l.get(&format!("code=c&state={0}&state={0}", l.state)))
        }),
        cb("callback: a 64 KiB request head", move |l| {
            let r = send(
                l.port,
                format!("GET {}?state={}&pad={} HTTP/1.1\r\n\r\n", l.path, l.state, "a".repeat(64 << 10)).as_bytes(),
            );
            assert!(r.is_empty() || status_of(&r) == 431, "{r}");
        }),
        cb("callback: bytes that are not UTF-8", move |l| {
            let r = send(l.port, b"GET /oauth2/callback?\xff\xfe\xfd HTTP/1.1\r\n\r\n");
            assert_eq!(status_of(&r), 400, "{r}");
        }),
        cb("callback: a head cut off mid-line", move |l| {
            let r = send(l.port, format!("GET {}?code=c&sta", l.path).as_bytes());
            assert!(status_of(&r) >= 400, "{r}");
        }),
        cb("callback: 200 concurrent junk connections", move |l| {
            let port = l.port;
            let junk: Vec<_> = (0..200)
                .map(|i| {
                    thread::spawn(move || {
                        let payload: Vec<u8> = (0..(i * 37 % 2000)).map(|j| (j * 131 + i) as u8).collect();
                        let _ = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| s.write_all(&payload));
                    })
                })
                .collect();
            for j in junk {
                j.join().unwrap();
            }
        }),
        CallbackCase {
            name: "callback: idle connections that never send a byte",
            junk: Box::new(|_| {}),
            browser: true,
            code: 0,
            needles: &["Logged in"],
            timeout: "45",
        },
        cb("callback: our state from a foreign Host (DNS rebinding)", move |l| {
            let r = send(
                l.port,
                format!("GET {}?code=c&state={} HTTP/1.1\r\nHost: evil.example:{}\r\n\r\n", l.path, l.state, l.port)
                    .as_bytes(),
            );
            bad(400, "evil.example")(r)
        }),
    ];
    w.run_all("callback junk cases", 14, cases);
}

/// Callbacks that end the login: the provider's refusal, a forged code, a mix-up (RFC 9207), or only junk until the
/// login's time runs out. Each says why, and the stored login still works.
#[test]
fn callback_outcome_cases() {
    let w = CallbackWorld::new();
    let issuer = w.idp.issuer.clone();
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let cases = vec![
        cb("callback: error=access_denied with our state", move |l| {
            bad(400, "access_denied")(
                l.get(&format!("error=access_denied&error_description=no+thanks&state={}", l.state)),
            )
        })
        .ends(1, &["access_denied", "refused the login"]),
        cb("callback: a hostile error_description with our state", move |l| {
            let r = l.get(&format!(
                "error=server_error&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E%1B%5B2J&state={}",
                l.state
            ));
            assert!(!r.contains("<script>") && r.contains("&lt;script&gt;"), "the page must escape it: {r}");
        })
        .ends(1, &["server_error"]),
        cb("callback: a forged code with our state", move |l| {
            // The browser hears the provider's refusal, not "logged in" (the page waits for the exchange).
            let r = l.get(&format!("code=forged-code&state={}&iss={}", l.state, enc(&issuer)));
            bad(400, "invalid_grant")(r)
        })
        .ends(1, &["invalid_grant"]),
        cb("callback: another issuer in iss (mix-up)", move |l| {
            bad(400, "evil.example.com")(l.get(&format!("code=c&state={}&iss=https%3A%2F%2Fevil.example.com", l.state)))
        })
        .ends(1, &["https://evil.example.com", "refusing", "RFC 9207"]),
        cb("callback: no iss from a provider that always sends it (mix-up)", move |l| {
            bad(400, "RFC 9207")(l.get(&format!("code=c&state={}", l.state)))
        })
        .ends(1, &["carries no `iss`", "RFC 9207"]),
        CallbackCase {
            name: "callback: only junk until the login times out",
            junk: Box::new(move |l| bad(400, "state mismatch")(l.get("code=c&state=x"))),
            browser: false,
            code: 1,
            needles: &["timed out"],
            timeout: "4",
        },
    ];
    w.run_all("callback outcome cases", 6, cases);
}

// ---------------------------------------------------------------------------------------------------------------
// A repository you cloned (issue 21). Its pyproject.toml is yours by owner and mode, so the file-trust rule lets it
// through; what it may not do is spend your files, variables or keys until you run `mlflow-oidc trust` for its
// content. The provider is the scripted one: it logs every request whole, which is how a test sees that a planted
// marker was never sent (a real provider would refuse the unknown client first and keep no such log).

/// What a planted key file holds (a platform-token-shaped string, so that it would be sent if read).
const PLANTED_FILE: &str = "PLANTEDkeyfile7a1c";
/// What a planted variable holds.
const PLANTED_VAR: &str = "PLANTEDvariable3e9d";

/// A sandbox with a cloned repository `repo/` whose block names the scripted provider, as the machine client
/// [`CLIENT_ID_CONF`], plus `extra` lines (`{planted}` stands for the directory of the planted files).
struct Cloned {
    s: Sandbox,
    fake: Fake,
    planted: PathBuf,
}

impl Cloned {
    fn new(extra: &str) -> Cloned {
        let mut s = Sandbox::new();
        let fake = Fake::start();
        let planted = s.path("home/planted");
        std::fs::create_dir_all(&planted).unwrap();
        std::fs::write(planted.join("id_ed25519"), PLANTED_FILE).unwrap();
        let extra = extra.replace("{planted}", planted.to_str().unwrap());
        s.write(
            "repo/pyproject.toml",
            &format!(
                "[project]\nname = \"cloned\"\n\n[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{SERVER}\"\n\
                 issuer = \"{}\"\nclient-id = \"{CLIENT_ID_CONF}\"\nscope = \"openid\"\nuse-id-token = false\n{extra}\n",
                fake.base
            ),
        );
        s.set("MLFLOW_OIDC_STORE", "file");
        s.set("BROWSER", "true");
        s.set("MLFLOW_OIDC_HTTP_TIMEOUT", "5s");
        s.set(PLANTED_VAR_NAME, PLANTED_VAR);
        Cloned { s, fake, planted }
    }

    fn project(&self) -> String {
        self.s.path("repo/pyproject.toml").to_str().unwrap().to_string()
    }

    fn run(&self, args: &[&str]) -> Out {
        run_bounded(self.s.cmd("repo", args), LIMIT)
    }

    /// Every byte the provider was sent, for marker searches.
    fn sent(&self) -> String {
        self.fake.requests().iter().map(|r| format!("{}\n{}\n{}\n", r.target, r.head, r.body)).collect()
    }

    /// Before `trust`: `token` runs without the planted keys (a public client with no login: exit 3), the warning
    /// names the file, each key and the command, and nothing planted reached the provider or the output.
    fn refuses_before_trust(&self, keys: &[&str], markers: &[&str]) {
        let out = self.run(&["token", "--no-login"]);
        let mut needles = vec![self.project(), format!("run `mlflow-oidc trust {}`", self.project())];
        needles.extend(keys.iter().map(|k| format!("`{k}`")));
        check("cloned: before trust", &out, 3, &needles, &[markers, SECRETS].concat(), None);
        assert_eq!(out.stderr.matches("mlflow-oidc trust").count(), 1, "one warning:\n{}", out.stderr);
        let sent = self.sent();
        for m in markers {
            assert!(!sent.contains(m), "the planted {m} reached the provider before `trust`:\n{sent}");
        }
        let status = self.run(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(v["untrusted"]["file"], self.project(), "{v}");
        assert_eq!(v["untrusted"]["ignored_keys"], serde_json::json!(keys), "{v}");
        let text = self.run(&["status"]);
        assert!(text.stdout.contains("untrusted:") && text.stdout.contains(&self.project()), "{}", text.stdout);
    }

    /// `trust`, then the same file works: the provider issues a token to whatever it was sent.
    fn works_after_trust(&self) -> Out {
        let out = self.run(&["trust"]);
        check("cloned: trust", &out, 0, &["trusted".into(), self.project(), "now apply".into()], SECRETS, None);
        self.fake.set(
            TOKEN,
            Reply::json(200, format!(r#"{{"access_token":"{AT_CC}","token_type":"Bearer","expires_in":3600}}"#)),
        );
        let out = self.run(&["token", "--no-login"]);
        check("cloned: after trust", &out, 0, &[], SECRETS, Some(AT_CC));
        assert!(!out.stderr.contains("mlflow-oidc trust"), "no warning once trusted:\n{}", out.stderr);
        out
    }

    /// A changed file is distrusted again: the warning is back and a renewal sends nothing planted.
    fn distrusts_a_changed_file(&self, markers: &[&str]) {
        let p = self.s.path("repo/pyproject.toml");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("# a commit pulled later\n");
        std::fs::write(&p, text).unwrap();
        self.fake.clear();
        let out = self.run(&["token", "--no-login", "--min-valid", "2h"]);
        check("cloned: changed file", &out, 3, &[format!("run `mlflow-oidc trust {}`", self.project())], SECRETS, None);
        let sent = self.sent();
        for m in markers {
            assert!(!sent.contains(m), "the planted {m} reached the provider from a changed file:\n{sent}");
        }
        let list = self.run(&["trust", "--list"]);
        assert_eq!(list.stdout, format!("changed  {}\n", self.project()), "{}", list.stderr);
    }
}

const PLANTED_VAR_NAME: &str = "AWS_SECRET_ACCESS_KEY";

#[test]
fn cloned_repository_a_planted_key_file_is_not_sent_until_trusted() {
    let c = Cloned::new("client-assertion = \"file:{planted}/id_ed25519\"");
    c.refuses_before_trust(&["client-assertion"], &[PLANTED_FILE]);
    c.works_after_trust();
    let sent = c.fake.requests().into_iter().filter_map(|r| r.form("client_assertion")).collect::<Vec<_>>();
    assert_eq!(sent, [PLANTED_FILE], "trusted, the file is the client assertion");
    c.distrusts_a_changed_file(&[PLANTED_FILE]);
}

#[test]
fn cloned_repository_a_planted_variable_is_not_sent_until_trusted() {
    let c = Cloned::new(&format!("subject-token = \"env:{PLANTED_VAR_NAME}\""));
    c.refuses_before_trust(&["subject-token"], &[PLANTED_VAR]);
    c.works_after_trust();
    let sent = c.fake.requests().into_iter().filter_map(|r| r.form("subject_token")).collect::<Vec<_>>();
    assert_eq!(sent, [PLANTED_VAR], "trusted, the variable is exchanged");
    c.distrusts_a_changed_file(&[PLANTED_VAR]);
}

#[test]
fn cloned_repository_a_planted_pem_key_signs_nothing_until_trusted() {
    let c = Cloned::new("client-assertion-key = \"{planted}/id_rsa.pem\"");
    let key = support::client_key("rsa", &c.planted.join("id_rsa.pem"));
    let body = std::fs::read_to_string(&key.pem).unwrap().lines().nth(1).unwrap().to_owned();
    c.refuses_before_trust(&["client-assertion-key"], &[&body]);
    assert!(c.fake.requests().iter().all(|r| r.form("client_assertion").is_none()), "nothing signed before trust");
    let out = c.works_after_trust();
    assert!(!out.all().contains(&body), "the key was printed");
    let signed = c.fake.requests().into_iter().filter_map(|r| r.form("client_assertion")).count();
    assert_eq!(signed, 1, "trusted, the key signs the client assertion");
    c.distrusts_a_changed_file(&[&body]);
}

#[test]
fn cloned_repository_a_planted_tls_key_is_not_used_until_trusted() {
    let c = Cloned::new(
        "interactive = true\nredirect-uri = \"https://127.0.0.1:0/oauth2/callback\"\n\
         redirect-tls-cert = \"{planted}/cert.pem\"\nredirect-tls-key = \"{planted}/key.pem\"",
    );
    std::fs::write(
        c.planted.join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nPLANTEDtlskey\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let status = c.run(&["status"]);
    check("cloned: tls status", &status, 0, &["redirect-tls-cert".into()], SECRETS, None);
    assert!(status.stdout.contains("TLS not configured"), "the TLS files are ignored:\n{}", status.stdout);
    let login = c.run(&["login", "--timeout", "5"]);
    check(
        "cloned: tls login",
        &login,
        2,
        &["redirect-tls-cert".into(), format!("run `mlflow-oidc trust {}`", c.project())],
        &["PLANTEDtlskey"],
        None,
    );
    assert!(c.fake.requests().is_empty() || !c.sent().contains("PLANTED"), "{}", c.sent());
    let v: serde_json::Value = serde_json::from_str(&c.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(v["untrusted"]["ignored_keys"], serde_json::json!(["redirect-tls-cert", "redirect-tls-key"]));
    assert_eq!(c.run(&["trust"]).code, 0);
    let status = c.run(&["status"]);
    let want = format!("(TLS: {}/cert.pem + {}/key.pem)", c.planted.display(), c.planted.display());
    assert!(status.stdout.contains(&want), "trusted, the TLS files apply:\n{}", status.stdout);
}

/// "Nothing of the user's is read" taken literally: the planted files are FIFOs, which block whoever opens them
/// for reading until a writer comes (none does), so any open before `trust` would overrun the case's time limit.
#[test]
fn cloned_repository_planted_files_are_not_even_opened_before_trust() {
    let c = Cloned::new(
        "client-assertion = \"file:{planted}/fifo-token\"\nsubject-token = \"file:{planted}/fifo-subject\"",
    );
    for name in ["fifo-token", "fifo-subject"] {
        let made = Command::new("mkfifo").arg(c.planted.join(name)).status().unwrap();
        assert!(made.success(), "mkfifo");
    }
    // Nothing here needs the network or a person: a few seconds is a hang.
    let quick = |args: &[&str]| run_bounded(c.s.cmd("repo", args), Duration::from_secs(10));
    let out = quick(&["token", "--no-login"]);
    check("cloned: FIFOs", &out, 3, &["`client-assertion`".into(), "`subject-token`".into()], SECRETS, None);
    let status = quick(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
}

#[test]
fn trust_lists_and_revokes_and_a_list_others_may_write_trusts_nothing() {
    let c = Cloned::new("client-assertion = \"file:{planted}/id_ed25519\"");
    let none = c.run(&["trust", "--list"]);
    check("trust --list empty", &none, 0, &["no project file is trusted".into()], SECRETS, None);
    assert_eq!(c.run(&["trust"]).code, 0);
    assert_eq!(c.run(&["trust", "--list"]).stdout, format!("trusted  {}\n", c.project()));
    // The list is the user's alone: one other users may write is refused and trusts nothing.
    let list = c.s.data_dir().join("trusted-projects.json");
    std::fs::set_permissions(&list, PermissionsExt::from_mode(0o666)).unwrap();
    let out = c.run(&["token", "--no-login"]);
    check(
        "trust list writable by others",
        &out,
        3,
        &[list.to_str().unwrap().into(), "writable by other users".into()],
        &[PLANTED_FILE],
        None,
    );
    std::fs::set_permissions(&list, PermissionsExt::from_mode(0o600)).unwrap();
    let out = c.run(&["trust", "--revoke"]);
    check("trust --revoke", &out, 0, &["no longer trusting".into(), c.project()], SECRETS, None);
    let out = c.run(&["token", "--no-login"]);
    check("after revoke", &out, 3, &[format!("run `mlflow-oidc trust {}`", c.project())], &[PLANTED_FILE], None);
    assert!(!c.sent().contains(PLANTED_FILE), "{}", c.sent());
}

#[test]
fn sixteen_trust_runs_at_once_lose_no_entry() {
    // Two terminals or a CI matrix on one runner: each run reads the list, adds its project and writes the list
    // back; without the list's lock the last writer drops the others' entries.
    let s = Sandbox::new();
    let projects: Vec<String> = (0..16)
        .map(|i| {
            s.write(
                &format!("p{i}/pyproject.toml"),
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\n",
            );
            s.path(&format!("p{i}")).to_str().unwrap().to_owned()
        })
        .collect();
    let outs: Vec<Out> = thread::scope(|scope| {
        let runs: Vec<_> = projects
            .iter()
            .map(|p| scope.spawn(|| run_bounded(s.cmd("", &["trust", p]), Duration::from_secs(60))))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for out in &outs {
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let list = s.mo(&["trust", "--list"]).stdout;
    assert_eq!(list.lines().filter(|l| l.starts_with("trusted ")).count(), 16, "{list}");
}

// ---------------------------------------------------------------------------------------------------------------
// Token text checked where it arrives (issue 21): a token that is not an RFC 6750 b64token would split a header
// (`token --format header`) or drive the terminal that prints it. The scripted provider sends what no real one
// will on demand. Each case: refused naming the provider, nothing stored, nothing raw on stdout or stderr.

fn hostile_refresh(name: &'static str, field: &str, value: &str) {
    let w = World::new();
    let mut body = serde_json::json!({"access_token": AT_NEW, "token_type": "Bearer", "expires_in": 3600});
    body[field] = value.into();
    w.fake.set(TOKEN, Reply::json(200, body.to_string()));
    let out = w.run(&case(name, &[]).arg("--no-login").arg("header").arg("--format").arg("token"));
    check(name, &out, 1, &[w.fake.base.clone(), "RFC 6750".into(), "nothing was stored".into()], SECRETS, None);
    for c in ['\r', '\u{1b}', '\u{7}'] {
        assert!(!out.all().contains(c), "{name}: {c:?} printed: {:?}", out.all());
    }
    assert!(!out.all().contains("X-Injected") && !out.all().contains("pwned"), "{name}: {:?}", out.all());
    assert_eq!(std::fs::read(&w.entry_path).unwrap(), w.entry, "{name}: the store was not touched");
    w.restore();
    w.credential_still_works(name);
}

#[test]
fn hostile_token_an_access_token_with_cr_lf_is_refused() {
    hostile_refresh("access token with CR LF", "access_token", "x\r\nX-Injected: yes");
}

#[test]
fn hostile_token_an_id_token_with_an_osc_52_escape_is_refused() {
    hostile_refresh("ID token with ESC and BEL", "id_token", "eyJ.\u{1b}]52;c;cHduZWQ=\u{7}.sig");
}

#[test]
fn hostile_token_a_refresh_token_with_a_bel_is_refused() {
    hostile_refresh("refresh token with BEL", "refresh_token", "rt\u{7}pwned");
}

#[test]
fn hostile_token_an_access_token_with_a_space_is_refused() {
    hostile_refresh("access token with a space", "access_token", "at pwned");
}

#[test]
fn hostile_token_an_access_token_with_non_ascii_is_refused() {
    hostile_refresh("access token with non-ASCII", "access_token", "at-pwned-\u{e9}\u{202e}");
}

#[test]
fn hostile_token_a_client_credentials_token_with_lf_is_refused_and_nothing_stored() {
    let w = World::new();
    let conf = w.s.path("conf/pyproject.toml");
    w.fake.set(TOKEN, Reply::json(200, r#"{"access_token":"a\nX-Injected: yes","token_type":"Bearer"}"#));
    // Token entries only: taking the refresh lock leaves a `.lock` file, which holds nothing.
    let before = w.s.token_files();
    let out = w.run(&case("cc", &["token", "--no-login"]).arg(conf.to_str().unwrap()).arg("--config"));
    check("client credentials with LF", &out, 1, &[w.fake.base.clone(), "RFC 6750".into()], SECRETS, None);
    assert_eq!(before, w.s.token_files(), "nothing stored");
}

#[test]
fn a_claim_with_an_osc_8_hyperlink_is_printed_without_its_escapes() {
    let w = World::new();
    w.fake.refresh_id_token(
        serde_json::json!({"preferred_username": "\u{1b}]8;;https://evil.test\u{7}me\u{1b}]8;;\u{7}"}),
    );
    assert_eq!(w.run(&case("refresh", &["token", "--no-login"])).code, 0);
    let out = w.run(&case("status", &["status"]));
    check("status with an OSC 8 claim", &out, 0, &[], SECRETS, None);
    assert!(out.stdout.contains("logged in as:  ]8;;https://evil.testme]8;;\n"), "{:?}", out.stdout);
    assert!(!out.all().contains('\u{1b}') && !out.all().contains('\u{7}'), "{:?}", out.all());
}

// ---------------------------------------------------------------------------------------------------------------
// Redaction covers encodings (issue 21): a provider echoing the request's Authorization header prints the client's
// Basic credentials unless base64(`id:secret`) is redacted too.

#[test]
fn a_provider_echoing_basic_credentials_gets_them_redacted() {
    use base64::Engine;
    let w = World::new();
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID_CONF}:{CLIENT_SECRET}"));
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CLIENT_ID_CONF}:{CLIENT_SECRET}"));
    let desc = format!("bad credentials: Authorization: Basic {b64} ({url_safe})");
    let body = serde_json::json!({"error": "invalid_client", "error_description": desc});
    w.fake.set(TOKEN, Reply::json(401, body.to_string()));
    let conf = w.s.path("conf/pyproject.toml");
    let out = w.run(&case("echo", &["-v", "token", "--no-login"]).arg(conf.to_str().unwrap()).arg("--config"));
    check("basic echo", &out, 1, &["invalid_client".into(), "<redacted>".into()], &[&b64, &url_safe], None);
}

/// A token stored before tokens were checked on arrival (or by hand) is checked again where it is printed.
#[test]
fn hostile_token_a_stored_token_with_cr_lf_is_not_printed() {
    let w = World::new();
    w.edit_entry(|v| {
        v["tokens"]["access_token"] = "x\r\nX-Injected: yes".into();
        v["tokens"]["access_expires_at"] = 4_000_000_000i64.into();
    });
    let out = w.run(&case("stored", &[]).arg("--no-login").arg("header").arg("--format").arg("token"));
    check("a stored token with CR LF", &out, 1, &["not a valid bearer token".into(), "logout".into()], SECRETS, None);
    assert!(!out.all().contains("X-Injected"), "{:?}", out.all());
    w.restore();
    w.credential_still_works("a stored token with CR LF");
}

// Issue 20: `exec --proxy` whose proxy dies. Killed outright (SIGKILL: no handler runs), `mlflow-oidc` cannot end
// its command itself; the command must still never outlive it and go on talking to a port someone else may bind.

#[test]
fn exec_proxy_s_command_dies_with_a_killed_proxy() {
    let w = World::new();
    w.restore();
    let pid_file = w.s.path("child.pid");
    let script = format!("echo $$ > '{}'; exec sleep 300", pid_file.display());
    let mut cmd = w.s.cmd("proj", &["exec", "--proxy", "--no-login", "--", "sh", "-c", &script]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut proxy = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let child = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            break pid;
        }
        if let Some(st) = proxy.try_wait().unwrap() {
            panic!("exec --proxy ended before running its command: {st}");
        }
        assert!(Instant::now() < deadline, "exec --proxy never ran its command");
        thread::sleep(Duration::from_millis(20));
    };
    proxy.kill().unwrap();
    let _ = proxy.wait();
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(child) {
        if Instant::now() >= deadline {
            let _ = Command::new("kill").args(["-KILL", &child.to_string()]).status();
            panic!("the command (pid {child}) outlived its killed proxy by 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 20: filling the proxy's file descriptors (tiny_http's accept thread ended for good, silently). Under
/// `ulimit -n 64`, 300 idle connections; once they are gone the listener must still answer, and the shortage
/// was said on stderr.
#[test]
fn the_proxy_listener_outlives_descriptor_exhaustion() {
    let w = World::new();
    w.restore();
    let c = w.s.cmd("proj", &["proxy", "--no-login"]);
    let mut sh = Command::new("sh");
    sh.env_clear()
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(c.get_current_dir().unwrap())
        .args(["-c", "ulimit -n 64 && exec \"$0\" proxy --no-login"])
        .arg(c.get_program())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(w.s.path("proxy.stderr")).unwrap());
    let mut proxy = sh.spawn().unwrap();
    let stdout = proxy.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let uri = rx.recv_timeout(Duration::from_secs(30)).expect("the proxy printed no URI within 30 s");
    let addr = uri.trim().trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let flood: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    thread::sleep(Duration::from_millis(500));
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(15);
    let answered = loop {
        let status = (|| {
            let mut s = TcpStream::connect(&addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
            out.split(' ').nth(1).map(str::to_owned)
        })();
        if status.is_some() || Instant::now() >= deadline {
            break status;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill").args(["-TERM", &proxy.id().to_string()]).status();
    let stop = Instant::now() + Duration::from_secs(15);
    while proxy.try_wait().unwrap().is_none() {
        if Instant::now() >= stop {
            let _ = proxy.kill();
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let stderr = std::fs::read_to_string(w.s.path("proxy.stderr")).unwrap();
    assert_eq!(answered.as_deref(), Some("403"), "the listener no longer answers after the flood:\n{stderr}");
    assert!(stderr.contains("cannot accept a connection"), "the shortage was not said:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
