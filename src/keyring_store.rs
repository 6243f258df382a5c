//! The OS keyring (Secret Service, Keychain, Credential Manager) through `keyring-core` and the platform's
//! store crate, with every call bounded in time: a Secret Service that accepts the connection but never answers
//! must not hang us.

use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use keyring_core::Entry;

use crate::error::{Detail, Error, Result};

/// The keyring service name of every entry.
pub const SERVICE: &str = "mlflow-oidc";

/// Connect to the platform's store once per process (on Linux: the session bus and a Secret Service session).
fn store_status() -> &'static std::result::Result<(), String> {
    static STATUS: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(|| {
        #[cfg(all(unix, not(any(target_os = "macos", target_os = "ios", target_os = "android"))))]
        let store = dbus_secret_service_keyring_store::Store::new();
        #[cfg(target_os = "macos")]
        let store = apple_native_keyring_store::keychain::Store::new();
        #[cfg(target_os = "windows")]
        let store = windows_native_keyring_store::Store::new();
        #[cfg(any(
            all(unix, not(any(target_os = "macos", target_os = "ios", target_os = "android"))),
            target_os = "macos",
            target_os = "windows"
        ))]
        {
            store.map(|s| keyring_core::set_default_store(s)).map_err(|e| e.to_string())
        }
        #[cfg(not(any(
            all(unix, not(any(target_os = "macos", target_os = "ios", target_os = "android"))),
            target_os = "macos",
            target_os = "windows"
        )))]
        {
            Err("no OS keyring is supported on this platform".to_string())
        }
    })
}

fn entry(account: &str) -> std::result::Result<Entry, keyring_core::Error> {
    if let Err(e) = store_status() {
        return Err(keyring_core::Error::NoStorageAccess(e.clone().into()));
    }
    Entry::new(SERVICE, account)
}

/// Secrets by account name, in some backing store.
pub trait SecretStore {
    fn get(&self, account: &str) -> Result<Option<String>>;
    fn set(&self, account: &str, value: &str) -> Result<()>;
    /// Returns whether there was an entry.
    fn delete(&self, account: &str) -> Result<bool>;
    /// Whether the store answers at all.
    fn probe(&self) -> Result<()>;
}

/// The platform keyring; each call runs on a helper thread and is abandoned after `timeout`.
pub struct Keyring {
    pub timeout: Duration,
}

impl Keyring {
    fn bounded<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> std::result::Result<T, keyring_core::Error> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("keyring".into()).spawn(move || {
            // Connecting (the first Entry) is inside the bound too: that is where an unresponsive bus blocks.
            let _ = tx.send(f());
        });
        if spawned.is_err() {
            return Err(Error::store(format!("cannot {what} in the OS keyring: no thread for the call")));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                Err(Error::Store(Detail::with_source(format!("cannot {what} in the OS keyring: {}", describe(&e)), e)))
            }
            Err(_) => Err(Error::store(format!(
                "the OS keyring did not answer within {}s while trying to {what} (is the Secret Service locked or hung?): \
                 use --store file, or unlock the keyring",
                self.timeout.as_secs()
            ))),
        }
    }
}

fn describe(e: &keyring_core::Error) -> String {
    let s = e.to_string();
    // The zbus error for a missing session bus is long; the gist is enough.
    s.chars().take(300).collect()
}

impl SecretStore for Keyring {
    fn get(&self, account: &str) -> Result<Option<String>> {
        let account = account.to_string();
        self.bounded("read the refresh token", move || match entry(&account)?.get_password() {
            Ok(v) => Ok(Some(v)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn set(&self, account: &str, value: &str) -> Result<()> {
        let (account, value) = (account.to_string(), value.to_string());
        self.bounded("store the refresh token", move || entry(&account)?.set_password(&value))
    }

    fn delete(&self, account: &str) -> Result<bool> {
        let account = account.to_string();
        self.bounded("delete the refresh token", move || match entry(&account)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn probe(&self) -> Result<()> {
        // A locked collection without a prompter answers reads with NoEntry but refuses writes; a read of a probe
        // entry is enough to prove the service answers.
        self.bounded("connect", || match entry("probe")?.get_password() {
            Ok(_) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(err) => Err(err),
        })
    }
}

/// What one keyring entry holds at most, in UTF-16 units. Windows' Credential Manager keeps a generic credential's
/// secret in a CredentialBlob of at most CRED_MAX_CREDENTIAL_BLOB_SIZE = 2,560 bytes (5 × 512), and
/// windows-native-keyring-store writes a password as UTF-16: 1,280 units, which a refresh token of some providers
/// (Entra ID's, ~1.5 kB and more) with its JSON exceeds (issue 23). The Secret Service and the Keychain have no
/// such limit.
pub const ENTRY_UNITS: usize = if cfg!(windows) { 2560 / 2 } else { usize::MAX };

/// The OS keyring as the store uses it: bounded calls, values longer than one entry split over several.
pub fn os_keyring(timeout: Duration) -> Split<Keyring> {
    Split { inner: Keyring { timeout }, units: ENTRY_UNITS }
}

/// The first entry of a value split over several starts with this, then `<pieces>:<digest>:` and the first
/// piece; piece k (2..=pieces) is the entry `<account>#<digest>.<k>`. A value that fits is stored as is (our
/// values are JSON, never starting with this), so entries written before the split existed read unchanged.
const SPLIT_MARK: &str = "mlflow-oidc-split:1:";
/// 16 × 1,280 units: far above any refresh token seen; a larger value is refused rather than spread further.
const MAX_PIECES: usize = 16;

/// Splits values longer than `units` UTF-16 units over several entries of `inner`. The pieces of one value are
/// named after its digest, written before the first entry and removed after it is replaced: a crash in between
/// leaves the old value or the new one readable, never a mix, and the digest is checked on every read.
pub struct Split<S> {
    pub inner: S,
    pub units: usize,
}

fn digest16(value: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(value.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `value` cut on character boundaries into pieces of at most `first` UTF-16 units, then `rest` units each.
fn cut(value: &str, first: usize, rest: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, c) in value.char_indices() {
        let limit = if pieces.is_empty() { first } else { rest };
        if used + c.len_utf16() > limit {
            pieces.push(&value[start..i]);
            start = i;
            used = 0;
        }
        used += c.len_utf16();
    }
    pieces.push(&value[start..]);
    pieces
}

/// The split head `<pieces>:<digest>:<first piece>`, or None for a value stored whole.
fn parse_head(head: &str) -> Option<std::result::Result<(usize, &str, &str), ()>> {
    let rest = head.strip_prefix(SPLIT_MARK)?;
    let mut parts = rest.splitn(3, ':');
    let parsed = (|| {
        let n: usize = parts.next()?.parse().ok()?;
        let digest = parts.next()?;
        let first = parts.next()?;
        ((2..=MAX_PIECES).contains(&n) && digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some((n, digest, first))
    })();
    Some(parsed.ok_or(()))
}

fn piece_account(account: &str, digest: &str, k: usize) -> String {
    format!("{account}#{digest}.{k}")
}

impl<S: SecretStore> Split<S> {
    /// The pieces (2..) of the value `head` heads, if it is split and well-formed.
    fn pieces_of(account: &str, head: &str) -> Vec<String> {
        match parse_head(head) {
            Some(Ok((n, digest, _))) => (2..=n).map(|k| piece_account(account, digest, k)).collect(),
            _ => Vec::new(),
        }
    }
}

impl<S: SecretStore> SecretStore for Split<S> {
    fn get(&self, account: &str) -> Result<Option<String>> {
        let Some(head) = self.inner.get(account)? else { return Ok(None) };
        let (n, digest, first) = match parse_head(&head) {
            None => return Ok(Some(head)),
            Some(Ok(h)) => h,
            Some(Err(())) => {
                return Err(Error::store(format!(
                    "the OS keyring entry {account} of service {SERVICE} is not in a form this version reads: \
                     log in again (or delete it in the OS keyring)"
                )));
            }
        };
        let mut value = first.to_string();
        for k in 2..=n {
            match self.inner.get(&piece_account(account, digest, k))? {
                Some(piece) => value.push_str(&piece),
                None => {
                    return Err(Error::store(format!(
                        "the OS keyring entry {account} of service {SERVICE} is incomplete (piece {k} of {n} is \
                         missing): log in again"
                    )));
                }
            }
        }
        if digest16(&value) != digest {
            return Err(Error::store(format!(
                "the OS keyring entry {account} of service {SERVICE} does not match its checksum (pieces from \
                 different writes): log in again"
            )));
        }
        Ok(Some(value))
    }

    fn set(&self, account: &str, value: &str) -> Result<()> {
        // What the entry held before: its pieces go once the new head is written.
        let old = self.inner.get(account).ok().flatten().map(|h| Self::pieces_of(account, &h)).unwrap_or_default();
        let units = value.encode_utf16().count();
        let mut new_pieces = Vec::new();
        if units <= self.units {
            self.inner.set(account, value)?;
        } else {
            let digest = digest16(value);
            // The head's own prefix is ASCII: its length in bytes is its length in UTF-16 units.
            let prefix = format!("{SPLIT_MARK}{MAX_PIECES}:{digest}:");
            let pieces = cut(value, self.units.saturating_sub(prefix.len()).max(1), self.units.max(1));
            if pieces.len() > MAX_PIECES {
                return Err(Error::store(format!(
                    "the refresh token is too large for the OS keyring ({units} characters, more than {MAX_PIECES} \
                     entries of {}): use --store file",
                    self.units
                )));
            }
            for (k, piece) in pieces.iter().enumerate().skip(1) {
                let name = piece_account(account, &digest, k + 1);
                self.inner.set(&name, piece)?;
                new_pieces.push(name);
            }
            self.inner.set(account, &format!("{SPLIT_MARK}{}:{digest}:{}", pieces.len(), pieces[0]))?;
        }
        for name in old.iter().filter(|n| !new_pieces.contains(n)) {
            let _ = self.inner.delete(name);
        }
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<bool> {
        let pieces = self.inner.get(account).ok().flatten().map(|h| Self::pieces_of(account, &h)).unwrap_or_default();
        let existed = self.inner.delete(account)?;
        for name in &pieces {
            let _ = self.inner.delete(name);
        }
        Ok(existed)
    }

    fn probe(&self) -> Result<()> {
        self.inner.probe()
    }
}

/// An in-memory secret store for the in-process tests (`fail` makes every call fail, as a dead keyring).
#[cfg(test)]
#[derive(Default)]
pub struct MemorySecrets {
    map: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    pub fail: bool,
}

#[cfg(test)]
impl SecretStore for MemorySecrets {
    fn get(&self, account: &str) -> Result<Option<String>> {
        self.check()?;
        Ok(self.map.lock().map_err(|_| Error::store("poisoned"))?.get(account).cloned())
    }
    fn set(&self, account: &str, value: &str) -> Result<()> {
        self.check()?;
        self.map.lock().map_err(|_| Error::store("poisoned"))?.insert(account.into(), value.into());
        Ok(())
    }
    fn delete(&self, account: &str) -> Result<bool> {
        self.check()?;
        Ok(self.map.lock().map_err(|_| Error::store("poisoned"))?.remove(account).is_some())
    }
    fn probe(&self) -> Result<()> {
        self.check()
    }
}

#[cfg(test)]
impl MemorySecrets {
    pub fn failing(fail: bool) -> Self {
        MemorySecrets { fail, ..MemorySecrets::default() }
    }

    fn check(&self) -> Result<()> {
        if self.fail { Err(Error::store("the test keyring is unavailable")) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows' real limit, 1,280 UTF-16 units.
    const WINDOWS: usize = 1280;

    fn split(units: usize) -> Split<MemorySecrets> {
        Split { inner: MemorySecrets::default(), units }
    }

    fn entries(s: &Split<MemorySecrets>) -> std::collections::BTreeMap<String, String> {
        s.inner.map.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn token_json(len: usize) -> String {
        format!("{{\"refresh_token\":\"{}\",\"saved_at\":1}}", "r".repeat(len))
    }

    #[test]
    fn a_value_that_fits_is_stored_whole_and_read_back() {
        let s = split(WINDOWS);
        let v = token_json(WINDOWS - 40);
        s.set("a", &v).ok();
        assert_eq!(entries(&s).len(), 1);
        assert_eq!(entries(&s)["a"], v);
        assert_eq!(s.get("a").ok().flatten(), Some(v));
    }

    #[test]
    fn a_token_set_over_the_windows_limit_is_split_into_entries_each_within_it() {
        let s = split(WINDOWS);
        let v = token_json(3000);
        assert!(v.encode_utf16().count() * 2 > 2560);
        s.set("a", &v).ok();
        let e = entries(&s);
        assert_eq!(e.len(), 3, "{:?}", e.keys().collect::<Vec<_>>());
        assert!(e.values().all(|p| p.encode_utf16().count() * 2 <= 2560));
        assert_eq!(s.get("a").ok().flatten(), Some(v));
    }

    #[test]
    fn pieces_cut_on_characters_never_inside_one() {
        // Four-byte characters are two UTF-16 units: a cut must not split a surrogate pair.
        let v = "é😀x".repeat(40);
        for units in [60, 61, 62, 63] {
            let s = split(units);
            s.set("a", &v).ok();
            assert!(entries(&s).values().all(|p| p.encode_utf16().count() <= units), "{units}");
            assert_eq!(s.get("a").ok().flatten().as_deref(), Some(v.as_str()), "{units}");
        }
    }

    #[test]
    fn overwriting_and_deleting_leave_no_stale_pieces() {
        let s = split(WINDOWS);
        s.set("a", &token_json(3000)).ok();
        s.set("a", &token_json(2900)).ok();
        assert_eq!(entries(&s).len(), 3, "the first value's pieces are gone");
        s.set("a", &token_json(10)).ok();
        assert_eq!(entries(&s).len(), 1);
        s.set("a", &token_json(3000)).ok();
        assert_eq!(s.delete("a").ok(), Some(true));
        assert!(entries(&s).is_empty());
        assert_eq!(s.delete("a").ok(), Some(false));
    }

    #[test]
    fn a_missing_or_mixed_piece_is_an_error_saying_to_log_in_again_never_a_wrong_token() {
        let s = split(WINDOWS);
        s.set("a", &token_json(3000)).ok();
        let piece = entries(&s).keys().find(|k| k.starts_with("a#")).cloned().unwrap_or_default();

        let mut map = entries(&s);
        map.insert(piece.clone(), "x".repeat(100));
        *s.inner.map.lock().unwrap_or_else(|e| e.into_inner()) = map;
        let err = s.get("a").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("checksum") && err.contains("log in again"), "{err}");

        s.inner.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&piece);
        let err = s.get("a").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("incomplete") && err.contains("log in again"), "{err}");

        s.inner.map.lock().unwrap_or_else(|e| e.into_inner()).insert("b".into(), format!("{SPLIT_MARK}99:zz:x"));
        let err = s.get("b").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not in a form this version reads"), "{err}");
    }

    #[test]
    fn a_value_beyond_sixteen_entries_is_refused_naming_the_file_store() {
        let s = split(100);
        let err = s.set("a", &"r".repeat(100 * 17)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--store file"), "{err}");
        assert!(entries(&s).is_empty());
    }

    #[test]
    fn no_split_where_the_keyring_has_no_limit() {
        if !cfg!(windows) {
            let s = split(ENTRY_UNITS);
            s.set("a", &token_json(100_000)).ok();
            assert_eq!(entries(&s).len(), 1);
        }
    }
}
