//! Where tokens live between invocations: the `TokenStore` trait, the 0600 file store, the keyring split
//! (refresh token in the OS keyring, access tokens in the file), the `auto` fallback, atomic writes and the
//! cross-process refresh lock.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ServerConfig, StoreMode};
use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, hash_key};

mod file;
use crate::tokenset::TokenSet;
pub use file::FileStore;

/// The store key of a server: issuer + client id + tracking URI + audience + scope, so servers never share tokens.
pub fn server_key(c: &ServerConfig) -> String {
    hash_key(&[&c.issuer, &c.client_id, c.uri.as_deref().unwrap_or(""), &c.audience, &c.scope])
}

/// What is stored per server: the tokens and enough metadata to say whose they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    #[serde(default)]
    pub server: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub tokens: TokenSet,
    /// Where the refresh token is when not in `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_in: Option<Elsewhere>,
}

/// Where an entry's refresh token lives when the file does not hold it: `"keyring"` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Elsewhere {
    Keyring,
    /// A place a newer version knows: read tolerantly, as no refresh token here (STYLE habit 9).
    #[serde(other)]
    Unknown,
}

impl Entry {
    pub fn new(c: &ServerConfig, tokens: TokenSet) -> Self {
        Entry {
            version: 1,
            server: c.uri.clone(),
            issuer: c.issuer.clone(),
            client_id: c.client_id.clone(),
            tokens,
            refresh_token_in: None,
        }
    }

    /// The keyring account for this entry: readable, and unique per store key.
    pub fn account(&self, key: &str) -> String {
        format!(
            "{} at {} for {} [{}]",
            self.client_id,
            self.issuer,
            self.server.as_deref().unwrap_or("-"),
            key.chars().take(8).collect::<String>()
        )
    }
}

/// Proof that the caller holds the refresh lock of a key; writes require it.
pub struct LockGuard {
    /// `None` for the memory store: nothing is shared across processes, so there is nothing to lock.
    pub(super) file: Option<File>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.unlock();
        }
    }
}

/// Persistent token storage for servers, keyed by [`server_key`].
pub trait TokenStore {
    /// The stored entry, `None` when there is none. A corrupt entry is reported, never silently dropped.
    fn load(&self, key: &str) -> Result<Option<Entry>>;
    /// Replace the entry; only under the key's lock.
    fn save(&self, key: &str, entry: &Entry, lock: &LockGuard) -> Result<()>;
    /// Forget the entry; returns whether there was one.
    fn delete(&self, key: &str, lock: &LockGuard) -> Result<bool>;
    /// Take the key's cross-process lock, waiting at most `timeout`.
    fn lock(&self, key: &str, timeout: Duration) -> Result<LockGuard>;
    /// A name for messages (`file:/path`).
    fn describe(&self) -> String;
}

/// Where the refresh token actually goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Keyring,
    File,
    Memory,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Keyring => "keyring",
            Backend::File => "file",
            Backend::Memory => "memory",
        }
    }
}

/// How long a fallback from the keyring to the file store is remembered before the keyring is asked again.
const REPROBE_AFTER: i64 = 24 * 3600;
const NO_BUS: &str = "no D-Bus session bus for the Secret Service";

#[derive(Serialize, Deserialize)]
struct Choice {
    store: String,
    reason: String,
    since: i64,
}

#[derive(Serialize, Deserialize)]
struct KeyringValue {
    refresh_token: crate::tokenset::Secret<String>,
    saved_at: i64,
}

/// How a [`Store`] is set up.
pub struct StoreSettings {
    pub mode: StoreMode,
    /// What chose the mode ("--store", "MLFLOW_OIDC_STORE", "config", "default").
    pub mode_source: String,
    /// `<data dir>/mlflow-oidc`: tokens/ and the remembered store choice.
    pub data_dir: PathBuf,
    /// Whether a session bus could exist (Linux without one skips the keyring at once).
    pub bus_available: bool,
    pub now: i64,
    /// Where the store's warnings go (the command's one sink).
    pub warnings: crate::warnings::Warnings,
}

/// The store the commands use: entries in 0600 files, refresh tokens in the keyring when it answers.
pub struct Store {
    files: FileStore,
    settings: StoreSettings,
    secrets: Box<dyn SecretStore>,
    chosen: std::cell::OnceCell<(Backend, String)>,
    warnings: crate::warnings::Warnings,
    memory: std::cell::RefCell<std::collections::BTreeMap<String, Entry>>,
}

use crate::keyring_store::SecretStore;

impl Store {
    pub fn new(settings: StoreSettings, secrets: Box<dyn SecretStore>) -> Store {
        Store {
            files: FileStore::new(settings.data_dir.join("tokens"), settings.warnings.clone()),
            warnings: settings.warnings.clone(),
            settings,
            secrets,
            chosen: std::cell::OnceCell::new(),
            memory: std::cell::RefCell::new(Default::default()),
        }
    }

    /// Warnings not yet printed (the command's sink prints them; tests read them here).
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings.take()
    }

    fn choice_path(&self) -> PathBuf {
        self.settings.data_dir.join("store-choice.json")
    }

    /// The backend in use and why; in `auto` this may probe the keyring (bounded) and remember a fallback.
    pub fn backend(&self) -> (Backend, String) {
        self.chosen
            .get_or_init(|| {
                let src = &self.settings.mode_source;
                match self.settings.mode {
                    StoreMode::Memory => (Backend::Memory, format!("chosen by {src}; nothing is persisted")),
                    StoreMode::File => (Backend::File, format!("chosen by {src}")),
                    StoreMode::Keyring => (Backend::Keyring, format!("chosen by {src}")),
                    StoreMode::Auto => self.auto_choice(),
                }
            })
            .clone()
    }

    fn auto_choice(&self) -> (Backend, String) {
        if let Some(bytes) = self.read_choice()
            && let Ok(c) = serde_json::from_slice::<Choice>(&bytes)
            && c.store == "file"
        {
            // One timeout must not exile refresh tokens from the keyring for good (issue 12): the fallback
            // holds for a day, or until a session bus appears where there was none; then the keyring is asked
            // again. Never on the cached `token` path, which does not ask for the backend.
            let retry_at = c.since.saturating_add(REPROBE_AFTER);
            let bus_appeared = c.reason == NO_BUS && self.settings.bus_available;
            if self.settings.now < retry_at && !bus_appeared {
                return (
                    Backend::File,
                    format!(
                        "the keyring was unavailable on {} ({}); remembered until {}, when the keyring is asked \
                         again — `--store keyring` switches back now",
                        crate::tokenset::rfc3339(c.since),
                        c.reason,
                        crate::tokenset::rfc3339(retry_at)
                    ),
                );
            }
        }
        if !self.settings.bus_available {
            return self.fall_back(NO_BUS.into());
        }
        match self.secrets.probe() {
            Ok(()) => {
                let _ = std::fs::remove_file(self.choice_path());
                (Backend::Keyring, "auto: the OS keyring answers".into())
            }
            Err(e) => self.fall_back(e.to_string()),
        }
    }

    /// The remembered choice, unless another user could have written it: a planted "file" would move refresh
    /// tokens out of the keyring. Not followed through a symlink; refused files are ignored with a warning.
    fn read_choice(&self) -> Option<Vec<u8>> {
        use std::io::Read;
        let path = self.choice_path();
        let mut f = match crate::fsutil::open_nofollow(&path) {
            Ok(f) => f,
            Err(e) if crate::fsutil::is_symlink_refusal(&e) => {
                self.warnings.push(format!("ignoring {}: a symbolic link, not followed", path.display()));
                return None;
            }
            Err(_) => return None,
        };
        #[cfg(unix)]
        if let Ok(meta) = f.metadata()
            && let Some(why) = crate::fsutil::distrust(&meta)
        {
            self.warnings.push(format!("ignoring {}: {why}; delete it", path.display()));
            return None;
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    fn fall_back(&self, reason: String) -> (Backend, String) {
        let dir = self.files.dir.display().to_string();
        self.warnings.push(format!(
            "the OS keyring is unavailable ({reason}); keeping credentials in {dir} (mode 0600) instead. \
             The keyring is asked again in a day; `--store keyring` switches back now"
        ));
        let choice = Choice { store: "file".into(), reason: reason.clone(), since: self.settings.now };
        if let Ok(bytes) = serde_json::to_vec(&choice) {
            let _ = atomic_write(&self.choice_path(), &bytes);
        }
        (Backend::File, format!("auto: fell back to the file store ({reason})"))
    }

    /// The refresh token of `entry`, from wherever it lives.
    pub fn refresh_token(&self, key: &str, entry: &Entry) -> Result<Option<crate::tokenset::Secret<String>>> {
        if let Some(rt) = &entry.tokens.refresh_token {
            return Ok(Some(rt.clone()));
        }
        if entry.refresh_token_in != Some(Elsewhere::Keyring) {
            return Ok(None);
        }
        match self.secrets.get(&entry.account(key)) {
            Ok(Some(text)) => match serde_json::from_str::<KeyringValue>(&text) {
                Ok(v) => Ok(Some(v.refresh_token)),
                Err(_) => {
                    self.warnings.push("the keyring entry is not ours or is corrupt; ignoring it");
                    Ok(None)
                }
            },
            Ok(None) => Ok(None),
            Err(e) if self.settings.mode == StoreMode::Keyring => Err(e),
            Err(e) => {
                self.warnings.push(format!("{e}; the refresh token there cannot be used now"));
                Ok(None)
            }
        }
    }

    /// A name for `status`: backend and directory.
    pub fn describe_backend(&self) -> String {
        let (b, _) = self.backend();
        match b {
            Backend::Keyring => {
                format!("keyring (service {}) + {}", crate::keyring_store::SERVICE, self.files.dir.display())
            }
            Backend::File => format!("file {}", self.files.dir.display()),
            Backend::Memory => "memory (nothing persisted)".into(),
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.files.keys()
    }

    fn save_file_only(&self, key: &str, entry: &Entry, lock: &LockGuard) -> Result<()> {
        let mut e = entry.clone();
        e.refresh_token_in = None;
        self.files.save(key, &e, lock)
    }
}

impl TokenStore for Store {
    fn load(&self, key: &str) -> Result<Option<Entry>> {
        if self.settings.mode == StoreMode::Memory {
            return Ok(self.memory.borrow().get(key).cloned());
        }
        self.files.load(key)
    }

    fn save(&self, key: &str, entry: &Entry, lock: &LockGuard) -> Result<()> {
        match self.backend().0 {
            Backend::Memory => {
                self.memory.borrow_mut().insert(key.to_string(), entry.clone());
                Ok(())
            }
            Backend::File => self.save_file_only(key, entry, lock),
            Backend::Keyring => {
                let Some(rt) = entry.tokens.refresh_token.clone() else {
                    return self.save_file_only(key, entry, lock);
                };
                let value = KeyringValue { refresh_token: rt, saved_at: self.settings.now };
                let json = serde_json::to_string(&value).map_err(|e| Error::store(format!("cannot encode: {e}")))?;
                // The refresh token goes first: a crash between the two writes leaves the new refresh token
                // stored and, at worst, an old access token cached.
                match self.secrets.set(&entry.account(key), &json) {
                    Ok(()) => {
                        let mut e = entry.clone();
                        e.tokens.refresh_token = None;
                        e.refresh_token_in = Some(Elsewhere::Keyring);
                        self.files.save(key, &e, lock)
                    }
                    Err(e) if self.settings.mode == StoreMode::Auto => {
                        let reason = e.to_string();
                        let chosen = self.fall_back(reason);
                        let _ = self.chosen.set(chosen);
                        self.save_file_only(key, entry, lock)?;
                        // A stale keyring copy must not shadow the fresher file copy later.
                        let _ = self.secrets.delete(&entry.account(key));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn delete(&self, key: &str, lock: &LockGuard) -> Result<bool> {
        if self.settings.mode == StoreMode::Memory {
            return Ok(self.memory.borrow_mut().remove(key).is_some());
        }
        let entry = self.files.load(key).ok().flatten();
        let mut deleted = false;
        if let Some(e) = &entry
            && (e.refresh_token_in == Some(Elsewhere::Keyring) || self.settings.mode == StoreMode::Keyring)
        {
            match self.secrets.delete(&e.account(key)) {
                Ok(d) => deleted |= d,
                Err(err) if self.settings.mode == StoreMode::Keyring => return Err(err),
                Err(err) => self.warnings.push(format!("{err}; the keyring entry may remain")),
            }
        }
        deleted |= self.files.delete(key, lock)?;
        Ok(deleted)
    }

    fn lock(&self, key: &str, timeout: Duration) -> Result<LockGuard> {
        if self.settings.mode == StoreMode::Memory {
            return Ok(LockGuard { file: None });
        }
        self.files.lock(key, timeout)
    }

    fn describe(&self) -> String {
        self.describe_backend()
    }
}

#[cfg(test)]
mod tests;
