//! Where self-hosted MLflow servers live (issue 22): Keycloak as the provider, oauth2-proxy in front of
//! `mlflow server`, the journeys driven against Keycloak's real login form by headless Chromium, and MLflow's Java
//! client through `mlflow-oidc exec --proxy`. One stack for every test here (tests/keycloak/mod.rs); run them with
//! `cargo test --test keycloak_e2e -- --nocapture` to see the start-up time and the measured figures.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::print_stderr)]

mod e2e;
mod keycloak;
mod sandbox;
mod support;

use std::time::Instant;

use base64::Engine;

use e2e::{command, last_json, python, repo, venv};
use keycloak::{AT_TTL, components, machine, person, project, stack};
use sandbox::{Out, Sandbox};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{nanos}")
}

fn refresh_token(s: &Sandbox) -> Option<String> {
    s.stored_entry()["tokens"]["refresh_token"].as_str().map(str::to_owned)
}

/// Keycloak's answer to a refresh_token grant with `rt` for the public client: (HTTP status, body).
fn refresh_at_keycloak(rt: &str) -> (u16, String) {
    let st = stack();
    support::curl(&[
        "-d",
        "grant_type=refresh_token",
        "-d",
        &format!("client_id={}", keycloak::PUBLIC_CLIENT),
        "--data-urlencode",
        &format!("refresh_token={rt}"),
        &st.token_endpoint(),
    ])
}

/// GET an MLflow API path through `uri` with `token`: (status, headers + body).
fn api(uri: &str, token: &str) -> (u16, String) {
    support::curl(&[
        "-D",
        "-",
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{uri}/api/2.0/mlflow/experiments/search?max_results=1"),
    ])
}

/// A JWT's claims, unverified (Keycloak signed it; the test only reads what it says).
fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn login(s: &Sandbox, args: &[&str]) -> Out {
    let mut all = vec!["login", "--timeout", "90"];
    all.extend_from_slice(args);
    let out = s.mo(&all);
    let browser = std::fs::read_to_string(s.path("browser.log")).unwrap_or_default();
    assert_eq!(out.code, 0, "login failed:\n{}\n--- browser\n{browser}\n{}", out.stderr, stack().logs());
    out
}

#[test]
fn without_an_accepted_token_the_api_route_says_401_and_the_web_config_redirects_to_login() {
    let st = stack();
    let (status, body) = api(&st.api, "not-a-jwt");
    assert_eq!(status, 401, "{body}");
    let (status, body) = api(&st.web, "not-a-jwt");
    assert_eq!(status, 302, "{body}");
    assert!(body.to_ascii_lowercase().contains("location: /oauth2/sign_in") || body.contains(&st.issuer), "{body}");
}

#[test]
fn browser_login_on_keycloaks_form_then_token_and_status_check_are_green() {
    let st = stack();
    let s = person(&st.api);
    let out = login(&s, &[]);
    assert!(s.path("browser.log").exists(), "the Chromium driver ran: {}", out.stderr);
    let token = s.mo(&["token"]).ok().trim().to_owned();
    let (status, body) = api(&st.api, &token);
    assert_eq!(status, 200, "{body}\n{}", st.logs());
    let check = s.mo(&["status", "--check"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(&format!("{} accepted the token (HTTP 200)", st.api)), "{}", check.stdout);
    assert!(check.stdout.contains("revocation"), "{}", check.stdout);
}

#[test]
fn device_flow_approved_in_the_browser() {
    let st = stack();
    let s = person(&st.api);
    let out = login(&s, &["--device"]);
    assert!(out.stderr.contains("/device"), "{}", out.stderr);
    let token = s.mo(&["token"]).ok().trim().to_owned();
    assert_eq!(api(&st.api, &token).0, 200);
}

#[test]
fn the_machine_client_goes_through_oauth2_proxy() {
    let st = stack();
    let s = machine(&st.api);
    // Through the local proxy: a static token of 20 s can expire before a slow `mlflow` start sends it.
    let out = s.mo(&["exec", "--proxy", "--", "mlflow", "experiments", "search"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, st.logs());
    assert!(out.stdout.contains("Default"), "{}", out.stdout);
    // --check sends a cached token only (it neither logs in nor refreshes): a fresh one.
    s.mo(&["token"]).ok();
    let check = s.mo(&["status", "--check"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("accepted the token (HTTP 200)"), "{}", check.stdout);
}

/// Refresh-token rotation with reuse detection (`revokeRefreshToken`, `refreshTokenMaxReuse: 0`): each refresh
/// returns a new refresh token and the old one is dead; a cache holding a dead one (a copied cache, an old backup)
/// makes the CLI say "log in" (exit 3) and drop it. Replaying a rotated-out token also ends the session at Keycloak:
/// the current one dies with it.
#[test]
fn rotation_and_reuse_detection_end_in_exit_3_and_the_dead_token_dropped() {
    let st = stack();
    let s = person(&st.api);
    login(&s, &[]);
    let first = refresh_token(&s).expect("Keycloak issued a refresh token");
    s.mo(&["token", "--min-valid", "100000"]).ok();
    let second = refresh_token(&s).unwrap();
    assert_ne!(first, second, "Keycloak rotates refresh tokens");

    // The rotated-out token back in the cache: Keycloak refuses it, the CLI asks for a login and forgets it.
    let file = std::fs::read_dir(s.tokens_dir())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace(&second, &first)).unwrap();
    let out = s.mo(&["token", "--min-valid", "100000"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("mlflow-oidc login"), "{}", out.stderr);
    assert_eq!(refresh_token(&s), None, "the dead refresh token is dropped: {}", s.stored_entry());

    // Reuse detection: that replay ended the session, so the current token is dead too.
    let (status, body) = refresh_at_keycloak(&second);
    assert_eq!(status, 400, "the session survived a replayed refresh token: {body}");
    assert!(body.contains("invalid_grant"), "{body}");
}

#[test]
fn logout_revokes_the_refresh_token_at_keycloak() {
    let st = stack();
    let s = person(&st.api);
    login(&s, &[]);
    let rt = refresh_token(&s).unwrap();
    let out = s.mo(&["logout"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (status, body) = refresh_at_keycloak(&rt);
    assert_eq!(status, 400, "the refresh token still works after logout: {body}");
    assert_eq!(s.mo(&["token"]).code, 3);
}

#[test]
fn token_exchange_gives_an_audience_scoped_token() {
    let st = stack();
    let p = person(&st.api);
    login(&p, &[]);
    let subject = p.mo(&["token"]).ok().trim().to_owned();
    let mut s = project(
        &st.api,
        &format!(
            "client-id = \"{}\"\nclient-secret = \"{}\"\nsubject-token = \"env:KC_SUBJECT_TOKEN\"\n\
             subject-token-type = \"urn:ietf:params:oauth:token-type:access_token\"\naudience = \"oauth2-proxy\"",
            keycloak::EXCHANGE_CLIENT,
            keycloak::EXCHANGE_SECRET
        ),
    );
    s.set("KC_SUBJECT_TOKEN", &subject);
    // A project file's `env:` subject token waits for the user's trust (issue 21).
    let trusted = s.mo(&["trust"]);
    assert_eq!(trusted.code, 0, "{}", trusted.stderr);
    let out = s.mo(&["token", "--format", "json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, st.logs());
    let token = serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], "oauth2-proxy", "{claims}");
    assert_eq!(claims["azp"], keycloak::EXCHANGE_CLIENT, "{claims}");
    assert_eq!(api(&st.api, &token).0, 200);
}

/// The plugin renews tokens inside Python: a run logging a metric a second for three access-token lifetimes.
#[test]
fn the_plugin_keeps_a_run_alive_for_three_token_lifetimes() {
    let st = stack();
    let s = person(&st.api);
    login(&s, &[]);
    let seconds = 3 * AT_TTL + 2;
    let out = python(
        &s,
        "long_run.py",
        &[&unique("kc-long"), &seconds.to_string(), "1"],
        &[("MLFLOW_TRACKING_URI", &st.api), ("MLFLOW_TRACKING_AUTH", "oidc")],
    );
    let r = last_json(&out);
    eprintln!("plugin long run through oauth2-proxy: {r}");
    assert_eq!(r["failures"], 0, "{r}\n{}", st.logs());
    assert!(r["steps"].as_u64().unwrap() >= 3 * AT_TTL, "{r}");
    assert_eq!(r["history_len"], r["steps"], "{r}");
}

/// The Java recipe of docs/proxy.md, run as written (bash), with the values below in its variables.
const JAVA_RECIPE: &str =
    "mlflow-oidc exec --proxy -- java -cp \"$CLASSPATH\" LogMetrics.java \"$EXPERIMENT\" \"$SECONDS\"";

#[test]
fn docs_proxy_md_shows_the_java_recipe_the_test_runs() {
    let doc = std::fs::read_to_string(repo().join("docs/proxy.md")).unwrap();
    assert!(
        doc.contains(&format!("```sh\n{JAVA_RECIPE}\n```")),
        "docs/proxy.md lacks the tested recipe: {JAVA_RECIPE}"
    );
}

/// MLflow's Java client sends no token for http(s) URIs: the local proxy is its way in. One metric a second for
/// three token lifetimes (machine client), 0 failures.
#[test]
fn mlflows_java_client_logs_through_exec_proxy_for_three_token_lifetimes() {
    let st = stack();
    let c = components();
    let s = machine(&st.api);
    let seconds = (3 * AT_TTL + 2).to_string();
    let name = unique("kc-java");
    s.write("proj/LogMetrics.java", &std::fs::read_to_string(repo().join("tests/java/LogMetrics.java")).unwrap());
    let mut cmd = command(&s, "/bin/bash");
    cmd.args(["-c", JAVA_RECIPE])
        .env("CLASSPATH", &c.java_client_classpath)
        .env("EXPERIMENT", &name)
        .env("SECONDS", &seconds)
        .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", venv().dir.join("bin").display()));
    let started = Instant::now();
    let out = Out::from(cmd.output().unwrap());
    let r = last_json(&out);
    eprintln!(
        "Java client {} through exec --proxy: {r} in {:.1} s",
        c.java_client_version,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, st.logs());
    assert_eq!(r["failures"], 0, "{r}\n{}", out.stderr);
    assert!(r["steps"].as_u64().unwrap() >= 3 * AT_TTL, "{r}");
    assert_eq!(r["history_len"], r["steps"], "{r}");
}

/// A token oauth2-proxy refuses (no audience mapper: `aud: account`; no verified email) is named as that, by
/// `status --check` and by the Python plugin, never as MLflow's JSON decode error.
#[test]
fn a_token_oauth2_proxy_refuses_is_reported_as_such() {
    let st = stack();
    let noaud = format!("client-id = \"{}\"\nclient-secret = \"{}\"", keycloak::NOAUD_CLIENT, keycloak::NOAUD_SECRET);
    let redirect = "the tracking server's proxy redirected to its login page";
    let why = "it did not accept the token (audience? email_verified?)";

    // The configuration without --api-route: a 302 to the login page.
    let s = project(&st.web, &noaud);
    s.mo(&["token"]).ok();
    let check = s.mo(&["status", "--check"]);
    assert_eq!(check.code, 1, "{}\n{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(redirect) && check.stdout.contains(why), "{}", check.stdout);
    assert!(check.stdout.contains("--api-route"), "the fix is named: {}", check.stdout);

    let out = python(
        &s,
        "log_run.py",
        &[&unique("kc-refused")],
        &[("MLFLOW_TRACKING_URI", &st.web), ("MLFLOW_TRACKING_AUTH", "oidc")],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(redirect) && out.stderr.contains(why), "{}", out.stderr);
    assert!(!out.stderr.contains("JSONDecodeError") && !out.stderr.contains("Expecting value"), "{}", out.stderr);

    // Through `exec --proxy` (how Java, R and TypeScript clients go): the proxy answers the redirect with an MLflow
    // error in the same words instead of relaying it to the login page.
    let out = s.mo(&["exec", "--proxy", "--", "mlflow", "experiments", "search"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(redirect) && out.stderr.contains(why), "{}", out.stderr);
    assert!(!out.stderr.contains("JSONDecodeError") && !out.stderr.contains("Expecting value"), "{}", out.stderr);

    // A token with the right audience for a user whose email is not verified: the same redirect, the same words.
    let s = project(
        &st.web,
        &format!(
            "client-id = \"{}\"\nclient-secret = \"{}\"",
            keycloak::UNVERIFIED_CLIENT,
            keycloak::UNVERIFIED_SECRET
        ),
    );
    let token = s.mo(&["token"]).ok().trim().to_owned();
    let claims = jwt_claims(&token);
    assert!(claims["aud"].as_array().unwrap().contains(&serde_json::json!("oauth2-proxy")), "{claims}");
    assert_eq!(claims["email_verified"], false, "{claims}");
    let check = s.mo(&["status", "--check"]);
    assert_eq!(check.code, 1, "{}\n{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(redirect) && check.stdout.contains(why), "{}", check.stdout);

    // With --api-route: a plain 401, named as a refusal.
    let s = project(&st.api, &noaud);
    s.mo(&["token"]).ok();
    let check = s.mo(&["status", "--check"]);
    assert_eq!(check.code, 1, "{}\n{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("the tracking server refused the token (HTTP 401)"), "{}", check.stdout);
}

/// The flags the stack runs oauth2-proxy with come from docs/guards/oauth2-proxy.md (tests/keycloak/stack.py reads
/// its block); the behaviours these tests rely on need these lines in it.
#[test]
fn docs_guards_oauth2_proxy_md_holds_the_tested_flags() {
    let doc = std::fs::read_to_string(repo().join("docs/guards/oauth2-proxy.md")).unwrap();
    for flag in
        ["--skip-jwt-bearer-tokens=true", "--api-route=^/api/", "--client-id=oauth2-proxy", "--provider=keycloak-oidc"]
    {
        assert!(doc.contains(&format!("  {flag} \\\n")) || doc.contains(&format!("  {flag}\n```")), "{flag}");
    }
}
