//! `mlflow-oidc proxy` and `exec --proxy` for real (issue 15): MLflow's Python client *without* the plugin,
//! curl and Node.js, through the proxy, to `mlflow server` behind Apache + mod_auth_openidc, with tokens
//! from oidc-provider living 20 s (the shared stack, tests/e2e/mod.rs). `--nocapture` prints the figures.
//!
//! The Python client runs from a directory with no pyproject.toml, no user config and MLFLOW_OIDC_BIN set to a
//! counting wrapper: the installed plugin finds no configuration for the proxy's URI, and the wrapper's log
//! proves it never ran the binary — every token comes from the proxy.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::print_stderr)]

mod e2e;
mod sandbox;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{AT_TTL, Stack, counting_wrapper, invocations, last_json, machine_project, project, stack, venv};
use sandbox::Sandbox;
use support::PUBLIC_CLIENT_ID;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{nanos}")
}

/// A running `mlflow-oidc -v proxy`; stopped with SIGTERM when dropped.
struct Running {
    child: Child,
    uri: String,
    stderr: PathBuf,
}

impl Running {
    fn start(s: &Sandbox, extra: &[&str]) -> Running {
        let stderr = s.path(&format!("{}.stderr", unique("proxy")));
        let mut args = vec!["-v", "proxy"];
        args.extend_from_slice(extra);
        let mut c = s.cmd("proj", &args);
        c.stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let uri = line.trim().to_owned();
        assert!(
            uri.starts_with("http://127.0.0.1:"),
            "no URI on stdout: {uri:?}\n{}",
            std::fs::read_to_string(&stderr).unwrap()
        );
        Running { child, uri, stderr }
    }
    fn addr(&self) -> String {
        self.uri.trim_start_matches("http://").split('/').next().unwrap().to_owned()
    }
    fn capability(&self) -> String {
        self.uri.trim_end_matches('/').rsplit('/').next().unwrap().to_owned()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }
    /// Peak resident memory (VmHWM, kB).
    fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    /// SIGTERM; the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "the proxy did not stop within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The MLflow Python client, without the plugin's help: run from a directory with no configuration, the
/// plugin's binary replaced by a counting wrapper; returns the output and the plugin's `token` calls (none).
fn plain_python(s: &Sandbox, uri: &str, args: &[&str], env: &[(&str, &str)]) -> (sandbox::Out, Vec<String>) {
    let log = s.path(&format!("{}.bin.log", unique("plugin")));
    let wrapper = counting_wrapper(s, &log);
    let dir = s.path("elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = e2e::command(s, venv().python());
    c.current_dir(&dir)
        .arg(e2e::repo().join("tests/mlflow/proxy_client.py"))
        .args(args)
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_OIDC_BIN", &wrapper)
        .env_remove("MLFLOW_TRACKING_AUTH")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env_remove("SSL_CERT_FILE")
        .envs(env.iter().copied());
    let out = sandbox::Out::from(c.output().unwrap());
    // The plugin may ask the binary whether the URI is configured (it is not); it never asks for a token.
    let tokens = invocations(&log).into_iter().filter(|l| l.split_whitespace().any(|w| w == "token")).collect();
    (out, tokens)
}

fn access_since(st: &Stack, before: usize) -> Vec<e2e::Access> {
    st.access()[before..].to_vec()
}

/// 65 s of a metric a second, tokens living 20 s: no failure, the plugin never ran, and the proxy renewed
/// the token ahead of each expiry (a refresh about every 15 s).
#[test]
fn mlflow_without_the_plugin_logs_for_65_s_through_the_proxy() {
    let st = stack();
    let s = e2e::logged_in("proxy-longrun");
    let mut proxy = Running::start(&s, &[]);
    let refreshes_before = st.idp.count_grants("refresh_token");
    let seconds = 65;
    let started = Instant::now();
    let (out, plugin_calls) = plain_python(&s, &proxy.uri, &["long", &unique("proxy-long"), &seconds.to_string()], &[]);
    let elapsed = started.elapsed().as_secs_f64();
    let r = last_json(&out);
    let refreshes = st.idp.count_grants("refresh_token") - refreshes_before;
    let renewals = proxy.log().matches("proxy: token renewed").count();
    eprintln!(
        "proxy long run: {} steps in {elapsed:.0} s, {} failures, {refreshes} refresh_token grants, {renewals} renewals \
         by the proxy, access tokens of {AT_TTL} s, {} `token` runs by the plugin",
        r["steps"],
        r["failures"],
        plugin_calls.len()
    );
    assert_eq!(r["failures"], 0, "{r}\n{}", st.logs());
    assert_eq!(r["history_len"], r["steps"]);
    assert!(plugin_calls.is_empty(), "the plugin must not be involved: {plugin_calls:?}");
    let lifetimes = seconds / AT_TTL;
    assert!((lifetimes as usize..=2 * lifetimes as usize + 2).contains(&renewals), "renewals: {renewals}");
    assert!(refreshes >= renewals, "each renewal is a refresh at the provider: {refreshes} < {renewals}");
    assert!(proxy.stop().success());
}

/// A 200 MB artifact up and down through `mlflow-artifacts`: byte-identical, the proxy's memory flat.
#[test]
fn a_200_mb_artifact_goes_up_and_down_byte_identical_with_flat_memory() {
    let s = machine_project();
    let proxy = Running::start(&s, &[]);
    let file = s.path("big.bin");
    {
        // Pseudo-random, so a dropped or repeated block changes the hash.
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..200 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
    }
    let (out, plugin_calls) =
        plain_python(&s, &proxy.uri, &["artifacts", &unique("proxy-artifacts"), file.to_str().unwrap()], &[]);
    let r = last_json(&out);
    let rss_mb = proxy.peak_rss_kb() as f64 / 1024.0;
    eprintln!(
        "proxy artifacts: 200 MiB up in {} s, down in {} s, proxy peak RSS {rss_mb:.1} MiB ({})",
        r["upload_s"], r["download_s"], r["artifact_uri"]
    );
    assert!(r["artifact_uri"].as_str().unwrap().starts_with("mlflow-artifacts:"), "{r}");
    assert_eq!(r["size"], 200 << 20);
    assert_eq!(r["sent"], r["received"]);
    assert!(plugin_calls.is_empty());
    assert!(rss_mb < 40.0, "the proxy buffered: peak RSS {rss_mb:.1} MiB");
}

#[test]
fn curl_and_node_fetch_use_the_rest_api_through_the_proxy() {
    let st = stack();
    let s = machine_project();
    let proxy = Running::start(&s, &[]);
    let before = st.access().len();
    let (status, body) = support::curl(&[&format!("{}api/2.0/mlflow/experiments/search?max_results=5", proxy.uri)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"experiments\""), "{body}");
    let name = unique("node");
    let script = format!(
        "const base = process.env.MLFLOW_TRACKING_URI;\n\
         const r = await fetch(base + 'api/2.0/mlflow/experiments/create', {{method: 'POST', \
         headers: {{'content-type': 'application/json'}}, body: JSON.stringify({{name: '{name}'}})}});\n\
         const g = await fetch(base + 'ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name={name}');\n\
         console.log(JSON.stringify({{create: r.status, get: g.status, body: await g.json()}}));\n"
    );
    let path = s.write("fetch.mjs", &script);
    let out = Command::new("node").arg(&path).env("MLFLOW_TRACKING_URI", &proxy.uri).output().unwrap();
    let r: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!((r["create"].as_u64(), r["get"].as_u64()), (Some(200), Some(200)), "{r}");
    assert_eq!(r["body"]["experiment"]["name"], name.as_str());
    // Upstream saw the capability nowhere, and every request with the machine client's token.
    let seen = access_since(st, before);
    assert!(seen.iter().all(|a| !a.path.contains(&proxy.capability())), "{seen:?}");
    let ours: Vec<_> = seen.iter().filter(|a| a.path.contains(&name) || a.path.contains("experiments/")).collect();
    assert!(ours.len() >= 3 && ours.iter().all(|a| a.user == support::CONFIDENTIAL_CLIENT_ID), "{ours:?}");
}

#[test]
fn exec_proxy_gives_the_command_a_uri_and_no_token() {
    let s = machine_project();
    let token = s.mo(&["token"]).ok().trim().to_owned();
    let out = s.mo(&["exec", "--proxy", "--", "env"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let uri = out.stdout.lines().find_map(|l| l.strip_prefix("MLFLOW_TRACKING_URI=")).unwrap().to_owned();
    assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with('/'), "{uri}");
    assert!(!out.stdout.contains("MLFLOW_TRACKING_TOKEN"), "{}", out.stdout);
    assert!(!out.stdout.contains(&token) && !out.stdout.contains("eyJ"), "a token leaked into the environment");
    assert!(
        !out.stderr.contains(&token) && !out.stderr.contains(uri.trim_end_matches('/').rsplit('/').next().unwrap())
    );

    // The exit code passes through; the capability is not in the proxy's argv (the command reads it).
    let out = s.mo(&["exec", "--proxy", "--", "sh", "-c", "tr '\\0' ' ' < /proc/$PPID/cmdline; exit 7"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(out.stdout.contains("exec --proxy"), "{}", out.stdout);
    assert!(!out.stdout.contains("127.0.0.1"), "{}", out.stdout);

    // The MLflow CLI through it, no plugin involved (it steps aside: no pyproject block matches the URI).
    let mut c = e2e::command(&s, venv().bin("mlflow"));
    let exe = env!("CARGO_BIN_EXE_mlflow-oidc");
    c.args(["experiments", "search"]);
    let mut full = Command::new(exe);
    full.args(["exec", "--proxy", "--"]).arg(c.get_program()).args(c.get_args());
    full.env_clear().envs(c.get_envs().filter_map(|(k, v)| Some((k, v?)))).current_dir(s.path("proj"));
    let out = sandbox::Out::from(full.output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Default"), "{}", out.stdout);
}

/// One raw HTTP/1.1 exchange; the status code.
fn raw(addr: &str, request: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn refusals_never_reach_the_server_and_64_connections_at_once_work() {
    let st = stack();
    let s = machine_project();
    let proxy = Running::start(&s, &[]);
    let addr = proxy.addr();
    let marker = unique("refused");
    let path = format!("api/2.0/mlflow/experiments/get-by-name?experiment_name={marker}");
    let before = st.access().len();
    let (status, _) = support::curl(&[&format!("http://{addr}/{path}")]);
    assert_eq!(status, 403, "no capability");
    let (status, _) = support::curl(&[&format!("http://{addr}/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/{path}")]);
    assert_eq!(status, 403, "wrong capability");
    let cap = proxy.capability();
    let absolute = format!("GET {}/{cap}/{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", st.proxy);
    assert_eq!(raw(&addr, &absolute), 400, "absolute-form");
    let upstream_host = st.proxy.trim_start_matches("http://");
    let connect = format!("CONNECT {upstream_host} HTTP/1.1\r\nHost: {upstream_host}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw(&addr, &connect), 405, "CONNECT");
    let (status, _) = support::curl(&["--proxy", &format!("http://{addr}"), &format!("{}/{path}", st.proxy)]);
    assert_eq!(status, 400, "curl as a forward-proxy client");
    std::thread::sleep(Duration::from_millis(300));
    let seen = access_since(st, before);
    assert!(seen.iter().all(|a| !a.path.contains(&marker)), "a refused request reached Apache: {seen:?}");
    assert!(proxy.log().contains("(refused) 403") && !proxy.log().contains(&cap), "{}", proxy.log());

    // 64 connections at once, each a few keep-alive requests.
    let started = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let url = format!("{}api/2.0/mlflow/experiments/search?max_results=1", proxy.uri);
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                (0..3).map(|_| agent.get(&url).call().map(|r| r.status().as_u16()).unwrap_or(0)).collect::<Vec<_>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    eprintln!("proxy: 64 connections x 3 requests in {:.2} s", started.elapsed().as_secs_f64());
    let log = proxy.log();
    let failed: Vec<_> = log.lines().filter(|l| l.contains("failed") || l.contains(" 502 ")).take(5).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}\n{failed:?}\n{}", st.logs());
}

/// Replace the cached access token by one Apache rejects (same expiry): the proxy's first request gets a 401.
fn spoil_cached_token(tokens_dir: &Path) {
    let files: Vec<_> = std::fs::read_dir(tokens_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    fn spoil(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(t) = m.get_mut("access_token") {
                    *t = serde_json::Value::String("not-a-jwt".into());
                    return true;
                }
                m.values_mut().any(spoil)
            }
            _ => false,
        }
    }
    assert!(spoil(&mut v), "no access_token in {v}");
    std::fs::write(&files[0], v.to_string()).unwrap();
}

#[test]
fn an_upstream_401_causes_exactly_one_renewal_and_the_request_succeeds() {
    let st = stack();
    let mut s = machine_project();
    s.set("MLFLOW_OIDC_STORE", "file");
    s.mo(&["token"]).ok();
    spoil_cached_token(&s.tokens_dir());
    let proxy = Running::start(&s, &[]);
    let before = st.access().len();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{}api/2.0/mlflow/experiments/search?max_results=1", proxy.uri);
            std::thread::spawn(move || support::curl(&[&url]).0)
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|&c| c == 200), "{statuses:?}\n{}", proxy.log());
    let renewals = proxy.log().matches("proxy: token renewed").count();
    assert_eq!(renewals, 1, "{}", proxy.log());
    let seen = access_since(st, before);
    assert!(seen.iter().any(|a| a.status == 401), "{seen:?}");
    assert_eq!(seen.iter().filter(|a| a.status == 200).count(), 8, "{seen:?}");
}

#[test]
fn without_a_token_the_mlflow_client_s_exception_says_what_to_do() {
    let st = stack();
    // Not logged in: the MLflow client's exception names the login command.
    let s = project(&format!("client-id = \"{PUBLIC_CLIENT_ID}\"\nca-bundle = \"{}\"", st.ca.display()));
    let proxy = Running::start(&s, &[]);
    let (out, _) = plain_python(&s, &proxy.uri, &["search"], &[]);
    let r = last_json(&out);
    assert_eq!(r["ok"], false);
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("UNAUTHENTICATED") && err.contains(&format!("run `mlflow-oidc login --server {}`", st.proxy)),
        "{err}"
    );

    // The provider is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Sandbox::with_server(
        &st.proxy,
        &format!("http://127.0.0.1:{port}"),
        "client-id = \"x\"\nclient-secret = \"y\"\naudience = \"mlflow\"",
    );
    let proxy = Running::start(&s, &[]);
    let (out, _) = plain_python(&s, &proxy.uri, &["search"], &[("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")]);
    let r = last_json(&out);
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("TEMPORARILY_UNAVAILABLE") && err.contains("mlflow-oidc: cannot get a token for"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
