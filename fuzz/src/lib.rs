//! The fuzz targets' bodies, one function per target, shared by `fuzz_targets/*.rs` (libFuzzer) and
//! `tests/fuzz_regressions.rs` at the repository root (which includes this file with `#[path]` and replays every
//! input under `fuzz/regressions/<target>/`, so a crash found once stays fixed). Each returns normally for any
//! input; a panic (including an arithmetic overflow: targets are built with debug assertions) is a bug.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use base64::Engine;
use mlflow_oidc::check::parse_http_date;
use mlflow_oidc::config::{self, ConfigFile, FileKind, Flags};
use mlflow_oidc::discovery::{Metadata, discovery_url};
use mlflow_oidc::env::Env;
use mlflow_oidc::loopback::{Callback, judge, judge_request};
use mlflow_oidc::store::Entry;
use mlflow_oidc::tokenset::{Claims, MinValid, Secret, TokenKind, TokenSet, rfc3339};

/// Configuration: TOML parsing, block extraction and resolution, plus the URL validators, on arbitrary text.
///
/// Input layout (so the fuzzer controls every part): `KIND TOML \0 SERVER \0 NAME=VALUE\n…`
/// where KIND is the first byte (picks project / user / explicit file), then the file text, then an optional
/// `--server` value, then environment variables. Any `Err` is fine; a panic is a bug.
pub fn config(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let mut parts = text.split('\0');
    let toml_text = parts.next().unwrap_or_default();
    let server = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    let env_text = parts.next().unwrap_or_default();
    let pairs: Vec<(&str, &str)> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
    let env = Env::from_pairs(pairs.iter().copied());

    let kind = match kind % 3 {
        0 => FileKind::Project,
        1 => FileKind::User,
        _ => FileKind::Explicit,
    };
    let files = vec![ConfigFile::new(PathBuf::from("/fuzz/pyproject.toml"), kind, toml_text.to_string())];
    let flags = Flags { server, ..Flags::default() };
    let _ = config::store_setting(&files);
    if let Ok(resolved) = config::resolve(&files, &env, &flags) {
        let c = &resolved.server;
        // What resolution accepted must pass the same validators again (they are the contract).
        assert!(
            config::validate_issuer(&c.issuer, "issuer").is_ok(),
            "accepted issuer fails validation: {:?}",
            c.issuer
        );
        assert!(
            config::validate_redirect_uri(&c.redirect_uri, "redirect-uri").is_ok(),
            "accepted redirect URI fails validation: {:?}",
            c.redirect_uri
        );
        // The secret never shows in Debug output.
        if let Some(secret) = &c.client_secret
            && secret.expose().len() >= 4
        {
            assert!(!format!("{c:?}").contains(secret.expose().as_str()), "secret in Debug output");
        }
        let _ = config::normalize_uri(c.uri.as_deref().unwrap_or_default());
    }
    // The validators and helpers on the raw text as well.
    for line in toml_text.lines().take(8) {
        let _ = config::validate_issuer(line, "issuer");
        let _ = config::validate_redirect_uri(line, "redirect-uri");
        let _ = config::normalize_uri(line);
        let _ = config::parse_bool(line);
    }
}

/// The redirect path and state the loopback target judges against.
const PATH: &str = "/oauth2/callback";
const STATE: &str = "Zm9vYmFyYmF6c3RhdGU";

/// The loopback redirect listener's request judge on arbitrary request heads.
///
/// Properties: no panic; a request ends the login only when it is a GET of exactly the redirect path whose query
/// carries our state exactly once; answers are well-formed statuses.
pub fn loopback(data: &[u8]) {
    let Ok(head) = std::str::from_utf8(data) else { return };
    // With a Host check: it only ever narrows what `judge` accepts, and refuses any Host not listed.
    let hosts = ["127.0.0.1:4000".to_string(), "localhost:4000".to_string()];
    let (checked, ..) = judge_request(head, PATH, STATE, &hosts);
    if checked.is_some() {
        let host_lines: Vec<&str> = head
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| {
                l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case("host")).map(|(_, v)| v.trim())
            })
            .collect();
        assert!(
            host_lines.len() == 1 && hosts.iter().any(|h| h.eq_ignore_ascii_case(host_lines[0])),
            "a request with Host {host_lines:?} ended the wait"
        );
    }
    let (outcome, status, title, body) = judge(head, PATH, STATE);
    assert!(checked.is_none() || outcome == checked, "the Host check changed what was accepted");
    assert!([200, 400, 404, 405].contains(&status), "unexpected status {status}");
    assert!(!title.is_empty());
    let _ = body;
    let Some(cb) = outcome else { return };
    let line = head.lines().next().unwrap_or_default();
    let target = line.split(' ').nth(1).unwrap_or_default();
    assert!(line.starts_with("GET "), "a non-GET ended the wait: {line:?}");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    assert_eq!(path, PATH, "another path ended the wait");
    let states: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(states, [STATE.to_string()], "the wait ended without our state exactly once");
    match cb {
        Callback::Code { code, .. } => {
            assert_eq!(status, 200);
            assert!(!code.is_empty(), "an empty code ended the wait");
        }
        Callback::Error { error, .. } => {
            assert_eq!(status, 400);
            let _ = error;
        }
    }
}

/// Provider metadata (`.well-known/openid-configuration`) parsing and the checks made on it.
pub fn discovery(data: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Metadata>(data) else { return };
    let _ = m.token_endpoint();
    let _ = m.supports_scope("offline_access");
    assert!(m.issuer_matches(&m.issuer), "an issuer must match itself");
    let _ = discovery_url(&m.issuer);
    // What we cache must read back as the same document.
    let bytes = serde_json::to_vec(&m).expect("metadata serializes");
    let back: Metadata = serde_json::from_slice(&bytes).expect("cached metadata parses");
    assert_eq!(back, m, "the discovery cache does not round-trip");
}

/// JWT claim peeking (expiry, subject) on arbitrary tokens, and the freshness arithmetic that uses `exp`.
///
/// First byte: 0 = the input is the token text itself; otherwise the rest is a JSON payload wrapped into a
/// `header.payload.sig` JWT, so the fuzzer explores JSON rather than base64.
pub fn claims(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let token = if mode == 0 {
        let Ok(s) = std::str::from_utf8(rest) else { return };
        s.to_string()
    } else {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", e.encode(br#"{"alg":"RS256"}"#), e.encode(rest))
    };
    let Some(claims) = Claims::peek(&token) else { return };
    let _ = claims.who();
    if let Some(exp) = claims.exp {
        let _ = rfc3339(exp);
    }
    // The cached-token path: expiry from the JWT against clocks from 1970 to 9999.
    let set = TokenSet {
        access_token: Some(Secret::new(token.clone())),
        id_token: Some(Secret::new(token)),
        access_expires_at: Some(1_800_000_000),
        obtained_at: 1_700_000_000,
        ..TokenSet::default()
    };
    for now in [0, 1_750_000_000, 253_402_300_799] {
        for kind in [TokenKind::AccessToken, TokenKind::IdToken] {
            let _ = set.freshness(kind, now, MinValid::Default(60));
            let _ = set.freshness(kind, now, MinValid::Exactly(3600));
            if let Some(e) = set.expires_at(kind) {
                let _ = rfc3339(e);
            }
        }
    }
}

/// The token cache file (`tokens/<key>.json`): parsing whatever is on disk, and everything the hot path of
/// `mlflow-oidc token` computes from it (freshness, expiry, rendering, the keyring account name).
pub fn store_entry(data: &[u8]) {
    let Ok(entry) = serde_json::from_slice::<Entry>(data) else { return };
    let now = 1_764_000_000;
    for kind in [TokenKind::AccessToken, TokenKind::IdToken] {
        let _ = entry.tokens.freshness(kind, now, MinValid::Default(60));
        let _ = entry.tokens.freshness(kind, now, MinValid::Exactly(120));
        if let Some(exp) = entry.tokens.expires_at(kind) {
            let _ = rfc3339(exp);
            let _ = exp.saturating_sub(now);
        }
    }
    // The keyring account name cuts the store key (a file name in `logout --all`): any text, not only hex.
    let _ = entry.account(&entry.issuer);
    // Whatever we read, we can write back and read again identically.
    let bytes = serde_json::to_vec(&entry).expect("entry serializes");
    let back: Entry = serde_json::from_slice(&bytes).expect("written entry parses");
    assert_eq!(back.tokens, entry.tokens, "the token cache does not round-trip");
}

/// Time arithmetic on values from outside: token expiry from a JWT or the cache file, against the clock, and the
/// provider's `Date` header (`status --check`). The first 32 bytes are four little-endian i64s, so extreme
/// integers are tried at once instead of being spelled out in JSON.
pub fn times(data: &[u8]) {
    if data.len() < 33 {
        return;
    }
    let n = |i: usize| i64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let (expires_at, obtained_at, jwt_exp) = (n(0), n(1), n(2));
    // The clock itself is ours: realistic, within ±30 years of 2025.
    let now = 1_750_000_000 + n(3) % 1_000_000_000;
    let mode = data[32];
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = format!("{}.{}.sig", e.encode(br#"{"alg":"none"}"#), e.encode(format!(r#"{{"exp":{jwt_exp}}}"#)));
    let set = TokenSet {
        access_token: Some(Secret::new(if mode & 1 == 1 { jwt.clone() } else { "opaque".into() })),
        id_token: Some(Secret::new(jwt)),
        access_expires_at: (mode & 2 == 2).then_some(expires_at),
        obtained_at,
        ..TokenSet::default()
    };
    for kind in [TokenKind::AccessToken, TokenKind::IdToken] {
        let _ = set.freshness(kind, now, MinValid::Default(60));
        if let Err(reason) = set.freshness(kind, now, MinValid::Exactly(i64::from(mode) * 60)) {
            let _ = reason.to_string();
        }
        if let Some(exp) = set.expires_at(kind) {
            let _ = rfc3339(exp);
        }
    }
    if let Ok(date) = std::str::from_utf8(&data[33..])
        && let Some(t) = parse_http_date(date)
    {
        let _ = rfc3339(t);
    }
}
