//! Table tests for https redirects and workload-identity settings (issues 14 and 16).

use super::*;

#[test]
fn an_https_loopback_redirect_resolves_with_its_tls_files_relative_to_the_file() {
    let c = ok(
        &[trusted(&block(
            "https://m",
            "redirect-uri = \"https://localhost:8443/cb\"\nredirect-tls-cert = \"tls/cert.pem\"\nredirect-tls-key = \"tls/key.pem\"",
        ))],
        &[],
        None,
    );
    assert_eq!(c.redirect_uri, "https://localhost:8443/cb");
    assert_eq!(c.redirect_tls, Some((PathBuf::from("/proj/tls/cert.pem"), PathBuf::from("/proj/tls/key.pem"))));
    let half = err(&[trusted(&block("https://m", "redirect-tls-cert = \"c.pem\""))], &[], None);
    assert!(half.contains("`redirect-tls-key` is not"), "{half}");
    // Without TLS files it still resolves, so `status` can show it; `login` refuses it.
    let bare = ok(&[trusted(&block("https://m", "redirect-uri = \"https://127.0.0.1:8443/cb\""))], &[], None);
    assert!(bare.redirect_tls.is_none());
}

#[test]
fn workload_credentials_make_a_machine_client_and_pick_their_grant() {
    let key = ok(&[trusted(&block("http://m", "client-assertion-key = \"keys/k.pem\""))], &[], None);
    assert!(key.is_machine() && !key.use_id_token);
    assert_eq!(key.client_assertion_key, Some(PathBuf::from("/proj/keys/k.pem")), "relative to the file");
    assert_eq!(key.machine_grant(), MachineGrant::ClientCredentials);

    let fed = ok(&[trusted(&block("http://m", "client-assertion = \"file:/var/run/token\""))], &[], None);
    assert_eq!(fed.client_assertion, Some(PlatformToken::File("/var/run/token".into())));
    assert!(fed.is_machine());

    let exch =
        ok(&[trusted(&block("http://m", "subject-token = \"env:CI_JOB_JWT\""))], &[("CI_JOB_JWT", " t \n")], None);
    assert_eq!(exch.machine_grant(), MachineGrant::TokenExchange, "auto with a subject token");
    assert_eq!(exch.subject_token_type, DEFAULT_SUBJECT_TOKEN_TYPE);
    match &exch.subject_token {
        Some(PlatformToken::Env { name, value }) => {
            assert_eq!((name.as_str(), value.as_ref().map(|v| v.expose().as_str())), ("CI_JOB_JWT", Some("t")))
        }
        other => panic!("{other:?}"),
    }
    let interactive =
        ok(&[trusted(&block("http://m", "client-assertion-key = \"k.pem\"\ninteractive = true"))], &[], None);
    assert!(!interactive.is_machine(), "a confidential interactive client signs its code exchange");
    let gh = ok(
        &[trusted(&block("http://m", "subject-token = \"github-actions\""))],
        &[("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x/t?a=1")],
        None,
    );
    assert!(matches!(
        gh.subject_token,
        Some(PlatformToken::GithubActions { request_url: Some(_), request_token: None })
    ));
}

#[test]
fn commands_may_come_from_the_user_config_the_environment_or_a_trusted_project() {
    let user_block = "[[tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://idp.example.com\"\nclient-id = \"c\"\n\
                      subject-token = \"command:print-token\"\n";
    assert_eq!(ok(&[user(user_block)], &[], None).subject_token, Some(PlatformToken::Command("print-token".into())));
    let env = ok(
        &[project(&block("http://m", ""))],
        &[("MLFLOW_TRACKING_OIDC_CLIENT_ASSERTION", "command:print-token")],
        None,
    );
    assert_eq!(env.client_assertion, Some(PlatformToken::Command("print-token".into())));
    let mine = ok(&[trusted(&block("http://m", "client-assertion = \"command:print-token\""))], &[], None);
    assert_eq!(mine.client_assertion, Some(PlatformToken::Command("print-token".into())));
}

/// Issue 21: a cloned repository's pyproject.toml names the user's key, files and variables; until the user trusts
/// it, those keys are ignored (not read, not resolved) and one warning names the file, the keys and the command.
#[test]
fn an_untrusted_project_file_cannot_spend_the_users_things() {
    let text = block(
        "http://m",
        "client-assertion-key = \"~/.ssh/id_rsa\"\nsubject-token = \"env:AWS_SECRET_ACCESS_KEY\"\n\
         client-assertion = \"file:../../.ssh/id_ed25519\"\nredirect-tls-cert = \"c.pem\"\nredirect-tls-key = \"k.pem\"",
    );
    let r = resolve_with(&[project(&text)], &[("AWS_SECRET_ACCESS_KEY", "planted")], None).unwrap();
    let c = &r.server;
    assert!(c.client_assertion_key.is_none() && c.client_assertion.is_none() && c.subject_token.is_none());
    assert!(c.redirect_tls.is_none() && !c.is_machine(), "{c:?}");
    let u = r.untrusted.as_ref().expect("the ignored keys are reported");
    assert_eq!(u.file, PathBuf::from(P));
    assert_eq!(
        u.keys,
        ["client-assertion", "client-assertion-key", "redirect-tls-cert", "redirect-tls-key", "subject-token"]
    );
    let warned: Vec<&String> = r.warnings.iter().filter(|w| w.contains("trust")).collect();
    assert_eq!(warned.len(), 1, "one warning: {:?}", r.warnings);
    assert!(warned[0].contains(P) && warned[0].contains("`subject-token`"), "{}", warned[0]);
    assert!(warned[0].contains("run `mlflow-oidc trust /proj/pyproject.toml`"), "{}", warned[0]);
    // Trusted, the same text resolves them.
    let c = ok(&[trusted(&block("http://m", "client-assertion = \"file:/run/t\""))], &[], None);
    assert_eq!(c.client_assertion, Some(PlatformToken::File("/run/t".into())));
    // A grant left without its ignored subject token says why.
    let e = err(&[project(&block("http://m", "grant = \"token-exchange\"\nsubject-token = \"env:X\""))], &[], None);
    assert!(e.contains("needs `subject-token`") && e.contains("mlflow-oidc trust /proj/pyproject.toml"), "{e}");
    // The user config and `--config` files are the user's own.
    let mine = block("http://m", "client-assertion-key = \"k.pem\"");
    let explicit = ConfigFile::new(PathBuf::from("/c.toml"), FileKind::Explicit, mine);
    let r = resolve_with(&[explicit], &[], None).unwrap();
    assert!(r.untrusted.is_none() && r.server.client_assertion_key.is_some());
}

#[test]
fn workload_settings_are_checked_without_echoing_tokens() {
    let e = err(
        &[trusted(&block("http://m", "client-assertion = \"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\""))],
        &[],
        None,
    );
    assert!(e.contains("file:PATH, env:NAME, github-actions or command:CMD") && !e.contains("eyJ"), "{e}");
    let e = err(&[trusted(&block("http://m", "grant = \"token-exchange\""))], &[], None);
    assert!(e.contains("needs `subject-token`"), "{e}");
    let e = err(&[trusted(&block("http://m", "grant = \"password\""))], &[], None);
    assert!(e.contains("auto, client-credentials, token-exchange or jwt-bearer"), "{e}");
    let e = err(
        &[trusted(&block("http://m", "client-assertion = \"env:T\"\nclient-assertion-key = \"k.pem\""))],
        &[],
        None,
    );
    assert!(e.contains("not both"), "{e}");
    let e = err(&[trusted(&block("http://m", "token-endpoint-auth-method = \"private_key_jwt\""))], &[], None);
    assert!(e.contains("neither `client-assertion-key` nor `client-assertion`"), "{e}");
}

/// An ignored key still counts for the guard of the user's own servers: a project block naming another key for a
/// server the user configured is refused, so the user's key does not silently drop out.
#[test]
fn an_untrusted_key_still_makes_a_project_block_disagree_with_the_users() {
    let u = user(
        "[[tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://idp.example.com\"\nclient-id = \"cid\"\n\
         client-assertion-key = \"/home/u/k.pem\"\n",
    );
    let p = project(&block("http://m", "client-assertion-key = \"~/.ssh/id_rsa\""));
    let r = resolve_with(&[u, p], &[], Some("http://m")).unwrap();
    assert_eq!(r.server.client_assertion_key, Some(PathBuf::from("/home/u/k.pem")));
    assert!(r.untrusted.is_none(), "the user's block was chosen");
    assert!(r.warnings.join("\n").contains("`client-assertion-key`"), "{:?}", r.warnings);
}
