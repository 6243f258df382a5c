//! Signing JWTs with a client's PEM private key (RSA or P-256) for private_key_jwt client authentication
//! (RFC 7523 §2.2, OIDC Core §9) and the JWT-bearer grant (RFC 7523 §2.1). Built on `ring`, which rustls
//! already links for TLS: no new crate, and the RSA/ECDSA code is mostly there already.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::tokenset::Secret;

/// The JWS algorithm of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Ps256,
    Es256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
        }
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key read from a PEM file, with the `kid` its JWTs carry.
pub struct SigningKey {
    pair: Pair,
    pub kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Read `path`: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC 1 (`EC PRIVATE KEY`, P-256). The
    /// `kid` is `kid`, else a `kid: …` line before the PEM armour (RFC 7468 explanatory text), else the RFC 7638
    /// thumbprint of the public key. Errors name the file and never quote its content.
    pub fn load(path: &Path, kid: Option<&str>) -> Result<SigningKey> {
        let name = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config_io(format!("cannot read the client assertion key {name} (`client-assertion-key`)"), e)
        })?;
        // A signing key is a credential: one that another user owns or may rewrite could be theirs (issue 12's
        // rule for every file we trust, as ssh's StrictModes does for identity files).
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path)
            && let Some(why) = crate::fsutil::distrust(&meta)
        {
            return Err(Error::config(format!(
                "refusing the client assertion key {name} (`client-assertion-key`): it is {why}; make it yours \
                 with mode 0600 (`chmod 600 {name}`)"
            )));
        }
        let key = SigningKey::parse(&text, kid)
            .map_err(|why| Error::config(format!("the client assertion key {name} (`client-assertion-key`) {why}")))?;
        Ok(key)
    }

    /// Parse PEM text; the error completes "the client assertion key FILE …".
    pub fn parse(text: &str, kid: Option<&str>) -> std::result::Result<SigningKey, String> {
        let (label, der, headers) = pem(text)?;
        if label.contains("ENCRYPTED") || headers.contains("ENCRYPTED") {
            return Err("is encrypted: mlflow-oidc cannot ask for a passphrase; store it unencrypted with \
                        permissions 0600 (e.g. `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pem`)"
                .into());
        }
        let rng = SystemRandom::new();
        let pair = match label.as_str() {
            "PRIVATE KEY" => match RsaKeyPair::from_pkcs8(&der) {
                Ok(k) => Pair::Rsa(k),
                Err(_) => Pair::Ec(
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                        .map_err(|_| unsupported())?,
                ),
            },
            "RSA PRIVATE KEY" => Pair::Rsa(RsaKeyPair::from_der(&der).map_err(|_| unsupported())?),
            "EC PRIVATE KEY" => {
                let (d, public) = sec1(&der).ok_or_else(unsupported)?;
                Pair::Ec(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        d,
                        public,
                        &rng,
                    )
                    .map_err(|_| unsupported())?,
                )
            }
            _ => return Err(unsupported()),
        };
        let kid = match kid.map(str::to_string).or_else(|| explanatory_kid(text)) {
            Some(k) => k,
            None => thumbprint(&pair),
        };
        Ok(SigningKey { pair, kid })
    }

    /// The algorithm this key signs with: ES256 for EC; for RSA, RS256 unless the provider lists only PS256.
    pub fn alg(&self, provider_algs: Option<&[String]>) -> Alg {
        match &self.pair {
            Pair::Ec(_) => Alg::Es256,
            Pair::Rsa(_) => match provider_algs {
                Some(list) if !list.iter().any(|a| a == "RS256") && list.iter().any(|a| a == "PS256") => Alg::Ps256,
                _ => Alg::Rs256,
            },
        }
    }

    /// A compact JWS of `claims` with header `{"alg","typ":"JWT","kid"}`.
    pub fn sign(&self, alg: Alg, claims: &serde_json::Value) -> Result<Secret<String>> {
        let header = serde_json::json!({"alg": alg.as_str(), "typ": "JWT", "kid": self.kid});
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let failed = || Error::config(format!("cannot sign a client assertion with the key `{}`", self.kid));
        let sig = match (&self.pair, alg) {
            (Pair::Rsa(k), Alg::Rs256 | Alg::Ps256) => {
                let mut sig = vec![0; k.public().modulus_len()];
                let enc: &'static dyn signature::RsaEncoding =
                    if alg == Alg::Ps256 { &signature::RSA_PSS_SHA256 } else { &signature::RSA_PKCS1_SHA256 };
                k.sign(enc, &rng, input.as_bytes(), &mut sig).map_err(|_| failed())?;
                sig
            }
            (Pair::Ec(k), Alg::Es256) => k.sign(&rng, input.as_bytes()).map_err(|_| failed())?.as_ref().to_vec(),
            _ => return Err(failed()),
        };
        Ok(Secret::new(format!("{input}.{}", B64.encode(sig))))
    }
}

/// 16 random bytes, base64url: a `jti` no one can guess or repeat.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    // SystemRandom only fails when the OS has no randomness at all; the time then still makes it unique.
    if SystemRandom::new().fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b = t.as_nanos().to_le_bytes();
    }
    B64.encode(b)
}

/// The claims of a client assertion (RFC 7523 §3): iss = sub = client id, aud, a fresh jti, 2 minutes.
pub fn assertion_claims(client_id: &str, aud: &str, now: i64) -> serde_json::Value {
    serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "jti": random_id(),
        "iat": now,
        "nbf": now,
        "exp": now + 120,
    })
}

fn unsupported() -> String {
    "is not a supported private key: use an unencrypted PEM RSA key (PKCS#1 or PKCS#8) or EC P-256 key \
     (SEC 1 or PKCS#8), e.g. `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`"
        .into()
}

/// The first PEM block: (label, DER, header lines).
fn pem(text: &str) -> std::result::Result<(String, Vec<u8>, String), String> {
    let no_pem = || "holds no PEM block (-----BEGIN … PRIVATE KEY-----)".to_string();
    let start = text.find("-----BEGIN ").ok_or_else(no_pem)?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----").ok_or_else(no_pem)?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----")).ok_or_else(no_pem)?;
    let (mut headers, mut b64) = (String::new(), String::new());
    for line in body[..end].lines().map(str::trim) {
        if line.contains(':') {
            headers.push_str(line);
            headers.push('\n');
        } else {
            b64.push_str(line);
        }
    }
    // The label decides before the body is decoded: an encrypted or foreign key is named as such.
    if label.contains("ENCRYPTED") || headers.contains("ENCRYPTED") {
        return Ok((label, Vec::new(), headers));
    }
    if !matches!(label.as_str(), "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY") {
        let shown = crate::error::printable(&label).chars().take(40).collect::<String>();
        return Err(format!("holds a `{shown}`, not a private key: {}", unsupported()));
    }
    let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| "is not valid PEM (bad base64)")?;
    Ok((label, der, headers))
}

fn explanatory_kid(text: &str) -> Option<String> {
    let before = &text[..text.find("-----BEGIN ")?];
    before.lines().find_map(|l| l.trim().strip_prefix("kid:").map(|k| k.trim().to_string())).filter(|k| !k.is_empty())
}

/// RFC 7638: SHA-256 of the required public members, in lexicographic order, without whitespace.
fn thumbprint(pair: &Pair) -> String {
    let json = match pair {
        Pair::Rsa(k) => {
            let c: signature::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
            format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, B64.encode(&c.e), B64.encode(&c.n))
        }
        Pair::Ec(k) => {
            // The uncompressed point: 0x04 ‖ x ‖ y.
            let p = k.public_key().as_ref();
            format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, B64.encode(&p[1..33]), B64.encode(&p[33..65]))
        }
    };
    B64.encode(Sha256::digest(json.as_bytes()))
}

/// SEC 1 ECPrivateKey: SEQUENCE { INTEGER 1, OCTET STRING d, [0] parameters OPTIONAL, [1] BIT STRING public }.
fn sec1(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, seq, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _version, rest) = tlv(seq).filter(|(t, v, _)| *t == 0x02 && *v == [1])?;
    let (tag, d, mut rest) = tlv(rest)?;
    if tag != 0x04 {
        return None;
    }
    while !rest.is_empty() {
        let (tag, value, next) = tlv(rest)?;
        if tag == 0xa1 {
            let (t, bits, _) = tlv(value)?;
            // A BIT STRING starts with its count of unused bits (0).
            return (t == 0x03 && bits.first() == Some(&0)).then(|| (d, &bits[1..]));
        }
        rest = next;
    }
    None
}

/// One DER tag-length-value: (tag, value, the rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&len, mut b) = b.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let n = usize::from(len & 0x7f);
        if n == 0 || n > 2 || b.len() < n {
            return None;
        }
        let l = b[..n].iter().fold(0usize, |acc, x| acc << 8 | usize::from(*x));
        b = &b[n..];
        l
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Throw-away test keys (openssl genpkey), used nowhere else.
    const EC_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIOAAhQ9VX3zlA4YdtRIm7sK227QoHJA7t4f/g1yXcjLdoAoGCCqGSM49
AwEHoUQDQgAEvwHOK6Z2cCAgpi5k8pz9CwGIjp3FxMypiYjed9KWJo1sXkjL5dhJ
GEHcRloKPH3jjHMZX0aVhWnfMwI+VyA7AQ==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn encrypted_and_foreign_pem_are_refused_without_quoting_them() {
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = SigningKey::parse(enc, None).unwrap_err();
        assert!(e.starts_with("is encrypted"), "{e}");
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let e = SigningKey::parse(cert, None).unwrap_err();
        assert!(e.contains("`CERTIFICATE`") && !e.contains("MIIB"), "{e}");
        assert!(SigningKey::parse("hello", None).unwrap_err().contains("no PEM block"));
    }

    #[test]
    fn sec1_ec_keys_sign_es256_with_a_thumbprint_kid() {
        let k = SigningKey::parse(EC_SEC1, None).expect("a P-256 key");
        assert_eq!(k.alg(None), Alg::Es256);
        assert_eq!(k.kid.len(), 43, "a base64url SHA-256");
        let jwt = k.sign(Alg::Es256, &assertion_claims("c", "https://idp/token", 100)).unwrap();
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(B64.decode(parts[2]).unwrap().len(), 64, "r ‖ s");
        let header: serde_json::Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], k.kid.as_str());
        let with_line = format!("kid: my-key\n{EC_SEC1}");
        assert_eq!(SigningKey::parse(&with_line, None).unwrap().kid, "my-key");
        assert_eq!(SigningKey::parse(&with_line, Some("cfg")).unwrap().kid, "cfg");
    }

    #[test]
    fn claims_have_a_fresh_jti_and_a_short_life() {
        let a = assertion_claims("cid", "aud", 1000);
        let b = assertion_claims("cid", "aud", 1000);
        assert_ne!(a["jti"], b["jti"]);
        assert_eq!((a["iss"].as_str(), a["sub"].as_str(), a["exp"].as_i64()), (Some("cid"), Some("cid"), Some(1120)));
    }
}
