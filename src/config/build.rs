//! Building one [`ServerConfig`] from the matched block and the environment: the plugin's precedence
//! (`env or file or default`), the defaults, and where each value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::keys::{self, Setting};
use super::validate::{check_auth_param, check_resource, parse_bool, validate_issuer, validate_redirect_uri};
use super::{
    AuthMethod, Block, DEFAULT_REDIRECT_URI, DEFAULT_SCOPE, DEFAULT_SUBJECT_TOKEN_TYPE, FlowChoice, GrantChoice,
    Origin, PlatformToken, ServerConfig,
};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::tokenset::Secret;

pub(super) fn build_server(
    block: Option<&Block>,
    env: &Env,
    uri: Option<String>,
    uri_origin: Origin,
) -> Result<ServerConfig> {
    let mut origins = BTreeMap::new();
    origins.insert("uri", uri_origin);

    // env, then the matched block, then (for the caller) a default — as the plugin's `env or file or default`.
    let mut string = |s: &'static Setting| -> Result<Option<(String, Origin)>> {
        let (key, field) = (s.key, s.field);
        if let Some(v) = env.get(s.env)? {
            origins.insert(field, Origin::Env);
            return Ok(Some((v.to_string(), Origin::Env)));
        }
        if let Some(b) = block
            && let Some(v) = b.strings.get(key)
        {
            origins.insert(field, Origin::File(b.file.clone()));
            return Ok(Some((v.clone(), Origin::File(b.file.clone()))));
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
    let assertion_key = string(keys::CLIENT_ASSERTION_KEY)?;
    let assertion_kid = string(keys::CLIENT_ASSERTION_KID)?.map(|(v, _)| v);
    let client_assertion = string(keys::CLIENT_ASSERTION)?;
    let github_audience = string(keys::GITHUB_ACTIONS_AUDIENCE)?.map(|(v, _)| v);
    let grant = string(keys::GRANT)?;
    let subject_token = string(keys::SUBJECT_TOKEN)?;
    let subject_token_type = string(keys::SUBJECT_TOKEN_TYPE)?.map(|(v, _)| v);

    let name = uri.clone().unwrap_or_else(|| "the environment-only configuration".into());
    let (Some((issuer, issuer_src)), Some((client_id, _))) = (issuer, client_id) else {
        let missing = match (origins.contains_key("issuer"), origins.contains_key("client_id")) {
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
            origins.insert("redirect_uri", Origin::Default);
            DEFAULT_REDIRECT_URI.to_string()
        }
    };
    let (scope, scope_explicit) = match scope {
        Some((s, _)) => (s, true),
        None => {
            origins.insert("scope", Origin::Default);
            (DEFAULT_SCOPE.to_string(), false)
        }
    };
    let (audience, audience_explicit) = match audience {
        Some((a, _)) => (a, true),
        None => {
            origins.insert("audience", Origin::Default);
            (client_id.clone(), false)
        }
    };
    // An empty client-secret is no secret (the plugin took "" for a secret and then failed to log in).
    let client_secret = client_secret.map(|(s, _)| Secret::new(s));
    let client_assertion_key = assertion_key.map(|(p, src)| relative_to_file(p, &src, block));
    let client_assertion =
        client_assertion.map(|(v, src)| platform_token(&v, &src, block, env, keys::CLIENT_ASSERTION)).transpose()?;
    let subject_token =
        subject_token.map(|(v, src)| platform_token(&v, &src, block, env, keys::SUBJECT_TOKEN)).transpose()?;
    // Any credential of the client's own makes it a machine client by default, as a secret always did.
    let has_own_credential = client_secret.is_some()
        || client_assertion_key.is_some()
        || client_assertion.is_some()
        || subject_token.is_some();

    let mut boolean = |s: &'static Setting, default: bool| -> Result<bool> {
        let (key, field, var) = (s.key, s.field, s.env);
        if let Some(v) = env.get(var)? {
            origins.insert(field, Origin::Env);
            return parse_bool(v).ok_or_else(|| {
                Error::config(format!("{var} must be true or false (or yes/no, 1/0, on/off), not \"{v}\""))
            });
        }
        if let Some(b) = block.and_then(|b| b.bools.get(key).map(|v| (*v, b.file.clone()))) {
            origins.insert(field, Origin::File(b.1));
            return Ok(b.0);
        }
        origins.insert(field, Origin::Default);
        Ok(default)
    };
    let interactive = boolean(keys::INTERACTIVE, !has_own_credential)?;
    let use_id_token = boolean(keys::USE_ID_TOKEN, !has_own_credential)?;
    let offline_access = boolean(keys::OFFLINE_ACCESS, true)?;

    let ca_bundle = ca_bundle.map(|(p, src)| relative_to_file(p, &src, block));
    let redirect_tls = match (
        tls_cert.map(|(p, src)| relative_to_file(p, &src, block)),
        tls_key.map(|(p, src)| relative_to_file(p, &src, block)),
    ) {
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
            "private_key_jwt" if client_assertion.is_some() => AuthMethod::FederatedAssertion,
            "private_key_jwt" if client_assertion_key.is_some() => AuthMethod::PrivateKeyJwt,
            "private_key_jwt" => {
                return Err(Error::config(format!(
                    "{} is private_key_jwt, but neither `client-assertion-key` nor `client-assertion` is set: \
                     set one of them",
                    describe(&src, keys::TOKEN_ENDPOINT_AUTH_METHOD)
                )));
            }
            _ => {
                return Err(Error::config(format!(
                    "{} must be client_secret_basic, client_secret_post or private_key_jwt, not \"{m}\"",
                    describe(&src, keys::TOKEN_ENDPOINT_AUTH_METHOD)
                )));
            }
        }),
    };
    if client_assertion_key.is_some() && client_assertion.is_some() {
        return Err(Error::config(format!(
            "both `client-assertion-key` and `client-assertion` are set for {name}: a client signs its own \
             assertion or sends a platform token, not both; remove one"
        )));
    }
    let grant = match grant {
        None => GrantChoice::Auto,
        Some((g, src)) => match g.to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => GrantChoice::Auto,
            "client-credentials" => GrantChoice::ClientCredentials,
            "token-exchange" => GrantChoice::TokenExchange,
            "jwt-bearer" => GrantChoice::JwtBearer,
            _ => {
                return Err(Error::config(format!(
                    "{} must be auto, client-credentials, token-exchange or jwt-bearer, not \"{g}\"",
                    describe(&src, keys::GRANT)
                )));
            }
        },
    };
    if grant == GrantChoice::TokenExchange && subject_token.is_none() {
        return Err(Error::config(format!(
            "grant = \"token-exchange\" for {name} needs `subject-token` (file:PATH, env:NAME, github-actions or \
             command:CMD): the token to exchange"
        )));
    }
    if grant == GrantChoice::JwtBearer && subject_token.is_none() && client_assertion_key.is_none() {
        return Err(Error::config(format!(
            "grant = \"jwt-bearer\" for {name} needs `subject-token` (the assertion) or `client-assertion-key` \
             (to sign one)"
        )));
    }

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
        audience_explicit,
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
        client_assertion_key,
        client_assertion_kid: assertion_kid,
        client_assertion,
        github_actions_audience: github_audience,
        grant,
        subject_token,
        subject_token_type: subject_token_type.unwrap_or_else(|| DEFAULT_SUBJECT_TOKEN_TYPE.to_string()),
        origins,
    })
}

/// A relative path in a file is relative to that file, so a project can commit its CA (or key) next to it.
fn relative_to_file(p: String, src: &Origin, block: Option<&Block>) -> PathBuf {
    match (src, block) {
        (Origin::File(_), Some(b)) if Path::new(&p).is_relative() => {
            b.file.parent().map(|d| d.join(&p)).unwrap_or_else(|| PathBuf::from(&p))
        }
        _ => PathBuf::from(p),
    }
}

/// `file:PATH`, `env:NAME`, `github-actions` or `command:CMD`. From a project file these arrive only once the
/// user trusted it (issue 21; `needs_trust` in the settings table): a cloned repository's pyproject.toml must not
/// read the user's files or variables, or run commands, on `mlflow-oidc token`.
fn platform_token(v: &str, src: &Origin, block: Option<&Block>, env: &Env, s: &Setting) -> Result<PlatformToken> {
    let at = describe(src, s);
    let v = v.trim();
    if let Some(path) = v.strip_prefix("file:") {
        if path.is_empty() {
            return Err(Error::config(format!("{at} is `file:` without a path: write file:PATH")));
        }
        return Ok(PlatformToken::File(relative_to_file(path.to_string(), src, block)));
    }
    if let Some(name) = v.strip_prefix("env:") {
        if name.is_empty() {
            return Err(Error::config(format!("{at} is `env:` without a variable name: write env:NAME")));
        }
        let value = env.get(name)?.map(|t| Secret::new(t.trim().to_string()));
        return Ok(PlatformToken::Env { name: name.to_string(), value });
    }
    if v == "github-actions" {
        return Ok(PlatformToken::GithubActions {
            request_url: env.get("ACTIONS_ID_TOKEN_REQUEST_URL")?.map(str::to_string),
            request_token: env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")?.map(|t| Secret::new(t.to_string())),
        });
    }
    if let Some(cmd) = v.strip_prefix("command:") {
        if cmd.trim().is_empty() {
            return Err(Error::config(format!("{at} is `command:` without a command: write command:CMD")));
        }
        return Ok(PlatformToken::Command(cmd.trim().to_string()));
    }
    // The value is not quoted: it may be a token pasted where its source belongs.
    Err(Error::config(format!(
        "{at} must be file:PATH, env:NAME, github-actions or command:CMD (the value is neither; a token itself \
         belongs in a file or variable that this names)"
    )))
}

/// "MLFLOW_TRACKING_OIDC_ISSUER" or "`issuer` in /path/pyproject.toml", for error messages.
fn describe(src: &Origin, s: &Setting) -> String {
    match src {
        Origin::File(p) => format!("`{}` in {}", s.key, p.display()),
        _ => s.env.to_string(),
    }
}
