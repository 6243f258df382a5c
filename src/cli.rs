//! The command line, as clap definitions only: no I/O, no logic. The hand-written parser of the hot path is
//! `cli/fast.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod fast;
pub use fast::parse_fast;

const AFTER_HELP: &str = "\
Examples:
  mlflow-oidc login                              log in to the configured tracking server
  export MLFLOW_TRACKING_TOKEN=$(mlflow-oidc token)
  mlflow-oidc status --server https://mlflow.example.com

Configuration comes from [[tool.mlflow-oidc-client.tracking-servers]] blocks in the nearest pyproject.toml,
the user config file, and MLFLOW_TRACKING_OIDC_* variables (which win). Exit codes: 0 ok, 1 failure,
2 usage or configuration error, 3 login required.";

/// Credential helper for MLflow tracking servers behind an OAuth 2.1 / OpenID Connect proxy.
#[derive(Debug, Parser)]
#[command(name = "mlflow-oidc", version = env!("VERSION_WITH_COMMIT"), about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]
    #[arg(long, global = true, value_name = "URI")]
    pub server: Option<String>,
    /// Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]
    #[arg(long, global = true, value_name = "STORE", value_parser = ["auto", "keyring", "file", "memory"])]
    pub store: Option<String>,
    /// Explain what happens on stderr (tokens and secrets are never logged)
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to the tracking server's identity provider and store the credentials
    #[command(
        after_help = "Examples:\n  mlflow-oidc login\n  mlflow-oidc login --server https://mlflow.example.com --timeout 120"
    )]
    Login(LoginArgs),
    /// Print a valid bearer token (from cache, by silent refresh, or by logging in)
    #[command(
        after_help = "Examples:\n  export MLFLOW_TRACKING_TOKEN=$(mlflow-oidc token)\n  curl -H \"$(mlflow-oidc token --format header)\" https://mlflow.example.com/api/2.0/mlflow/experiments/search\n  eval \"$(mlflow-oidc token --format env)\""
    )]
    Token(TokenArgs),
    /// Forget the stored credentials of a server (or of all servers)
    #[command(after_help = "Examples:\n  mlflow-oidc logout\n  mlflow-oidc logout --all")]
    Logout(LogoutArgs),
    /// Show the resolved configuration and who is logged in (no network unless --check)
    #[command(
        after_help = "Examples:\n  mlflow-oidc status\n  mlflow-oidc status --json | jq .config.sources\n  mlflow-oidc status --check      is the provider reachable and set up for this configuration?"
    )]
    Status(StatusArgs),
    /// Run a command with MLFLOW_TRACKING_TOKEN and MLFLOW_TRACKING_URI set
    #[command(
        after_help = "Examples:\n  mlflow-oidc exec -- mlflow experiments search\n  mlflow-oidc exec --proxy -- java -jar train.jar\n  mlflow-oidc exec --server https://mlflow.example.com -- python train.py\n\nThe token is fixed for the life of the command; for runs longer than a token's lifetime use --proxy\n(any MLflow client: a local proxy renews tokens) or the MLflow plugin (pip install mlflow-oidc;\nMLFLOW_TRACKING_AUTH=oidc)."
    )]
    Exec(ExecArgs),
    /// Serve the tracking server on a loopback port, adding a fresh token to every request (any MLflow client)
    #[command(
        after_help = "Examples:\n  mlflow-oidc exec --proxy -- java -jar train.jar\n  read -r MLFLOW_TRACKING_URI < <(mlflow-oidc proxy) && export MLFLOW_TRACKING_URI\n\nPrints the tracking URI to use (http://127.0.0.1:PORT/<capability>/) on one line, then serves until\nSIGINT or SIGTERM. The URI is a secret: whoever has it acts as you on the tracking server."
    )]
    Proxy(ProxyArgs),
    /// Trust a project's pyproject.toml as it is now, so that it may use your key files, variables and commands
    #[command(after_help = TRUST_AFTER_HELP)]
    Trust(TrustArgs),
    /// Print a shell completion script
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// How long to wait for the login, e.g. 300, 90s, 5m
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: u64,
    /// Which flow: auth-code (browser + loopback redirect) or device (a code to enter on any device)
    /// [default: auth-code when a local browser is plausible, else device when the provider supports it]
    #[arg(long, value_enum, value_name = "FLOW")]
    pub flow: Option<FlowArg>,
    /// Use the device authorization flow (same as --flow device)
    #[arg(long, conflicts_with = "flow")]
    pub device: bool,
    /// Do not open a browser: print the URL, and accept the redirected URL pasted on stdin
    #[arg(long)]
    pub no_browser: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlowArg {
    /// Authorization code with PKCE and a loopback redirect
    AuthCode,
    /// Device authorization grant (RFC 8628)
    Device,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Output format
    #[arg(help_heading = "Output")]
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
    /// Refresh a token that expires within this duration, e.g. 60, 2m [default: 60s, or half the token's
    /// lifetime when that is shorter]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Renewal")]
    pub min_valid: Option<u64>,
    /// Never start an interactive login; exit 3 when one would be needed
    #[arg(long, help_heading = "Renewal")]
    pub no_login: bool,
    /// How long to wait for a browser login if one is needed
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, help_heading = "Renewal")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Warn when the token expires within this duration
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub warn_within: u64,
    /// Refresh a token that expires within this duration first
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_valid: Option<u64>,
    /// Never start an interactive login; exit 3 when one would be needed
    #[arg(long)]
    pub no_login: bool,
    /// How long to wait for a browser login if one is needed
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: u64,
    /// Run a local proxy for the command instead: MLFLOW_TRACKING_URI is the proxy's URI, tokens stay fresh for
    /// any run length and any MLflow client, and MLFLOW_TRACKING_TOKEN is not set
    #[arg(long, conflicts_with = "warn_within")]
    pub proxy: bool,
    /// With --proxy: forward to a plain http:// tracking server that is not on loopback (the token then
    /// crosses the network unencrypted)
    #[arg(long, requires = "proxy")]
    pub allow_plain_http: bool,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND", num_args = 1..)]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on; port 0 picks a free one
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Allow a listen address that is not a loopback one (other machines may then reach the proxy)
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Forward to a plain http:// tracking server that is not on loopback (the token then crosses the network
    /// unencrypted)
    #[arg(long)]
    pub allow_plain_http: bool,
    /// Never start an interactive login for the first token
    #[arg(long)]
    pub no_login: bool,
    /// How long to wait for a browser login if one is needed for the first token
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: u64,
}

pub use crate::config::parse_duration;
pub use crate::output::Format;

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Log out of every server with stored credentials
    #[arg(long, conflicts_with = "server")]
    pub all: bool,
    /// Also open the provider's end-session page to end the browser session (RP-initiated logout)
    #[arg(long)]
    pub end_session: bool,
}

/// `trust --help`'s epilogue; a test holds its list of keys to the settings table's `needs_trust` column.
pub const TRUST_AFTER_HELP: &str = "Examples:\n  mlflow-oidc trust                  trust the pyproject.toml found from here up\n  mlflow-oidc trust ../other/pyproject.toml\n  mlflow-oidc trust --list\n  mlflow-oidc trust --revoke\n\nA project file's keys that read, run, sign with or send something of yours (client-assertion-key,\nclient-assertion, subject-token, redirect-tls-cert, redirect-tls-key) are ignored until you trust that\nfile; a changed file must be trusted again. In CI, run `mlflow-oidc trust` as a step after the checkout.";

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The pyproject.toml (or its directory) [default: the one found walking up from the current directory]
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// List the trusted files, and whether each still has the content that was trusted
    #[arg(long, conflicts_with_all = ["path", "revoke"])]
    pub list: bool,
    /// Stop trusting the file
    #[arg(long)]
    pub revoke: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Also check the provider over the network: discovery, issuer, endpoints, redirect port, clock skew
    #[arg(long)]
    pub check: bool,
}

/// The shell completion script for `shell`, generated from this command line (tests/completions.rs keeps the
/// committed copies in step).
pub fn completions(shell: clap_complete::Shell, out: &mut Vec<u8>) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "mlflow-oidc", out);
}

/// The man page (roff), generated from this command line.
pub fn man_page(out: &mut Vec<u8>) -> std::io::Result<()> {
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Ok(300));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
