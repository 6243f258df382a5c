//! `login` and `token` against a real OpenID provider (oidc-provider on 127.0.0.1) and a scripted browser.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod sandbox;
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use sandbox::{PUBLIC_CLIENT, Sandbox};
use support::{AUDIENCE, CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET, Idp, PUBLIC_CLIENT_ID};

const SERVER: &str = "http://127.0.0.1:5999";

/// A project whose one server uses `idp`, with `extra` lines in the block, and the curl browser driver.
fn project(idp: &Idp, extra: &str) -> Sandbox {
    let mut s = Sandbox::with_server(SERVER, &idp.issuer, extra);
    // These tests read the refresh token from the file; the keyring has its own tests (tests/store.rs).
    s.set("MLFLOW_OIDC_STORE", "file");
    s
}

fn public(idp: &Idp, extra: &str) -> Sandbox {
    project(idp, &format!("{PUBLIC_CLIENT}\n{extra}"))
}

fn confidential(idp: &Idp, extra: &str) -> Sandbox {
    project(
        idp,
        &format!(
            "client-id = \"{CONFIDENTIAL_CLIENT_ID}\"\nclient-secret = \"{CONFIDENTIAL_CLIENT_SECRET}\"\naudience = \"{AUDIENCE}\"\n{extra}"
        ),
    )
}

fn assert_no_secret(out: &sandbox::Out, secrets: &[&str]) {
    for secret in secrets {
        assert!(!out.stderr.contains(secret), "a secret leaked to stderr: {}", out.stderr);
    }
}

#[test]
fn login_then_token_in_id_token_mode() {
    let idp = Idp::start();
    let s = public(&idp, "");
    let login = s.mo(&["login"]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert_eq!(login.stdout, "", "login prints nothing on stdout");
    assert!(login.stderr.contains("Opening your browser") && login.stderr.contains("/auth?"), "{}", login.stderr);
    assert!(login.stderr.contains("Logged in to http://127.0.0.1:5999 as alice"), "{}", login.stderr);

    // The authorization request: PKCE S256, state, nonce, and offline_access added because the provider lists it.
    let auth = &idp.auth_requests()[0];
    assert_eq!(auth["code_challenge_method"], "S256");
    assert!(auth["state"].as_str().unwrap().len() >= 16);
    assert!(auth["nonce"].as_str().unwrap().len() >= 16);
    assert!(auth["scope"].as_str().unwrap().split(' ').any(|x| x == "offline_access"), "{auth}");

    let out = s.mo(&["token"]);
    let token = out.ok().trim_end_matches('\n');
    assert_eq!(out.stdout, format!("{token}\n"), "stdout holds only the token");
    let claims = support::verify_id_token(&idp.issuer, token, PUBLIC_CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], PUBLIC_CLIENT_ID);
    let entry = s.stored_entry();
    assert!(entry["tokens"]["refresh_token"].is_string(), "a refresh token is kept");
}

#[test]
fn access_token_mode_gives_the_resource_servers_audience_and_is_served_from_cache() {
    let idp = Idp::start();
    let s = public(&idp, "use-id-token = false");
    s.mo(&["login"]).ok();
    let token = s.mo(&["token"]).ok().trim().to_string();
    let claims = support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "alice");

    idp.clear_requests();
    for _ in 0..3 {
        assert_eq!(s.mo(&["token"]).ok().trim(), token);
    }
    assert_eq!(idp.requests().len(), 0, "a fresh cached token needs no request: {:?}", idp.requests());
}

#[test]
fn expiry_refreshes_with_one_request_and_rotates_the_refresh_token() {
    let idp = Idp::start();
    let s = public(&idp, "use-id-token = false");
    s.mo(&["login"]).ok();
    let first = s.mo(&["token"]).ok().trim().to_string();
    let rt1 = s.stored_entry()["tokens"]["refresh_token"].as_str().unwrap().to_string();

    // A token valid for 60 s counts as expiring when we ask for 2 minutes of validity.
    idp.clear_requests();
    let out = s.mo(&["token", "--min-valid", "2m"]);
    let second = out.ok().trim().to_string();
    assert_ne!(first, second, "a new access token");
    let reqs = idp.requests();
    assert_eq!(reqs.len(), 1, "discovery is cached, so a refresh is one request: {reqs:?}");
    assert_eq!(reqs[0]["grant_type"], "refresh_token");
    support::verify_jwt(&idp.issuer, &second, AUDIENCE);

    let rt2 = s.stored_entry()["tokens"]["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "the rotated refresh token was stored");
    assert_no_secret(&out, &[&rt1, &rt2]);

    // The old refresh token is dead at the provider (and presenting it revokes the grant: do it last).
    let (status, body) = support::curl(&[
        "-s",
        "-d",
        "grant_type=refresh_token",
        "-d",
        &format!("client_id={PUBLIC_CLIENT_ID}"),
        "-d",
        &format!("refresh_token={rt1}"),
        &idp.token_endpoint(),
    ]);
    assert!(body.contains("invalid_grant"), "old refresh token still works? {status} {body}");

    // That replay revoked the whole grant (reuse detection): the next refresh is refused, and the message says so.
    let out = s.mo(&["token", "--min-valid", "2m"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("rejected the stored refresh token"), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    // The dead refresh token is dropped (issue 16); whose login it was stays.
    let entry = s.stored_entry();
    assert!(entry["tokens"].get("refresh_token").is_none(), "{entry}");
    assert_eq!(entry["client_id"], PUBLIC_CLIENT_ID);
}

#[test]
fn client_credentials_with_basic_auth_by_default() {
    let idp = Idp::start();
    let s = confidential(&idp, "");
    let out = s.mo(&["token"]);
    let token = out.ok().trim().to_string();
    let claims = support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    assert_eq!(claims["client_id"], CONFIDENTIAL_CLIENT_ID);
    let reqs = idp.token_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["grant_type"], "client_credentials");
    assert_eq!(reqs[0]["auth"], "basic");
    assert_eq!(reqs[0]["params"]["audience"], AUDIENCE);
    assert!(reqs[0]["params"].get("scope").is_none(), "the default scope is not sent for client credentials");
    assert_no_secret(&out, &[CONFIDENTIAL_CLIENT_SECRET]);
    // Second call: cached.
    idp.clear_requests();
    assert_eq!(s.mo(&["token"]).ok().trim(), token);
    assert!(idp.requests().is_empty());
}

#[test]
fn client_credentials_with_post_auth_and_explicit_scope() {
    let idp = Idp::start();
    let s = confidential(&idp, "token-endpoint-auth-method = \"client_secret_post\"\nscope = \"mlflow\"");
    let out = s.mo(&["login"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = idp.token_requests();
    assert_eq!(reqs[0]["auth"], "post");
    assert_eq!(reqs[0]["params"]["scope"], "mlflow");
    assert!(!reqs[0]["params"].to_string().contains("client_secret\":\"x"));
    s.mo(&["token"]).ok();
}

#[test]
fn wrong_client_secret_shows_the_provider_error() {
    let idp = Idp::start();
    let s = project(
        &idp,
        &format!(
            "client-id = \"{CONFIDENTIAL_CLIENT_ID}\"\nclient-secret = \"wrong-secret-123\"\naudience = \"{AUDIENCE}\""
        ),
    );
    let out = s.mo(&["token"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("invalid_client") && out.stderr.contains("client-secret"), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_no_secret(&out, &["wrong-secret-123"]);
}

#[test]
fn no_terminal_or_ci_means_exit_3_and_no_browser() {
    let idp = Idp::start();
    let mut s = public(&idp, "");
    let marker = s.path("browser-opened");
    let opener = s.script("opener.sh", &format!("#!/bin/sh\ntouch '{}'\n", marker.display()));
    s.set("BROWSER", opener.to_str().unwrap());
    for env in [&[][..], &[("CI", "true")][..]] {
        let out = s.run("proj", &["token"], env);
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(out.stderr.contains("not logged in to http://127.0.0.1:5999"), "{}", out.stderr);
        assert!(out.stderr.contains("mlflow-oidc login --server http://127.0.0.1:5999"), "{}", out.stderr);
        assert_eq!(out.stdout, "");
    }
    let out = s.mo(&["token", "--no-login"]);
    assert_eq!(out.code, 3);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "no browser may be opened");
}

#[test]
fn every_format_prints_exactly_what_it_promises() {
    let idp = Idp::start();
    let s = public(&idp, "");
    s.mo(&["login"]).ok();
    let token = s.mo(&["token"]).ok().trim().to_string();
    assert_eq!(s.mo(&["token", "--format", "raw"]).ok(), format!("{token}\n"));
    assert_eq!(s.mo(&["token", "--format", "header"]).ok(), format!("Authorization: Bearer {token}\n"));
    assert_eq!(
        s.mo(&["token", "--format", "env"]).ok(),
        format!("export MLFLOW_TRACKING_URI={SERVER}\nexport MLFLOW_TRACKING_TOKEN={token}\n")
    );
    let json = s.mo(&["token", "--format", "json"]).ok().to_string();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let exp = support::jwt_payload(&token)["exp"].as_i64().unwrap();
    let prefix = format!("{{\"token\":\"{token}\",\"token_type\":\"Bearer\",\"kind\":\"id_token\",\"expires_at\":\"");
    assert!(json.starts_with(&prefix), "{json}");
    assert!(json.ends_with(&format!(",\"server\":\"{SERVER}\"}}\n")), "{json}");
    let left = v["expires_in"].as_i64().unwrap();
    assert!((3500..=3600).contains(&left), "{json}");
    assert_eq!(json.matches('\n').count(), 1);
    let _ = exp;
}

#[test]
fn user_denying_consent_is_a_clear_error() {
    let idp = Idp::start();
    let mut s = public(&idp, "");
    s.set("IDP_DENY", "1");
    let out = s.mo(&["login", "--timeout", "60"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("access_denied") && out.stderr.contains("refused the login"), "{}", out.stderr);
    assert!(
        !s.tokens_dir().exists()
            || std::fs::read_dir(s.tokens_dir()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json"))
    );
}

#[test]
fn a_callback_with_the_wrong_state_is_ignored_and_the_right_one_accepted() {
    let idp = Idp::start();
    let mut s = public(&idp, "");
    // A "browser" that first delivers a forged callback, then logs in for real.
    let driver = s.script(
        "forger.sh",
        &format!(
            "#!/bin/bash\nurl=\"$1\"\nru=$(printf '%s' \"$url\" | sed -E 's/.*[?&]redirect_uri=([^&]*).*/\\1/' | python3 -c 'import sys,urllib.parse;print(urllib.parse.unquote(sys.stdin.read().strip()))')\n\
             curl -s -o '{}' \"$ru?code=forged&state=not-the-state\"\nexec '{}' \"$url\"\n",
            s.path("forged.html").display(),
            support::browser_curl().display()
        ),
    );
    s.set("BROWSER", driver.to_str().unwrap());
    let out = s.mo(&["login"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let forged = std::fs::read_to_string(s.path("forged.html")).unwrap();
    assert!(forged.contains("state mismatch"), "{forged}");
    assert_eq!(idp.count_grants("authorization_code"), 1, "the forged code was never redeemed");
}

#[test]
fn login_times_out_with_a_clear_message() {
    let idp = Idp::start();
    let mut s = public(&idp, "");
    s.set("BROWSER", "true");
    let out = s.mo(&["login", "--timeout", "2"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("timed out waiting for the browser login"), "{}", out.stderr);
    assert!(out.stderr.contains("/auth?"), "the URL was printed: {}", out.stderr);
}

#[test]
fn a_browser_that_fails_still_leaves_the_url_to_open_by_hand() {
    let idp = Idp::start();
    let mut s = public(&idp, "");
    s.set("BROWSER", "/nonexistent/browser");
    let mut child = s.cmd("proj", &["login", "--timeout", "60"]).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().expect("login ended before printing the URL").unwrap();
        if let Some(u) = line.trim().strip_prefix("http") {
            break format!("http{u}");
        }
    };
    // The person opens the URL themselves.
    let printed = support::run_browser(&support::browser_curl(), &url, &[]);
    assert!(printed.contains("CALLBACK"), "{printed}");
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("Logged in")), "{rest:?}");
    s.mo(&["token"]).ok();
}

#[test]
fn login_through_headless_chromium() {
    let idp = Idp::start();
    let mut s = public(&idp, "");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed: run ./scripts/test (or apt-get install chromium)"
    );
    s.set("BROWSER", support::browser_chromium().to_str().unwrap());
    let out = s.mo(&["login", "--timeout", "90"]);
    assert_eq!(
        out.code,
        0,
        "{}\nbrowser log:\n{}",
        out.stderr,
        std::fs::read_to_string(s.path("browser.log")).unwrap_or_default()
    );
    let token = s.mo(&["token"]).ok().trim().to_string();
    support::verify_id_token(&idp.issuer, &token, PUBLIC_CLIENT_ID);
}

#[test]
fn a_machine_client_is_told_that_expiry_means_new_client_credentials_not_a_login() {
    let idp = Idp::start();
    let s = confidential(&idp, "");
    let out = s.mo(&["login"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("the next `token` asks for a new client-credentials token"), "{}", out.stderr);
    assert!(!out.stderr.contains("means a new login"), "{}", out.stderr);
    let status = s.mo(&["status"]);
    assert!(status.ok().contains("a machine client: the next `token` asks for a new client-credentials token"));
}

#[test]
fn logout_end_session_opens_the_url_with_the_id_token_hint_but_prints_it_without() {
    let idp = Idp::start();
    let s = public(&idp, "");
    assert_eq!(s.mo(&["login"]).code, 0);
    let id_token = s.stored_entry()["tokens"]["id_token"].as_str().expect("an ID token after login").to_string();
    let opened = s.path("opened.txt");
    // Written whole and renamed: the `webbrowser` crate starts a graphical $BROWSER in the background.
    let recorder = s.script(
        "record-url.sh",
        &format!("#!/bin/sh\nprintf '%s' \"$1\" > '{0}.tmp' && mv '{0}.tmp' '{0}'\n", opened.display()),
    );
    let out = s.run("proj", &["logout", "--end-session"], &[("BROWSER", recorder.to_str().unwrap())]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !opened.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = std::fs::read_to_string(&opened).expect("the browser was opened");
    assert_eq!(support::query_param(&url, "id_token_hint").as_deref(), Some(id_token.as_str()), "{url}");
    assert_eq!(support::query_param(&url, "client_id").as_deref(), Some(PUBLIC_CLIENT_ID));
    assert!(!out.stderr.contains(&id_token) && !out.stderr.contains("id_token_hint"), "{}", out.stderr);
    assert!(out.stderr.contains("client_id=mlflow-cli"), "{}", out.stderr);
}
