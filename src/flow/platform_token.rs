//! Reading a platform token — a federated client assertion or a subject token — from its source, on every use:
//! a file (Kubernetes projected tokens rotate under us), a variable, GitHub Actions' token service, a command.

use crate::config::{PlatformToken, ServerConfig};
use crate::error::{Detail, Error, Result};
use crate::http::Http;
use crate::tokenset::{Claims, Secret};

/// Which setting a source belongs to, for messages.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    ClientAssertion,
    SubjectToken,
}

impl Role {
    pub fn key(self) -> &'static str {
        match self {
            Role::ClientAssertion => "client-assertion",
            Role::SubjectToken => "subject-token",
        }
    }
}

/// The token from `source` now. Errors name the source and the next step and never quote the token.
pub fn read(c: &ServerConfig, source: &PlatformToken, role: Role, http: &Http, now: i64) -> Result<Secret<String>> {
    let key = role.key();
    let token = match source {
        PlatformToken::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                let message = format!(
                    "cannot read the `{key}` token file {}: {} (a Kubernetes projected token or \
                     AZURE_FEDERATED_TOKEN_FILE must be mounted there; check the path and the pod's volume)",
                    path.display(),
                    crate::fsutil::io_reason(&e)
                );
                Error::Config(Detail::with_source(message, e))
            })?;
            text.trim().to_string()
        }
        PlatformToken::Env { name, value } => match value {
            Some(v) => v.expose().clone(),
            None => {
                return Err(Error::config(format!(
                    "the `{key}` variable {name} is not set or empty (GitLab CI: declare it under the job's \
                     `id_tokens:` with the audience the provider expects)"
                )));
            }
        },
        PlatformToken::GithubActions { request_url, request_token } => {
            github_actions(request_url.as_deref(), request_token.as_ref(), c.github_actions_audience.as_deref(), http)?
        }
        PlatformToken::Command(cmd) => command(cmd, key)?,
    };
    if token.is_empty() {
        return Err(Error::config(format!(
            "the `{key}` token from {} is empty: the platform has not issued one yet, or the source is wrong",
            source.describe()
        )));
    }
    if let Some(exp) = Claims::peek(&token).and_then(|c| c.exp)
        && exp <= now
    {
        return Err(Error::config(format!(
            "the `{key}` token from {} expired {} ago (at {}): the platform should renew it (a projected token \
             is refreshed by the kubelet; a CI token lives as long as the job) — get a fresh one and retry",
            source.describe(),
            crate::tokenset::human_duration(now - exp),
            crate::tokenset::rfc3339(exp)
        )));
    }
    Ok(Secret::new(token))
}

const GITHUB_HINT: &str = "in GitHub Actions, give the job `permissions: id-token: write` (the runner then sets \
                           ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN)";

/// GitHub Actions: a bearer GET of `ACTIONS_ID_TOKEN_REQUEST_URL&audience=…`, answering `{"value": JWT}`.
fn github_actions(
    url: Option<&str>,
    bearer: Option<&Secret<String>>,
    audience: Option<&str>,
    http: &Http,
) -> Result<String> {
    let (Some(url), Some(bearer)) = (url, bearer) else {
        let missing = match (url, bearer) {
            (None, None) => "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are",
            (None, _) => "ACTIONS_ID_TOKEN_REQUEST_URL is",
            _ => "ACTIONS_ID_TOKEN_REQUEST_TOKEN is",
        };
        return Err(Error::config(format!("{missing} not set: {GITHUB_HINT}")));
    };
    let mut u = url::Url::parse(url)
        .map_err(|_| Error::config(format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {GITHUB_HINT}")))?;
    if let Some(aud) = audience {
        u.query_pairs_mut().append_pair("audience", aud);
    }
    let shown = format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or_default(), u.path());
    let resp = http.get_bearer(u.as_str(), bearer.expose(), "application/json")?;
    if resp.status != 200 {
        return Err(Error::provider(format!(
            "GitHub Actions' OIDC token service {shown} answered HTTP {}: {GITHUB_HINT}",
            resp.status
        )));
    }
    #[derive(serde::Deserialize)]
    struct Value {
        value: String,
    }
    let v: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        Error::provider(format!(
            "GitHub Actions' OIDC token service {shown} returned an invalid response ({})",
            crate::error::parse_error(&e)
        ))
    })?;
    Ok(v.value.trim().to_string())
}

/// `sh -c CMD`; its stdout is the token, its stderr the user's to see.
fn command(cmd: &str, key: &str) -> Result<String> {
    #[cfg(unix)]
    let mut c = std::process::Command::new("/bin/sh");
    #[cfg(unix)]
    c.arg("-c").arg(cmd);
    #[cfg(not(unix))]
    let mut c = std::process::Command::new("cmd");
    #[cfg(not(unix))]
    c.arg("/C").arg(cmd);
    let out = c
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::io(format!("cannot run the `{key}` command `{cmd}`"), e))?;
    if !out.status.success() {
        return Err(Error::config(format!(
            "the `{key}` command `{cmd}` failed ({}): run it by hand to see why",
            out.status
        )));
    }
    String::from_utf8(out.stdout)
        .map(|s| s.trim().to_string())
        .map_err(|_| Error::config(format!("the `{key}` command `{cmd}` printed something that is not text")))
}
