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
    // The person's browser lands on the provider's error page: nothing ever reaches the listener.
    Sandbox::for_fake(SERVER, &f.base, fake::CLIENT_ID, redirect)
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

/// A certificate for `localhost` and 127.0.0.1, made now with openssl (scripts/test installs it).
fn make_cert(s: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (s.path("proj/tls/cert.pem"), s.path("proj/tls/key.pem"));
    std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed for this test (Debian: apt-get install openssl; ./scripts/test installs it)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

#[test]
fn an_https_loopback_redirect_is_served_with_the_users_certificate_and_shown_by_status() {
    let f = fake::Fake::start();
    let s = fake_project(&f, "https://localhost:0/oauth2/callback");
    // Without TLS files: status resolves and shows the problem; login refuses with what to set.
    let status = run_bounded(s.cmd("proj", &["status"]), Duration::from_secs(30));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("https://localhost:0/oauth2/callback (TLS not configured"), "{}", status.stdout);
    let refused = run_bounded(s.cmd("proj", &["login", "--timeout", "5"]), Duration::from_secs(30));
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("redirect-tls-cert") && refused.stderr.contains("bundles none"),
        "{}",
        refused.stderr
    );

    let (cert, _) = make_cert(&s);
    let mut text = std::fs::read_to_string(s.path("proj/pyproject.toml")).unwrap();
    text.push_str("redirect-tls-cert = \"tls/cert.pem\"\nredirect-tls-key = \"tls/key.pem\"\nuse-id-token = false\n");
    s.write("proj/pyproject.toml", &text);
    // The TLS files are the user's: a project file may name them once its user trusts it (issue 21).
    let trusted = run_bounded(s.cmd("proj", &["trust"]), Duration::from_secs(30));
    assert_eq!(trusted.code, 0, "{}", trusted.stderr);
    let status = run_bounded(s.cmd("proj", &["status"]), Duration::from_secs(30));
    assert!(status.stdout.contains("(TLS: ") && status.stdout.contains("cert.pem"), "{}", status.stdout);

    let login = drive::start_login(&s, "proj", "30");
    assert!(login.url.contains("redirect_uri=https%3A%2F%2Flocalhost%3A"), "{}", login.url);
    // The browser: curl trusting exactly this certificate, over both loopback addresses `localhost` names.
    let callback = format!("https://localhost:{}{}?code={}&state={}", login.port, login.path, fake::CODE, login.state);
    let page = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&cert)
        .arg(&callback)
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout).into_owned() + &String::from_utf8_lossy(&page.stderr);
    assert!(page.contains("You are logged in"), "{page}");
    let out = login.finish(Duration::from_secs(30));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(run_bounded(s.cmd("proj", &["token"]), Duration::from_secs(30)).stdout.trim(), fake::AT_LOGIN);
}

/// The scripted provider with a device authorization endpoint (interval 1 s), and a project that logs in to it
/// and sends the access token.
fn device_fake() -> (fake::Fake, Sandbox) {
    let f = fake::Fake::start();
    let meta = f.metadata_with(|m| drop(m.insert("device_authorization_endpoint".into(), f.url("/device").into())));
    f.set("/.well-known/openid-configuration", fake::Reply::json(200, meta));
    let start = serde_json::json!({
        "device_code": fake::DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": "http://127.0.0.1/device",
        "expires_in": 60, "interval": 1,
    });
    f.set("/device", fake::Reply::json(200, start.to_string()));
    let s = fake_project(&f, "http://127.0.0.1:0/oauth2/callback");
    let config = std::fs::read_to_string(s.path("proj/pyproject.toml")).unwrap();
    s.write("proj/pyproject.toml", &format!("{config}use-id-token = false\n"));
    (f, s)
}

fn token_polls(f: &fake::Fake) -> usize {
    f.requests().iter().filter(|r| r.path == "/token").count()
}

/// `login --device`, with the person approving once the token endpoint has answered two polls as it was set to.
fn device_login_approved_after_two_polls(f: &fake::Fake, s: &Sandbox) -> sandbox::Out {
    let ended = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Bounded: the login's own timeout is 40 s; a login that ends sooner ends the wait.
            for _ in 0..400 {
                if ended.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if token_polls(f) >= 2 {
                    let tokens = serde_json::json!({"access_token": fake::AT_LOGIN, "token_type": "Bearer",
                        "expires_in": 3600, "refresh_token": fake::RT});
                    f.set("/token", fake::Reply::json(200, tokens.to_string()));
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let out = run_bounded(s.cmd("proj", &["login", "--device", "--timeout", "40"]), Duration::from_secs(60));
        ended.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    })
}

/// RFC 8628 §3.5: a provider that stops answering while the person types the code is polled again after a
/// growing wait, not given up on; the login completes once it answers. The scripted provider (tests/fake) is
/// needed for this: a real one cannot be made to drop exactly the polls.
#[test]
fn a_device_login_survives_a_provider_that_drops_two_polls() {
    let (f, s) = device_fake();
    f.set("/token", fake::Reply::Close);
    let out = device_login_approved_after_two_polls(&f, &s);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(token_polls(&f), 3, "{}", out.stderr);
    assert!(out.stderr.contains("polling again in 1s"), "{}", out.stderr);
    assert!(out.stderr.contains("polling again in 2s"), "the wait doubles: {}", out.stderr);
    assert!(!out.stderr.contains(fake::DEVICE_CODE), "{}", out.stderr);
    assert_eq!(s.run("proj", &["token"], &[]).stdout.trim(), fake::AT_LOGIN);
}

/// GitHub's device flow answers `authorization_pending` with HTTP 200 (against RFC 6749 §5.2's 400): the poll
/// goes on, it is not "an invalid token response". The scripted provider answers as GitHub does.
#[test]
fn a_device_login_polls_on_through_errors_sent_with_200() {
    let (f, s) = device_fake();
    f.set("/token", fake::Reply::json(200, r#"{"error":"authorization_pending"}"#));
    let out = device_login_approved_after_two_polls(&f, &s);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(token_polls(&f), 3, "{}", out.stderr);
    assert_eq!(s.run("proj", &["token"], &[]).stdout.trim(), fake::AT_LOGIN);
}
