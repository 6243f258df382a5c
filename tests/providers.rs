//! Providers as they really are (issue 16): what the user is told when a provider does not redirect back. The
//! provider here is the scripted one (tests/fake): a real provider that matches redirect URIs exactly shows its
//! error page in the browser and never calls back, which is what a `$BROWSER` that does nothing reproduces.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod drive;
mod fake;
mod sandbox;
mod support;

use std::time::Duration;

use drive::run_bounded;
use sandbox::Sandbox;

const SERVER: &str = "http://127.0.0.1:5998";

fn fake_project(f: &fake::Fake, redirect: &str) -> Sandbox {
    let mut s = Sandbox::new();
    s.write(
        "proj/pyproject.toml",
        &format!(
            "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{}\"\nclient-id = \"{}\"\n\
             scope = \"openid\"\nredirect-uri = \"{redirect}\"\n",
            f.base,
            fake::CLIENT_ID
        ),
    );
    s.set("MLFLOW_OIDC_STORE", "file");
    // The person's browser lands on the provider's error page: nothing ever reaches the listener.
    s.set("BROWSER", "true");
    s
}

#[test]
fn a_login_that_times_out_on_a_random_port_says_the_provider_likely_refused_the_redirect_uri() {
    let f = fake::Fake::start();
    let s = fake_project(&f, "http://127.0.0.1:0/oauth2/callback");
    let out = run_bounded(s.cmd("proj", &["login", "--timeout", "2"]), Duration::from_secs(30));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("timed out waiting for the browser login"), "{}", out.stderr);
    assert!(out.stderr.contains("most likely refused the redirect URI"), "{}", out.stderr);
    assert!(out.stderr.contains("redirect-ports"), "{}", out.stderr);

    // With a fixed port the hint would mislead: it is not given.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = fake_project(&f, &format!("http://127.0.0.1:{port}/oauth2/callback"));
    let out = run_bounded(s.cmd("proj", &["login", "--timeout", "2"]), Duration::from_secs(30));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!out.stderr.contains("most likely refused"), "{}", out.stderr);
}
