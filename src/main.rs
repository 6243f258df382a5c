//! Entry point: parse the command line, build the real dependencies once, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use mlflow_oidc::app::{self, Deps};
use mlflow_oidc::cli::Cli;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match mlflow_oidc::cli::parse_fast(&args) {
        Some(cli) => cli,
        None => match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            Err(e) => e.exit(),
        },
    };
    let mut deps = Deps::system();
    ExitCode::from(app::main_with(cli, &mut deps))
}
