//! Filesystem helpers shared by the token store and the discovery cache: private directories, atomic writes,
//! file-name-safe key hashing and short I/O error reasons.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A stable file-name-safe key from parts that must never collide across servers.
pub fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

pub fn private_options() -> OpenOptions {
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

/// A short, lower-case reason for an I/O error, for messages that already name the file.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => {
            let s = e.to_string();
            // std's messages are capitalised and carry "(os error N)"; keep ours lower-case and short.
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}
