//! Table tests for https redirects and workload-identity settings (issues 14 and 16).

use super::*;

#[test]
fn an_https_loopback_redirect_resolves_with_its_tls_files_relative_to_the_file() {
    let c = ok(
        &[project(&block(
            "https://m",
            "redirect-uri = \"https://localhost:8443/cb\"\nredirect-tls-cert = \"tls/cert.pem\"\nredirect-tls-key = \"tls/key.pem\"",
        ))],
        &[],
        None,
    );
    assert_eq!(c.redirect_uri, "https://localhost:8443/cb");
    assert_eq!(c.redirect_tls, Some((PathBuf::from("/proj/tls/cert.pem"), PathBuf::from("/proj/tls/key.pem"))));
    let half = err(&[project(&block("https://m", "redirect-tls-cert = \"c.pem\""))], &[], None);
    assert!(half.contains("`redirect-tls-key` is not"), "{half}");
    // Without TLS files it still resolves, so `status` can show it; `login` refuses it.
    let bare = ok(&[project(&block("https://m", "redirect-uri = \"https://127.0.0.1:8443/cb\""))], &[], None);
    assert!(bare.redirect_tls.is_none());
}

#[test]
fn workload_credentials_make_a_machine_client_and_pick_their_grant() {
    let key = ok(&[project(&block("http://m", "client-assertion-key = \"keys/k.pem\""))], &[], None);
    assert!(key.is_machine() && !key.use_id_token);
    assert_eq!(key.client_assertion_key, Some(PathBuf::from("/proj/keys/k.pem")), "relative to the file");
    assert_eq!(key.machine_grant(), MachineGrant::ClientCredentials);

    let fed = ok(&[project(&block("http://m", "client-assertion = \"file:/var/run/token\""))], &[], None);
    assert_eq!(fed.client_assertion, Some(TokenSource::File("/var/run/token".into())));
    assert!(fed.is_machine());

    let exch =
        ok(&[project(&block("http://m", "subject-token = \"env:CI_JOB_JWT\""))], &[("CI_JOB_JWT", " t \n")], None);
    assert_eq!(exch.machine_grant(), MachineGrant::TokenExchange, "auto with a subject token");
    assert_eq!(exch.subject_token_type, DEFAULT_SUBJECT_TOKEN_TYPE);
    match &exch.subject_token {
        Some(TokenSource::Env { name, value }) => {
            assert_eq!((name.as_str(), value.as_ref().map(|v| v.expose().as_str())), ("CI_JOB_JWT", Some("t")))
        }
        other => panic!("{other:?}"),
    }
    let interactive =
        ok(&[project(&block("http://m", "client-assertion-key = \"k.pem\"\ninteractive = true"))], &[], None);
    assert!(!interactive.is_machine(), "a confidential interactive client signs its code exchange");
    let gh = ok(
        &[project(&block("http://m", "subject-token = \"github-actions\""))],
        &[("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x/t?a=1")],
        None,
    );
    assert!(matches!(gh.subject_token, Some(TokenSource::GithubActions { request_url: Some(_), request_token: None })));
}

#[test]
fn commands_may_come_from_the_user_config_or_environment_but_never_from_a_project() {
    let e = err(
        &[project(&block("http://m", "client-assertion = \"command:gcloud auth print-identity-token\""))],
        &[],
        None,
    );
    assert!(e.contains(P) && e.contains("may not") && e.contains("MLFLOW_TRACKING_OIDC_CLIENT_ASSERTION"), "{e}");
    let e = err(&[project(&block("http://m", "subject-token = \"command:x\""))], &[], None);
    assert!(e.contains("`subject-token`"), "{e}");
    let user_block = "[[tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://idp.example.com\"\nclient-id = \"c\"\n\
                      subject-token = \"command:print-token\"\n";
    assert_eq!(ok(&[user(user_block)], &[], None).subject_token, Some(TokenSource::Command("print-token".into())));
    let env = ok(
        &[project(&block("http://m", ""))],
        &[("MLFLOW_TRACKING_OIDC_CLIENT_ASSERTION", "command:print-token")],
        None,
    );
    assert_eq!(env.client_assertion, Some(TokenSource::Command("print-token".into())));
}

#[test]
fn workload_settings_are_checked_without_echoing_tokens() {
    let e = err(
        &[project(&block("http://m", "client-assertion = \"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\""))],
        &[],
        None,
    );
    assert!(e.contains("file:PATH, env:NAME, github-actions or command:CMD") && !e.contains("eyJ"), "{e}");
    let e = err(&[project(&block("http://m", "grant = \"token-exchange\""))], &[], None);
    assert!(e.contains("needs `subject-token`"), "{e}");
    let e = err(&[project(&block("http://m", "grant = \"password\""))], &[], None);
    assert!(e.contains("auto, client-credentials, token-exchange or jwt-bearer"), "{e}");
    let e = err(
        &[project(&block("http://m", "client-assertion = \"env:T\"\nclient-assertion-key = \"k.pem\""))],
        &[],
        None,
    );
    assert!(e.contains("not both"), "{e}");
    let e = err(&[project(&block("http://m", "token-endpoint-auth-method = \"private_key_jwt\""))], &[], None);
    assert!(e.contains("neither `client-assertion-key` nor `client-assertion`"), "{e}");
}
