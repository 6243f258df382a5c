//! The file store: tokens as JSON files, 0600 in a 0700 directory, replaced atomically, and the cross-process
//! lock on a separate `<key>.lock` file (not the data file: kubelogin#1144).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Entry, LockGuard, TokenStore};
use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, ensure_private_dir, is_symlink_refusal, open_nofollow};

/// Tokens as JSON files, 0600 in a 0700 directory, replaced atomically.
pub struct FileStore {
    pub(super) dir: PathBuf,
    /// Where warnings go (a token file re-tightened to 0600: Unix only, Windows has no mode checks yet).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) notes: crate::warnings::Warnings,
}

impl FileStore {
    pub fn new(dir: PathBuf, notes: crate::warnings::Warnings) -> Self {
        FileStore { dir, notes }
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

    /// Refuse a store file (opened, so the check and the read see the same inode) that another user owns or
    /// may write (ssh StrictModes): its content could be theirs — a token for their account, printed as ours.
    /// A file of ours that others could only read is made 0600 again with a warning: its content is ours
    /// (only we or root could have written it), but the token in it may have been read.
    #[cfg(unix)]
    fn check_file(&self, file: &File, path: &Path) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if let Ok(meta) = std::fs::metadata(&self.dir)
            && let Some(why) = crate::fsutil::distrust(&meta)
            && crate::fsutil::current_uid().is_some_and(|me| meta.uid() != me && meta.uid() != 0)
        {
            return Err(untrusted_error(&self.dir, &why));
        }
        let meta = file.metadata().map_err(|e| Error::store_io(format!("cannot read {}", path.display()), e))?;
        if let Some(why) = crate::fsutil::distrust(&meta) {
            return Err(untrusted_error(path, &why));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| {
                Error::store_io(format!("{} is readable by other users and cannot be made private", path.display()), e)
            })?;
            self.notes.push(format!(
                "{} was readable by other users (mode {mode:04o}); made it 0600. If others could log in here, \
                 run `mlflow-oidc logout` and log in again",
                path.display()
            ));
        }
        Ok(())
    }

    /// Windows: no owner or mode checks yet (ACLs); the store lives in the per-user profile directory.
    #[cfg(not(unix))]
    fn check_file(&self, _file: &File, _path: &Path) -> Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
fn untrusted_error(path: &Path, why: &str) -> Error {
    Error::store(format!(
        "refusing to use {}: {why}. Another user may have planted it. Delete it (`rm {}`) and run \
         `mlflow-oidc login`; make sure {} is yours and mode 0700",
        path.display(),
        crate::error::shell_word(&path.display().to_string()),
        path.parent().unwrap_or(path).display()
    ))
}

fn symlink_error(path: &Path) -> Error {
    Error::store(format!(
        "token cache {} is a symbolic link: not followed (a planted link could make `token` print another \
         user's token); `mlflow-oidc login` replaces it with a file",
        path.display()
    ))
}

impl TokenStore for FileStore {
    fn load(&self, key: &str) -> Result<Option<Entry>> {
        let path = self.path(key);
        let mut file = match open_nofollow(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if is_symlink_refusal(&e) => return Err(symlink_error(&path)),
            Err(e) => {
                return Err(Error::store_io(format!("cannot read token cache {}", path.display()), e));
            }
        };
        self.check_file(&file, &path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::store_io(format!("cannot read token cache {}", path.display()), e))?;
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
            Err(e) => Err(Error::store_io(format!("cannot delete token cache {}", path.display()), e)),
        }
    }

    fn lock(&self, key: &str, timeout: Duration) -> Result<LockGuard> {
        ensure_private_dir(&self.dir)?;
        let path = self.dir.join(format!("{key}.lock"));
        let file = crate::fsutil::open_lock_file(&path)?;
        self.check_file(&file, &path)?;
        // The entry this lock guards must be ours before we renew or replace it: a file another user planted
        // is reported, not silently overwritten (StrictModes). Our own symlink there is replaced by the rename.
        #[cfg(unix)]
        if let Ok(meta) = std::fs::symlink_metadata(self.path(key))
            && let Some(why) = crate::fsutil::distrust(&meta)
        {
            return Err(untrusted_error(&self.path(key), &why));
        }
        crate::fsutil::lock_within(&file, &path, timeout)?;
        Ok(LockGuard { file: Some(file) })
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}
