//! Tests of the test harness itself (tests/support, tests/idp): the OpenID provider starts,
//! answers, logs requests, and the browser drivers complete logins against it.

mod support;

use std::time::Duration;

use support::{
    AUDIENCE, CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET, CallbackServer, DEVICE_CODE_GRANT, Idp,
    PUBLIC_CLIENT_ID, RESOURCE,
};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn idp_starts_and_serves_discovery() {
    let idp = Idp::start();
    assert!(idp.issuer.starts_with("http://127.0.0.1:"), "{}", idp.issuer);

    let (status, body) = support::http_get(&idp.discovery_url());
    assert_eq!(status, 200, "{body}");
    let doc = json(&body);
    assert_eq!(doc["issuer"], idp.issuer.as_str());
    assert_eq!(doc["token_endpoint"], idp.token_endpoint().as_str());
    assert_eq!(doc["device_authorization_endpoint"], idp.url("/device/auth").as_str());

    let reqs = idp.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["method"], "GET");
    assert_eq!(reqs[0]["path"], "/.well-known/openid-configuration");
    assert_eq!(reqs[0]["status"], 200);
    assert_eq!(reqs[0]["route"], "discovery");

    // A fresh port is free, and the IdP is not on it.
    let port = support::free_port();
    assert!(!idp.issuer.ends_with(&format!(":{port}")));
}

#[test]
fn client_credentials_basic_and_post_are_logged() {
    let idp = Idp::start_with(&[("IDP_AT_TTL", "5")]);
    let token = idp.token_endpoint();
    let basic = format!("{CONFIDENTIAL_CLIENT_ID}:{CONFIDENTIAL_CLIENT_SECRET}");

    let (status, body) =
        support::curl(&["-u", &basic, &token, "-d", "grant_type=client_credentials", "-d", "scope=mlflow"]);
    assert_eq!(status, 200, "{body}");
    let at = json(&body)["access_token"].as_str().unwrap().to_owned();
    let claims = support::verify_jwt(&idp.issuer, &at, AUDIENCE);
    assert_eq!(claims["client_id"], CONFIDENTIAL_CLIENT_ID);
    assert_eq!(claims["aud"], AUDIENCE);
    // IDP_AT_TTL from start_with reached the IdP.
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 5);
    assert_eq!(support::jwt_payload(&at)["client_id"], CONFIDENTIAL_CLIENT_ID);

    let (status, body) = support::curl(&[
        &token,
        "-d",
        "grant_type=client_credentials",
        "-d",
        &format!("client_id={CONFIDENTIAL_CLIENT_ID}"),
        "-d",
        &format!("client_secret={CONFIDENTIAL_CLIENT_SECRET}"),
    ]);
    assert_eq!(status, 200, "{body}");

    let (status, body) = support::curl(&[
        "-u",
        &format!("{CONFIDENTIAL_CLIENT_ID}:wrong"),
        &token,
        "-d",
        "grant_type=client_credentials",
    ]);
    assert_eq!(status, 401, "{body}");

    assert_eq!(idp.count_grants("client_credentials"), 3);
    assert_eq!(idp.count_grants("refresh_token"), 0);
    let reqs = idp.token_requests();
    let summary: Vec<_> = reqs
        .iter()
        .map(|r| {
            (
                r["auth"].as_str().unwrap(),
                r["client_id"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
                r["error"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("basic", CONFIDENTIAL_CLIENT_ID, 200, None),
            ("post", CONFIDENTIAL_CLIENT_ID, 200, None),
            ("basic", CONFIDENTIAL_CLIENT_ID, 401, Some("invalid_client")),
        ]
    );
    assert_eq!(reqs[0]["params"]["scope"], "mlflow");

    idp.clear_requests();
    assert!(idp.requests().is_empty());
    assert_eq!(idp.count_grants("client_credentials"), 0);
}

#[test]
fn auth_code_login_with_browser_curl() {
    let idp = Idp::start();
    let cb = CallbackServer::start();
    let (verifier, challenge) = support::pkce_pair();
    let auth_url = format!(
        "{}?response_type=code&client_id={PUBLIC_CLIENT_ID}&redirect_uri={}\
         &scope=openid%20offline_access%20mlflow&state=st4te&nonce=n0nce\
         &code_challenge={challenge}&code_challenge_method=S256&resource={RESOURCE}",
        idp.url("/auth"),
        cb.redirect_uri.replace(':', "%3A").replace('/', "%2F"),
    );
    let out = support::run_browser(&support::browser_curl(), &auth_url, &[("IDP_LOGIN_USER", "carol")]);
    assert!(out.starts_with("CALLBACK "), "{out}");

    let target = cb.wait(Duration::from_secs(10)).expect("the driver delivered the callback");
    assert_eq!(support::query_param(&target, "state").as_deref(), Some("st4te"));
    assert_eq!(support::query_param(&target, "iss").as_deref(), Some(idp.issuer.as_str()));
    let code = support::query_param(&target, "code").expect("code in the callback");

    let params = idp.auth_requests();
    assert_eq!(params.len(), 1, "{params:?}");
    assert_eq!(params[0]["nonce"], "n0nce");
    assert_eq!(params[0]["code_challenge"], challenge.as_str());
    assert_eq!(params[0]["scope"], "openid offline_access mlflow");
    assert_eq!(params[0]["resource"], RESOURCE);

    let token = idp.token_endpoint();
    let (status, body) = support::curl(&[
        &token,
        "-d",
        "grant_type=authorization_code",
        "-d",
        &format!("client_id={PUBLIC_CLIENT_ID}"),
        "-d",
        &format!("code={code}"),
        "--data-urlencode",
        &format!("redirect_uri={}", cb.redirect_uri),
        "-d",
        &format!("code_verifier={verifier}"),
    ]);
    assert_eq!(status, 200, "{body}");
    let tokens = json(&body);
    let claims = support::verify_jwt(&idp.issuer, tokens["access_token"].as_str().unwrap(), AUDIENCE);
    assert_eq!(claims["sub"], "carol");
    let id_token = support::jwt_payload(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["nonce"], "n0nce");
    assert_eq!(id_token["aud"], PUBLIC_CLIENT_ID);

    let rt = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = support::curl(&[
        &token,
        "-d",
        "grant_type=refresh_token",
        "-d",
        &format!("client_id={PUBLIC_CLIENT_ID}"),
        "-d",
        &format!("refresh_token={rt}"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_ne!(json(&body)["refresh_token"].as_str().unwrap(), rt);

    assert_eq!(idp.count_grants("authorization_code"), 1);
    assert_eq!(idp.count_grants("refresh_token"), 1);
    let last = idp.token_requests().pop().unwrap();
    assert_eq!(last["auth"], "none");
    assert_eq!(last["client_id"], PUBLIC_CLIENT_ID);
    assert_eq!(last["params"]["refresh_token"], rt);
}

#[test]
fn auth_code_login_with_browser_chromium() {
    let idp = Idp::start_with(&[("IDP_AUTO_CONSENT", "1")]);
    let cb = CallbackServer::start();
    let (_verifier, challenge) = support::pkce_pair();
    let auth_url = format!(
        "{}?response_type=code&client_id={PUBLIC_CLIENT_ID}&redirect_uri={}\
         &scope=openid%20mlflow&state=chr0me&code_challenge={challenge}&code_challenge_method=S256",
        idp.url("/auth"),
        cb.redirect_uri,
    );
    let out = support::run_browser(&support::browser_chromium(), &auth_url, &[]);
    assert!(out.contains("CALLBACK "), "{out}");
    let target = cb.wait(Duration::from_secs(10)).expect("Chromium requested the callback");
    assert_eq!(support::query_param(&target, "state").as_deref(), Some("chr0me"));
    assert!(support::query_param(&target, "code").is_some(), "{target}");
}

#[test]
fn device_flow_with_forced_slow_down() {
    let idp = Idp::start_with(&[("IDP_DEVICE_SLOW_DOWN", "1")]);
    let (status, body) = support::curl(&[
        &idp.url("/device/auth"),
        "-d",
        &format!("client_id={PUBLIC_CLIENT_ID}"),
        "-d",
        "scope=openid offline_access mlflow",
    ]);
    assert_eq!(status, 200, "{body}");
    let dev = json(&body);
    assert_eq!(dev["interval"], 1);
    let device_code = dev["device_code"].as_str().unwrap();
    let poll = || {
        support::curl(&[
            &idp.token_endpoint(),
            "-d",
            &format!("grant_type={DEVICE_CODE_GRANT}"),
            "-d",
            &format!("client_id={PUBLIC_CLIENT_ID}"),
            "-d",
            &format!("device_code={device_code}"),
        ])
    };
    let (status, body) = poll();
    assert_eq!((status, json(&body)["error"].clone()), (400, "slow_down".into()));
    let (status, body) = poll();
    assert_eq!((status, json(&body)["error"].clone()), (400, "authorization_pending".into()));

    let out = support::run_browser(
        &support::browser_curl(),
        dev["verification_uri_complete"].as_str().unwrap(),
        &[("IDP_LOGIN_USER", "bob")],
    );
    assert_eq!(out.trim(), "DONE");
    let (status, body) = poll();
    assert_eq!(status, 200, "{body}");
    let at = json(&body)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(support::verify_jwt(&idp.issuer, &at, AUDIENCE)["sub"], "bob");

    let errors: Vec<_> = idp.token_requests().iter().map(|r| r["error"].as_str().unwrap_or("-").to_owned()).collect();
    assert_eq!(errors, ["slow_down", "authorization_pending", "-"]);
    assert_eq!(idp.count_grants(DEVICE_CODE_GRANT), 3);
}

#[test]
fn idp_exits_when_its_stdin_closes() {
    let mut idp = Idp::start();
    assert!(
        idp.close_stdin_and_wait(Duration::from_secs(10)),
        "idp.mjs did not exit after stdin EOF:\n{}",
        idp.output()
    );
}
