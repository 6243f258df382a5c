//! ID-token claim checks on every ID token received: OIDC Core 1.0 §3.1.3.7 steps 2–5 and 9–11 on a login, and
//! §12.2 on a refresh (same `iss` and `sub`, `aud` still ours). The signature is not checked: the token came
//! straight from the token endpoint over TLS, which §3.1.3.7 step 6 allows in place of it.

use crate::error::{Error, Result, printable};
use crate::tokenset::{Claims, constant_time_eq};

/// Clock skew tolerated on `exp` and `iat` (the clocks of laptops and providers drift by minutes).
pub const LEEWAY: i64 = 300;

/// What the ID token must say.
pub struct Expected<'a> {
    /// The issuer of the provider's discovered metadata.
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub now: i64,
    /// The nonce sent with the authorization request (login only).
    pub nonce: Option<&'a str>,
    /// The ID token of the login being refreshed (refresh only).
    pub previous: Option<&'a str>,
}

/// Check `id_token` against `e`; the error names the claim and both values, never the token.
pub fn validate(id_token: &str, e: &Expected<'_>) -> Result<Claims> {
    let claims = Claims::peek(id_token)
        .ok_or_else(|| refuse("the ID token is not a JWT with a JSON payload (OIDC Core §2)".into()))?;
    let iss = claims.iss.as_deref().unwrap_or("");
    if iss != e.issuer {
        return Err(refuse(format!(
            "`iss` is \"{}\", expected \"{}\" (OIDC Core §3.1.3.7 step 2)",
            printable(iss),
            e.issuer
        )));
    }
    let auds = audiences(&claims);
    if !auds.iter().any(|a| a == e.client_id) {
        return Err(refuse(format!(
            "`aud` is [{}], expected to contain the client id \"{}\" (step 3)",
            auds.iter().map(|a| format!("\"{}\"", printable(a))).collect::<Vec<_>>().join(", "),
            e.client_id
        )));
    }
    if auds.len() > 1
        && let Some(azp) = &claims.azp
        && azp != e.client_id
    {
        return Err(refuse(format!(
            "`azp` is \"{}\" in a token for several audiences, expected \"{}\" (steps 4-5)",
            printable(azp),
            e.client_id
        )));
    }
    match claims.exp {
        Some(exp) if exp.saturating_add(LEEWAY) > e.now => {}
        Some(exp) => return Err(refuse(format!("`exp` {exp} is in the past (now {}; step 9)", e.now))),
        None => return Err(refuse("it has no `exp` claim (step 9)".into())),
    }
    if let Some(iat) = claims.iat
        && iat > e.now.saturating_add(LEEWAY)
    {
        return Err(refuse(format!(
            "`iat` {iat} is more than {LEEWAY} s in the future (now {}): check this machine's clock (step 10)",
            e.now
        )));
    }
    if let Some(want) = e.nonce
        && !claims.nonce.as_deref().is_some_and(|got| constant_time_eq(got.as_bytes(), want.as_bytes()))
    {
        return Err(Error::provider(
            "the ID token's nonce does not match this login (a replayed or injected response): log in again",
        ));
    }
    if let Some(previous) = e.previous.and_then(Claims::peek) {
        // §12.2: a refreshed ID token is for the same person at the same provider.
        if let Some(prev_iss) = previous.iss.as_deref()
            && prev_iss != iss
        {
            return Err(refuse(format!(
                "`iss` changed on refresh from \"{}\" to \"{}\" (OIDC Core §12.2)",
                printable(prev_iss),
                printable(iss)
            )));
        }
        if previous.sub.is_some() && previous.sub != claims.sub {
            return Err(refuse(format!(
                "`sub` changed on refresh from \"{}\" to \"{}\": the provider answered for another person (OIDC Core §12.2)",
                printable(previous.sub.as_deref().unwrap_or("")),
                printable(claims.sub.as_deref().unwrap_or(""))
            )));
        }
    }
    Ok(claims)
}

fn audiences(c: &Claims) -> Vec<String> {
    match &c.aud {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn refuse(why: String) -> Error {
    Error::provider(format!(
        "the provider's ID token was refused: {why}; nothing was stored and the previous login (if any) is kept"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(claims: serde_json::Value) -> String {
        let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.sig", b(br#"{"alg":"RS256"}"#), b(claims.to_string().as_bytes()))
    }

    fn expected() -> Expected<'static> {
        Expected { issuer: "https://idp", client_id: "cli", now: 1000, nonce: None, previous: None }
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "https://idp", "aud": "cli", "sub": "alice", "exp": 2000, "iat": 990})
    }

    fn refused(claims: serde_json::Value, e: &Expected<'_>) -> String {
        validate(&jwt(claims), e).unwrap_err().to_string()
    }

    #[test]
    fn each_claim_is_checked_and_named() {
        assert!(validate(&jwt(good()), &expected()).is_ok());
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good();
            c[k] = v;
            c
        };
        assert!(refused(with("iss", "https://evil".into()), &expected()).contains("`iss` is \"https://evil\""));
        assert!(refused(with("aud", "other".into()), &expected()).contains("`aud` is [\"other\"]"));
        let multi = with("aud", serde_json::json!(["cli", "other"]));
        assert!(validate(&jwt(multi.clone()), &expected()).is_ok());
        let mut bad_azp = multi;
        bad_azp["azp"] = "other".into();
        assert!(refused(bad_azp, &expected()).contains("`azp`"));
        assert!(refused(with("exp", 100.into()), &expected()).contains("`exp` 100 is in the past"));
        assert!(refused(with("iat", 5000.into()), &expected()).contains("`iat` 5000"));
        let nonce = Expected { nonce: Some("n1"), ..expected() };
        assert!(refused(with("nonce", "n2".into()), &nonce).contains("nonce does not match"));
        assert!(validate(&jwt(with("nonce", "n1".into())), &nonce).is_ok());
        assert!(refused(with("iss", "\x1b]52;c;x\x07".into()), &expected()).contains("`iss` is \"]52;c;x\""));
    }

    #[test]
    fn a_refresh_must_stay_with_the_same_person() {
        let previous = jwt(good());
        let e = Expected { previous: Some(&previous), ..expected() };
        assert!(validate(&jwt(good()), &e).is_ok());
        let mut bob = good();
        bob["sub"] = "bob".into();
        let msg = refused(bob, &e);
        assert!(msg.contains("`sub` changed on refresh from \"alice\" to \"bob\""), "{msg}");
        assert!(msg.contains("previous login"), "{msg}");
    }
}
