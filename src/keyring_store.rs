//! The OS keyring (Secret Service, Keychain, Credential Manager) through `keyring-core` and the platform's
//! store crate, with every call bounded in time: a Secret Service that accepts the connection but never answers
//! must not hang us.

use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use keyring_core::Entry;

use crate::error::{Error, Result};

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
            Ok(Err(e)) => Err(Error::store(format!("cannot {what} in the OS keyring: {}", describe(&e)))),
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
