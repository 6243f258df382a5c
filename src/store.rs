//! Where tokens live between invocations: the `TokenStore` trait, the 0600 file store, the keyring split
//! (refresh token in the OS keyring, access tokens in the file), the `auto` fallback, atomic writes and the
//! cross-process refresh lock.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{ServerConfig, io_reason};
use crate::error::{Error, Result};
use crate::token::TokenSet;

/// A stable file-name-safe key from parts that must never collide across servers.
pub fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

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
    /// Where the refresh token is when not in `tokens` (`"keyring"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_in: Option<String>,
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
    file: Option<File>,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.unlock();
        }
    }
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
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

/// Tokens as JSON files, 0600 in a 0700 directory, replaced atomically.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> Self {
        FileStore { dir }
    }

    /// The keys of every stored entry.
    pub fn keys(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut keys: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .filter(|k| !k.starts_with('.'))
            .collect();
        keys.sort();
        keys
    }
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }
}

impl TokenStore for FileStore {
    fn load(&self, key: &str) -> Result<Option<Entry>> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::store(format!("cannot read token cache {}: {}", path.display(), io_reason(&e))));
            }
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::store(format!(
                "token cache {} is corrupt ({e}): run `mlflow-oidc logout` and log in again, or delete the file",
                path.display()
            ))
        })
    }

    fn save(&self, key: &str, entry: &Entry, _lock: &LockGuard) -> Result<()> {
        let bytes = serde_json::to_vec(entry).map_err(|e| Error::store(format!("cannot encode tokens: {e}")))?;
        atomic_write(&self.path(key), &bytes)
    }

    fn delete(&self, key: &str, _lock: &LockGuard) -> Result<bool> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::store(format!("cannot delete token cache {}: {}", path.display(), io_reason(&e)))),
        }
    }

    fn lock(&self, key: &str, timeout: Duration) -> Result<LockGuard> {
        ensure_private_dir(&self.dir)?;
        // A separate lock file, never the data file: the data file is replaced by rename (kubelogin#1144).
        let path = self.dir.join(format!("{key}.lock"));
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::store(format!("cannot open lock file {}: {}", path.display(), io_reason(&e))))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(LockGuard { file: Some(file), path }),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(15));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::store(format!(
                        "another mlflow-oidc process has held the lock {} for over {}s; try again",
                        path.display(),
                        timeout.as_secs()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::store(format!("cannot lock {}: {}", path.display(), io_reason(&e))));
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}

fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Create `dir` (and parents) with mode 0700 for the leaf.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        // A directory others can write to is a place to plant files or symlinks: make it ours alone again.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(dir)
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                    Error::store(format!(
                        "{} is open to other users and cannot be made private: {}",
                        dir.display(),
                        io_reason(&e)
                    ))
                })?;
            }
        }
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| Error::store(format!("cannot create directory {}: {}", dir.display(), io_reason(&e))))
}

/// Write `bytes` to `path` so that readers see the old content or the new, never a torn file: a 0600 temp file
/// in the same directory, fsync, rename. A symlink planted at `path` is replaced, not followed.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::store(format!("{} has no parent directory", path.display())))?;
    ensure_private_dir(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), unique()));
    let fail =
        |what: &str, e: std::io::Error| Error::store(format!("cannot {what} {}: {}", path.display(), io_reason(&e)));
    let result = (|| {
        let mut f = private_options().write(true).create_new(true).open(&tmp).map_err(|e| fail("write", e))?;
        f.write_all(bytes).map_err(|e| fail("write", e))?;
        f.sync_all().map_err(|e| fail("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| fail("replace", e))?;
        // Make the rename itself durable; failing to is not worth an error.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Which store the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Auto,
    Keyring,
    File,
    Memory,
}

impl StoreMode {
    pub fn parse(s: &str) -> Option<StoreMode> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(StoreMode::Auto),
            "keyring" => Some(StoreMode::Keyring),
            "file" => Some(StoreMode::File),
            "memory" => Some(StoreMode::Memory),
            _ => None,
        }
    }
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

#[derive(Serialize, Deserialize)]
struct Choice {
    store: String,
    reason: String,
    since: i64,
}

#[derive(Serialize, Deserialize)]
struct KeyringValue {
    refresh_token: crate::token::Secret<String>,
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
}

/// The store the commands use: entries in 0600 files, refresh tokens in the keyring when it answers.
pub struct Store {
    files: FileStore,
    settings: StoreSettings,
    secrets: Box<dyn SecretStore>,
    chosen: std::cell::OnceCell<(Backend, String)>,
    warnings: std::cell::RefCell<Vec<String>>,
    memory: std::cell::RefCell<std::collections::BTreeMap<String, Entry>>,
}

use crate::keyring_store::SecretStore;

impl Store {
    pub fn new(settings: StoreSettings, secrets: Box<dyn SecretStore>) -> Store {
        Store {
            files: FileStore::new(settings.data_dir.join("tokens")),
            settings,
            secrets,
            chosen: std::cell::OnceCell::new(),
            warnings: std::cell::RefCell::new(Vec::new()),
            memory: std::cell::RefCell::new(Default::default()),
        }
    }

    /// Warnings produced so far (printed once by the caller).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.borrow_mut())
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
        if let Ok(bytes) = std::fs::read(self.choice_path())
            && let Ok(c) = serde_json::from_slice::<Choice>(&bytes)
            && c.store == "file"
        {
            return (
                Backend::File,
                format!(
                    "the keyring was unavailable on {} ({}); remembered — `--store keyring` switches back",
                    crate::token::rfc3339(c.since),
                    c.reason
                ),
            );
        }
        if !self.settings.bus_available {
            return self.fall_back("no D-Bus session bus for the Secret Service".into());
        }
        match self.secrets.probe() {
            Ok(()) => (Backend::Keyring, "auto: the OS keyring answers".into()),
            Err(e) => self.fall_back(e.to_string()),
        }
    }

    fn fall_back(&self, reason: String) -> (Backend, String) {
        let dir = self.files.dir.display().to_string();
        self.warnings.borrow_mut().push(format!(
            "the OS keyring is unavailable ({reason}); keeping credentials in {dir} (mode 0600) instead. \
             This choice is remembered; `--store keyring` switches back"
        ));
        let choice = Choice { store: "file".into(), reason: reason.clone(), since: self.settings.now };
        if let Ok(bytes) = serde_json::to_vec(&choice) {
            let _ = atomic_write(&self.choice_path(), &bytes);
        }
        (Backend::File, format!("auto: fell back to the file store ({reason})"))
    }

    /// The refresh token of `entry`, from wherever it lives.
    pub fn refresh_token(&self, key: &str, entry: &Entry) -> Result<Option<crate::token::Secret<String>>> {
        if let Some(rt) = &entry.tokens.refresh_token {
            return Ok(Some(rt.clone()));
        }
        if entry.refresh_token_in.as_deref() != Some("keyring") {
            return Ok(None);
        }
        match self.secrets.get(&entry.account(key)) {
            Ok(Some(text)) => match serde_json::from_str::<KeyringValue>(&text) {
                Ok(v) => Ok(Some(v.refresh_token)),
                Err(_) => {
                    self.warnings.borrow_mut().push("the keyring entry is not ours or is corrupt; ignoring it".into());
                    Ok(None)
                }
            },
            Ok(None) => Ok(None),
            Err(e) if self.settings.mode == StoreMode::Keyring => Err(e),
            Err(e) => {
                self.warnings.borrow_mut().push(format!("{e}; the refresh token there cannot be used now"));
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
                        e.refresh_token_in = Some("keyring".into());
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
            && (e.refresh_token_in.as_deref() == Some("keyring") || self.settings.mode == StoreMode::Keyring)
        {
            match self.secrets.delete(&e.account(key)) {
                Ok(d) => deleted |= d,
                Err(err) if self.settings.mode == StoreMode::Keyring => return Err(err),
                Err(err) => self.warnings.borrow_mut().push(format!("{err}; the keyring entry may remain")),
            }
        }
        deleted |= self.files.delete(key, lock)?;
        Ok(deleted)
    }

    fn lock(&self, key: &str, timeout: Duration) -> Result<LockGuard> {
        if self.settings.mode == StoreMode::Memory {
            return Ok(LockGuard { file: None, path: PathBuf::new() });
        }
        self.files.lock(key, timeout)
    }

    fn describe(&self) -> String {
        self.describe_backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Secret;

    fn entry() -> Entry {
        Entry {
            version: 1,
            server: Some("http://m".into()),
            issuer: "https://i".into(),
            client_id: "c".into(),
            tokens: TokenSet {
                access_token: Some(Secret::new("AT".into())),
                access_expires_at: Some(100),
                refresh_token: Some(Secret::new("RT".into())),
                obtained_at: 40,
                ..Default::default()
            },
            refresh_token_in: None,
        }
    }

    #[test]
    fn the_cache_file_format_is_pinned() {
        assert_eq!(
            serde_json::to_string(&entry()).unwrap(),
            r#"{"version":1,"server":"http://m","issuer":"https://i","client_id":"c","tokens":{"access_token":"AT","access_expires_at":100,"refresh_token":"RT","obtained_at":40}}"#
        );
        // Unknown fields from a newer version are ignored.
        let newer = r#"{"version":2,"issuer":"i","client_id":"c","extra":1,"tokens":{"access_token":"A","obtained_at":1,"new":true}}"#;
        assert!(serde_json::from_str::<Entry>(newer).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_and_replaced_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tokens");
        let store = FileStore::new(dir.clone());
        let lock = store.lock("k", Duration::from_secs(1)).unwrap();
        store.save("k", &entry(), &lock).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.join("k.json")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(store.load("k").unwrap().unwrap().tokens, entry().tokens);
        assert!(store.delete("k", &lock).unwrap());
        assert!(!store.delete("k", &lock).unwrap());
        assert!(store.load("k").unwrap().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let dir = tmp.path().join("tokens");
        ensure_private_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("k.json")).unwrap();
        let store = FileStore::new(dir.clone());
        let lock = store.lock("k", Duration::from_secs(1)).unwrap();
        store.save("k", &entry(), &lock).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(dir.join("k.json")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn corrupt_entries_are_reported_with_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("k.json"), "{\"version\":").unwrap();
        let e = FileStore::new(tmp.path().to_path_buf()).load("k").unwrap_err();
        assert!(e.to_string().contains("k.json") && e.to_string().contains("corrupt"), "{e}");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().to_path_buf());
        let first = store.lock("k", Duration::from_secs(1)).unwrap();
        let e = store.lock("k", Duration::from_millis(50)).err().unwrap();
        assert!(e.to_string().contains("k.lock"), "{e}");
        drop(first);
        assert!(store.lock("k", Duration::from_millis(50)).is_ok());
    }

    #[test]
    fn keys_differ_per_server_part() {
        assert_ne!(hash_key(&["a", "bc"]), hash_key(&["ab", "c"]));
        assert_eq!(hash_key(&["a"]).len(), 32);
    }
}
