//! [`Deps`]: everything the use cases touch outside memory (streams, clock, browser, environment, paths) and the
//! command's one warning sink; `main` builds the real one, tests their own (STYLE habit 6).

use std::io::Write;

use crate::browser::{Browser, SystemBrowser};
use crate::clock::{Clock, SystemClock};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::warnings::Warnings;

/// Everything the use cases touch outside memory; `main` builds the real one, tests their own.
pub struct Deps {
    pub env: Env,
    pub paths: Paths,
    pub out: Box<dyn Write>,
    pub err: Box<dyn Write>,
    pub clock: Box<dyn Clock>,
    pub stdin_is_tty: bool,
    pub stderr_is_tty: bool,
    pub browser: Box<dyn Browser>,
    /// `-v`: explain decisions on stderr (never tokens or secrets).
    pub verbose: bool,
    /// Colour on stderr / stdout: only on a terminal, never with NO_COLOR (https://no-color.org).
    pub color_err: bool,
    pub color_out: bool,
    /// The command's one warning sink: printed before the next line on stderr and at the end.
    pub warnings: Warnings,
}

impl Deps {
    /// The production wiring: real environment, directories, streams and clock.
    pub fn system() -> Self {
        use std::io::IsTerminal;
        let env = Env::capture();
        let colors_ok = !env.is_set("NO_COLOR") && env.get_lossy("TERM") != Some("dumb");
        Deps {
            browser: Box::new(SystemBrowser::new(&env)),
            verbose: false,
            color_err: colors_ok && std::io::stderr().is_terminal(),
            color_out: colors_ok && std::io::stdout().is_terminal(),
            env,
            paths: Paths::from_system(),
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            clock: Box::new(SystemClock),
            stdin_is_tty: std::io::stdin().is_terminal(),
            stderr_is_tty: std::io::stderr().is_terminal(),
            warnings: Warnings::default(),
        }
    }

    /// Unix seconds now, from the clock seam.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A progress line on stderr, after any warning not yet printed. Failing to write one is not worth failing
    /// the command for.
    pub fn note(&mut self, msg: impl AsRef<str>) {
        self.print_warnings();
        // Warnings quote file names, claims and provider text: nothing in them may drive the terminal.
        let _ = writeln!(self.err, "{}", crate::error::printable_lines(msg.as_ref()));
    }

    /// A warning, printed now unless it was printed already.
    pub fn warn(&mut self, msg: impl Into<String>) {
        self.warnings.push(msg);
        self.print_warnings();
    }

    /// A `--verbose` line.
    pub fn debug(&mut self, msg: impl AsRef<str>) {
        if self.verbose {
            self.print_warnings();
            let _ = writeln!(self.err, "mlflow-oidc: {}", crate::error::printable_lines(msg.as_ref()));
        }
    }

    pub(super) fn print_warnings(&mut self) {
        for w in self.warnings.take() {
            let _ = writeln!(self.err, "warning: {}", crate::error::printable_lines(&w));
        }
    }
}

/// Write the product to stdout; a reader that went away (`| head`) is not an error.
pub fn write_out(deps: &mut Deps, bytes: &[u8]) -> Result<()> {
    deps.print_warnings();
    match deps.out.write_all(bytes).and_then(|_| deps.out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
    }
}
