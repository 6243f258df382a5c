//! Waiting lines on stderr while a person acts: one line rewritten in place on a terminal, a plain line at most
//! once a minute elsewhere (logs and CI keep every line, so a per-second countdown would flood them).

use std::io::Write;

/// Erase the current terminal line (CR, then ECMA-48 "erase in line").
const CLEAR_LINE: &str = "\r\x1b[2K";

pub struct Countdown {
    tty: bool,
    last_plain: Option<u64>,
}

impl Countdown {
    pub fn new(tty: bool) -> Self {
        Countdown { tty, last_plain: None }
    }

    /// Show "`what`… m:ss left"; `what` is our own text, never provider text (it may carry a user code we
    /// already sanitised).
    pub fn tick(&mut self, err: &mut dyn Write, what: &str, left_secs: u64) {
        let (m, s) = (left_secs / 60, left_secs % 60);
        if self.tty {
            let _ = write!(err, "\r{what}… {m}:{s:02} left ");
            let _ = err.flush();
        } else if self.last_plain.is_none_or(|l| l >= left_secs + 60) {
            let _ = writeln!(err, "{what} ({m}:{s:02} left)…");
            self.last_plain = Some(left_secs);
        }
    }

    /// Remove the rewritten line before the next message (on a terminal; elsewhere there is none).
    pub fn clear(&self, err: &mut dyn Write) {
        if self.tty {
            let _ = write!(err, "{CLEAR_LINE}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_once_a_minute_and_terminal_lines_are_rewritten() {
        let mut out = Vec::new();
        let mut c = Countdown::new(false);
        for left in (0..=300).rev() {
            c.tick(&mut out, "Waiting", left);
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 6, "{text}");
        assert!(text.starts_with("Waiting (5:00 left)…\n"));

        let mut out = Vec::new();
        let mut c = Countdown::new(true);
        c.tick(&mut out, "Waiting", 61);
        c.clear(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "\rWaiting… 1:01 left \r\x1b[2K");
    }
}
