//! `status --check`: the one status that touches the network — can this configuration work against its provider?

use crate::config::{AuthMethod, FlowChoice, ServerConfig};
use crate::discovery::{Metadata, discovery_url};
use crate::error::Error;
use crate::http::Http;

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    /// False only for what is certainly broken: it makes `status --check` exit 1.
    pub ok: bool,
    /// Worth knowing but not certainly broken (issue 16: `grant_types_supported` and the auth-method list are
    /// optional and under-reported by several providers): shown as `!`, exit 0.
    pub warning: bool,
    pub detail: String,
    /// What to do when not ok.
    pub fix: Option<String>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, ok: true, warning: false, detail: detail.into(), fix: None }
}

fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name, ok: true, warning: true, detail: detail.into(), fix: Some(fix.into()) }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name, ok: false, warning: false, detail: detail.into(), fix: Some(fix.into()) }
}

/// Run every check; `now` is local Unix time for the clock comparison.
pub fn run(c: &ServerConfig, http: &Http, now: i64) -> Vec<Check> {
    let mut out = Vec::new();
    let url = discovery_url(&c.issuer);
    let resp = match http.get(&url) {
        Ok(r) => r,
        Err(e) => {
            out.push(fail(
                "discovery",
                e.to_string(),
                "check `issuer`, the network, HTTPS_PROXY/NO_PROXY and the CA bundle",
            ));
            return out;
        }
    };
    if resp.status != 200 {
        out.push(fail(
            "discovery",
            format!("{url} answered HTTP {}", resp.status),
            "set `issuer` to the provider's issuer URL (its discovery document lives under it)",
        ));
        return out;
    }
    let meta: Metadata = match serde_json::from_slice(&resp.body) {
        Ok(m) => m,
        Err(e) => {
            out.push(fail(
                "discovery",
                format!("{url} is not an OpenID configuration ({})", crate::error::parse_error(&e)),
                "check `issuer`",
            ));
            return out;
        }
    };
    out.push(pass("discovery", format!("{url} answers")));
    if meta.issuer_matches(&c.issuer) {
        out.push(pass("issuer", format!("the provider calls itself {}", crate::error::printable(&meta.issuer))));
    } else {
        out.push(fail(
            "issuer",
            format!(
                "the provider calls itself \"{}\", the configuration says \"{}\"",
                crate::error::printable(&meta.issuer),
                c.issuer
            ),
            format!("set issuer = \"{}\"", crate::error::printable(&meta.issuer)),
        ));
    }
    endpoint_checks(c, &meta, &mut out);
    credential_checks(c, &meta, http, now, &mut out);
    if c.interactive && c.flow != FlowChoice::Device {
        out.push(port_check(c));
    }
    out.push(match resp.header("date").and_then(parse_http_date) {
        Some(theirs) => {
            let skew = now - theirs;
            if skew.abs() > 30 {
                fail(
                    "clock",
                    format!("this machine's clock is {skew:+}s off the provider's"),
                    "fix the system clock (e.g. enable NTP with `timedatectl set-ntp true`): a skewed clock makes fresh tokens look expired",
                )
            } else {
                pass("clock", format!("within {}s of the provider's", skew.abs()))
            }
        }
        None => pass("clock", "the provider sent no Date header; not compared"),
    });
    out
}

fn endpoint_checks(c: &ServerConfig, meta: &Metadata, out: &mut Vec<Check>) {
    let grants = meta.grant_types_supported.as_deref();
    let supports = |g: &str| grants.is_none_or(|list| list.iter().any(|x| x == g));
    match &meta.token_endpoint {
        Some(t) => out.push(pass("token endpoint", t.clone())),
        None => out.push(fail("token endpoint", "not advertised", "this provider cannot issue tokens to a CLI")),
    }
    let machine = c.is_machine();
    let grant = c.machine_grant();
    if machine && grant != crate::config::MachineGrant::ClientCredentials {
        let name = grant.grant_type();
        // Providers often leave extension grants out of grant_types_supported: a fix, not proof it fails.
        if supports(name) {
            out.push(pass("grant", format!("{} supported", grant.as_str())));
        } else {
            out.push(warn(
                "grant",
                format!("the provider does not advertise {name} in grant_types_supported"),
                "enable the grant for this client at the provider (some providers offer it without listing it), \
                 or set `grant`",
            ));
        }
    } else if machine {
        if supports("client_credentials") {
            out.push(pass("client credentials", "grant supported"));
        } else {
            out.push(warn(
                "client credentials",
                "the provider does not advertise the client_credentials grant (grant_types_supported is optional, \
                 so it may work all the same)",
                "if `login` fails, enable the grant for this client at the provider, or set interactive = true",
            ));
        }
    } else if c.flow == FlowChoice::Device {
        match &crate::flow::device_endpoint(c, meta) {
            Some(d) => out.push(pass("device flow", d.clone())),
            None => out.push(fail(
                "device flow",
                "no device_authorization_endpoint advertised",
                "set `device-authorization-endpoint`, or flow = \"auth-code\"",
            )),
        }
    } else {
        match &meta.authorization_endpoint {
            Some(a) => out.push(pass("authorization endpoint", a.clone())),
            None => out.push(fail(
                "authorization endpoint",
                "not advertised: no browser login possible",
                "use a client secret (client credentials) or the device flow",
            )),
        }
    }
    let method = crate::flow::auth_method(c, meta);
    if method != AuthMethod::None {
        let secret_method = method;
        let name = secret_method.as_str();
        let listed = meta.token_endpoint_auth_methods_supported.as_deref().is_none_or(|m| {
            m.iter().any(|x| x == name) || (secret_method == AuthMethod::ClientSecretBasic && m.is_empty())
        });
        if listed {
            out.push(pass("client authentication", name.to_string()));
        } else {
            out.push(warn(
                "client authentication",
                format!("the provider does not advertise {name} in token_endpoint_auth_methods_supported"),
                "if `login` fails with invalid_client, set token-endpoint-auth-method to one the provider lists",
            ));
        }
    }
    if !machine {
        let has_offline =
            meta.supports_scope("offline_access") || c.scope.split_whitespace().any(|s| s == "offline_access");
        if supports("refresh_token") {
            out.push(pass(
                "refresh",
                if has_offline {
                    "refresh tokens supported"
                } else {
                    "refresh grant listed (offline_access not advertised)"
                },
            ));
        } else {
            out.push(warn(
                "refresh",
                "the provider does not advertise the refresh_token grant (the list is optional and often incomplete)",
                "if no refresh token is issued, every expiry will need a new login",
            ));
        }
        match meta.revocation_endpoint.clone().or_else(|| c.revocation_endpoint.clone()) {
            Some(r) => out.push(pass("revocation", r)),
            None => out.push(warn(
                "revocation",
                "no revocation_endpoint advertised: logout can only forget tokens locally",
                "set `revocation-endpoint` if the provider has one",
            )),
        }
    }
}

/// The client's key and the platform tokens it sends can be read, and look as the provider will want them.
fn credential_checks(c: &ServerConfig, meta: &Metadata, http: &Http, now: i64, out: &mut Vec<Check>) {
    use crate::flow::platform_token::{self, Role};
    if let Some(path) = &c.client_assertion_key {
        match crate::jws::SigningKey::load(path, c.client_assertion_kid.as_deref()) {
            Ok(k) => out.push(pass(
                "client assertion key",
                format!(
                    "{} signs {} with kid {}",
                    path.display(),
                    k.alg(meta.token_endpoint_auth_signing_alg_values_supported.as_deref()).as_str(),
                    k.kid
                ),
            )),
            Err(e) => out.push(fail("client assertion key", e.to_string(), "fix `client-assertion-key`")),
        }
    }
    let token_aud = meta.token_endpoint.clone().unwrap_or_default();
    let sources = [
        (c.client_assertion.as_ref(), Role::ClientAssertion, "client assertion"),
        (c.subject_token.as_ref(), Role::SubjectToken, "subject token"),
    ];
    for (src, role, name) in sources {
        let Some(src) = src else { continue };
        if let crate::config::PlatformToken::Command(_) = src {
            out.push(pass(name, format!("{} (not run by --check)", src.describe())));
            continue;
        }
        let token = match platform_token::read(c, src, role, http, now) {
            Ok(t) => t,
            Err(e) => {
                out.push(fail(name, e.to_string(), format!("fix `{}` or its source", role.key())));
                continue;
            }
        };
        let Some(claims) = crate::tokenset::Claims::peek(token.expose()) else {
            out.push(pass(name, format!("{} holds a token (not a JWT: not inspected)", src.describe())));
            continue;
        };
        let auds: Vec<String> = match &claims.aud {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        let left = claims.exp.map(|e| format!(", expires in {}", crate::tokenset::human_duration(e - now)));
        let detail = format!(
            "{}: a JWT from {} for {}{}",
            src.describe(),
            crate::error::printable(claims.iss.as_deref().unwrap_or("(no iss)")),
            crate::error::printable(&auds.join(", ")),
            left.unwrap_or_default()
        );
        // A client assertion is for this provider (RFC 7523 §3: its issuer or token endpoint).
        let aud_ok = match role {
            Role::ClientAssertion => auds.iter().any(|a| meta.issuer_matches(a) || *a == token_aud),
            Role::SubjectToken => true,
        };
        if aud_ok {
            out.push(pass(name, detail));
        } else {
            out.push(fail(
                name,
                format!("{detail}: the provider expects aud {} or {token_aud}", crate::error::printable(&meta.issuer)),
                "ask the platform for a token with the provider's issuer as audience (github-actions-audience, the \
                 projected token's audience, GitLab's id_tokens aud)",
            ));
        }
    }
}

/// The tracking server, asked one harmless API call with the cached token (issue 22): a guard in front of MLflow that
/// will refuse the token (oauth2-proxy's audience or `email_verified` check) shows here, before a run starts, rather
/// than as a JSON decode error in the middle of one. `token` is `None` when no fresh token is cached.
pub fn tracking_check(uri: &str, http: &Http, token: Option<&str>) -> Check {
    const NAME: &str = "tracking server";
    let url = format!("{}/api/2.0/mlflow/experiments/search?max_results=1", uri.trim_end_matches('/'));
    let Some(token) = token else {
        return pass(NAME, format!("{uri} not probed: no fresh token cached (run `mlflow-oidc token` first)"));
    };
    if url::Url::parse(&url).is_err() {
        return fail(NAME, format!("{uri} is not a URL"), "fix the tracking URI");
    }
    let resp = match http.get_bearer(&url, token, "*/*") {
        Ok(r) => r,
        // Only a warning: the provider side is what --check vouches for, and the server may just be down now.
        Err(e) => {
            return warn(
                NAME,
                format!("not reached: {e}"),
                "check the tracking URI, the network and HTTPS_PROXY/NO_PROXY",
            );
        }
    };
    if let Some(d) = crate::guard::diagnose(resp.status, resp.header("location"), resp.header("content-type")) {
        return fail(NAME, d.to_string(), d.fix());
    }
    if (200..300).contains(&resp.status) {
        pass(NAME, format!("{uri} accepted the token (HTTP {})", resp.status))
    } else {
        warn(
            NAME,
            format!("{url} answered HTTP {} with the token", resp.status),
            "look at the tracking server's logs: its guard let the token through, MLflow itself answered",
        )
    }
}

fn port_check(c: &ServerConfig) -> Check {
    match crate::loopback::bind_any(&c.redirect_uri, &c.redirect_ports, c.redirect_tls_files()) {
        Ok(l) => pass("redirect port", format!("{} can be bound", l.redirect_uri)),
        Err(e @ (Error::Config(_) | Error::Interaction(_) | Error::PortInUse { .. })) => {
            fail("redirect port", e.to_string(), "free the port, or use port 0 / redirect-ports")
        }
        Err(e) => fail("redirect port", e.to_string(), "free the port"),
    }
}

/// An RFC 7231 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") as Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else { return None };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = months.iter().position(|x| x == mon)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    // Four-digit years only: anything else is not a date we can compare (and must not overflow).
    if !(1..=9999).contains(&y) || !(1..=31).contains(&d) {
        return None;
    }
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<Vec<_>>>()?;
    let [h, mi, se] = hms.as_slice() else { return None };
    if !(0..24).contains(h) || !(0..60).contains(mi) || !(0..61).contains(se) {
        return None;
    }
    // days_from_civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Thu, 26 Nov 2026 14:12:45 GMT"), Some(1_795_702_365));
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 9223372036854775807 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 99:49:37 GMT"), None);
    }
}
