//! The guard and provider pages are the tests' configuration (issue 22): each check here fails when a documented
//! setting and the one a test stack runs with differ. oauth2-proxy's flags need no check of their own: the Keycloak
//! stack reads them from docs/guards/oauth2-proxy.md (tests/keycloak/stack.py).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The body of the first fenced block of `doc` whose info string is `lang`.
fn block(doc: &str, lang: &str, name: &str) -> String {
    let start = doc.find(&format!("```{lang}\n")).unwrap_or_else(|| panic!("{name}: no ```{lang} block"));
    let body = &doc[start + lang.len() + 4..];
    body[..body.find("```").unwrap()].to_owned()
}

#[test]
fn mod_auth_openidc_page_shows_the_tested_directives() {
    let doc = block(&read("docs/guards/mod_auth_openidc.md"), "apache", "docs/guards/mod_auth_openidc.md");
    let conf = read("tests/mlflow/httpd.conf");
    let conf_lines: Vec<&str> = conf.lines().map(str::trim).collect();
    for line in doc.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(conf_lines.contains(&line), "documented but not in tests/mlflow/httpd.conf: {line}");
    }
    let doc_lines: Vec<&str> = doc.lines().map(str::trim).collect();
    for line in conf_lines.iter().filter(|l| l.starts_with("OIDC") || l.starts_with("Require claim")) {
        assert!(doc_lines.contains(line), "tests/mlflow/httpd.conf has {line}, docs/guards/mod_auth_openidc.md not");
    }
}

#[test]
fn mlflow_oidc_auth_page_shows_the_tested_settings() {
    let doc = block(&read("docs/mlflow-oidc-auth.md"), "sh", "docs/mlflow-oidc-auth.md");
    let documented: BTreeMap<String, String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter(|l| l.starts_with("OIDC_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.split_whitespace().next().unwrap_or_default().to_owned()))
        .collect();
    let stack = read("tests/mlflow/oidc_auth_stack.py");
    let tested: BTreeMap<String, String> = stack
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("OIDC_") && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.trim_end_matches(',').to_owned())
        })
        .collect();
    assert!(!tested.is_empty());
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        tested.keys().collect::<Vec<_>>(),
        "docs/mlflow-oidc-auth.md and tests/mlflow/oidc_auth_stack.py set different OIDC_* settings"
    );
    for (k, v) in &tested {
        // Only literal values: the others (issuer, URLs, paths) are the deployment's.
        if let Some(literal) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            assert_eq!(&documented[k], literal, "{k}");
        }
    }
}

#[test]
fn keycloak_page_is_the_tested_realm() {
    let doc = read("docs/providers/keycloak.md");
    let realm: serde_json::Value = serde_json::from_str(&read("tests/keycloak/realm.json")).unwrap();
    let shown: serde_json::Value = serde_json::from_str(&block(&doc, "json", "docs/providers/keycloak.md")).unwrap();
    for (k, v) in shown.as_object().unwrap() {
        assert_eq!(
            &realm[k], v,
            "docs/providers/keycloak.md shows {k} = {v}, tests/keycloak/realm.json has {}",
            realm[k]
        );
    }
    assert!(realm["accessTokenLifespan"].as_u64().unwrap() <= 30, "issue 22: access tokens of at most 30 s");
    for c in realm["clients"].as_array().unwrap() {
        let id = c["clientId"].as_str().unwrap();
        assert!(doc.contains(&format!("| `{id}` |")), "docs/providers/keycloak.md does not describe client {id}");
        let attr = |k: &str| c["attributes"][k].as_str().unwrap_or_default().to_owned();
        if attr("oauth2.device.authorization.grant.enabled") == "true" {
            // Keycloak would demand a code_challenge on the device authorization request (see the page).
            assert_eq!(attr("pkce.code.challenge.method"), "", "{id}: PKCE enforcement breaks the device flow");
            assert!(doc.contains(&format!("| `{id}` | public | Standard flow ON, *PKCE Method* unset")), "{id}");
        }
        if attr("standard.token.exchange.enabled") == "true" {
            assert!(doc.contains("*Standard token exchange* ON"), "{id}");
        }
        let mappers = c["protocolMappers"].as_array().cloned().unwrap_or_default();
        let to_proxy = mappers.iter().any(|m| m["config"]["included.client.audience"] == "oauth2-proxy");
        let row = doc.lines().find(|l| l.starts_with(&format!("| `{id}` |"))).unwrap();
        assert_eq!(row.contains("audience mapper → `oauth2-proxy`"), to_proxy && id != "oauth2-proxy", "{row}");
    }
}
