//! Building one [`ServerConfig`] from the matched block and the environment: the plugin's precedence
//! (`env or file or default`), the defaults, and where each value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::keys::{self, Setting};
use super::validate::{check_auth_param, check_resource, parse_bool, validate_issuer, validate_redirect_uri};
use super::{AuthMethod, Block, DEFAULT_REDIRECT_URI, DEFAULT_SCOPE, FlowChoice, ServerConfig, Source};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::token::Secret;

pub(super) fn build_server(
    block: Option<&Block>,
    env: &Env,
    uri: Option<String>,
    uri_source: Source,
) -> Result<ServerConfig> {
    let mut sources = BTreeMap::new();
    sources.insert("uri", uri_source);

    // env, then the matched block, then (for the caller) a default — as the plugin's `env or file or default`.
    let mut string = |s: &'static Setting| -> Result<Option<(String, Source)>> {
        let (key, field) = (s.key, s.field);
        if let Some(v) = env.get(s.env)? {
            sources.insert(field, Source::Env);
            return Ok(Some((v.to_string(), Source::Env)));
        }
        if let Some(b) = block
            && let Some(v) = b.strings.get(key)
        {
            sources.insert(field, Source::File(b.file.clone()));
            return Ok(Some((v.clone(), Source::File(b.file.clone()))));
        }
        Ok(None)
    };

    let issuer = string(keys::ISSUER)?;
    let client_id = string(keys::CLIENT_ID)?;
    let client_secret = string(keys::CLIENT_SECRET)?;
    let redirect = string(keys::REDIRECT_URI)?;
    let scope = string(keys::SCOPE)?;
    let audience = string(keys::AUDIENCE)?;
    let ca_bundle = string(keys::CA_BUNDLE)?;
    let tls_cert = string(keys::REDIRECT_TLS_CERT)?;
    let tls_key = string(keys::REDIRECT_TLS_KEY)?;
    let auth_method = string(keys::TOKEN_ENDPOINT_AUTH_METHOD)?;
    let revocation_endpoint = string(keys::REVOCATION_ENDPOINT)?.map(|(v, _)| v);
    let flow = string(keys::FLOW)?;
    let device_endpoint = string(keys::DEVICE_AUTHORIZATION_ENDPOINT)?.map(|(v, _)| v);

    let name = uri.clone().unwrap_or_else(|| "the environment-only configuration".into());
    let (Some((issuer, issuer_src)), Some((client_id, _))) = (issuer, client_id) else {
        let missing = match (sources.contains_key("issuer"), sources.contains_key("client_id")) {
            (false, false) => "issuer and client-id",
            (false, true) => "issuer",
            _ => "client-id",
        };
        let in_block = block.map(|b| format!(" in the block for {} in {}", name, b.file.display())).unwrap_or_default();
        return Err(Error::config(format!(
            "missing {missing}{in_block}: a valid OIDC client configuration requires at least the issuer and client ID \
             (set `issuer` and `client-id` in the block, or MLFLOW_TRACKING_OIDC_ISSUER and MLFLOW_TRACKING_OIDC_CLIENT_ID)"
        )));
    };
    validate_issuer(&issuer, &describe(&issuer_src, keys::ISSUER))?;

    let redirect_uri = match redirect {
        Some((r, src)) => {
            validate_redirect_uri(&r, &describe(&src, keys::REDIRECT_URI))?;
            r
        }
        None => {
            sources.insert("redirect_uri", Source::Default);
            DEFAULT_REDIRECT_URI.to_string()
        }
    };
    let (scope, scope_explicit) = match scope {
        Some((s, _)) => (s, true),
        None => {
            sources.insert("scope", Source::Default);
            (DEFAULT_SCOPE.to_string(), false)
        }
    };
    let audience = match audience {
        Some((a, _)) => a,
        None => {
            sources.insert("audience", Source::Default);
            client_id.clone()
        }
    };
    // An empty client-secret is no secret (the plugin took "" for a secret and then failed to log in).
    let client_secret = client_secret.map(|(s, _)| Secret::new(s));
    let has_secret = client_secret.is_some();

    let mut boolean = |s: &'static Setting, default: bool| -> Result<bool> {
        let (key, field, var) = (s.key, s.field, s.env);
        if let Some(v) = env.get(var)? {
            sources.insert(field, Source::Env);
            return parse_bool(v).ok_or_else(|| {
                Error::config(format!("{var} must be true or false (or yes/no, 1/0, on/off), not \"{v}\""))
            });
        }
        if let Some(b) = block.and_then(|b| b.bools.get(key).map(|v| (*v, b.file.clone()))) {
            sources.insert(field, Source::File(b.1));
            return Ok(b.0);
        }
        sources.insert(field, Source::Default);
        Ok(default)
    };
    let interactive = boolean(keys::INTERACTIVE, !has_secret)?;
    let use_id_token = boolean(keys::USE_ID_TOKEN, !has_secret)?;
    let offline_access = boolean(keys::OFFLINE_ACCESS, true)?;

    // A relative path in a file is relative to that file, so a project can commit its CA next to it.
    let path_in = |(p, src): (String, Source)| match (&src, block) {
        (Source::File(_), Some(b)) if Path::new(&p).is_relative() => {
            b.file.parent().map(|d| d.join(&p)).unwrap_or_else(|| PathBuf::from(&p))
        }
        _ => PathBuf::from(p),
    };
    let ca_bundle = ca_bundle.map(path_in);
    let redirect_tls = match (tls_cert.map(path_in), tls_key.map(path_in)) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (cert, _) => {
            let (set, missing) = if cert.is_some() { ("cert", "key") } else { ("key", "cert") };
            return Err(Error::config(format!(
                "`redirect-tls-{set}` is set but `redirect-tls-{missing}` is not: an https loopback redirect needs \
                 both the certificate and its private key"
            )));
        }
    };
    let token_endpoint_auth_method = match auth_method {
        None => None,
        Some((m, src)) => Some(match m.to_ascii_lowercase().as_str() {
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "client_secret_post" => AuthMethod::ClientSecretPost,
            _ => {
                return Err(Error::config(format!(
                    "{} must be client_secret_basic or client_secret_post, not \"{m}\"",
                    describe(&src, keys::TOKEN_ENDPOINT_AUTH_METHOD)
                )));
            }
        }),
    };

    let flow = match flow {
        None => FlowChoice::Auto,
        Some((f, src)) => FlowChoice::parse(&f).ok_or_else(|| {
            Error::config(format!("{} must be auto, auth-code or device, not \"{f}\"", describe(&src, keys::FLOW)))
        })?,
    };
    let auth_params = match env.get(keys::AUTH_PARAMS.env)? {
        Some(v) => {
            let mut params = Vec::new();
            for (k, v) in url::form_urlencoded::parse(v.as_bytes()) {
                check_auth_param(&k, "MLFLOW_TRACKING_OIDC_AUTH_PARAMS")?;
                params.push((k.into_owned(), v.into_owned()));
            }
            params
        }
        None => block.and_then(|b| b.auth_params.clone()).unwrap_or_default(),
    };
    let resources = match env.get(keys::RESOURCE.env)? {
        Some(v) => {
            let list: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            for r in &list {
                check_resource(r, "MLFLOW_TRACKING_OIDC_RESOURCE")?;
            }
            list
        }
        None => block.and_then(|b| b.resources.clone()).unwrap_or_default(),
    };
    let redirect_ports = match env.get(keys::REDIRECT_PORTS.env)? {
        Some(v) => v
            .split([',', ' '])
            .filter(|p| !p.is_empty())
            .map(|p| p.trim().parse::<u16>())
            .collect::<std::result::Result<Vec<u16>, _>>()
            .map_err(|_| {
                Error::config(format!(
                    "MLFLOW_TRACKING_OIDC_REDIRECT_PORTS must be port numbers separated by commas, not \"{v}\""
                ))
            })?,
        None => block.and_then(|b| b.redirect_ports.clone()).unwrap_or_default(),
    };

    Ok(ServerConfig {
        uri,
        issuer,
        client_id,
        client_secret,
        redirect_uri,
        scope,
        scope_explicit,
        audience,
        interactive,
        use_id_token,
        ca_bundle,
        redirect_tls,
        token_endpoint_auth_method,
        offline_access,
        revocation_endpoint,
        flow,
        device_authorization_endpoint: device_endpoint,
        auth_params,
        resources,
        redirect_ports,
        sources,
    })
}

/// "MLFLOW_TRACKING_OIDC_ISSUER" or "`issuer` in /path/pyproject.toml", for error messages.
fn describe(src: &Source, s: &Setting) -> String {
    match src {
        Source::File(p) => format!("`{}` in {}", s.key, p.display()),
        _ => s.env.to_string(),
    }
}
