//! Which block serves a tracking URI: the blocks of every file in precedence order, the guard that keeps a
//! project from redirecting a server the user configured, then an exact match before a normalised one.

use super::*;
use crate::env::Env;
use crate::error::{Error, Result};

/// The keys that decide where credentials go or whom the client trusts: a project block that changes one of
/// them for a URI the user configured could send the user's secret, or tokens, to another provider.
const GUARDED_KEYS: &[&str] = &[
    keys::ISSUER.key,
    keys::CA_BUNDLE.key,
    keys::CLIENT_SECRET.key,
    keys::CLIENT_ASSERTION_KEY.key,
    keys::CLIENT_ASSERTION.key,
    keys::SUBJECT_TOKEN.key,
    keys::GITHUB_ACTIONS_AUDIENCE.key,
    keys::TOKEN_ENDPOINT_AUTH_METHOD.key,
    keys::REVOCATION_ENDPOINT.key,
    keys::DEVICE_AUTHORIZATION_ENDPOINT.key,
];

/// Whether a block may stay. The user's own block for a URI beats a project block that disagrees on a guarded
/// key, unless the project's directory is in `safe-directories`: anyone who can write a parent directory (or
/// a cloned repository) writes the project file, while only the user writes their config, so the user's
/// choice of provider for their own server is not the project's to override. A project block that agrees on
/// those keys still wins (it may set scope, flow, redirect ports, …), as the plugin's last-block-wins rule says.
fn keep_project_block(b: &Block, user_blocks: &[Block], warnings: &mut Vec<String>) -> bool {
    if !b.guarded {
        return true;
    }
    let Some(uri) = b.uri.as_deref() else { return true };
    let want = normalize_uri(uri);
    let Some(user) = user_blocks.iter().rev().find(|u| u.uri.as_deref().map(normalize_uri).as_deref() == Some(&want))
    else {
        return true;
    };
    let differ: Vec<&str> = GUARDED_KEYS
        .iter()
        .copied()
        // A key ignored for want of trust still counts: the user's own key must not silently drop out.
        .filter(|k| b.strings.get(k).or(b.untrusted.get(k)).is_some_and(|v| user.strings.get(k) != Some(v)))
        .collect();
    if differ.is_empty() {
        return true;
    }
    warnings.push(format!(
        "IGNORING the block for {uri} in {}: it changes {} from your own block in {}, which is used instead. \
         A project file must not send your credentials to another provider; if you trust {}, add its directory \
         to `safe-directories` in {}",
        b.file.display(),
        differ.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        user.file.display(),
        b.file.display(),
        user.file.display()
    ));
    false
}

/// Resolve the configuration of one server. Pure: all I/O happened in [`load_files`].
pub fn resolve(files: &[ConfigFile], env: &Env, flags: &Flags) -> Result<Resolved> {
    let mut warnings = Vec::new();
    let mut blocks = Vec::new();
    let mut user_blocks = Vec::new();
    for file in files {
        let parsed = files::parse_file(file, &mut warnings)?;
        match file.kind {
            FileKind::User => user_blocks.extend(parsed.iter().cloned()),
            // A project block may not take a URI the user configured to another provider (below).
            FileKind::Project if !file.trusted => {
                blocks.extend(parsed.into_iter().map(|b| Block { guarded: true, ..b }));
                continue;
            }
            _ => {}
        }
        blocks.extend(parsed);
    }
    blocks.retain(|b| keep_project_block(b, &user_blocks, &mut warnings));
    let known_uris: Vec<String> = blocks.iter().filter_map(|b| b.uri.clone()).collect();

    let (target, uri_origin) = match &flags.server {
        Some(s) if !s.is_empty() => (Some(s.clone()), Origin::Flag),
        _ => match env.get("MLFLOW_TRACKING_URI")? {
            Some(s) => (Some(s.to_string()), Origin::Env),
            None => (None, Origin::Default),
        },
    };
    let env_complete =
        env.get("MLFLOW_TRACKING_OIDC_ISSUER")?.is_some() && env.get("MLFLOW_TRACKING_OIDC_CLIENT_ID")?.is_some();

    let (block, uri, uri_origin) = match &target {
        Some(t) => match find_block(&blocks, t) {
            Some(b) => (Some(b), Some(t.clone()), uri_origin),
            None if env_complete => (None, Some(t.clone()), uri_origin),
            None => return Err(no_match_error(t, &uri_origin, files, &known_uris)),
        },
        None => {
            let with_uri: Vec<&Block> = blocks.iter().filter(|b| b.uri.is_some()).collect();
            match with_uri.as_slice() {
                [] if env_complete => (None, None, Origin::Default),
                [] => return Err(nothing_configured_error(files)),
                [only] => (Some(*only), only.uri.clone(), Origin::File(only.file.clone())),
                many => {
                    let list = many.iter().filter_map(|b| b.uri.as_deref()).collect::<Vec<_>>().join(", ");
                    return Err(Error::config(format!(
                        "{} tracking servers are configured ({list}): choose one with --server URI or MLFLOW_TRACKING_URI",
                        many.len()
                    )));
                }
            }
        }
    };

    let untrusted = block
        .filter(|b| !b.untrusted.is_empty())
        .map(|b| Untrusted { file: b.file.clone(), keys: b.untrusted.keys().copied().collect() });
    if let Some(u) = &untrusted {
        warnings.push(u.warning());
    }
    // A key ignored for want of trust may be why the rest does not add up (a grant without its subject token).
    let server = build::build_server(block, env, uri, uri_origin).map_err(|e| match (e, &untrusted) {
        (Error::Config(m), Some(u)) => Error::config(format!("{m}. Note: {}", u.warning())),
        (e, _) => e,
    })?;
    Ok(Resolved { server, warnings, skipped: Vec::new(), untrusted })
}

fn no_match_error(target: &str, source: &Origin, files: &[ConfigFile], known: &[String]) -> Error {
    let from = match source {
        Origin::Flag => "--server",
        _ => "MLFLOW_TRACKING_URI",
    };
    let where_ = if files.is_empty() {
        "no config file was found".to_string()
    } else {
        format!("looked in {}", files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", "))
    };
    let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
    Error::NoServer(format!(
        "no tracking server matches {target} (from {from}); {where_}; configured servers: {known}. \
         Add a [[tool.mlflow-oidc-client.tracking-servers]] block with uri = \"{target}\", \
         or set MLFLOW_TRACKING_OIDC_ISSUER and MLFLOW_TRACKING_OIDC_CLIENT_ID"
    ))
}

fn nothing_configured_error(files: &[ConfigFile]) -> Error {
    let where_ = if files.is_empty() {
        "no pyproject.toml with [tool.mlflow-oidc-client] was found from the current directory up, and no user config file exists".to_string()
    } else {
        format!(
            "{} configure no tracking server with a uri",
            files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    };
    Error::NoServer(format!(
        "no tracking server is configured: {where_}. Add a [[tool.mlflow-oidc-client.tracking-servers]] block \
         to pyproject.toml, or set MLFLOW_TRACKING_OIDC_ISSUER and MLFLOW_TRACKING_OIDC_CLIENT_ID"
    ))
}

/// An exact string match wins over a normalised one; among equal matches the last block wins (as the plugin).
fn find_block<'a>(blocks: &'a [Block], target: &str) -> Option<&'a Block> {
    let exact = blocks.iter().rev().find(|b| b.uri.as_deref() == Some(target));
    exact.or_else(|| {
        let want = normalize_uri(target);
        blocks.iter().rev().find(|b| b.uri.as_deref().map(normalize_uri).as_deref() == Some(want.as_str()))
    })
}

/// Scheme and host lower-cased, default ports dropped, one trailing slash ignored.
pub fn normalize_uri(uri: &str) -> String {
    let trimmed = uri.trim();
    match url::Url::parse(trimmed) {
        Ok(u) if u.has_host() => {
            let mut s = format!("{}://", u.scheme());
            s.push_str(&u.host_str().unwrap_or_default().to_ascii_lowercase());
            if let Some(p) = u.port() {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(u.path().strip_suffix('/').unwrap_or(u.path()));
            if let Some(q) = u.query() {
                s.push('?');
                s.push_str(q);
            }
            s
        }
        _ => trimmed.strip_suffix('/').unwrap_or(trimmed).to_string(),
    }
}
