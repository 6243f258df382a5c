//! The one error type of the crate and the only mapping from errors to exit codes.

use std::fmt;

/// Every failure the tool reports, grouped by what the caller should do next.
///
/// Messages are lower-case, name the file, key, variable, URL or server at fault and,
/// where there is an action, say what to run next.
#[derive(Debug)]
pub enum Error {
    /// Bad flags, configuration files or environment values: fix the input and re-run.
    Config(Detail),
    /// Valid configuration, but no server in it for this tracking URI (the MLflow plugin stays silent on it).
    NoServer(String),
    /// No usable credentials and no way to get them without a person: run `login`.
    LoginRequired { server: String, detail: String },
    /// The provider answered, and said no (OAuth error, bad metadata, denied consent).
    Provider(Detail),
    /// The provider could not be reached or did not answer in time.
    Network(Detail),
    /// Reading or writing local state (token cache, keyring) failed.
    Store(Detail),
    /// A person is needed but did not finish in time, or cancelled.
    Interaction(Detail),
    /// A local operation failed (writing stdout, running a command, rendering); `source` keeps the I/O error.
    Io { what: String, source: std::io::Error },
    /// The loopback redirect port is taken by another program; `bind_any` then tries the fallback ports.
    PortInUse { port: u16, message: String },
}

/// Our words for a failure and, when there is one, the error underneath them, which
/// [`std::error::Error::source`] hands to a caller that branches on it (`ErrorKind::NotFound`, a keyring
/// error) instead of on our wording (STYLE.md habit 12, rbw's `{source, file}`; issue 24).
///
/// The message we print is the same as before the source was kept: [`Error`]'s `Display` renders only our
/// words (an I/O error's short reason appended at display time), and our error renderer prints only `Display`,
/// never the chain. A source is kept only when its own text is safe to print: never a parse error of a token
/// response or of the token cache (serde quotes the value it choked on), never anything holding a secret.
pub struct Detail {
    message: String,
    cause: Option<Cause>,
}

enum Cause {
    /// Rendered as `{message}: {reason}`, the reason being [`io_reason`]'s short lower-case words.
    Io(std::io::Error),
    /// Already phrased inside the message by the caller; kept for `source()` only.
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Detail {
    /// Our words, with nothing underneath.
    pub fn new(message: impl Into<String>) -> Self {
        Detail { message: message.into(), cause: None }
    }

    /// `what` failed because of `source`: printed as `{what}: {short reason}`, e.g. "cannot read token cache
    /// /x: permission denied".
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Detail { message: what.into(), cause: Some(Cause::Io(source)) }
    }

    /// `message` (which already says what `source` means, in our words) with `source` kept underneath.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Detail { message: message.into(), cause: Some(Cause::Other(source.into())) }
    }

    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Some(Cause::Io(e)) => Some(e),
            Some(Cause::Other(e)) => Some(e.as_ref()),
            None => None,
        }
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.cause {
            Some(Cause::Io(e)) => write!(f, ": {}", io_reason(e)),
            Some(Cause::Other(_)) | None => Ok(()),
        }
    }
}

/// The source's `Display`, not its `Debug`: a `{:?}` of our error (a test's `unwrap`) must not print what a
/// source's fields hold (a keyring error can carry the undecodable secret's bytes).
impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = self.source().map(|e| e.to_string());
        f.debug_struct("Detail").field("message", &self.message).field("source", &source).finish()
    }
}

impl Error {
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(Detail::new(msg))
    }
    /// Reading a file the user named (a config file, a key, a CA bundle) failed: `what` names it.
    pub fn config_io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Config(Detail::io(what, source))
    }
    pub fn provider(msg: impl Into<String>) -> Self {
        Error::Provider(Detail::new(msg))
    }
    pub fn network(msg: impl Into<String>) -> Self {
        Error::Network(Detail::new(msg))
    }
    pub fn store(msg: impl Into<String>) -> Self {
        Error::Store(Detail::new(msg))
    }
    /// Reading or writing local state failed: `what` names the file and the operation.
    pub fn store_io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Store(Detail::io(what, source))
    }
    pub fn interaction(msg: impl Into<String>) -> Self {
        Error::Interaction(Detail::new(msg))
    }
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
    pub fn login_required(server: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::LoginRequired { server: server.into(), detail: detail.into() }
    }

    /// The process exit code for this error: 1 runtime failure, 2 usage or configuration, 3 login required.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::NoServer(_) => 2,
            Error::LoginRequired { .. } => 3,
            Error::Provider(_)
            | Error::Network(_)
            | Error::Store(_)
            | Error::Interaction(_)
            | Error::Io { .. }
            | Error::PortInUse { .. } => 1,
        }
    }

    /// A short machine-readable name for `--json` error objects.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::NoServer(_) => "no_server",
            Error::LoginRequired { .. } => "login_required",
            Error::Provider(_) => "provider",
            Error::Network(_) => "network",
            Error::Store(_) => "store",
            Error::Interaction(_) => "interaction",
            Error::Io { .. } => "io",
            Error::PortInUse { .. } => "port_in_use",
        }
    }

    /// The command that gets the caller past this error, when there is one (the message says it too).
    /// `server` is the `--server` the command was given, which the command to run next repeats.
    pub fn hint(&self, server: Option<&str>) -> Option<String> {
        let arg = |s: &str| if s.is_empty() { String::new() } else { format!(" --server {}", shell_word(s)) };
        match self {
            Error::LoginRequired { server, .. } => Some(format!("mlflow-oidc login{}", arg(server))),
            Error::Config(_) | Error::NoServer(_) => Some(format!("mlflow-oidc status{}", arg(server.unwrap_or("")))),
            _ => None,
        }
    }

    /// The error as `status --json` and `token --format json` print it on stdout: the contract the Python
    /// plugin reads instead of scraping stderr (issue 24). Fields are only ever added.
    pub fn to_json(&self, server: Option<&str>) -> serde_json::Value {
        serde_json::json!({"error": {
            "kind": self.kind(),
            "exit_code": self.exit_code(),
            "message": self.to_string(),
            "hint": self.hint(server),
        }})
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(d) | Error::Network(d) | Error::Store(d) | Error::Interaction(d) | Error::Provider(d) => {
                fmt::Display::fmt(d, f)
            }
            Error::NoServer(m) | Error::PortInUse { message: m, .. } => f.write_str(m),
            Error::Io { what, source } => write!(f, "{what} ({})", io_reason(source)),
            Error::LoginRequired { server, detail } => {
                let arg = if server.is_empty() { String::new() } else { format!(" --server {}", shell_word(server)) };
                write!(f, "not logged in to {}", if server.is_empty() { "the configured server" } else { server })?;
                if !detail.is_empty() {
                    write!(f, " ({detail})")?;
                }
                write!(f, ": run `mlflow-oidc login{arg}`")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Config(d) | Error::Network(d) | Error::Store(d) | Error::Interaction(d) | Error::Provider(d) => {
                d.source()
            }
            Error::NoServer(_) | Error::LoginRequired { .. } | Error::PortInUse { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Text from a provider or a request, made safe to print: control characters (terminal escapes) dropped,
/// at most 300 characters.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !unprintable(*c)).take(300).collect()
}

/// THE rule of what never reaches a terminal (issue 21): C0 and C1 controls (ESC, BEL, CR, LF, the 8-bit CSI
/// and OSC introducers) and the Unicode bidirectional and invisible formatting characters that make a terminal
/// show text other than what is there (CVE-2021-42574, "Trojan Source").
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// A message of ours for stderr, which may quote file names, claims and provider text: line breaks kept (our
/// messages have some), everything else [`printable`] drops, dropped.
pub fn printable_lines(s: &str) -> String {
    s.chars().filter(|c| *c == '\n' || !unprintable(*c)).collect()
}

/// A short, lower-case reason for an I/O error, for messages that already name the file.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => {
            let s = e.to_string();
            // std's messages are capitalised and carry "(os error N)"; keep ours lower-case and short.
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// `s` without control characters (terminal escapes, line breaks), whatever its length: [`printable`] untruncated.
pub fn strip_controls(s: &str) -> String {
    s.chars().filter(|c| !unprintable(*c)).collect()
}

/// What is wrong with a JSON document, without its values: serde's messages quote what they found
/// (`invalid type: string "…"`), which may be a token or provider-chosen escape sequences.
pub fn parse_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "a field is missing or has the wrong type",
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

/// `text` with every occurrence of the given secrets replaced, for provider messages that echo them back.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "<redacted>");
    }
    out
}

/// Quote `s` for a POSIX shell when it contains anything beyond a safe set.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_callers_next_step() {
        assert_eq!(Error::config("x").exit_code(), 2);
        assert_eq!(Error::login_required("s", "").exit_code(), 3);
        assert_eq!(Error::network("x").exit_code(), 1);
        assert_eq!(Error::provider("x").exit_code(), 1);
    }

    #[test]
    fn login_required_names_the_command_to_run() {
        let e = Error::login_required("https://mlflow.example.com", "");
        assert_eq!(
            e.to_string(),
            "not logged in to https://mlflow.example.com: run `mlflow-oidc login --server https://mlflow.example.com`"
        );
    }

    #[test]
    fn nothing_a_terminal_obeys_is_printed() {
        let hostile = "a\u{1b}]8;;https://evil\u{7}b\r\nc\u{9b}31m\u{202e}d\u{200b}e\u{85}f";
        assert_eq!(printable(hostile), "a]8;;https://evilbc31mdef");
        assert_eq!(strip_controls(hostile), "a]8;;https://evilbc31mdef");
        assert_eq!(printable_lines(hostile), "a]8;;https://evilb\nc31mdef");
    }

    #[test]
    fn the_json_error_object_is_the_plugins_contract() {
        let e = Error::login_required("https://m.example.com", "");
        assert_eq!(
            e.to_json(Some("m")).to_string(),
            r#"{"error":{"exit_code":3,"hint":"mlflow-oidc login --server https://m.example.com","kind":"login_required","message":"not logged in to https://m.example.com: run `mlflow-oidc login --server https://m.example.com`"}}"#
        );
        assert_eq!(
            Error::config("bad").to_json(Some("https://m.example.com")).to_string(),
            r#"{"error":{"exit_code":2,"hint":"mlflow-oidc status --server https://m.example.com","kind":"config","message":"bad"}}"#
        );
        assert_eq!(
            Error::network("cannot reach x").to_json(None).to_string(),
            r#"{"error":{"exit_code":1,"hint":null,"kind":"network","message":"cannot reach x"}}"#
        );
    }

    #[test]
    fn an_io_source_is_kept_and_only_its_short_reason_printed() {
        use std::error::Error as _;
        let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = Error::store_io("cannot read token cache /c/k.json", denied());
        assert_eq!(e.to_string(), "cannot read token cache /c/k.json: permission denied");
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the I/O error is kept");
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
        // The JSON error object, the plugin's contract, prints the same message.
        assert_eq!(
            e.to_json(None).to_string(),
            r#"{"error":{"exit_code":1,"hint":null,"kind":"store","message":"cannot read token cache /c/k.json: permission denied"}}"#
        );
        let e = Error::config_io("cannot read config file /c.toml", std::io::Error::other("Bad thing (os error 5)"));
        assert_eq!(e.to_string(), "cannot read config file /c.toml: bad thing");
        assert_eq!(e.exit_code(), 2);
        assert!(e.source().is_some());
        assert!(Error::config("bad").source().is_none());
    }

    #[test]
    fn a_source_is_never_debug_printed() {
        use std::error::Error as _;
        #[derive(Debug)]
        struct Holds(#[allow(dead_code)] &'static str);
        impl fmt::Display for Holds {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("undecodable secret")
            }
        }
        impl std::error::Error for Holds {}
        let e = Error::Store(Detail::with_source("cannot read the refresh token in the OS keyring", Holds("s3cr3t")));
        assert_eq!(e.to_string(), "cannot read the refresh token in the OS keyring");
        assert!(e.source().is_some_and(|s| s.is::<Holds>()));
        let debug = format!("{e:?}");
        assert!(!debug.contains("s3cr3t") && debug.contains("undecodable secret"), "{debug}");
    }

    #[test]
    fn shell_word_quotes_only_when_needed() {
        assert_eq!(shell_word("abc.DEF-1"), "abc.DEF-1");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
