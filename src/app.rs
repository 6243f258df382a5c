//! The use cases (`login`, `token`, `logout`, `status`) over [`Deps`]: the one orchestration layer.

use std::io::Write;

use crate::cli::{Cli, Command, StatusArgs};
use crate::config::{self, Flags, Resolved};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::output;
use crate::paths::Paths;

/// Everything the use cases touch outside memory; `main` builds the real one, tests their own.
pub struct Deps {
    pub env: Env,
    pub paths: Paths,
    pub out: Box<dyn Write>,
    pub err: Box<dyn Write>,
    /// Unix seconds now.
    pub now: fn() -> i64,
    pub stdin_is_tty: bool,
    pub stderr_is_tty: bool,
}

impl Deps {
    /// The production wiring: real environment, directories, streams and clock.
    pub fn system() -> Self {
        use std::io::IsTerminal;
        Deps {
            env: Env::capture(),
            paths: Paths::from_system(),
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            now: system_now,
            stdin_is_tty: std::io::stdin().is_terminal(),
            stderr_is_tty: std::io::stderr().is_terminal(),
        }
    }

    /// A progress or warning line on stderr. Failing to write one is not worth failing the command for.
    pub fn note(&mut self, msg: impl AsRef<str>) {
        let _ = writeln!(self.err, "{}", msg.as_ref());
    }
}

fn system_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Run one invocation and report its outcome; returns the process exit code.
pub fn main_with(cli: Cli, deps: &mut Deps) -> u8 {
    let json_errors = matches!(&cli.command, Some(Command::Status(StatusArgs { json: true, .. })));
    match run(cli, deps) {
        Ok(()) => {
            if deps.out.flush().is_err() {
                // A closed stdout (`| head`) is the reader's choice, not our failure.
                return 0;
            }
            0
        }
        Err(e) => {
            if json_errors {
                let obj = serde_json::json!({"error": {"kind": e.kind(), "message": e.to_string(), "exit_code": e.exit_code()}});
                let _ = writeln!(deps.out, "{obj}");
                let _ = deps.out.flush();
            }
            let _ = writeln!(deps.err, "error: {e}");
            e.exit_code()
        }
    }
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli, deps: &mut Deps) -> Result<()> {
    let flags = Flags { server: cli.global.server.clone(), config: cli.global.config.clone() };
    match cli.command {
        None => orientation(deps),
        Some(Command::Status(args)) => status(&flags, &args, deps),
        Some(Command::Login(_)) => Err(not_yet("login")),
        Some(Command::Token(_)) => Err(not_yet("token")),
        Some(Command::Logout(_)) => Err(not_yet("logout")),
        Some(Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mlflow-oidc", &mut buf);
            write_out(deps, &buf)
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut buf)
                .map_err(|e| Error::store(format!("cannot render the man page: {e}")))?;
            write_out(deps, &buf)
        }
    }
}

fn not_yet(what: &str) -> Error {
    Error::Interaction(format!("`{what}` is not yet implemented"))
}

/// Write the product to stdout; a reader that went away (`| head`) is not an error.
pub fn write_out(deps: &mut Deps, bytes: &[u8]) -> Result<()> {
    match deps.out.write_all(bytes).and_then(|_| deps.out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::store(format!("cannot write to stdout: {e}"))),
    }
}

fn orientation(deps: &mut Deps) -> Result<()> {
    deps.note(
        "mlflow-oidc: credentials for MLflow tracking servers behind OpenID Connect.\n\n\
         Start with:\n  mlflow-oidc status     check which server is configured and who is logged in\n  \
         mlflow-oidc login      log in (opens your browser)\n  mlflow-oidc token      print a bearer token\n\n\
         Run `mlflow-oidc --help` for every command and option.",
    );
    Ok(())
}

/// Resolve the configuration for this invocation and print its warnings.
pub fn resolve_config(flags: &Flags, deps: &mut Deps) -> Result<Resolved> {
    let files = config::load_sources(flags, &deps.env, deps.paths.user_config.as_deref())?;
    let resolved = config::resolve(&files, &deps.env, flags)?;
    for w in &resolved.warnings {
        deps.note(format!("warning: {w}"));
    }
    Ok(resolved)
}

fn status(flags: &Flags, args: &StatusArgs, deps: &mut Deps) -> Result<()> {
    let resolved = resolve_config(flags, deps)?;
    let c = &resolved.server;
    if args.json {
        let v = serde_json::json!({ "config": output::config_json(c) });
        write_out(deps, format!("{v}\n").as_bytes())
    } else {
        write_out(deps, output::config_text(c).as_bytes())
    }
}
