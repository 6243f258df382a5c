//! The file store: tokens as JSON files, 0600 in a 0700 directory, replaced atomically, and the cross-process
//! lock on a separate `<key>.lock` file (not the data file: kubelogin#1144).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Entry, LockGuard, TokenStore};
use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, ensure_private_dir, io_reason, private_options};

/// Tokens as JSON files, 0600 in a 0700 directory, replaced atomically.
pub struct FileStore {
    pub(super) dir: PathBuf,
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
                "token cache {} is corrupt ({}): run `mlflow-oidc logout` and log in again, or delete the file",
                path.display(),
                crate::error::parse_error(&e)
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
                Ok(()) => return Ok(LockGuard { file: Some(file) }),
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
