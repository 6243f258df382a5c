//! Table tests for configuration resolution.

use super::*;
use crate::env::Env;
use crate::error::Result;

const P: &str = "/proj/pyproject.toml";
const U: &str = "/home/u/.config/mlflow-oidc/config.toml";

fn project(text: &str) -> ConfigFile {
    ConfigFile::new(PathBuf::from(P), FileKind::Project, text.to_string())
}
/// A project file the user trusted as it is (`mlflow-oidc trust`): its keys that reach the user's things apply.
fn trusted(text: &str) -> ConfigFile {
    project(text).allowed(true)
}
fn user(text: &str) -> ConfigFile {
    ConfigFile::new(PathBuf::from(U), FileKind::User, text.to_string())
}
fn block(uri: &str, extra: &str) -> String {
    format!(
        "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{uri}\"\nissuer = \"https://idp.example.com\"\nclient-id = \"cid\"\n{extra}\n"
    )
}
fn resolve_with(files: &[ConfigFile], env: &[(&str, &str)], server: Option<&str>) -> Result<Resolved> {
    let flags = Flags { server: server.map(str::to_string), config: None, store: None };
    resolve(files, &Env::from_pairs(env.iter().copied()), &flags)
}
fn ok(files: &[ConfigFile], env: &[(&str, &str)], server: Option<&str>) -> ServerConfig {
    match resolve_with(files, env, server) {
        Ok(r) => r.server,
        Err(e) => panic!("expected success, got: {e}"),
    }
}
fn err(files: &[ConfigFile], env: &[(&str, &str)], server: Option<&str>) -> String {
    match resolve_with(files, env, server) {
        Ok(r) => panic!("expected an error, got {:?}", r.server),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "config errors exit 2: {e}");
            e.to_string()
        }
    }
}

#[test]
fn defaults_for_a_public_client() {
    let c = ok(&[project(&block("http://mlflow.test", ""))], &[], None);
    assert_eq!(c.uri.as_deref(), Some("http://mlflow.test"));
    assert_eq!(c.redirect_uri, "http://127.0.0.1:39303/oauth2/callback");
    assert_eq!(c.scope, "openid profile email");
    assert!(!c.scope_explicit);
    assert_eq!(c.audience, "cid", "audience defaults to the client id");
    assert!(c.interactive, "no secret: interactive");
    assert!(c.use_id_token, "no secret: ID token");
    assert!(c.client_secret.is_none());
    assert!(c.offline_access);
    for k in ["redirect_uri", "scope", "audience", "interactive", "use_id_token"] {
        assert_eq!(c.origins[k], Origin::Default, "{k}");
    }
    assert_eq!(c.origins["issuer"], Origin::File(PathBuf::from(P)));
    assert_eq!(c.origins["uri"], Origin::File(PathBuf::from(P)));
}

#[test]
fn defaults_for_a_confidential_client() {
    let c = ok(&[project(&block("http://mlflow.test", "client-secret = \"s3cret\""))], &[], None);
    assert!(!c.interactive);
    assert!(!c.use_id_token);
    assert_eq!(c.client_secret.as_ref().map(|s| s.expose().as_str()), Some("s3cret"));
}

#[test]
fn every_env_var_wins_over_the_file() {
    let file = block(
        "http://mlflow.test",
        "client-secret = \"file-secret\"\nredirect-uri = \"http://127.0.0.1:1/a\"\nscope = \"file\"\naudience = \"file-aud\"\ninteractive = false\nuse-id-token = false",
    );
    let env = [
        ("MLFLOW_TRACKING_OIDC_ISSUER", "https://env-idp.example.com"),
        ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "env-cid"),
        ("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", "env-secret"),
        ("MLFLOW_TRACKING_OIDC_REDIRECT_URI", "http://localhost:0/cb"),
        ("MLFLOW_TRACKING_OIDC_SCOPE", "openid env"),
        ("MLFLOW_TRACKING_OIDC_AUDIENCE", "env-aud"),
        ("MLFLOW_TRACKING_OIDC_INTERACTIVE", "yes"),
        ("MLFLOW_TRACKING_OIDC_USE_ID_TOKEN", "ON"),
    ];
    let c = ok(&[project(&file)], &env, None);
    assert_eq!(c.issuer, "https://env-idp.example.com");
    assert_eq!(c.client_id, "env-cid");
    assert_eq!(c.client_secret.as_ref().map(|s| s.expose().as_str()), Some("env-secret"));
    assert_eq!(c.redirect_uri, "http://localhost:0/cb");
    assert_eq!(c.scope, "openid env");
    assert!(c.scope_explicit);
    assert_eq!(c.audience, "env-aud");
    assert!(c.interactive);
    assert!(c.use_id_token);
    for k in
        ["issuer", "client_id", "client_secret", "redirect_uri", "scope", "audience", "interactive", "use_id_token"]
    {
        assert_eq!(c.origins[k], Origin::Env, "{k}");
    }
}

#[test]
fn file_values_are_used_when_env_is_absent() {
    let file = block(
        "http://mlflow.test",
        "redirect-uri = \"http://127.0.0.1:1/a\"\nscope = \"file\"\naudience = \"file-aud\"\ninteractive = \"no\"\nuse-id-token = 1",
    );
    let c = ok(&[project(&file)], &[], None);
    assert_eq!(c.redirect_uri, "http://127.0.0.1:1/a");
    assert_eq!(c.scope, "file");
    assert_eq!(c.audience, "file-aud");
    assert!(!c.interactive);
    assert!(c.use_id_token);
}

#[test]
fn secret_defaults_follow_the_final_secret() {
    // A secret from the environment flips the defaults for a file block that has none, as the plugin computes them.
    let c = ok(&[project(&block("http://mlflow.test", ""))], &[("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", "s")], None);
    assert!(!c.interactive);
    assert!(!c.use_id_token);
}

#[test]
fn empty_strings_count_as_unset_in_env_and_file() {
    let file = block("http://mlflow.test", "client-secret = \"\"\nscope = \"\"\ninteractive = \"\"");
    let env = [("MLFLOW_TRACKING_OIDC_AUDIENCE", ""), ("MLFLOW_TRACKING_OIDC_USE_ID_TOKEN", "")];
    let c = ok(&[project(&file)], &env, None);
    assert!(c.client_secret.is_none(), "empty client-secret is no secret");
    assert_eq!(c.scope, DEFAULT_SCOPE);
    assert_eq!(c.audience, "cid");
    assert!(c.interactive, "empty boolean in file is unset");
    assert!(c.use_id_token, "empty boolean env var is unset (the plugin read it as false)");
}

#[test]
fn booleans_accept_the_documented_spellings() {
    for (v, want) in [
        ("true", true),
        ("TRUE", true),
        ("Yes", true),
        ("1", true),
        ("on", true),
        ("false", false),
        ("No", false),
        ("0", false),
        ("OFF", false),
    ] {
        let c = ok(&[project(&block("http://m", ""))], &[("MLFLOW_TRACKING_OIDC_INTERACTIVE", v)], None);
        assert_eq!(c.interactive, want, "{v}");
    }
}

#[test]
fn env_only_configuration_needs_no_file() {
    let env = [("MLFLOW_TRACKING_OIDC_ISSUER", "https://idp"), ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c")];
    let c = ok(&[], &env, None);
    assert_eq!(c.uri, None);
    assert_eq!(c.audience, "c");
    let c = ok(&[], &[env[0], env[1], ("MLFLOW_TRACKING_URI", "http://mlflow.test")], None);
    assert_eq!(c.uri.as_deref(), Some("http://mlflow.test"));
    assert_eq!(c.origins["uri"], Origin::Env);
}

#[test]
fn env_only_configuration_works_when_no_block_matches() {
    let env = [
        ("MLFLOW_TRACKING_OIDC_ISSUER", "https://idp"),
        ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c"),
        ("MLFLOW_TRACKING_URI", "http://other.test"),
    ];
    let c = ok(&[project(&block("http://mlflow.test", "scope = \"from-file\""))], &env, None);
    assert_eq!(c.client_id, "c");
    assert_eq!(c.scope, DEFAULT_SCOPE, "an unmatched block contributes nothing");
}

#[test]
fn env_mixes_with_the_matched_block() {
    let file = "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\nclient-id = \"file-cid\"\n";
    let c = ok(&[project(file)], &[("MLFLOW_TRACKING_OIDC_ISSUER", "https://idp")], None);
    assert_eq!(c.client_id, "file-cid");
    assert_eq!(c.issuer, "https://idp");
}

#[test]
fn server_selection() {
    let two = project(
        &(block("http://a.test", "client-id = \"x\"").replace("client-id = \"cid\"\n", "")
            + &block("http://b.test", "")),
    );
    // --server wins over MLFLOW_TRACKING_URI.
    let c = ok(std::slice::from_ref(&two), &[("MLFLOW_TRACKING_URI", "http://b.test")], Some("http://a.test"));
    assert_eq!(c.uri.as_deref(), Some("http://a.test"));
    assert_eq!(c.client_id, "x");
    assert_eq!(c.origins["uri"], Origin::Flag);
    let c = ok(std::slice::from_ref(&two), &[("MLFLOW_TRACKING_URI", "http://b.test")], None);
    assert_eq!(c.uri.as_deref(), Some("http://b.test"));
    // Several servers and no choice: an error listing them.
    let e = err(std::slice::from_ref(&two), &[], None);
    assert!(e.contains("http://a.test") && e.contains("http://b.test") && e.contains("--server"), "{e}");
}

#[test]
fn matching_is_tolerant() {
    let files = [project(&block("https://MLflow.Example.com:443/", ""))];
    for t in [
        "https://mlflow.example.com",
        "HTTPS://mlflow.example.com/",
        "https://mlflow.example.com:443",
        "https://MLFLOW.example.com/",
    ] {
        assert_eq!(ok(&files, &[], Some(t)).uri.as_deref(), Some(t), "{t}");
    }
    let files = [project(&block("http://m.test:80/mlflow/", ""))];
    assert!(resolve_with(&files, &[], Some("http://m.test/mlflow")).is_ok());
    // Different port, path or scheme never match.
    for t in ["http://m.test:8080/mlflow", "http://m.test/other", "https://m.test/mlflow"] {
        let e = err(&files, &[], Some(t));
        assert!(e.contains(t) && e.contains("http://m.test:80/mlflow/"), "{e}");
    }
}

#[test]
fn exact_match_wins_over_normalised_and_last_block_wins() {
    let text = block("http://m.test/", "scope = \"exact\"")
        + &block("http://M.test", "scope = \"normalised\"")
        + &block("http://m.test/", "scope = \"exact-last\"");
    let files = [project(&text)];
    assert_eq!(ok(&files, &[], Some("http://m.test/")).scope, "exact-last");
    assert_eq!(ok(&files, &[], Some("http://M.test")).scope, "normalised");
    assert_eq!(ok(&files, &[], Some("http://m.test")).scope, "exact-last", "normalised tie: last block wins");
}

#[test]
fn project_blocks_take_precedence_over_user_blocks() {
    // Same issuer as the project's: the project block may still set the client, scope, flow, …
    let u = user(
        "[[tracking-servers]]\nuri = \"http://m.test\"\nissuer = \"https://idp.example.com\"\nclient-id = \"u\"\n\n[[tracking-servers]]\nuri = \"http://only-user.test\"\nissuer = \"https://user-idp\"\nclient-id = \"u2\"\n",
    );
    let p = project(&block("http://m.test", ""));
    let files = [u, p];
    let c = ok(&files, &[], Some("http://m.test"));
    assert_eq!(c.client_id, "cid");
    assert_eq!(c.origins["client_id"], Origin::File(PathBuf::from(P)));
    let c = ok(&files, &[], Some("http://only-user.test"));
    assert_eq!(c.client_id, "u2");
    assert_eq!(c.origins["client_id"], Origin::File(PathBuf::from(U)));
}

#[test]
fn a_project_block_may_not_send_a_user_configured_server_elsewhere() {
    let u = user(
        "[[tracking-servers]]\nuri = \"http://m.test\"\nissuer = \"https://user-idp\"\nclient-id = \"u\"\nclient-secret = \"s\"\n",
    );
    for extra in ["", "ca-bundle = \"/x.pem\"", "token-endpoint-auth-method = \"client_secret_post\""] {
        let text = format!(
            "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://M.test/\"\nissuer = \"https://evil\"\nclient-id = \"p\"\n{extra}\n"
        );
        let files = [u.clone(), project(&text)];
        let r = resolve_with(&files, &[], Some("http://m.test")).unwrap();
        assert_eq!(r.server.issuer, "https://user-idp", "{extra}");
        assert_eq!(r.server.origins["issuer"], Origin::File(PathBuf::from(U)));
        let w = r.warnings.join("\n");
        assert!(w.contains(P) && w.contains(U) && w.contains("`issuer`") && w.contains("safe-directories"), "{w}");
        // In a directory the user trusts (`safe-directories`), the project block wins as before.
        let files = [u.clone(), project(&text.replace("http://M.test/", "http://m.test")).trusted(true)];
        assert_eq!(ok(&files, &[], Some("http://m.test")).issuer, "https://evil");
    }
    // Only the guarded keys count: the same issuer with another scope is the project's to choose.
    let same = user(
        "[[tracking-servers]]\nuri = \"http://m.test\"\nissuer = \"https://idp.example.com\"\nclient-id = \"u\"\n",
    );
    let p = project(&block("http://m.test", "ca-bundle = \"/p.pem\""));
    let r = resolve_with(&[same.clone(), p], &[], Some("http://m.test")).unwrap();
    assert!(r.warnings.join("").contains("`ca-bundle`"), "{:?}", r.warnings);
    let r =
        resolve_with(&[same, project(&block("http://m.test", "scope = \"s\""))], &[], Some("http://m.test")).unwrap();
    assert_eq!((r.server.scope.as_str(), r.warnings.len()), ("s", 0));
}

#[test]
fn explicit_files_may_have_either_shape() {
    let e1 = ConfigFile::new("/x.toml".into(), FileKind::Explicit, block("http://m", ""));
    assert_eq!(ok(&[e1], &[], None).client_id, "cid");
    let e2 = ConfigFile::new(
        "/y.toml".into(),
        FileKind::Explicit,
        "[[tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://i\"\nclient-id = \"top\"\n".into(),
    );
    assert_eq!(ok(&[e2], &[], None).client_id, "top");
}

#[test]
fn blocks_without_uri_are_skipped_with_a_warning() {
    let text = "[[tool.mlflow-oidc-client.tracking-servers]]\nissuer = \"https://i\"\nclient-id = \"c\"\n".to_string()
        + &block("http://m", "");
    let r = resolve_with(&[project(&text)], &[], None).unwrap();
    assert_eq!(r.server.uri.as_deref(), Some("http://m"));
    assert!(
        r.warnings.iter().any(|w| w.contains("entry #1") && w.contains("no `uri`") && w.contains(P)),
        "{:?}",
        r.warnings
    );
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let r =
        resolve_with(&[project(&block("http://m", "client_id = \"x\"\nscopes = \"y\"\nzzzzzzzzzz = 1"))], &[], None)
            .unwrap();
    let w = r.warnings.join("\n");
    assert!(w.contains("unknown key `client_id`") && w.contains("did you mean `client-id`?"), "{w}");
    assert!(w.contains("did you mean `scope`?"), "{w}");
    assert!(w.contains("unknown key `zzzzzzzzzz`") && !w.contains("`zzzzzzzzzz` in tool.mlflow-oidc-client.tracking-servers entry #1 of /proj/pyproject.toml: ignored (did"), "{w}");
}

mod errors;
mod machine;
