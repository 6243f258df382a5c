//! Driving the real binary from tests: a run bounded in time (a hang fails the test instead of stalling it), and
//! a `login` held open on its loopback port so a test can talk to the listener as a browser, or an attacker, would.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::sandbox::{Out, Sandbox};

/// Run `cmd` to completion, failing the test if it takes longer than `limit` (a hang is a bug too).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Out {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let o = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let e = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&e.join().unwrap()).into_owned();
            panic!("the command did not finish within {limit:?} (a hang):\n{err}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&e.join().unwrap()).into_owned(),
    }
}

/// A `login` waiting on its loopback port, and what its authorization URL says.
pub struct PendingLogin {
    child: std::process::Child,
    /// The authorization URL the person would open.
    pub url: String,
    pub state: String,
    pub port: u16,
    pub path: String,
    stderr: Arc<Mutex<String>>,
    stdout: thread::JoinHandle<String>,
    reader: thread::JoinHandle<()>,
}

/// Start `login --timeout TIMEOUT` in `cwd` and wait until it prints its authorization URL.
pub fn start_login(s: &Sandbox, cwd: &str, timeout: &str) -> PendingLogin {
    start_login_with(s, cwd, timeout, &[])
}

/// [`start_login`] with extra environment.
pub fn start_login_with(s: &Sandbox, cwd: &str, timeout: &str, env: &[(&str, &str)]) -> PendingLogin {
    let mut child = s
        .cmd(cwd, &["login", "--timeout", timeout])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let stdout = thread::spawn(move || {
        let mut v = String::new();
        let _ = so.read_to_string(&mut v);
        v
    });
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(lines.read_line(&mut line).unwrap() > 0, "login ended before printing the URL:\n{seen}");
        seen.push_str(&line);
        if line.contains("/auth?") {
            break line.trim().to_string();
        }
    };
    let stderr = Arc::new(Mutex::new(seen));
    let sink = stderr.clone();
    let reader = thread::spawn(move || {
        let mut rest = String::new();
        let _ = lines.read_to_string(&mut rest);
        sink.lock().unwrap().push_str(&rest);
    });
    let state = crate::support::query_param(&url, "state").unwrap();
    let redirect = crate::support::query_param(&url, "redirect_uri").unwrap();
    let u = url::Url::parse(&redirect).unwrap();
    PendingLogin { child, url, state, port: u.port().unwrap(), path: u.path().to_string(), stderr, stdout, reader }
}

impl PendingLogin {
    pub fn finish(mut self, limit: Duration) -> Out {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let _ = self.reader.join();
                panic!("the login did not finish within {limit:?}:\n{}", self.stderr.lock().unwrap());
            }
            thread::sleep(Duration::from_millis(20));
        };
        let _ = self.reader.join();
        let stderr = self.stderr.lock().unwrap().clone();
        Out { code: status.code().unwrap_or(-1), stdout: self.stdout.join().unwrap(), stderr }
    }

    /// A GET of `query` on the redirect path.
    pub fn get(&self, query: &str) -> String {
        send(
            self.port,
            format!("GET {}?{query} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", self.path, self.port).as_bytes(),
        )
    }
}

/// Send `bytes` to the loopback port and return whatever comes back before the server closes.
pub fn send(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}
