//! The proxy's token in memory: handed to every request, renewed ahead of expiry by one renewer while the
//! others keep using the current one (or wait when there is none), and renewed at once, once, when the
//! tracking server rejects it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::tokenset::Secret;

/// After a failed renewal, requests get the failure at once for this long instead of each asking the
/// provider again (a provider that is down would otherwise be hit at the request rate).
pub const RETRY_AFTER: i64 = 2;
/// How long a request waits for a renewal before it gets an error instead.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(120);
/// The plugin's rule (python/mlflow_oidc/_token.py): renew when a quarter of the remaining life is left,
/// at most this long before expiry.
pub const MAX_MARGIN: i64 = 60;

/// A token that a request may send, and the renewal it came from (to report a rejection of exactly it).
#[derive(Clone)]
pub struct Lease {
    pub token: Arc<Secret<String>>,
    pub generation: u64,
}

/// A fresh token from the renewer's source.
pub struct Fresh {
    pub token: Secret<String>,
    pub expires_at: i64,
}

/// Why there is no token: what the MLflow client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A person must log in (`mlflow-oidc login`).
    LoginRequired,
    /// The provider could not be reached.
    Unavailable,
    /// Anything else (the provider said no, a broken configuration or store).
    Other,
    /// The proxy is stopping.
    ShuttingDown,
}

struct State {
    token: Option<Arc<Secret<String>>>,
    /// Expiry of the token held (or last held, when it was rejected).
    expires_at: i64,
    renew_at: i64,
    /// Bumped by every successful renewal.
    generation: u64,
    /// Bumped by every finished renewal attempt, successful or not.
    attempts: u64,
    wanted: bool,
    renewing: bool,
    failure: Option<(Failure, i64)>,
    closed: bool,
}

/// The shared token; `Sync`, so every request thread holds an `Arc` of it.
pub struct TokenCell {
    state: Mutex<State>,
    changed: Condvar,
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
}

/// When to renew a token that expires at `expires_at`, obtained at `now`.
pub fn renew_at(now: i64, expires_at: i64) -> i64 {
    let margin = ((expires_at - now) / 4).clamp(0, MAX_MARGIN);
    (expires_at - margin).max(now + 1)
}

impl TokenCell {
    /// An empty cell; `clock` gives Unix seconds.
    pub fn new(clock: impl Fn() -> i64 + Send + Sync + 'static) -> TokenCell {
        TokenCell {
            state: Mutex::new(State {
                token: None,
                expires_at: 0,
                renew_at: 0,
                generation: 0,
                attempts: 0,
                wanted: false,
                renewing: false,
                failure: None,
                closed: false,
            }),
            changed: Condvar::new(),
            clock: Box::new(clock),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put a token in (the one obtained before the proxy starts).
    pub fn seed(&self, fresh: Fresh) {
        let now = (self.clock)();
        let mut st = self.lock();
        install(&mut st, fresh, now);
        self.changed.notify_all();
    }

    /// The token for a request: the current one while it is valid (asking for a renewal when it is due),
    /// else the outcome of the next renewal.
    pub fn current(&self) -> Result<Lease, Failure> {
        let st = self.lock();
        self.wait_usable(st)
    }

    /// The tracking server said 401 to the token of `generation`: drop it (if no renewal replaced it
    /// meanwhile) and wait for a new one. Many requests rejected together cause one renewal.
    pub fn rejected(&self, generation: u64) -> Result<Lease, Failure> {
        let mut st = self.lock();
        if st.generation == generation && st.token.is_some() {
            st.token = None;
            st.failure = None;
        }
        self.wait_usable(st)
    }

    /// The current token when one is usable now, never waiting (the proxy's fast path: no hop to a thread that
    /// may block); `None` when [`TokenCell::current`] would have to wait or fail.
    pub fn current_now(&self) -> Option<Lease> {
        let mut st = self.lock();
        let now = (self.clock)();
        if st.closed || now >= st.expires_at {
            return None;
        }
        let token = st.token.clone()?;
        if now >= st.renew_at && !st.renewing && st.failure.as_ref().is_none_or(|(_, at)| now - at >= RETRY_AFTER) {
            st.wanted = true;
            self.changed.notify_all();
        }
        Some(Lease { token, generation: st.generation })
    }

    fn wait_usable(&self, mut st: MutexGuard<'_, State>) -> Result<Lease, Failure> {
        let start = st.attempts;
        let deadline = std::time::Instant::now() + WAIT_AT_MOST;
        loop {
            if st.closed {
                return Err(Failure { kind: FailureKind::ShuttingDown, message: "the proxy is stopping".into() });
            }
            let now = (self.clock)();
            if let Some(token) = &st.token
                && now < st.expires_at
            {
                let lease = Lease { token: token.clone(), generation: st.generation };
                if now >= st.renew_at
                    && !st.renewing
                    && st.failure.as_ref().is_none_or(|(_, at)| now - at >= RETRY_AFTER)
                {
                    st.wanted = true;
                    self.changed.notify_all();
                }
                return Ok(lease);
            }
            if let Some((failure, at)) = &st.failure
                && (st.attempts > start || now - at < RETRY_AFTER)
            {
                return Err(failure.clone());
            }
            // One renewal at a time: a request that comes while one runs waits for its outcome.
            if !st.renewing {
                st.wanted = true;
                self.changed.notify_all();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Failure {
                    kind: FailureKind::Unavailable,
                    message: format!("no token within {} s", WAIT_AT_MOST.as_secs()),
                });
            }
            st = self.changed.wait_timeout(st, left.min(Duration::from_secs(1))).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Stop: waiting requests get `ShuttingDown`, [`TokenCell::serve_renewals`] returns.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The renewer's loop, until [`TokenCell::close`]: renew when a request wants it or the token is due.
    /// `renew(min_valid)` gets `None` for a first token, else how long the new one must outlive now (longer
    /// than the token held, so that the same token does not come back from the store).
    pub fn serve_renewals(&self, renew: &mut dyn FnMut(Option<u64>) -> Result<Fresh, Failure>) {
        let mut st = self.lock();
        loop {
            if st.closed {
                return;
            }
            let now = (self.clock)();
            let retry_ok = st.failure.as_ref().is_none_or(|(_, at)| now - at >= RETRY_AFTER);
            let due = st.wanted || (st.token.is_some() && now >= st.renew_at && retry_ok);
            if !due {
                let wake = if st.token.is_some() { st.renew_at.max(now + 1) - now } else { 60 };
                let wake = Duration::from_secs(wake.clamp(1, 60) as u64);
                st = self.changed.wait_timeout(st, wake).unwrap_or_else(|p| p.into_inner()).0;
                continue;
            }
            st.wanted = false;
            st.renewing = true;
            let min_valid = (st.expires_at > now).then(|| (st.expires_at - now + 1) as u64);
            drop(st);
            let outcome = renew(min_valid);
            let now = (self.clock)();
            st = self.lock();
            st.attempts += 1;
            st.renewing = false;
            match outcome {
                Ok(fresh) => install(&mut st, fresh, now),
                Err(f) => st.failure = Some((f, now)),
            }
            self.changed.notify_all();
        }
    }
}

fn install(st: &mut State, fresh: Fresh, now: i64) {
    st.token = Some(Arc::new(fresh.token));
    st.expires_at = fresh.expires_at;
    st.renew_at = renew_at(now, fresh.expires_at);
    st.generation += 1;
    st.failure = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    fn cell(clock: &Arc<AtomicI64>) -> Arc<TokenCell> {
        let c = clock.clone();
        Arc::new(TokenCell::new(move || c.load(Ordering::SeqCst)))
    }

    fn fresh(n: usize, expires_at: i64) -> Fresh {
        Fresh { token: Secret::new(format!("t{n}")), expires_at }
    }

    #[test]
    fn current_now_never_waits_and_asks_for_a_renewal_when_due() {
        let clock = Arc::new(AtomicI64::new(1000));
        let c = cell(&clock);
        assert!(c.current_now().is_none(), "no token yet: the caller must wait on the slow path");
        c.seed(fresh(1, 1100));
        assert_eq!(c.current_now().unwrap().token.expose(), "t1");
        assert!(!c.lock().wanted);
        clock.store(1090, Ordering::SeqCst);
        assert_eq!(c.current_now().unwrap().token.expose(), "t1", "still valid while due");
        assert!(c.lock().wanted, "due: a renewal is asked for");
        clock.store(1100, Ordering::SeqCst);
        assert!(c.current_now().is_none(), "expired");
        clock.store(1050, Ordering::SeqCst);
        c.close();
        assert!(c.current_now().is_none(), "closed");
    }

    #[test]
    fn the_plugin_margin_a_quarter_of_the_life_at_most_60_s() {
        assert_eq!(renew_at(0, 20), 15);
        assert_eq!(renew_at(0, 3600), 3540);
        assert_eq!(renew_at(100, 100), 101, "never in the past: no renewal loop");
    }

    type Renewer = (Arc<AtomicUsize>, Arc<Mutex<Vec<Option<u64>>>>, std::thread::JoinHandle<()>);

    /// A renewer thread on a source that counts its calls and answers `n`-th tokens living `life` s.
    fn renewer(cell: &Arc<TokenCell>, clock: &Arc<AtomicI64>, life: i64, fail: bool) -> Renewer {
        let calls = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (cell, clock, calls2, asked2) = (cell.clone(), clock.clone(), calls.clone(), asked.clone());
        let t = std::thread::spawn(move || {
            cell.serve_renewals(&mut |min_valid| {
                asked2.lock().unwrap().push(min_valid);
                let n = calls2.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::sleep(Duration::from_millis(50));
                if fail {
                    return Err(Failure { kind: FailureKind::LoginRequired, message: "not logged in".into() });
                }
                Ok(fresh(n, clock.load(Ordering::SeqCst) + life))
            })
        });
        (calls, asked, t)
    }

    #[test]
    fn requests_without_a_token_wait_for_one_renewal() {
        let clock = Arc::new(AtomicI64::new(1000));
        let cell = cell(&clock);
        let (calls, asked, t) = renewer(&cell, &clock, 20, false);
        let got: Vec<_> = (0..16)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || cell.current().unwrap().token.expose().clone())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(got.iter().all(|t| t == "t1"), "{got:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(*asked.lock().unwrap(), vec![None]);
        cell.close();
        t.join().unwrap();
    }

    #[test]
    fn a_due_token_is_still_used_while_one_renewal_runs() {
        let clock = Arc::new(AtomicI64::new(1000));
        let cell = cell(&clock);
        cell.seed(fresh(0, 1020));
        let (calls, asked, t) = renewer(&cell, &clock, 20, false);
        clock.store(1016, Ordering::SeqCst); // past renew_at (1015), 4 s left
        for _ in 0..10 {
            assert_eq!(cell.current().unwrap().token.expose(), "t0");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while cell.current().unwrap().token.expose() == "t0" && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(cell.current().unwrap().token.expose(), "t1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(*asked.lock().unwrap(), vec![Some(5)], "the new token must outlive the held one");
        cell.close();
        t.join().unwrap();
    }

    #[test]
    fn many_rejections_of_one_token_cause_one_renewal() {
        let clock = Arc::new(AtomicI64::new(1000));
        let cell = cell(&clock);
        cell.seed(fresh(0, 2000));
        let (calls, _, t) = renewer(&cell, &clock, 1000, false);
        let g = cell.current().unwrap().generation;
        let got: Vec<_> = (0..8)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || cell.rejected(g).unwrap().token.expose().clone())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(got.iter().all(|t| t == "t1"), "{got:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A late rejection of the old generation does not throw the new token away.
        assert_eq!(cell.rejected(g).unwrap().token.expose(), "t1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cell.close();
        t.join().unwrap();
    }

    #[test]
    fn a_failure_is_shared_and_not_retried_at_the_request_rate() {
        let clock = Arc::new(AtomicI64::new(1000));
        let cell = cell(&clock);
        let (calls, _, t) = renewer(&cell, &clock, 20, true);
        for _ in 0..5 {
            let f = cell.current().err().unwrap();
            assert_eq!(f.kind, FailureKind::LoginRequired);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.store(1000 + RETRY_AFTER, Ordering::SeqCst);
        assert!(cell.current().is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cell.close();
        t.join().unwrap();
        assert_eq!(cell.current().err().unwrap().kind, FailureKind::ShuttingDown);
    }
}
