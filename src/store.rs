//! Where tokens live between invocations: the `TokenStore` trait, the 0600 file store, atomic writes and the
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
}

impl Entry {
    pub fn new(c: &ServerConfig, tokens: TokenSet) -> Self {
        Entry { version: 1, server: c.uri.clone(), issuer: c.issuer.clone(), client_id: c.client_id.clone(), tokens }
    }
}

/// Proof that the caller holds the refresh lock of a key; writes require it.
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
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
                Ok(()) => return Ok(LockGuard { file, path }),
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
