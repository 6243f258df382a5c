//! Machines without long-lived secrets (issue 14), against the real provider (tests/idp/idp.mjs) and a
//! stand-in workload issuer (tests/idp/workload.mjs: GitHub Actions' token service, the signer of
//! Kubernetes-style token files and GitLab-style variables): private_key_jwt with RSA and EC keys,
//! federated client assertions, RFC 8693 token exchange and the RFC 7523 JWT-bearer grant. What the provider
//! saw is read back from its request log.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod sandbox;
mod support;

use serde_json::{Value, json};

use sandbox::Sandbox;
use support::{
    AUDIENCE, ClientKey, Idp, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT, WORKLOAD_AUDIENCE, WORKLOAD_REQUEST_TOKEN,
    Workload, client_key,
};

const SERVER: &str = "http://127.0.0.1:5996";
const LOOPBACK: &[&str] = &["http://127.0.0.1:39303/oauth2/callback", "http://localhost:39303/oauth2/callback"];

fn machine_client(id: &str, jwks: Value, grants: &[&str]) -> Value {
    json!({
        "client_id": id,
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": jwks,
        "grant_types": grants,
        "response_types": [],
        "redirect_uris": [],
    })
}

/// The provider with these extra clients, trusting `workload` for exchanged tokens when given.
fn idp(clients: &[Value], workload: Option<&Workload>) -> Idp {
    let clients = Value::Array(clients.to_vec()).to_string();
    let mut env = vec![("IDP_EXTRA_CLIENTS", clients.as_str()), ("IDP_AUTO_CONSENT", "1")];
    if let Some(w) = workload {
        env.push(("IDP_WORKLOAD_ISSUER", w.issuer.as_str()));
    }
    Idp::start_with(&env)
}

/// A project whose block names a key or platform token source, trusted by its user (`mlflow-oidc trust`, issue
/// 21) as anyone configuring workload identity in their own project does once.
fn project(idp: &Idp, lines: &str) -> Sandbox {
    let mut s = Sandbox::with_server(SERVER, &idp.issuer, &format!("audience = \"{AUDIENCE}\"\n{lines}"));
    s.set("MLFLOW_OIDC_STORE", "file");
    trust(&s);
    s
}

fn trust(s: &Sandbox) {
    let out = s.mo(&["trust"]);
    assert_eq!(out.code, 0, "trust: {}", out.stderr);
}

fn last_token_request(idp: &Idp) -> Value {
    idp.token_requests().pop().expect("a token request")
}

/// The client assertion the provider saw: RFC 7523 §3 claims, a header naming the key.
fn assert_assertion(req: &Value, idp: &Idp, client_id: &str, alg: &str, kid: &str) -> String {
    assert_eq!(req["status"], 200, "{req}");
    assert_eq!(req["auth"], "private_key_jwt", "{req}");
    assert_eq!(req["params"]["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    let a = &req["client_assertion"];
    assert_eq!(a["header"]["alg"], alg, "{a}");
    assert_eq!(a["header"]["kid"], kid, "{a}");
    let c = &a["claims"];
    assert_eq!((c["iss"].as_str(), c["sub"].as_str()), (Some(client_id), Some(client_id)), "{c}");
    assert_eq!(c["aud"], idp.token_endpoint().as_str(), "{c}");
    let life = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    assert!((1..=300).contains(&life), "a short-lived assertion: {c}");
    c["jti"].as_str().unwrap().to_owned()
}

fn no_secret_printed(out: &sandbox::Out, secrets: &[&str]) {
    for s in secrets {
        assert!(!out.stderr.contains(s) && !out.stdout.contains(s), "{s} printed:\n{}\n{}", out.stdout, out.stderr);
    }
}

#[test]
fn private_key_jwt_client_credentials_with_rsa_and_ec_keys() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = client_key("rsa", &dir.path().join("rsa.pem"));
    let ec = client_key("ec", &dir.path().join("ec.pem"));
    let ec8 = client_key("ec-pkcs8", &dir.path().join("ec8.pem"));
    let cc = ["client_credentials"];
    let idp = idp(
        &[
            machine_client("pk-rsa", json!({"keys": [rsa.jwk]}), &cc),
            machine_client("pk-ec", json!({"keys": [ec.jwk, ec8.jwk]}), &cc),
        ],
        None,
    );
    for (client, key, alg) in [("pk-rsa", &rsa, "RS256"), ("pk-ec", &ec, "ES256"), ("pk-ec", &ec8, "ES256")] {
        let s = project(&idp, &format!("client-id = \"{client}\"\nclient-assertion-key = \"{}\"", key.pem.display()));
        let out = s.mo(&["token"]);
        let token = out.ok().trim().to_owned();
        let claims = support::verify_jwt(&idp.issuer, &token, AUDIENCE);
        assert_eq!(claims["client_id"], client);
        let kid = key.jwk["kid"].as_str().unwrap();
        let first = assert_assertion(&last_token_request(&idp), &idp, client, alg, kid);
        assert_eq!(last_token_request(&idp)["grant_type"], "client_credentials");
        // A renewal signs a new assertion: the provider refuses a repeated jti.
        s.mo(&["token", "--min-valid", "2h"]).ok();
        let second = assert_assertion(&last_token_request(&idp), &idp, client, alg, kid);
        assert_ne!(first, second);
        let pem = std::fs::read_to_string(&key.pem).unwrap();
        let body = pem.lines().nth(1).unwrap();
        let status = s.mo(&["status", "-v"]);
        assert!(status.stdout.contains("private_key_jwt, key "), "{}", status.stdout);
        no_secret_printed(&status, &[body]);
        let check = s.mo(&["status", "--check"]);
        assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
        assert!(check.stdout.contains(&format!("signs {alg} with kid {kid}")), "{}", check.stdout);
        assert!(check.stdout.contains("client authentication") && check.stdout.contains("private_key_jwt"));
    }
    // A configured kid the provider does not know: invalid_client, with the next step.
    let s = project(
        &idp,
        &format!(
            "client-id = \"pk-rsa\"\nclient-assertion-key = \"{}\"\nclient-assertion-kid = \"nope\"",
            rsa.pem.display()
        ),
    );
    let out = s.mo(&["token", "-v"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("invalid_client") && out.stderr.contains("public key of"), "{}", out.stderr);
}

#[test]
fn private_key_jwt_confidential_interactive_login_refresh_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let key = client_key("rsa-pkcs8", &dir.path().join("web.pem"));
    let client = json!({
        "client_id": "pk-web",
        "application_type": "native",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.jwk]},
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": LOOPBACK,
    });
    let idp = idp(&[client], None);
    // Relative to the file that names it.
    std::fs::copy(&key.pem, dir.path().join("copy.pem")).unwrap();
    let s = project(
        &idp,
        "client-id = \"pk-web\"\ninteractive = true\nuse-id-token = false\nscope = \"openid mlflow\"\n\
         client-assertion-key = \"keys/web.pem\"",
    );
    std::fs::create_dir_all(s.path("proj/keys")).unwrap();
    std::fs::copy(&key.pem, s.path("proj/keys/web.pem")).unwrap();
    let login = s.mo(&["login"]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    let kid = key.jwk["kid"].as_str().unwrap();
    let code = idp.token_requests().into_iter().find(|r| r["grant_type"] == "authorization_code").unwrap();
    assert_assertion(&code, &idp, "pk-web", "RS256", kid);
    let token = s.mo(&["token", "--min-valid", "2h"]).ok().trim().to_owned();
    support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    let refresh = last_token_request(&idp);
    assert_eq!(refresh["grant_type"], "refresh_token");
    assert_assertion(&refresh, &idp, "pk-web", "RS256", kid);
    let out = s.mo(&["logout"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let revoke = idp.requests().into_iter().find(|r| r["path"] == "/token/revocation").expect("a revocation");
    assert_eq!((revoke["status"].as_i64(), revoke["auth"].as_str()), (Some(200), Some("private_key_jwt")), "{revoke}");
}

/// A client federated with the workload issuer: its registered keys are the issuer's (inline, so that the
/// provider's SSRF guard on loopback jwks_uri does not apply), and the tokens carry iss = sub = client id, as
/// oidc-provider wants of client assertions.
#[test]
fn federated_client_assertion_from_a_rotating_file() {
    let wl = Workload::start();
    let idp = idp(&[machine_client("fed", wl.jwks(), &["client_credentials"])], Some(&wl));
    let s = project(&idp, "client-id = \"fed\"\nclient-assertion = \"file:run/token\"");
    let mint = || wl.mint(&format!("audience={}&iss=fed&sub=fed", idp.issuer));
    let first = mint();
    s.write("proj/run/token", &format!("{first}\n"));
    let token = s.mo(&["token"]).ok().trim().to_owned();
    support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    let seen = |r: Value| r["client_assertion"]["claims"]["jti"].as_str().unwrap().to_owned();
    let jti = |t: &str| support::jwt_payload(t)["jti"].as_str().unwrap().to_owned();
    assert_eq!(seen(last_token_request(&idp)), jti(&first));
    assert_eq!(last_token_request(&idp)["auth"], "private_key_jwt");
    // The kubelet rotates the file: the next renewal (machine grants have no refresh token) reads the new one.
    let second = mint();
    s.write("proj/run/token", &second);
    s.mo(&["token", "--min-valid", "2h"]).ok();
    assert_eq!(seen(last_token_request(&idp)), jti(&second));
    let status = s.mo(&["status"]);
    assert!(status.stdout.contains("federated client assertion from file "), "{}", status.stdout);
    let check = s.mo(&["status", "--check"]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    assert!(check.stdout.contains("client assertion") && check.stdout.contains("expires in"), "{}", check.stdout);
    no_secret_printed(&status, &[&second]);
    no_secret_printed(&check, &[&second]);
    // An expired token in the file: refused before it is sent, naming the file.
    s.write("proj/run/token", &wl.mint(&format!("audience={}&iss=fed&sub=fed&exp_offset=-400", idp.issuer)));
    let before = idp.token_requests().len();
    let out = s.mo(&["token", "--min-valid", "2h"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("expired") && out.stderr.contains("run/token"), "{}", out.stderr);
    assert_eq!(idp.token_requests().len(), before, "nothing sent");
}

#[test]
fn github_actions_stand_in_for_token_exchange_and_jwt_bearer() {
    let wl = Workload::start();
    let public = json!({
        "client_id": "exchanger",
        "token_endpoint_auth_method": "none",
        "grant_types": [TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT],
        "response_types": [],
        "redirect_uris": [],
    });
    let idp = idp(&[public], Some(&wl));
    let mut s = project(
        &idp,
        &format!(
            "client-id = \"exchanger\"\nsubject-token = \"github-actions\"\ngithub-actions-audience = \"{WORKLOAD_AUDIENCE}\""
        ),
    );
    s.set("ACTIONS_ID_TOKEN_REQUEST_URL", wl.request_url());
    s.set("ACTIONS_ID_TOKEN_REQUEST_TOKEN", WORKLOAD_REQUEST_TOKEN);
    let out = s.mo(&["token", "-v"]);
    let token = out.ok().trim().to_owned();
    no_secret_printed(&out, &[WORKLOAD_REQUEST_TOKEN]);
    let claims = support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    assert_eq!(claims["exchanged_sub"], "repo:octo/repo:ref:refs/heads/main");
    let req = last_token_request(&idp);
    assert_eq!(req["grant_type"], TOKEN_EXCHANGE_GRANT);
    assert_eq!(req["params"]["subject_token_type"], "urn:ietf:params:oauth:token-type:jwt");
    assert_eq!(req["params"]["requested_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(req["subject_token"]["claims"]["aud"], WORKLOAD_AUDIENCE);
    assert_eq!(wl.requests(), vec![json!({"audience": WORKLOAD_AUDIENCE, "authorized": true})]);
    let status = s.mo(&["status"]);
    assert!(
        status.stdout.contains("token exchange (RFC 8693), subject token from GitHub Actions"),
        "{}",
        status.stdout
    );

    // The same platform token as a JWT-bearer assertion.
    s.write(
        "proj/pyproject.toml",
        &format!(
            "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
             client-id = \"exchanger\"\ngrant = \"jwt-bearer\"\nsubject-token = \"github-actions\"\n\
             github-actions-audience = \"{WORKLOAD_AUDIENCE}\"\n",
            idp.issuer
        ),
    );
    trust(&s); // the file changed
    let token = s.mo(&["token", "--min-valid", "2h"]).ok().trim().to_owned();
    support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    assert_eq!(last_token_request(&idp)["grant_type"], JWT_BEARER_GRANT);

    // Without the runner's variables: the fix is the workflow permission.
    let s2 = project(&idp, "client-id = \"exchanger\"\nsubject-token = \"github-actions\"");
    let out = s2.mo(&["token"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("permissions: id-token: write"), "{}", out.stderr);
}

#[test]
fn token_exchange_of_an_env_variable_and_jwt_bearer_signed_with_the_clients_key() {
    let wl = Workload::start();
    let dir = tempfile::tempdir().unwrap();
    let key: ClientKey = client_key("ec", &dir.path().join("k.pem"));
    let idp = idp(
        &[machine_client("pk-x", json!({"keys": [key.jwk]}), &[TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT])],
        Some(&wl),
    );
    let gitlab = wl.mint(&format!("audience={WORKLOAD_AUDIENCE}&sub=project_path:group/proj:ref_type:branch:ref:main"));
    let mut s = project(
        &idp,
        &format!(
            "client-id = \"pk-x\"\nclient-assertion-key = \"{}\"\nsubject-token = \"env:GITLAB_OIDC_TOKEN\"",
            key.pem.display()
        ),
    );
    s.set("GITLAB_OIDC_TOKEN", &gitlab);
    let out = s.mo(&["token", "-v"]);
    let token = out.ok().trim().to_owned();
    no_secret_printed(&out, &[&gitlab]);
    let claims = support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    assert_eq!(claims["exchanged_sub"], "project_path:group/proj:ref_type:branch:ref:main");
    let req = last_token_request(&idp);
    assert_eq!(req["grant_type"], TOKEN_EXCHANGE_GRANT);
    assert_assertion(&req, &idp, "pk-x", "ES256", key.jwk["kid"].as_str().unwrap());

    // JWT bearer with an assertion signed by the client's own key (RFC 7523 §2.1), the client authenticating
    // with another one: two JWTs, two jtis.
    let s = project(
        &idp,
        &format!("client-id = \"pk-x\"\nclient-assertion-key = \"{}\"\ngrant = \"jwt-bearer\"", key.pem.display()),
    );
    let token = s.mo(&["token"]).ok().trim().to_owned();
    assert_eq!(support::verify_jwt(&idp.issuer, &token, AUDIENCE)["exchanged_sub"], "pk-x");
    let req = last_token_request(&idp);
    assert_eq!(req["grant_type"], JWT_BEARER_GRANT);
    let auth_jti = assert_assertion(&req, &idp, "pk-x", "ES256", key.jwk["kid"].as_str().unwrap());
    assert_ne!(req["assertion"]["claims"]["jti"].as_str(), Some(auth_jti.as_str()));
    assert_eq!(req["assertion"]["claims"]["iss"], "pk-x");
}

#[test]
fn a_command_source_runs_from_the_user_config_and_from_a_project_only_once_trusted() {
    let wl = Workload::start();
    let idp = idp(&[machine_client("fed", wl.jwks(), &["client_credentials"])], Some(&wl));
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), wl.mint(&format!("audience={}&iss=fed&sub=fed", idp.issuer))).unwrap();
    let lines = format!("client-id = \"fed\"\nclient-assertion = \"command:cat {}\"", token_file.path().display());
    let mut s = Sandbox::with_server(SERVER, &idp.issuer, &format!("audience = \"{AUDIENCE}\"\n{lines}"));
    s.set("MLFLOW_OIDC_STORE", "file");
    // A cloned repository's command is not run: ignored with the command that trusts the file.
    let out = s.mo(&["token", "--no-login"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("`client-assertion`") && out.stderr.contains("mlflow-oidc trust"), "{}", out.stderr);
    assert!(idp.token_requests().is_empty());
    trust(&s);
    let token = s.mo(&["token"]).ok().trim().to_owned();
    support::verify_jwt(&idp.issuer, &token, AUDIENCE);
    // A fresh platform token for the user config's client: the provider refuses a replayed assertion.
    std::fs::write(token_file.path(), wl.mint(&format!("audience={}&iss=fed&sub=fed", idp.issuer))).unwrap();

    let s = Sandbox::new();
    s.write(
        "home/.config/mlflow-oidc/config.toml",
        &format!(
            "[[tracking-servers]]\nuri = \"{SERVER}\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n{lines}\n",
            idp.issuer
        ),
    );
    let out = s.run("proj", &["token"], &[("MLFLOW_OIDC_STORE", "file")]);
    let token = out.ok().trim().to_owned();
    support::verify_jwt(&idp.issuer, &token, AUDIENCE);
}
