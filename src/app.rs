//! Dispatch of a parsed command line and error rendering — nothing else. What every use case touches outside
//! memory is [`Deps`] (`app/deps.rs`), a command's set-up its [`Session`] (`app/session.rs`); each use case lives
//! in its own file under `app/`.

use std::io::Write;

use crate::cli::{Cli, Command, Format, StatusArgs, TokenArgs};
use crate::config::Flags;
use crate::error::{Error, Result};

mod deps;
mod login;
mod logout;
mod proxy;
mod session;
mod status;
mod token;
mod trust;

pub use deps::{Deps, write_out};
pub use session::Session;

pub use login::LoginOpts;
pub use token::{ValidToken, Want, valid_token};

/// How long a process waits for a sibling's refresh before giving up.
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Run one invocation and report its outcome; returns the process exit code.
pub fn main_with(cli: Cli, deps: &mut Deps) -> u8 {
    // With --check, the JSON report is already on stdout when a check fails; the error goes to stderr only.
    // `token --format json` too: the Python plugin reads its failures from this object, not from stderr (issue 24).
    let json_errors = matches!(&cli.command, Some(Command::Status(StatusArgs { json: true, check: false })))
        || matches!(&cli.command, Some(Command::Token(TokenArgs { format: Format::Json, .. })));
    let server = cli.global.server.clone();
    let outcome = run(cli, deps);
    deps.print_warnings();
    match outcome {
        // A closed stdout (`| head`) is the reader's choice, not our failure.
        Ok(code) => {
            let _ = deps.out.flush();
            code
        }
        Err(e) => {
            if json_errors {
                let obj = e.to_json(server.as_deref());
                let _ = writeln!(deps.out, "{obj}");
                let _ = deps.out.flush();
            }
            let prefix = if deps.color_err { "\x1b[1;31merror:\x1b[0m" } else { "error:" };
            let _ = writeln!(deps.err, "{prefix} {}", crate::error::printable_lines(&e.to_string()));
            e.exit_code()
        }
    }
}

/// Dispatch a parsed command line: handlers only parse and call (STYLE habit 5). The exit code is 0 but for
/// `exec`, which ends with its command's.
pub fn run(cli: Cli, deps: &mut Deps) -> Result<u8> {
    let flags =
        Flags { server: cli.global.server.clone(), config: cli.global.config.clone(), store: cli.global.store.clone() };
    deps.verbose = cli.global.verbose;
    let done = match cli.command {
        None => orientation(deps),
        Some(Command::Status(args)) => status::status(&flags, &args, deps),
        Some(Command::Login(args)) => login::login(&flags, &args, deps),
        Some(Command::Token(args)) => token::token(&flags, &args, deps),
        Some(Command::Logout(args)) => logout::logout(&flags, &args, deps),
        Some(Command::Exec(args)) if args.proxy => return proxy::exec(&flags, &args, deps),
        Some(Command::Exec(args)) => return token::exec(&flags, &args, deps),
        Some(Command::Proxy(args)) => proxy::proxy(&flags, &args, deps),
        Some(Command::Trust(args)) => trust::trust(&flags, &args, deps),
        Some(Command::Completions { shell }) => {
            let mut buf = Vec::new();
            crate::cli::completions(shell, &mut buf);
            write_out(deps, &buf)
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            crate::cli::man_page(&mut buf).map_err(|e| Error::io("cannot render the man page", e))?;
            write_out(deps, &buf)
        }
    };
    done.map(|()| 0)
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

#[cfg(test)]
mod tests;
