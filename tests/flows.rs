//! Logins that work anywhere: the device flow, the automatic choice of flow, `--no-browser` with a pasted URL,
//! loopback port handling, and provider parameters — against the real provider.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod sandbox;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sandbox::{PUBLIC_CLIENT, Sandbox};
use support::{AUDIENCE, DEVICE_CODE_GRANT, Idp};

const SERVER: &str = "http://127.0.0.1:5997";

fn project(idp: &Idp, extra: &str) -> Sandbox {
    let mut s = Sandbox::with_server(SERVER, &idp.issuer, &format!("{PUBLIC_CLIENT}\nuse-id-token = false\n{extra}"));
    s.set("MLFLOW_OIDC_STORE", "file");
    s
}

fn token_works(idp: &Idp, s: &Sandbox) {
    let token = s.mo(&["token"]).ok().trim().to_string();
    support::verify_jwt(&idp.issuer, &token, AUDIENCE);
}

#[test]
fn device_flow_approved_through_verification_uri_complete() {
    let idp = Idp::start();
    let s = project(&idp, "");
    let out = s.mo(&["login", "--device", "--timeout", "60"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("Using the device flow (asked for)"), "{}", out.stderr);
    assert!(out.stderr.contains("/device") && out.stderr.contains("enter the code"), "{}", out.stderr);
    assert!(idp.count_grants(DEVICE_CODE_GRANT) >= 1);
    token_works(&idp, &s);
}

#[test]
fn device_flow_approved_by_typing_the_code() {
    let idp = Idp::start();
    let mut s = project(&idp, "flow = \"device\"");
    s.set("BROWSER", "");
    let mut child = s.cmd("proj", &["login", "--timeout", "60"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut uri, mut code) = (String::new(), String::new());
    while code.is_empty() {
        let line = lines.next().expect("login ended before showing the code").unwrap();
        if let Some(rest) = line.strip_prefix("To log in to ") {
            uri = rest.split(", open ").nth(1).unwrap().split(' ').next().unwrap().to_string();
        } else if !uri.is_empty() && !line.trim().is_empty() {
            code = line.trim().to_string();
        }
    }
    // The person types the code on the verification page.
    let printed = support::run_browser(&support::browser_curl(), &uri, &[("IDP_USER_CODE", &code)]);
    assert!(printed.contains("DONE"), "{printed}");
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    token_works(&idp, &s);
}

#[test]
fn device_flow_denied_is_a_clear_error() {
    let idp = Idp::start();
    let mut s = project(&idp, "");
    s.set("IDP_DENY", "1");
    let out = s.mo(&["login", "--device", "--timeout", "60"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("denied"), "{}", out.stderr);
    assert_eq!(s.mo(&["token"]).code, 3);
}

#[test]
fn device_flow_expiry_is_a_clear_error() {
    let idp = Idp::start_with(&[("IDP_DEVICE_CODE_TTL", "3")]);
    let mut s = project(&idp, "");
    s.set("BROWSER", "true"); // nobody approves
    let start = Instant::now();
    let out = s.mo(&["login", "--device", "--timeout", "60"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("expired") || out.stderr.contains("not approved in time"), "{}", out.stderr);
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn device_flow_honours_slow_down() {
    let idp = Idp::start_with(&[("IDP_DEVICE_SLOW_DOWN", "1")]);
    let mut s = project(&idp, "");
    // A person who approves a little later, so the first poll happens before approval.
    let driver = s.script(
        "late.sh",
        &format!("#!/bin/sh\n(sleep 0.5; exec '{}' \"$1\") >/dev/null 2>&1 &\n", support::browser_curl().display()),
    );
    s.set("BROWSER", driver.to_str().unwrap());
    let start = Instant::now();
    let out = s.mo(&["-v", "login", "--device", "--timeout", "60"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("polling every 6s"), "interval 1 s + 5 s: {}", out.stderr);
    assert!(start.elapsed() >= Duration::from_secs(6), "the next poll waited the longer interval");
    let polls: Vec<_> = idp.token_requests().into_iter().filter(|r| r["grant_type"] == DEVICE_CODE_GRANT).collect();
    assert_eq!(polls[0]["error"], "slow_down", "{polls:?}");
    token_works(&idp, &s);
}

#[test]
fn ssh_without_a_display_chooses_the_device_flow_and_forced_flows_obey() {
    let idp = Idp::start();
    let mut s = project(&idp, "");
    s.set("SSH_CONNECTION", "10.0.0.1 50000 10.0.0.2 22");
    let out = s.mo(&["login", "--timeout", "60"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("device flow (this is an SSH session without a forwarded display)"), "{}", out.stderr);
    assert_eq!(idp.count_grants("authorization_code"), 0);
    assert!(idp.count_grants(DEVICE_CODE_GRANT) >= 1);

    idp.clear_requests();
    let out = s.mo(&["login", "--flow", "auth-code", "--timeout", "60"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(idp.count_grants("authorization_code"), 1);
    assert_eq!(idp.count_grants(DEVICE_CODE_GRANT), 0);

    // With a forwarded display, the browser flow is the choice.
    idp.clear_requests();
    let out = s.run("proj", &["login", "--timeout", "60"], &[("DISPLAY", ":0")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(idp.count_grants("authorization_code"), 1);
}

/// Start `login --no-browser`, return the child and the authorization URL it printed.
fn no_browser_login(
    s: &Sandbox,
) -> (std::process::Child, String, std::io::Lines<BufReader<std::process::ChildStderr>>) {
    let mut child = s
        .cmd("proj", &["login", "--no-browser", "--timeout", "20"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("no URL printed").unwrap();
        if let Some(u) = line.trim().strip_prefix("http") {
            break format!("http{u}");
        }
    };
    (child, url, lines)
}

#[test]
fn no_browser_accepts_the_redirected_url_pasted_on_stdin() {
    let idp = Idp::start();
    let mut s = project(&idp, "");
    let marker = s.path("opened");
    let opener = s.script("opener.sh", &format!("#!/bin/sh\ntouch '{}'\n", marker.display()));
    s.set("BROWSER", opener.to_str().unwrap());
    let (mut child, url, lines) = no_browser_login(&s);
    // The browser runs elsewhere and its final page fails to load: the person copies its address.
    let printed = support::run_browser(&support::browser_curl(), &url, &[("IDP_NO_CALLBACK", "1")]);
    let callback = printed.lines().find_map(|l| l.strip_prefix("CALLBACK ")).unwrap().to_string();
    writeln!(child.stdin.as_mut().unwrap(), "{callback}").unwrap();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(!marker.exists(), "--no-browser opened a browser");
    token_works(&idp, &s);
}

#[test]
fn a_pasted_url_with_the_wrong_state_is_refused() {
    let idp = Idp::start();
    let s = project(&idp, "");
    let (mut child, url, lines) = no_browser_login(&s);
    let printed = support::run_browser(&support::browser_curl(), &url, &[("IDP_NO_CALLBACK", "1")]);
    let callback = printed.lines().find_map(|l| l.strip_prefix("CALLBACK ")).unwrap().to_string();
    let state = support::query_param(&callback, "state").unwrap();
    let forged = callback.replace(&format!("state={state}"), "state=forged");
    writeln!(child.stdin.as_mut().unwrap(), "{forged}").unwrap();
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    assert_eq!(status.code(), Some(1), "{rest:?}");
    let text = rest.join("\n");
    assert!(text.contains("The pasted URL was refused") && text.contains("state mismatch"), "{text}");
    assert_eq!(idp.count_grants("authorization_code"), 0, "the forged code was never redeemed");
}

#[test]
fn a_busy_fixed_port_is_named_and_a_port_list_falls_back() {
    let idp = Idp::start();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let s = project(&idp, "");
    let out = s.run(
        "proj",
        &["login", "--timeout", "30"],
        &[("MLFLOW_TRACKING_OIDC_REDIRECT_URI", &format!("http://127.0.0.1:{port}/oauth2/callback"))],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("port {port}")) && out.stderr.contains("in use"), "{}", out.stderr);

    let free = support::free_port();
    let s = project(&idp, &format!("redirect-ports = [{port}, {free}]"));
    let out = s.run(
        "proj",
        &["login", "--timeout", "30"],
        &[("MLFLOW_TRACKING_OIDC_REDIRECT_URI", &format!("http://127.0.0.1:{port}/oauth2/callback"))],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let auth = &idp.auth_requests().last().cloned().unwrap();
    assert_eq!(auth["redirect_uri"], format!("http://127.0.0.1:{free}/oauth2/callback"));
    drop(busy);
}

#[test]
fn ipv6_loopback_redirect() {
    let idp = Idp::start_with(&[(
        "IDP_REDIRECT_URIS",
        "http://127.0.0.1:39303/oauth2/callback,http://[::1]:39303/oauth2/callback",
    )]);
    let s = project(&idp, "");
    let out = s.run(
        "proj",
        &["login", "--timeout", "30"],
        &[("MLFLOW_TRACKING_OIDC_REDIRECT_URI", "http://[::1]:0/oauth2/callback")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let auth = &idp.auth_requests()[0];
    assert!(auth["redirect_uri"].as_str().unwrap().starts_with("http://[::1]:"), "{auth}");
    token_works(&idp, &s);
}

#[test]
fn auth_params_and_resource_reach_the_provider() {
    let idp = Idp::start();
    let s = project(
        &idp,
        "resource = \"urn:mlflow\"\nauth-params = { prompt = \"consent\", login_hint = \"alice@example.test\" }",
    );
    let out = s.mo(&["login", "--timeout", "30"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let auth = &idp.auth_requests()[0];
    assert_eq!(auth["resource"], "urn:mlflow");
    assert_eq!(auth["prompt"], "consent");
    assert_eq!(auth["login_hint"], "alice@example.test");
    let code = idp.token_requests().into_iter().find(|r| r["grant_type"] == "authorization_code").unwrap();
    assert_eq!(code["params"]["resource"], "urn:mlflow");
    token_works(&idp, &s);
}

#[test]
fn status_check_reports_each_requirement() {
    let idp = Idp::start();
    let s = project(&idp, "");
    let out = s.mo(&["status", "--check"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for line in [
        "✓ discovery",
        "✓ issuer",
        "✓ token endpoint",
        "✓ authorization endpoint",
        "✓ refresh",
        "✓ revocation",
        "✓ redirect port",
        "✓ clock",
    ] {
        assert!(out.stdout.contains(line), "{line} missing:\n{}", out.stdout);
    }
    let v: serde_json::Value = serde_json::from_str(s.mo(&["status", "--check", "--json"]).ok()).unwrap();
    assert!(v["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true), "{v}");

    // A busy fixed redirect port and a device flow the configuration needs are reported with their fixes.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = s.run(
        "proj",
        &["status", "--check", "--json"],
        &[("MLFLOW_TRACKING_OIDC_REDIRECT_URI", &format!("http://127.0.0.1:{port}/oauth2/callback"))],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let port_check = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "redirect port").unwrap().clone();
    assert_eq!(port_check["ok"], false);
    assert!(port_check["detail"].as_str().unwrap().contains(&port.to_string()), "{port_check}");
    assert!(port_check["fix"].is_string());

    // An unreachable issuer fails the first check and says what to look at.
    let out = s.run("proj", &["status", "--check"], &[("MLFLOW_TRACKING_OIDC_ISSUER", "http://127.0.0.1:9")]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("✗ discovery") && out.stdout.contains("fix:"), "{}", out.stdout);
}
