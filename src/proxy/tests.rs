//! The proxy in process, against a fake tracking server (tiny_http on 127.0.0.1) that records what reaches it.
//! The real stack (Apache + mod_auth_openidc + MLflow) is in tests/proxy_e2e.rs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::forward::{end_to_end, mlflow_error, token_failure};
use super::*;

const CAP: &str = "c4p4bility";

#[test]
fn only_origin_form_targets_under_the_capability_are_forwarded() {
    assert_eq!(route("GET", "/c4p4bility/api/2.0/x?a=1", CAP), Ok("/api/2.0/x?a=1".into()));
    assert_eq!(route("GET", "/c4p4bility", CAP), Ok("/".into()));
    assert_eq!(route("GET", "/c4p4bility?x", CAP), Ok("/?x".into()));
    assert_eq!(route("GET", "/c4p4bility//api/2.0/x", CAP), Ok("/api/2.0/x".into()), "joined with a slash too many");
    assert_eq!(route("GET", "/c4p4bilitx/api", CAP), Err(Refusal::NoCapability));
    assert_eq!(route("GET", "/c4p4bility2/api", CAP), Err(Refusal::NoCapability));
    assert_eq!(route("GET", "/api/2.0/x", CAP), Err(Refusal::NoCapability));
    assert_eq!(route("GET", "/", CAP), Err(Refusal::NoCapability));
    assert_eq!(route("GET", "http://127.0.0.1:5000/c4p4bility/api", CAP), Err(Refusal::NotOriginForm));
    assert_eq!(route("OPTIONS", "*", CAP), Err(Refusal::NotOriginForm));
    assert_eq!(route("CONNECT", "example.com:443", CAP), Err(Refusal::Connect));
    assert_eq!(route("GET", "/c4p4bility/../admin", CAP), Err(Refusal::DotSegments));
    assert_eq!(route("GET", "/c4p4bility/a/%2E%2E/admin", CAP), Err(Refusal::DotSegments));
    assert_eq!(route("GET", "/c4p4bility/a/..x?q=..", CAP), Ok("/a/..x?q=..".into()));
}

#[test]
fn hop_by_hop_and_credentials_are_not_forwarded() {
    let h = [
        ("Host", "127.0.0.1:1"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Authorization", "Basic dTpw"),
        ("Proxy-Authorization", "Basic dTpw"),
        ("Content-Length", "3"),
        ("Expect", "100-continue"),
        ("Content-Type", "application/json"),
        ("Cookie", "a=b"),
        ("User-Agent", "mlflow-java"),
    ];
    let kept = end_to_end(h.iter().copied());
    assert_eq!(kept, vec![("Content-Type", "application/json"), ("Cookie", "a=b"), ("User-Agent", "mlflow-java")]);
}

#[test]
fn failures_speak_mlflow_rest_errors() {
    assert_eq!(mlflow_error("UNAUTHENTICATED", "m"), r#"{"error_code":"UNAUTHENTICATED","message":"m"}"#);
    let f = Failure { kind: FailureKind::LoginRequired, message: "not logged in to x: run `mlflow-oidc login`".into() };
    assert_eq!(
        token_failure(&f),
        (
            401,
            r#"{"error_code":"UNAUTHENTICATED","message":"mlflow-oidc: not logged in to x: run `mlflow-oidc login`"}"#
                .into()
        )
    );
    assert_eq!(token_failure(&Failure { kind: FailureKind::Unavailable, message: "m".into() }).0, 424);
}

#[test]
fn the_capability_is_192_random_bits_in_a_url_safe_alphabet() {
    let a = new_capability();
    let b = new_capability();
    assert_eq!(a.expose().len(), 32);
    assert_ne!(a.expose(), b.expose());
    assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
}

/// What the fake tracking server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body_len: usize,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A fake tracking server: 401 unless `Authorization: Bearer good`; `/big/N` answers N bytes; anything else
/// echoes the body length it read.
fn fake_upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..8 {
        let (server, seen) = (server.clone(), seen.clone());
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body_len = 0;
                let mut buf = vec![0; 65536];
                while let Ok(n) = req.as_reader().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    body_len += n;
                }
                let s = Seen {
                    method: req.method().as_str().to_owned(),
                    url: req.url().to_owned(),
                    headers: req.headers().iter().map(|h| (h.field.to_string(), h.value.to_string())).collect(),
                    body_len,
                };
                seen.lock().unwrap().push(s.clone());
                if s.header("authorization") != Some("Bearer good") {
                    let _ = req.respond(tiny_http::Response::from_string("no").with_status_code(401));
                } else if let Some(n) = s.url.strip_prefix("/big/") {
                    let n: usize = n.parse().unwrap();
                    let _ = req.respond(
                        tiny_http::Response::new(
                            tiny_http::StatusCode(200),
                            vec![],
                            std::io::repeat(7).take(n as u64),
                            Some(n),
                            None,
                        )
                        .with_chunked_threshold(usize::MAX),
                    );
                } else {
                    let h = tiny_http::Header::from_bytes("X-Upstream", "yes").unwrap();
                    let _ = req.respond(tiny_http::Response::from_string(format!("read {body_len}")).with_header(h));
                }
            }
        });
    }
    (url, seen)
}

struct Harness {
    proxy: Option<Proxy>,
    uri: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    renewals: Arc<AtomicUsize>,
    cell: Arc<TokenCell>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cell.close();
        if let Some(p) = self.proxy.take() {
            p.shutdown(Duration::from_secs(5));
        }
    }
}

/// A proxy seeded with `first` (when given), whose renewals answer `renewed` (or fail when `None`).
fn harness(upstream: Option<&str>, first: Option<&str>, renewed: Option<&'static str>) -> Harness {
    let (fake, seen) = fake_upstream();
    let upstream = url::Url::parse(upstream.unwrap_or(&fake)).unwrap();
    let agent = upstream::agent(&upstream, &upstream::UpstreamTls::default(), true).unwrap();
    let fresh_agent = upstream::agent(&upstream, &upstream::UpstreamTls::default(), false).unwrap();
    let clock = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let cell = Arc::new(TokenCell::new(clock));
    if let Some(t) = first {
        cell.seed(Fresh { token: Secret::new(t.into()), expires_at: clock() + 3600 });
    }
    let renewals = Arc::new(AtomicUsize::new(0));
    let (c, r) = (cell.clone(), renewals.clone());
    std::thread::spawn(move || {
        c.serve_renewals(&mut |_| {
            r.fetch_add(1, Ordering::SeqCst);
            match renewed {
                Some(t) => Ok(Fresh { token: Secret::new(t.into()), expires_at: clock() + 3600 }),
                None => Err(Failure {
                    kind: FailureKind::LoginRequired,
                    message: "not logged in to http://x: run `mlflow-oidc login --server http://x`".into(),
                }),
            }
        })
    });
    let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), upstream, agent, fresh_agent, log: None };
    let proxy = Proxy::start(settings, cell.clone()).unwrap();
    let uri = proxy.uri().expose().clone();
    Harness { proxy: Some(proxy), uri, seen, renewals, cell }
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// One raw HTTP/1.1 exchange; the status line's code.
fn raw(addr: &str, request: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn requests_reach_the_server_with_the_token_and_nothing_of_the_client_s_credentials() {
    let h = harness(None, Some("good"), Some("good"));
    let resp = client()
        .post(format!("{}api/2.0/mlflow/runs/log-metric?x=1", h.uri))
        .header("Authorization", "Bearer stolen")
        .header("Proxy-Authorization", "Basic dTpw")
        .header("Connection", "X-Hop")
        .header("X-Hop", "1")
        .header("Content-Type", "application/json")
        .send("{\"a\": 1}")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("x-upstream").unwrap(), "yes");
    let seen = h.seen.lock().unwrap()[0].clone();
    assert_eq!((seen.method.as_str(), seen.url.as_str()), ("POST", "/api/2.0/mlflow/runs/log-metric?x=1"));
    assert_eq!(seen.header("authorization"), Some("Bearer good"));
    assert_eq!(seen.header("proxy-authorization"), None);
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("content-length"), Some("8"));
    let upstream_host = h.seen.lock().unwrap()[0].header("host").unwrap().to_owned();
    assert!(upstream_host.starts_with("127.0.0.1:") && !h.uri.contains(&format!("{upstream_host}/")));
    assert_eq!(h.renewals.load(Ordering::SeqCst), 0);
}

#[test]
fn requests_without_the_capability_are_refused_and_never_forwarded() {
    let h = harness(None, Some("good"), Some("good"));
    let base = h.uri.trim_end_matches('/').rsplit_once('/').unwrap().0.to_owned();
    let addr = base.trim_start_matches("http://").to_owned();
    for url in [format!("{base}/api/2.0/mlflow/experiments/search"), format!("{base}/wrongcap/api/2.0/x"), base.clone()]
    {
        assert_eq!(client().get(&url).call().unwrap().status(), 403, "{url}");
    }
    let upstream = h.seen.lock().unwrap().len();
    assert_eq!(upstream, 0);
    let cap = h.uri.trim_end_matches('/').rsplit('/').next().unwrap().to_owned();
    let absolute = format!("GET http://{addr}/{cap}/api HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw(&addr, &absolute), 400);
    let connect = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&addr, connect), 405);
    assert!(h.seen.lock().unwrap().is_empty(), "{:?}", h.seen.lock().unwrap());
}

#[test]
fn an_upstream_401_renews_once_and_replays_small_bodies() {
    let h = harness(None, Some("stale"), Some("good"));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let uri = h.uri.clone();
            std::thread::spawn(move || {
                let url = format!("{uri}api/x");
                if i % 2 == 0 { client().post(url).send("{}") } else { client().get(url).call() }.unwrap().status()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(h.renewals.load(Ordering::SeqCst), 1, "eight rejections of one token, one renewal");
}

#[test]
fn without_a_token_the_client_gets_an_mlflow_error_saying_what_to_run() {
    let h = harness(None, None, None);
    let mut resp = client().get(format!("{}api/2.0/mlflow/experiments/search", h.uri)).call().unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error_code"], "UNAUTHENTICATED");
    assert!(body["message"].as_str().unwrap().contains("run `mlflow-oidc login --server http://x`"), "{body}");
    assert!(h.seen.lock().unwrap().is_empty());
}

#[test]
fn an_unreachable_server_is_a_502_in_mlflow_s_shape() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let h = harness(Some(&format!("http://127.0.0.1:{port}")), Some("good"), Some("good"));
    let mut resp = client().get(format!("{}api/x", h.uri)).call().unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error_code"], "TEMPORARILY_UNAVAILABLE");
    assert!(body["message"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{body}");
}

#[test]
fn bodies_stream_both_ways_with_their_framing() {
    let h = harness(None, Some("good"), Some("good"));
    const N: usize = 24 << 20;
    // Upload with a length, then chunked (a reader of unknown size).
    let resp = client().put(format!("{}up", h.uri)).send(vec![1u8; N]).unwrap();
    assert_eq!(resp.into_body().read_to_string().unwrap(), format!("read {N}"));
    let mut chunked = std::io::repeat(2).take(N as u64);
    let resp = client().put(format!("{}up", h.uri)).send(ureq::SendBody::from_reader(&mut chunked)).unwrap();
    assert_eq!(resp.into_body().read_to_string().unwrap(), format!("read {N}"));
    let seen = h.seen.lock().unwrap().clone();
    assert_eq!(seen[0].header("content-length"), Some(N.to_string().as_str()));
    assert_eq!(seen[1].header("transfer-encoding"), Some("chunked"));
    assert!(seen.iter().all(|s| s.body_len == N));
    // Download: the length passes through.
    let resp = client().get(format!("{}big/{N}", h.uri)).call().unwrap();
    assert_eq!(resp.headers().get("content-length").unwrap(), N.to_string().as_str());
    let mut n = 0;
    let mut r = resp.into_body().into_reader();
    let mut buf = vec![0; 1 << 16];
    loop {
        match r.read(&mut buf).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    assert_eq!(n, N);
}

#[test]
fn shutdown_lets_a_request_in_flight_finish() {
    let mut h = harness(None, Some("good"), Some("good"));
    let uri = h.uri.clone();
    let t = std::thread::spawn(move || {
        let mut slow = std::io::repeat(3).take(8 << 20);
        client().put(format!("{uri}up")).send(ureq::SendBody::from_reader(&mut slow)).unwrap().status()
    });
    let busy = || *h.proxy.as_ref().unwrap().shared.busy.lock().unwrap();
    while busy() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(h.proxy.take().unwrap().shutdown(Duration::from_secs(10)));
    assert_eq!(t.join().unwrap(), 200);
}
