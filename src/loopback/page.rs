//! The HTTP side of the listener: reading a request head within its deadline, judging it (path, method,
//! `Host`, `state`), and answering the browser — for the callback only once the login's outcome is known.

use std::io::{Read, Write};
use std::time::Instant;

use super::tls::Conn;
use super::{GENERIC_FAILURE, HEAD_DEADLINE, MAX_REQUEST, SUCCESS, WRITE_TIMEOUT};
use crate::error::printable;
use crate::tokenset::constant_time_eq;

pub use super::Callback;

/// The browser's connection that delivered the callback, answered only once the app knows how the login ended,
/// so the browser never says "logged in" for a code the provider then refuses. Dropped unanswered, it sends a
/// generic failure page. A pasted callback has no connection and answers nothing.
pub struct Reply {
    stream: Option<Conn>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.stream.is_some() { "Reply(pending)" } else { "Reply(none)" })
    }
}

impl Reply {
    pub(super) fn none() -> Self {
        Reply { stream: None }
    }

    /// Answer the browser: the success page, or a failure page naming `why` briefly (sanitised; the page is
    /// HTML-escaped) and pointing at the terminal for the rest.
    pub fn finish(mut self, outcome: std::result::Result<(), &str>) {
        let Some(mut stream) = self.stream.take() else { return };
        match outcome {
            Ok(()) => respond(&mut stream, 200, "Logged in", SUCCESS),
            Err(why) => {
                let why = printable(why);
                let text = format!("The login did not complete: {why}. Look at the terminal for details.");
                respond(&mut stream, 400, "Login failed", &text)
            }
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            respond(&mut stream, 400, "Login failed", GENERIC_FAILURE);
        }
    }
}

/// Serve one connection; `Some` only for the request that ends the wait. A code callback is not answered here:
/// its connection goes back with it, for [`Reply::finish`]. `done_reading` is called once the head is in, so the
/// connection is no longer one to evict.
pub(super) fn handle_conn(
    mut stream: Conn,
    path: &str,
    state: &str,
    hosts: &[String],
    done_reading: impl FnOnce(),
) -> Option<(Callback, Reply)> {
    let _ = stream.tcp().set_nonblocking(false);
    let _ = stream.tcp().set_write_timeout(Some(WRITE_TIMEOUT));
    let head = read_head(&mut stream, Instant::now() + HEAD_DEADLINE);
    done_reading();
    let head = match head {
        Ok(h) => h,
        Err(status) => {
            respond(&mut stream, status, "Bad request", "This request was not understood.");
            return None;
        }
    };
    let (outcome, status, title, body) = judge_request(&head, path, state, hosts);
    match outcome {
        Some(cb @ Callback::Code { .. }) => Some((cb, Reply { stream: Some(stream) })),
        outcome => {
            respond(&mut stream, status, title, &body);
            outcome.map(|cb| (cb, Reply::none()))
        }
    }
}

/// [`judge`] for a request that reached the listener: its `Host` header must also name this listener (one of
/// `hosts`), or the request came from a page whose name was rebound to 127.0.0.1 (DNS rebinding) and is refused.
/// A request without `Host` (HTTP/1.0) is refused too: every browser sends one. Stray paths and methods are
/// answered 404/405 first, as there is nothing there for anyone.
pub fn judge_request(
    head: &str,
    path: &str,
    state: &str,
    hosts: &[String],
) -> (Option<Callback>, u16, &'static str, String) {
    let verdict = judge(head, path, state);
    if matches!(verdict.1, 404 | 405) {
        return verdict;
    }
    let mut found = head.lines().skip(1).take_while(|l| !l.is_empty()).filter_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim())
    });
    let (first, second) = (found.next(), found.next());
    match (first, second) {
        (Some(h), None) if hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h)) => verdict,
        (None, _) => (None, 400, "Login failed", "This request names no Host; it was ignored.".into()),
        (Some(_), Some(_)) => {
            (None, 400, "Login failed", "This request names more than one Host; it was ignored.".into())
        }
        (Some(h), _) => (
            None,
            400,
            "Login failed",
            format!(
                "This request was addressed to {}, not to this login's listener (a page using DNS rebinding?); \
                 it was ignored.",
                printable(h)
            ),
        ),
    }
}

/// Decide what a request head means: (outcome, status, page title, page text). The `Host` header is not looked
/// at here ([`judge_request`] does), so a URL pasted from the address bar is judged the same way.
pub fn judge(head: &str, path: &str, state: &str) -> (Option<Callback>, u16, &'static str, String) {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return (None, 405, "Method not allowed", "Only GET is served here.".into());
    }
    let (req_path, query) = target.split_once('?').unwrap_or((target, ""));
    if req_path != path {
        return (None, 404, "Not found", "Nothing here.".into());
    }
    let mut got_state = None;
    let (mut code, mut error, mut description, mut iss) = (None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "state" => &mut got_state,
            "code" => &mut code,
            "error" => &mut error,
            "error_description" => &mut description,
            "iss" => &mut iss,
            _ => continue,
        };
        if slot.is_some() {
            // A repeated parameter is ambiguous; refuse rather than guess which one the provider meant.
            return (None, 400, "Login failed", format!("The parameter {k} appears more than once."));
        }
        *slot = Some(v.into_owned());
    }
    if !got_state.as_deref().is_some_and(|s| constant_time_eq(s.as_bytes(), state.as_bytes())) {
        return (
            None,
            400,
            "Login failed",
            "This response does not belong to the login in progress (state mismatch); it was ignored.".into(),
        );
    }
    if let Some(error) = error {
        let text = match &description {
            Some(d) => format!("The identity provider refused the login: {error} ({d})."),
            None => format!("The identity provider refused the login: {error}."),
        };
        return (Some(Callback::Error { error, description }), 400, "Login failed", text);
    }
    match code {
        Some(code) if !code.is_empty() => (
            Some(Callback::Code { code, iss }),
            200,
            "Login received",
            // Not the page the browser gets: that waits for the code exchange (see `Reply`).
            "The login response was received; finishing the login in the terminal.".into(),
        ),
        _ => (None, 400, "Login failed", "The response carries no authorization code.".into()),
    }
}

/// Read up to the blank line ending the head, all of it before `deadline` however the bytes are spread out.
fn read_head(stream: &mut Conn, deadline: Instant) -> std::result::Result<String, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_REQUEST {
            return Err(431);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout means "block forever" to the OS, so the deadline is checked here, not left to it.
        if left.is_zero() || stream.tcp().set_read_timeout(Some(left)).is_err() {
            return Err(408);
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(408),
        }
    }
    String::from_utf8(buf).map_err(|_| 400)
}

fn respond(stream: &mut Conn, status: u16, title: &str, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mlflow-oidc: {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}</style></head>\
         <body><h1>{title}</h1><p>{}</p><p><small>mlflow-oidc</small></p></body></html>",
        html_escape(text)
    );
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
    let _ = stream.flush();
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
