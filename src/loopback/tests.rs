//! The listener's unit tests: judging requests, binding, deadlines, eviction, `Host` checks.

use std::io::{Read, Write};

use super::*;
use crate::tokenset::constant_time_eq;

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")
}

#[test]
fn only_the_exact_path_with_our_state_ends_the_wait() {
    let p = "/oauth2/callback";
    assert_eq!(judge(&get("/favicon.ico"), p, "s").1, 404);
    assert_eq!(judge(&get("/oauth2/callback/x?code=c&state=s"), p, "s").1, 404);
    assert_eq!(judge("POST /oauth2/callback?code=c&state=s HTTP/1.1\r\n\r\n", p, "s").1, 405);
    let (o, status, ..) = judge(&get("/oauth2/callback?code=c&state=wrong"), p, "s");
    assert_eq!((o, status), (None, 400));
    assert_eq!(judge(&get("/oauth2/callback?code=c"), p, "s").0, None);
    assert_eq!(judge(&get("/oauth2/callback?state=s"), p, "s").0, None);
    assert_eq!(judge(&get("/oauth2/callback?state=s&state=s&code=c"), p, "s").0, None);
    let (o, status, ..) = judge(&get("/oauth2/callback?code=abc&state=s&iss=https%3A%2F%2Fi"), p, "s");
    assert_eq!(status, 200);
    assert_eq!(o, Some(Callback::Code { code: "abc".into(), iss: Some("https://i".into()) }));
}

#[test]
fn provider_errors_with_our_state_end_the_wait() {
    let (o, status, _, text) =
        judge(&get("/cb?error=access_denied&error_description=End-User+aborted&state=s"), "/cb", "s");
    assert_eq!(status, 400);
    assert_eq!(
        o,
        Some(Callback::Error { error: "access_denied".into(), description: Some("End-User aborted".into()) })
    );
    assert!(text.contains("access_denied"));
    // With a foreign state, an error is ignored like any other stray request.
    assert_eq!(judge(&get("/cb?error=access_denied&state=x"), "/cb", "s").0, None);
}

#[test]
fn constant_time_comparison() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

#[test]
fn port_zero_binds_a_free_loopback_port_and_reports_it() {
    let l = bind("http://127.0.0.1:0/oauth2/callback", None).unwrap();
    assert_ne!(l.port(), 0);
    assert_eq!(l.redirect_uri, format!("http://127.0.0.1:{}/oauth2/callback", l.port()));
    let busy = bind(&l.redirect_uri, None).err().unwrap();
    assert!(busy.to_string().contains(&l.port().to_string()), "{busy}");
}

/// A request for `target` on `port` (to `addr`) with this `Host`, and the whole answer.
fn fetch(addr: IpAddr, port: u16, target: &str, host: &str) -> String {
    let mut s = TcpStream::connect((addr, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn a_real_callback_is_received_and_strays_are_skipped() {
    let l = bind("http://127.0.0.1:0/cb", None).unwrap();
    let port = l.port();
    let host = format!("127.0.0.1:{port}");
    let t = std::thread::spawn(move || {
        let mut answers = Vec::new();
        for target in ["/favicon.ico", "/cb?code=x&state=nope", "/cb?code=good&state=s"] {
            answers.push(fetch(V4, port, target, &host));
        }
        answers
    });
    let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
    assert_eq!(cb, Callback::Code { code: "good".into(), iss: None });
    reply.finish(Ok(()));
    let answers = t.join().unwrap();
    assert_eq!(answers.iter().map(|a| status(a)).collect::<Vec<_>>(), [404, 400, 200]);
    assert!(answers[2].contains("You are logged in"), "{}", answers[2]);
}

#[test]
fn the_browser_hears_how_the_login_ended_not_just_that_a_code_arrived() {
    let l = bind("http://127.0.0.1:0/cb", None).unwrap();
    let port = l.port();
    let browser = |_| std::thread::spawn(move || fetch(V4, port, "/cb?code=c&state=s", &format!("127.0.0.1:{port}")));
    // A failure names what went wrong, escaped, and points at the terminal.
    let t = browser(());
    let (_, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.is_finished(), "the browser was answered before the app knew the outcome");
    reply.finish(Err("the provider said <b>invalid_grant</b>\u{1b}[2J"));
    let page = t.join().unwrap();
    assert_eq!(status(&page), 400, "{page}");
    assert!(page.contains("the provider said &lt;b&gt;invalid_grant&lt;/b&gt;[2J"), "{page}");
    assert!(page.contains("Look at the terminal") && !page.contains("logged in"), "{page}");
    // A reply the app dropped (an error path) still tells the browser the login failed.
    let t = browser(());
    drop(l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap());
    let page = t.join().unwrap();
    assert_eq!(status(&page), 400, "{page}");
    assert!(page.contains("did not complete"), "{page}");
}

#[test]
fn the_request_head_has_one_deadline_across_reads() {
    let l = bind("http://127.0.0.1:0/cb", None).unwrap();
    let port = l.port();
    let t = std::thread::spawn(move || {
        let mut s = TcpStream::connect((V4, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let started = Instant::now();
        let mut out = String::new();
        // One byte every 500 ms never trips a per-read limit; the head deadline must close it anyway.
        for b in "GET /cb?code=c&state=s HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa".bytes() {
            if s.write_all(&[b]).is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
            if !out.is_empty() {
                break;
            }
        }
        (started.elapsed(), out)
    });
    let e = l.wait("s", Instant::now() + Duration::from_secs(8), |_| {}).unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    let (took, out) = t.join().unwrap();
    assert_eq!(status(&out), 408, "{out}");
    assert!(took < HEAD_DEADLINE + Duration::from_secs(2), "closed after {took:?}");
}

#[test]
fn a_flood_of_idle_connections_evicts_the_oldest_not_the_callback() {
    let l = bind("http://127.0.0.1:0/cb", None).unwrap();
    let port = l.port();
    let t = std::thread::spawn(move || {
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 6).map(|_| TcpStream::connect((V4, port)).unwrap()).collect();
        // Give the listener time to accept them all, so they hold every slot.
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let page = fetch(V4, port, "/cb?code=c&state=s", &format!("127.0.0.1:{port}"));
        (idle, started.elapsed(), page)
    });
    let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
    assert_eq!(cb, Callback::Code { code: "c".into(), iss: None });
    reply.finish(Ok(()));
    let (idle, took, page) = t.join().unwrap();
    assert_eq!(status(&page), 200, "{page}");
    assert!(took < HEAD_DEADLINE, "the callback waited for idle connections to time out: {took:?}");
    // The oldest were closed to make room.
    let mut first = &idle[0];
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(first.read(&mut [0u8; 16]).unwrap_or(0), 0, "the oldest idle connection is still open");
}

#[test]
fn localhost_binds_both_loopback_addresses_on_one_port() {
    let l = bind("http://localhost:0/cb", None).unwrap();
    let port = l.port();
    assert_eq!(l.redirect_uri, format!("http://localhost:{port}/cb"));
    let v6 = TcpListener::bind((V6, 0)).is_ok();
    if !v6 {
        assert!(!l.notes.is_empty(), "no IPv6 here: a note says so");
        return;
    }
    assert!(TcpListener::bind((V4, port)).is_err(), "127.0.0.1:{port} is free to hijack");
    assert!(TcpListener::bind((V6, port)).is_err(), "[::1]:{port} is free to hijack");
    let t = std::thread::spawn(move || fetch(V6, port, "/cb?code=v6&state=s", &format!("localhost:{port}")));
    let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
    assert_eq!(cb, Callback::Code { code: "v6".into(), iss: None });
    reply.finish(Ok(()));
    assert_eq!(status(&t.join().unwrap()), 200);
    // A fixed port whose [::1] half is taken is refused, naming [::1], rather than half-bound.
    let squatter = TcpListener::bind((V6, 0)).unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let e = bind(&format!("http://localhost:{taken}/cb"), None).err().unwrap();
    assert!(matches!(e, Error::PortInUse { .. }) && e.to_string().contains("[::1]"), "{e}");
}

#[test]
fn the_host_header_must_name_the_listener() {
    let hosts = vec!["127.0.0.1:4000".to_string(), "localhost:4000".to_string()];
    let with = |host: &str| format!("GET /cb?code=c&state=s HTTP/1.1\r\nHost: {host}\r\n\r\n");
    assert!(judge_request(&with("127.0.0.1:4000"), "/cb", "s", &hosts).0.is_some());
    assert!(judge_request(&with("LocalHost:4000"), "/cb", "s", &hosts).0.is_some());
    for bad in ["evil.example:4000", "localhost:4001", "localhost", "127.0.0.1", "localhost.:4000", ""] {
        let (o, status, _, text) = judge_request(&with(bad), "/cb", "s", &hosts);
        assert_eq!((o, status), (None, 400), "Host {bad:?}");
        assert!(text.contains("ignored"), "{text}");
    }
    let (o, _, _, text) = judge_request(&with("evil.example:4000\u{1b}[2J"), "/cb", "s", &hosts);
    assert!(o.is_none() && text.contains("evil.example:4000[2J") && !text.contains('\u{1b}'), "{text}");
    let no_host = "GET /cb?code=c&state=s HTTP/1.0\r\n\r\n";
    assert_eq!(judge_request(no_host, "/cb", "s", &hosts).1, 400);
    let twice = "GET /cb?code=c&state=s HTTP/1.1\r\nHost: localhost:4000\r\nhost: evil:4000\r\n\r\n";
    assert!(judge_request(twice, "/cb", "s", &hosts).0.is_none());
    // Stray paths stay 404 whatever the Host: nothing is there for anyone.
    assert_eq!(judge_request("GET /x HTTP/1.1\r\nHost: evil:1\r\n\r\n", "/cb", "s", &hosts).1, 404);
    // A rebinding page's request does not end the wait; the real one afterwards does.
    let l = bind("http://127.0.0.1:0/cb", None).unwrap();
    let port = l.port();
    let t = std::thread::spawn(move || {
        let evil = fetch(V4, port, "/cb?code=c&state=s", &format!("evil.example:{port}"));
        let real = fetch(V4, port, "/cb?code=real&state=s", &format!("127.0.0.1:{port}"));
        (evil, real)
    });
    let (cb, reply) = l.wait("s", Instant::now() + Duration::from_secs(10), |_| {}).unwrap();
    assert_eq!(cb, Callback::Code { code: "real".into(), iss: None });
    reply.finish(Ok(()));
    let (evil, real) = t.join().unwrap();
    assert_eq!((status(&evil), status(&real)), (400, 200), "{evil}");
}

#[test]
fn the_wait_ends_at_the_deadline() {
    let l = bind("http://127.0.0.1:0/cb", None).unwrap();
    let e = l.wait("s", Instant::now() + Duration::from_millis(100), |_| {}).unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
}

/// Issue 24: a listener that cannot be opened keeps the OS error as the source (its kind, for a caller that
/// branches), and says the same words as before.
#[test]
fn a_bind_failure_keeps_the_os_error() {
    use std::error::Error as _;
    // TEST-NET-1 (RFC 5737) is no address of this host: EADDRNOTAVAIL, even for root.
    let e = bind_one("http://192.0.2.1:8080/cb", "192.0.2.1".parse().unwrap(), 8080).err().unwrap();
    assert!(matches!(e, Error::Interaction(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("cannot listen on 192.0.2.1:8080 for redirect URI http://192.0.2.1:8080/cb: "),
        "{e}"
    );
    let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the OS error is kept");
    assert_eq!(io.kind(), std::io::ErrorKind::AddrNotAvailable);
}
