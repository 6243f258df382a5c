//! The proxy in process, against a fake tracking server (tiny_http on 127.0.0.1) that records what reaches it.
//! The real stack (Apache + mod_auth_openidc + MLflow) is in tests/proxy_e2e.rs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::forward::{forwardable, mlflow_error, token_failure};
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
fn encoded_and_parameter_dot_segments_are_refused_like_plain_ones() {
    for hidden in [
        "/c4p4bility/a/..;/admin",
        "/c4p4bility/a/..;x=1/admin",
        "/c4p4bility/a/.;/b",
        "/c4p4bility/a/..%2fadmin",
        "/c4p4bility/a/..%2Fadmin",
        "/c4p4bility/a/..%5cadmin",
        "/c4p4bility/a/%2e/b",
        "/c4p4bility/a/%2e%2e",
        "/c4p4bility/a/.%2E/b",
        "/c4p4bility/a/x%2f..%2fy",
        "/c4p4bility/a/..\\b",
    ] {
        assert_eq!(route("GET", hidden, CAP), Err(Refusal::DotSegments), "{hidden}");
    }
    for fine in
        ["/c4p4bility/a/...", "/c4p4bility/a/..x;y", "/c4p4bility/a/%2e%2ex", "/c4p4bility/a;b/c", "/c4p4bility/%zz"]
    {
        assert!(route("GET", fine, CAP).is_ok(), "{fine}");
    }
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
    let mut map = http::HeaderMap::new();
    for (n, v) in h {
        map.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), http::HeaderValue::from_static(v));
    }
    let kept: Vec<(String, String)> =
        forwardable(&map, "").iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned())).collect();
    let want = [("content-type", "application/json"), ("cookie", "a=b"), ("user-agent", "mlflow-java")];
    assert_eq!(kept, want.map(|(n, v)| (n.to_owned(), v.to_owned())));
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

/// The fake tracking server's record: the requests it saw, and how many `/stuck` requests are waiting now.
#[derive(Default)]
struct Upstream {
    seen: Mutex<Vec<Seen>>,
    stuck: AtomicUsize,
}

struct Stuck(Arc<Upstream>);

impl Drop for Stuck {
    fn drop(&mut self) {
        self.0.stuck.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fake tracking server (hyper on its own runtime, 127.0.0.1): 401 unless `Authorization: Bearer good`;
/// `/big/N` answers N bytes; `/stuck` never answers; `/error` drops the connection; anything else echoes the
/// body length it read. Not tiny_http: its thread pool loses connections (issue 20's hang, see forward.rs).
fn fake_upstream() -> (String, Arc<Upstream>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let up = Arc::new(Upstream::default());
    let u = up.clone();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let u = u.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(u.clone(), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    });
    (url, up, rt)
}

async fn answer(
    up: Arc<Upstream>,
    req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, std::io::Error> {
    use http_body_util::BodyExt;
    let (parts, mut body) = req.into_parts();
    let mut body_len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.map_err(std::io::Error::other)?.into_data() {
            body_len += d.len();
        }
    }
    let s = Seen {
        method: parts.method.to_string(),
        url: parts.uri.to_string(),
        headers: parts.headers.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned())).collect(),
        body_len,
    };
    up.seen.lock().unwrap().push(s.clone());
    let resp = |status: u16, body: Vec<u8>| {
        let mut r = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(body)));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    };
    if s.header("authorization") != Some("Bearer good") {
        return Ok(resp(401, b"no".to_vec()));
    }
    if let Some(n) = s.url.strip_prefix("/big/") {
        return Ok(resp(200, vec![7; n.parse().unwrap()]));
    }
    match s.url.as_str() {
        "/stuck" => {
            up.stuck.fetch_add(1, Ordering::SeqCst);
            let _gone = Stuck(up.clone());
            std::future::pending::<()>().await;
            unreachable!()
        }
        "/error" => Err(std::io::Error::other("dropped")),
        // oauth2-proxy without --api-route refusing the token (issue 22): a 302 to its sign-in page.
        "/api/2.0/mlflow/guarded" | "/ui/guarded" => {
            let mut r = resp(302, Vec::new());
            let to = "/oauth2/sign_in?rd=%2Fapi%2F2.0%2Fmlflow%2Fguarded";
            r.headers_mut().insert("location", http::HeaderValue::from_static(to));
            Ok(r)
        }
        _ => {
            let mut r = resp(200, format!("read {body_len}").into_bytes());
            r.headers_mut().insert("x-upstream", http::HeaderValue::from_static("yes"));
            Ok(r)
        }
    }
}

struct Harness {
    proxy: Option<Proxy>,
    uri: String,
    up: Arc<Upstream>,
    renewals: Arc<AtomicUsize>,
    cell: Arc<TokenCell>,
    _upstream_rt: tokio::runtime::Runtime,
}

impl Harness {
    fn seen(&self) -> Vec<Seen> {
        self.up.seen.lock().unwrap().clone()
    }
    fn addr(&self) -> String {
        self.uri.trim_start_matches("http://").split('/').next().unwrap().to_owned()
    }
    fn capability(&self) -> String {
        self.uri.trim_end_matches('/').rsplit('/').next().unwrap().to_owned()
    }
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
    harness_with(upstream, first, renewed, Limits::default())
}

fn harness_with(upstream: Option<&str>, first: Option<&str>, renewed: Option<&'static str>, limits: Limits) -> Harness {
    harness_env(upstream, first, renewed, limits, Vec::new())
}

fn harness_env(
    upstream: Option<&str>,
    first: Option<&str>,
    renewed: Option<&'static str>,
    limits: Limits,
    proxy_env: Vec<(&'static str, String)>,
) -> Harness {
    let (fake, up, upstream_rt) = fake_upstream();
    let upstream = url::Url::parse(upstream.unwrap_or(&fake)).unwrap();
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
    let tls = upstream::UpstreamTls { connect_timeout: Duration::from_secs(5), proxy_env, ..Default::default() };
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream,
        tls,
        upstream_timeout: Duration::from_secs(120),
        limits,
        // Quiet: the panics of six_hundred_… would otherwise be warned about on stderr.
        log: Some(Arc::new(|_: &str| {})),
    };
    let proxy = Proxy::start(settings, cell.clone()).unwrap();
    let uri = proxy.uri().expose().clone();
    Harness { proxy: Some(proxy), uri, up, renewals, cell, _upstream_rt: upstream_rt }
}

/// A client whose every wait is bounded: a test that would hang fails instead.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A connection with bounded reads and writes.
fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// One raw HTTP/1.1 exchange; the status line's code (0 when the connection closed without one).
fn raw(addr: &str, request: &str) -> u16 {
    let mut s = connect(addr);
    let _ = s.write_all(request.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
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
    let seen = h.seen()[0].clone();
    assert_eq!((seen.method.as_str(), seen.url.as_str()), ("POST", "/api/2.0/mlflow/runs/log-metric?x=1"));
    assert_eq!(seen.header("authorization"), Some("Bearer good"));
    assert_eq!(seen.header("proxy-authorization"), None);
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("content-length"), Some("8"));
    let upstream_host = h.seen()[0].header("host").unwrap().to_owned();
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
    let upstream = h.seen().len();
    assert_eq!(upstream, 0);
    let cap = h.uri.trim_end_matches('/').rsplit('/').next().unwrap().to_owned();
    let absolute = format!("GET http://{addr}/{cap}/api HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw(&addr, &absolute), 400);
    let connect = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&addr, connect), 405);
    assert!(h.seen().is_empty(), "{:?}", h.seen());
}

/// Eight clients at once, half with a small body, against a proxy holding a token the server rejects: their
/// statuses.
fn eight_clients_with_a_rejected_token(h: &Harness) -> Vec<u16> {
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let uri = h.uri.clone();
            std::thread::spawn(move || {
                let url = format!("{uri}api/x");
                if i % 2 == 0 { client().post(url).send("{}") } else { client().get(url).call() }.unwrap().status()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap().as_u16()).collect()
}

#[test]
fn an_upstream_401_renews_once_and_replays_small_bodies() {
    let h = harness(None, Some("stale"), Some("good"));
    assert_eq!(eight_clients_with_a_rejected_token(&h), [200; 8]);
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
    assert!(h.seen().is_empty());
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
    let seen = h.seen();
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
    let busy = || h.proxy.as_ref().unwrap().shared.busy.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while busy() == 0 {
        assert!(std::time::Instant::now() < deadline, "the upload never reached the proxy");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(h.proxy.take().unwrap().shutdown(Duration::from_secs(10)));
    assert_eq!(t.join().unwrap(), 200);
}

#[test]
fn the_capability_never_reaches_the_server_in_referer_or_origin() {
    let h = harness(None, Some("good"), Some("good"));
    let resp = client()
        .get(format!("{}api/2.0/mlflow/experiments/search", h.uri))
        .header("Referer", format!("{}#/experiments", h.uri))
        .header("Origin", h.uri.trim_end_matches('/'))
        .header("X-Other", "kept")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = h.seen()[0].clone();
    assert_eq!(seen.header("referer"), None);
    assert_eq!(seen.header("origin"), None);
    assert_eq!(seen.header("x-other"), Some("kept"));
    assert!(seen.headers.iter().all(|(_, v)| !v.contains(&h.capability())), "{:?}", seen.headers);
}

/// Issue 20's hang, 500 times in one process: eight clients, half with a small body, all rejected once.
#[test]
fn the_401_replay_never_hangs_500_times_over() {
    for round in 0..500 {
        let h = harness(None, Some("stale"), Some("good"));
        assert_eq!(eight_clients_with_a_rejected_token(&h), [200; 8], "round {round}");
        assert_eq!(h.renewals.load(Ordering::SeqCst), 1, "round {round}");
    }
}

#[test]
fn oversized_and_overflowing_content_lengths_are_refused_and_the_proxy_lives_on() {
    let h = harness(None, Some("good"), Some("good"));
    let addr = h.addr();
    let cap = h.capability();
    // Without the capability: refused without reading (tiny_http aborted the process allocating 2^50 bytes).
    let huge = format!("POST /nope HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\nabc", 1u64 << 50);
    assert_eq!(raw(&addr, &huge), 403);
    // 2^64-1 does not fit hyper's length: 400 (it panicked tiny_http's workers).
    for _ in 0..600 {
        let over = format!("POST /{cap}/api HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 18446744073709551615\r\n\r\n");
        let status = raw(&addr, &over);
        assert!(status == 400 || status == 431, "{status}");
    }
    assert_eq!(client().get(format!("{}api/control", h.uri)).call().unwrap().status(), 200);
    assert!(h.seen().iter().all(|s| s.url == "/api/control"), "{:?}", h.seen());
}

#[test]
fn six_hundred_requests_that_panic_or_fail_leave_every_slot_free() {
    let limits = Limits { max_in_flight: 8, ..Limits::default() };
    let h = harness_with(None, Some("good"), Some("good"), limits);
    for i in 0..600 {
        let path = if i % 2 == 0 { "__panic" } else { "error" };
        let status = client().get(format!("{}{path}", h.uri)).call().unwrap().status();
        assert_eq!(status, if i % 2 == 0 { 500 } else { 502 }, "request {i}");
    }
    assert_eq!(h.proxy.as_ref().unwrap().shared.busy.load(Ordering::SeqCst), 0);
    // Eight at once still fit: no slot was lost.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let uri = h.uri.clone();
            std::thread::spawn(move || client().post(format!("{uri}api/x")).send("{}").unwrap().status())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
}

#[test]
fn an_endless_header_line_gets_431_or_a_closed_connection_and_is_not_kept() {
    let h = harness(None, Some("good"), Some("good"));
    let mut s = connect(&h.addr());
    s.write_all(format!("GET /{}/api HTTP/1.1\r\nX-Long: ", h.capability()).as_bytes()).unwrap();
    let chunk = vec![b'a'; 64 << 10];
    let mut sent = 0usize;
    // The proxy stops reading past 64 KiB and closes: the writes fail long before 400 MB.
    while sent < 400 << 20 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(sent < 64 << 20, "the proxy went on reading an endless header: {sent} bytes");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    assert!(head.is_empty() || head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(client().get(format!("{}api/control", h.uri)).call().unwrap().status(), 200);
}

#[test]
fn a_client_that_pipelines_and_never_reads_stalls_nobody_else() {
    let limits = Limits { write_timeout: Duration::from_secs(2), ..Limits::default() };
    let h = harness_with(None, Some("good"), Some("good"), limits);
    // A thousand pipelined requests for 1 MiB each, never read.
    let mut flood = connect(&h.addr());
    let one = format!("GET /{}/big/1048576 HTTP/1.1\r\nHost: x\r\n\r\n", h.capability());
    flood.write_all(one.repeat(1000).as_bytes()).unwrap();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        assert_eq!(client().get(format!("{}api/other", h.uri)).call().unwrap().status(), 200);
        assert!(t.elapsed() < Duration::from_secs(10), "another client waited {:?}", t.elapsed());
    }
    // Its connection is closed once the proxy could write nothing to it for the write timeout (2 s here): the
    // rest of the pipeline is never answered, and nothing stays open for it.
    std::thread::sleep(Duration::from_secs(4));
    let mut out = Vec::new();
    let end = flood.read_to_end(&mut out);
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the connection stayed open: {end:?}"
    );
    assert!(out.len() < 100 << 20, "{} bytes answered", out.len());
}

#[test]
fn clients_of_a_stuck_server_that_go_away_give_their_slots_back_and_cancel_upstream() {
    let limits = Limits { max_in_flight: 4, ..Limits::default() };
    let h = harness_with(None, Some("good"), Some("good"), limits);
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&h.addr());
        s.write_all(format!("GET /{}/stuck HTTP/1.1\r\nHost: x\r\n\r\n", h.capability()).as_bytes()).unwrap();
        stuck.push(s);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while h.up.stuck.load(Ordering::SeqCst) < 4 {
        assert!(std::time::Instant::now() < deadline, "the stuck requests never reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    // All slots taken: an MLflow-shaped 503 at once, not a wait.
    let mut resp = client().get(format!("{}api/x", h.uri)).call().unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error_code"], "TEMPORARILY_UNAVAILABLE");
    drop(stuck);
    while h.up.stuck.load(Ordering::SeqCst) > 0 {
        assert!(std::time::Instant::now() < deadline, "the upstream requests of gone clients were not cancelled");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(client().get(format!("{}api/x", h.uri)).call().unwrap().status(), 200);
}

#[test]
fn a_server_that_rejects_every_token_gets_no_grant_storm() {
    // Every renewal gives "bad", which the server rejects too.
    let h = harness(None, Some("stale"), Some("bad"));
    for _ in 0..20 {
        assert_eq!(client().post(format!("{}api/x", h.uri)).send("{}").unwrap().status(), 401);
    }
    assert_eq!(h.renewals.load(Ordering::SeqCst), 1, "one renewal, then 401s pass through");
}

#[test]
fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    let limits = Limits { max_connections: 4, ..Limits::default() };
    let h = harness_with(None, Some("good"), Some("good"), limits);
    let request = format!("GET /{}/api/k HTTP/1.1\r\nHost: x\r\n\r\n", h.capability());
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&h.addr());
        s.write_all(request.as_bytes()).unwrap();
        let mut buf = [0; 512];
        assert!(s.read(&mut buf).unwrap() > 0);
        idle.push(s);
    }
    // A fifth client is served; the first (least recently used) idle connection was closed for it.
    assert_eq!(client().get(format!("{}api/x", h.uri)).call().unwrap().status(), 200);
    let mut buf = [0; 16];
    assert_eq!(idle[0].read(&mut buf).unwrap_or(0), 0, "the oldest idle connection is closed");
}

#[test]
fn https_proxy_tunnels_to_a_remote_server_and_never_to_a_loopback_one() {
    // A stand-in for the user's HTTP proxy: it records the CONNECT it gets and closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let env = vec![("HTTPS_PROXY", proxy_url.clone()), ("HTTP_PROXY", proxy_url)];
    let got = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let h = harness_env(
        Some("https://mlflow.example.com/base"),
        Some("good"),
        Some("good"),
        Limits::default(),
        env.clone(),
    );
    assert_eq!(client().get(format!("{}api/x", h.uri)).call().unwrap().status(), 502);
    let head = got.join().unwrap();
    assert!(head.starts_with("CONNECT mlflow.example.com:443 HTTP/1.1\r\n"), "{head}");
    // The fake upstream is on loopback: reached directly though the variables are set (issue 12).
    let h = harness_env(None, Some("good"), Some("good"), Limits::default(), env);
    assert_eq!(client().get(format!("{}api/x", h.uri)).call().unwrap().status(), 200);
}

#[test]
fn a_guard_s_login_redirect_on_an_api_call_is_named_in_mlflow_s_shape_not_relayed() {
    let h = harness(None, Some("good"), Some("good"));
    let resp = client().get(format!("{}api/2.0/mlflow/guarded", h.uri)).call().unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = serde_json::from_str(&resp.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error_code"], "UNAUTHENTICATED");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("redirected to its login page (HTTP 302 to /oauth2/sign_in)"), "{message}");
    assert!(message.contains("audience? email_verified?") && message.contains("--api-route"), "{message}");
    // Outside the API (the UI, static files) a redirect is the server's to make: relayed as it is.
    let no_follow: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let resp = no_follow.get(format!("{}ui/guarded", h.uri)).call().unwrap();
    assert_eq!(resp.status(), 302);
}

#[test]
fn clients_that_declare_a_body_and_stall_get_408_and_give_their_slots_back() {
    let limits = Limits { max_in_flight: 2, body_timeout: Duration::from_secs(1), ..Limits::default() };
    let h = harness_with(None, Some("good"), Some("good"), limits);
    // One body small enough to be kept for a replay, one that streams to the server; each sends a little and
    // then nothing, with its connection open.
    let mut stalled = Vec::new();
    for (length, sent) in [(100usize, 10usize), (4 << 20, 64 << 10)] {
        let mut s = connect(&h.addr());
        let head =
            format!("POST /{}/api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n", h.capability());
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![b'a'; sent]).unwrap();
        stalled.push(s);
    }
    for mut s in stalled {
        let mut head = [0u8; 12];
        s.read_exact(&mut head).expect("no answer to a stalled body within 30 s");
        assert_eq!(&head, b"HTTP/1.1 408", "{}", String::from_utf8_lossy(&head));
    }
    // Both slots are free again: a person's request is served, not 503.
    assert_eq!(client().get(format!("{}api/x", h.uri)).call().unwrap().status(), 200);
}

#[cfg(unix)]
#[test]
fn a_listener_that_fails_for_good_is_reported_not_spun_on() {
    let h = harness(None, Some("good"), Some("good"));
    let proxy = h.proxy.as_ref().unwrap();
    assert_eq!(proxy.lost(), None);
    // shutdown(2) on a listening socket makes every accept fail with EINVAL from then on: the "fails for good"
    // of issue 20 (std has no shutdown for listeners; a stream over the same socket does it safely).
    let dup = proxy.listener.try_clone().unwrap();
    std::net::TcpStream::from(std::os::fd::OwnedFd::from(dup)).shutdown(std::net::Shutdown::Read).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while proxy.lost().is_none() {
        assert!(std::time::Instant::now() < deadline, "the proxy never said its listener was gone");
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = proxy.lost().unwrap();
    assert!(why.contains("the proxy cannot accept connections on") && why.contains(&h.addr()), "{why}");
}
