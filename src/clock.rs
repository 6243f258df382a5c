//! Time as a parameter (STYLE habit 7): wall-clock seconds, a monotonic instant and sleeping, behind one trait so
//! the use cases run on a fake clock in tests.

use std::cell::Cell;
use std::time::{Duration, Instant};

pub trait Clock {
    /// Unix seconds now.
    fn now(&self) -> i64;
    /// A monotonic instant, for deadlines and polling intervals.
    fn instant(&self) -> Instant;
    fn sleep(&self, d: Duration);
}

/// The machine's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// A clock that only moves when told to, or when something sleeps on it (sleeping advances it at once).
pub struct FakeClock {
    unix: i64,
    start: Instant,
    elapsed: Cell<Duration>,
}

impl FakeClock {
    pub fn at(unix: i64) -> Self {
        FakeClock { unix, start: Instant::now(), elapsed: Cell::new(Duration::ZERO) }
    }
    pub fn advance(&self, d: Duration) {
        self.elapsed.set(self.elapsed.get() + d);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.unix.saturating_add(self.elapsed.get().as_secs() as i64)
    }
    fn instant(&self) -> Instant {
        self.start + self.elapsed.get()
    }
    fn sleep(&self, d: Duration) {
        self.advance(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_moves_only_when_slept_on() {
        let c = FakeClock::at(1_000);
        let t0 = c.instant();
        assert_eq!(c.now(), 1_000);
        c.sleep(Duration::from_secs(90));
        assert_eq!(c.now(), 1_090);
        assert_eq!(c.instant() - t0, Duration::from_secs(90));
    }
}
