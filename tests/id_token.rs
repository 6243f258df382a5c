//! Every ID token is checked before it is stored or sent (issue 12; OIDC Core §3.1.3.7 and §12.2): a foreign
//! `iss`, an `aud` for another client, an expired token, and a refresh that names another person are refused
//! with the claim named, nothing stored, and the previous login kept. A real provider will not issue such
//! tokens on demand, so these cases use the scripted provider in tests/fake.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod drive;
mod fake;
mod sandbox;
mod support;

use std::time::Duration;

use drive::{run_bounded, start_login};
use sandbox::{Out, Sandbox};

const SERVER: &str = "http://127.0.0.1:5997";
const LIMIT: Duration = Duration::from_secs(60);

/// A project using the scripted provider in ID-token mode (so the ID token is what `token` prints).
fn fake_project(f: &fake::Fake) -> Sandbox {
    Sandbox::for_fake(SERVER, &f.base, fake::CLIENT_ID, "http://127.0.0.1:0/oauth2/callback")
}

fn mo(s: &Sandbox, args: &[&str]) -> Out {
    run_bounded(s.cmd("proj", args), LIMIT)
}

/// Log in through the fake with a correct nonce and `claims` merged into the ID token.
fn login_with(s: &Sandbox, f: &fake::Fake, claims: serde_json::Value) -> Out {
    let login = start_login(s, "proj", "30");
    let sent = support::query_param(&login.url, "nonce").expect("a nonce is sent with scope openid");
    f.id_token_nonce(&sent);
    f.id_token_claims(claims);
    let _ = login.get(&format!("code={}&state={}", fake::CODE, login.state));
    login.finish(LIMIT)
}

fn nothing_stored(s: &Sandbox) -> bool {
    !s.tokens_dir().exists()
        || std::fs::read_dir(s.tokens_dir())
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".json"))
}

#[test]
fn a_login_whose_id_token_is_for_another_issuer_audience_or_time_is_refused() {
    let f = fake::Fake::start();
    let s = fake_project(&f);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for (claims, culprit) in [
        (serde_json::json!({"iss": "https://evil.example"}), "`iss` is \"https://evil.example\""),
        (serde_json::json!({"aud": "another-client"}), "`aud` is [\"another-client\"]"),
        (serde_json::json!({"aud": [fake::CLIENT_ID, "x"], "azp": "x"}), "`azp` is \"x\""),
        (serde_json::json!({"exp": now - 3600}), "`exp`"),
        (serde_json::json!({"iat": now + 86_400}), "`iat`"),
    ] {
        let out = login_with(&s, &f, claims.clone());
        assert_eq!(out.code, 1, "{claims} accepted: {}", out.stderr);
        assert!(out.stderr.contains(culprit), "{claims}: {}", out.stderr);
        assert!(out.stderr.contains("nothing was stored"), "{}", out.stderr);
        assert!(nothing_stored(&s), "{claims}: a refused login stored tokens");
        for secret in fake::SECRETS {
            assert!(!out.stderr.contains(secret), "{secret} printed");
        }
        f.reset();
    }
}

#[test]
fn a_refresh_that_names_another_person_is_refused_and_the_login_kept() {
    let f = fake::Fake::start();
    let s = fake_project(&f);
    let out = login_with(&s, &f, serde_json::json!({}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = mo(&s, &["token"]).stdout;
    f.refresh_id_token(serde_json::json!({"sub": "mallory"}));
    // More validity than the token has left: a refresh is needed.
    let out = mo(&s, &["token", "--min-valid", "2h", "--no-login"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("`sub` changed on refresh from \"catalogue-user\" to \"mallory\""), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let status = mo(&s, &["status"]);
    assert!(status.stdout.contains("catalogue-user") && !status.stdout.contains("mallory"), "{}", status.stdout);
    assert_eq!(mo(&s, &["token"]).stdout, before, "the previous login is kept");
    // The same person's refreshed ID token is accepted.
    f.refresh_id_token(serde_json::json!({}));
    let out = mo(&s, &["token", "--min-valid", "2h", "--no-login"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
