//! Every request to the provider against every shape of reply a provider (or what answers in its place) can
//! give, through the real request path to a scripted provider on 127.0.0.1: no real provider sends a 200 login
//! page, a 2 MiB body or JSON without `error` on cue. One table; every failing case is reported by name.

use std::sync::{Arc, Mutex};

use super::request::Call;
use super::{ClientAuth, Flows, revoke};
use crate::config::{self, ServerConfig};
use crate::discovery::Metadata;
use crate::env::Env;
use crate::error::Error;
use crate::http::Http;
use crate::tokenset::Secret;

const NOW: i64 = 1_800_000_000;
const SECRET: &str = "cs-FLOWTEST-5ec2e7";
const RT: &str = "rt-FLOWTEST-0d9c1a";
const SUBJECT: &str = "subj-FLOWTEST-77aa01";
const DEVICE_CODE: &str = "dc-FLOWTEST-3b1f";

type Answer = (u16, &'static str, Vec<u8>);

/// The provider: answers every request with the current [`Answer`].
struct Scripted {
    base: String,
    answer: Arc<Mutex<Answer>>,
}

impl Scripted {
    fn start() -> Scripted {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let answer: Arc<Mutex<Answer>> = Arc::new(Mutex::new((200, "application/json", b"{}".to_vec())));
        let script = answer.clone();
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                let (status, ct, reply) = script.lock().unwrap().clone();
                let mut resp = tiny_http::Response::from_data(reply).with_status_code(status);
                if !ct.is_empty() {
                    resp = resp.with_header(tiny_http::Header::from_bytes("Content-Type", ct).unwrap());
                }
                let _ = req.respond(resp);
            }
        });
        Scripted { base, answer }
    }

    fn answer(&self, status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) {
        *self.answer.lock().unwrap() = (status, content_type, body.into());
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn server(issuer: &str, extra: &[(&str, &str)]) -> ServerConfig {
    let mut env = vec![
        ("MLFLOW_TRACKING_OIDC_ISSUER", issuer),
        ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "svc"),
        ("MLFLOW_TRACKING_OIDC_USE_ID_TOKEN", "false"),
    ];
    env.extend_from_slice(extra);
    config::resolve(&[], &Env::from_pairs(env), &config::Flags::default()).unwrap().server
}

fn metadata(p: &Scripted) -> Metadata {
    serde_json::from_value(serde_json::json!({
        "issuer": p.base,
        "token_endpoint": p.url("/token"),
        "device_authorization_endpoint": p.url("/device"),
        "revocation_endpoint": p.url("/revoke"),
    }))
    .unwrap()
}

/// What a request gave, reduced to what the cases compare.
#[derive(Debug)]
enum Outcome {
    Tokens,
    /// A refresh the provider refused in a way that means "log in again".
    LogInAgain,
    Failed(Error),
}

/// An [`Outcome`] as the table compares it.
enum Seen {
    Tokens,
    LogInAgain,
    Provider(String),
    Network(String),
    OtherError,
}

/// The reply shapes, each with what every call must make of it: a piece of the message, or a whole outcome.
#[derive(Clone, Copy, Debug)]
enum Shape {
    OAuthError,
    EchoesWhatWasSent,
    PlainText500,
    JsonWithoutError,
    LoginPage200,
    Empty200,
    MissingAccessToken,
    Oversized,
}

const SHAPES: [Shape; 8] = [
    Shape::OAuthError,
    Shape::EchoesWhatWasSent,
    Shape::PlainText500,
    Shape::JsonWithoutError,
    Shape::LoginPage200,
    Shape::Empty200,
    Shape::MissingAccessToken,
    Shape::Oversized,
];

fn serve(p: &Scripted, shape: Shape) {
    match shape {
        Shape::OAuthError => p.answer(
            400,
            "application/json",
            r#"{"error":"invalid_request","error_description":"bad thing","error_uri":"https://idp.example/e"}"#,
        ),
        Shape::EchoesWhatWasSent => p.answer(
            400,
            "application/json",
            serde_json::json!({"error": "invalid_request",
                "error_description": format!("{SECRET} {RT} {SUBJECT} {DEVICE_CODE}")})
            .to_string(),
        ),
        Shape::PlainText500 => p.answer(500, "text/plain", "Internal Server Error"),
        Shape::JsonWithoutError => p.answer(400, "application/json", r#"{"message":"nope"}"#),
        Shape::LoginPage200 => p.answer(200, "text/html; charset=utf-8", "<html><form>Sign in</form></html>"),
        Shape::Empty200 => p.answer(200, "application/json", ""),
        Shape::MissingAccessToken => p.answer(200, "application/json", r#"{"token_type":"Bearer"}"#),
        Shape::Oversized => p.answer(200, "application/json", vec![b' '; 2 << 20]),
    }
}

#[test]
fn every_request_reads_every_reply_shape_the_same_way() {
    let p = Scripted::start();
    let meta = metadata(&p);
    let public = server(&p.base, &[]);
    let machine = server(&p.base, &[("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", SECRET)]);
    let subject = [("MLFLOW_TRACKING_OIDC_SUBJECT_TOKEN", "env:SUBJ"), ("SUBJ", SUBJECT)];
    let secret = ("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", SECRET);
    let exchange = server(&p.base, &[subject[0], subject[1], secret, ("MLFLOW_TRACKING_OIDC_GRANT", "token-exchange")]);
    let bearer = server(&p.base, &[subject[0], subject[1], secret, ("MLFLOW_TRACKING_OIDC_GRANT", "jwt-bearer")]);
    let http = Http::new(&config::http_settings(None, &Env::from_pairs([])).unwrap()).unwrap();
    let (token_url, device_url, revoke_url) = (p.url("/token"), p.url("/device"), p.url("/revoke"));

    // A device flow started against a provider that behaves, to poll against every shape.
    p.answer(
        200,
        "application/json",
        serde_json::json!({"device_code": DEVICE_CODE, "user_code": "AB-CD", "verification_uri": p.url("/v"),
            "expires_in": "600", "interval": 1})
        .to_string(),
    );
    let public_flows = Flows::new(&public, &meta).unwrap();
    let device = public_flows.start_device(&http, &device_url).expect("expires_in as a string is read");

    let flows = |c| Flows::new(c, &meta).unwrap();
    let tokens =
        |r: crate::error::Result<crate::tokenset::TokenSet>| r.map_or_else(Outcome::Failed, |_| Outcome::Tokens);
    let rt = Secret::new(RT.to_string());
    // Each call: what it is, where it goes, what it sends that must not come back, and how to make it.
    type Run<'r> = Box<dyn Fn() -> Outcome + 'r>;
    let calls: Vec<(Call, &str, &[&str], Run)> = vec![
        (
            Call::Refresh,
            &token_url,
            &[SECRET, RT],
            Box::new(|| match flows(&machine).refresh(&http, &rt, None, NOW) {
                Ok(Some(_)) => Outcome::Tokens,
                Ok(None) => Outcome::LogInAgain,
                Err(e) => Outcome::Failed(e),
            }),
        ),
        (
            Call::ClientCredentials,
            &token_url,
            &[SECRET],
            Box::new(|| tokens(flows(&machine).client_credentials(&http, NOW))),
        ),
        (
            Call::TokenExchange,
            &token_url,
            &[SECRET, SUBJECT],
            Box::new(|| tokens(flows(&exchange).token_exchange(&http, NOW))),
        ),
        (Call::JwtBearer, &token_url, &[SECRET, SUBJECT], Box::new(|| tokens(flows(&bearer).jwt_bearer(&http, NOW)))),
        (
            Call::DeviceAuthorization,
            &device_url,
            &[],
            Box::new(|| {
                public_flows.start_device(&http, &device_url).map_or_else(Outcome::Failed, |_| Outcome::Tokens)
            }),
        ),
        (
            Call::DevicePoll,
            &token_url,
            &[DEVICE_CODE],
            Box::new(|| match public_flows.poll_device(&http, &device, NOW) {
                Ok(super::DevicePoll::Done(_)) => Outcome::Tokens,
                Ok(_) => Outcome::LogInAgain,
                Err(e) => Outcome::Failed(e),
            }),
        ),
        (
            Call::Revocation,
            &revoke_url,
            &[SECRET, RT],
            Box::new(|| {
                let client = ClientAuth {
                    client_id: "svc",
                    credential: super::Credential::Secret {
                        secret: machine.client_secret.as_ref().unwrap(),
                        basic: true,
                    },
                };
                revoke(&http, &revoke_url, &client, &rt).map_or_else(Outcome::Failed, |_| Outcome::Tokens)
            }),
        ),
    ];

    let mut wrong = Vec::new();
    for shape in SHAPES {
        serve(&p, shape);
        for (call, url, sent, run) in &calls {
            let what = call.what();
            let outcome = run();
            let at = format!("the provider refused the {what} request at {url}");
            let endpoint = match call {
                Call::DeviceAuthorization => "device authorization endpoint",
                Call::Revocation => "revocation endpoint",
                _ => "token endpoint",
            };
            // What a user would see: the kind of error and its words.
            let seen = match &outcome {
                Outcome::Failed(e @ Error::Provider(_)) => Seen::Provider(e.to_string()),
                Outcome::Failed(e @ Error::Network(_)) => Seen::Network(e.to_string()),
                Outcome::Failed(_) => Seen::OtherError,
                Outcome::LogInAgain => Seen::LogInAgain,
                Outcome::Tokens => Seen::Tokens,
            };
            let ok = match (shape, call, &seen) {
                // Followed by the hint for the call, if any.
                (Shape::OAuthError, _, Seen::Provider(m)) => {
                    m.starts_with(&format!("{at}: invalid_request (bad thing) [https://idp.example/e]"))
                }
                (Shape::EchoesWhatWasSent, _, Seen::Provider(m)) => {
                    m.starts_with(&format!("{at}: invalid_request (")) && sent.iter().all(|s| !m.contains(s))
                }
                (Shape::PlainText500, _, Seen::Provider(m)) => {
                    *m == format!("{at}: HTTP 500 (text/plain) with a body that is not an OAuth error response")
                }
                // Issue 16: a refresh refused without an OAuth error at 400 means "log in again".
                (Shape::JsonWithoutError, Call::Refresh, Seen::LogInAgain) => true,
                (Shape::JsonWithoutError, _, Seen::Provider(m)) => {
                    m.starts_with(&format!("{at}: HTTP 400 with a body that is not an OAuth error response"))
                }
                // RFC 7009 §2.2: the body of a 200 is ignored.
                (Shape::LoginPage200 | Shape::Empty200 | Shape::MissingAccessToken, Call::Revocation, Seen::Tokens) => {
                    true
                }
                (Shape::LoginPage200, _, Seen::Provider(m)) => m.starts_with(&format!(
                    "the {endpoint} {url} answered the {what} request with HTTP 200 and a body of type text/html; \
                     charset=utf-8, not JSON"
                )),
                (Shape::Empty200, _, Seen::Provider(m)) => m.starts_with(&format!(
                    "the {endpoint} {url} answered the {what} request with HTTP 200 and an empty body, not JSON"
                )),
                (Shape::MissingAccessToken, _, Seen::Provider(m)) => m.starts_with(&format!(
                    "the {endpoint} {url} returned an invalid {what} response (a field is missing or has the wrong type"
                )),
                (Shape::Oversized, _, Seen::Network(m)) => {
                    m.starts_with(&format!("cannot reach {url}")) && m.contains("larger than")
                }
                _ => false,
            };
            if !ok {
                wrong.push(format!("{shape:?} × {call:?}: {outcome:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases:\n{}", wrong.len(), SHAPES.len() * calls.len(), wrong.join("\n"));
}
