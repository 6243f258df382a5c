//! Filesystem helpers shared by the token store and the discovery cache: private directories, atomic writes,
//! file-name-safe key hashing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// For the callers that still put an I/O failure's reason inside their message rather than keep the error as
/// the source ([`Error::store_io`], [`Error::config_io`]): src/flow/source.rs and src/http.rs.
pub use crate::error::io_reason;
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
/// An existing directory owned by another user is refused, not re-tightened: its owner can undo a chmod and
/// plant files in it whenever they like (ssh StrictModes refuses such a ~/.ssh for the same reason).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            if let Ok(meta) = std::fs::metadata(dir)
                && current_uid().is_some_and(|me| meta.uid() != me && meta.uid() != 0)
            {
                return Err(Error::store(format!(
                    "{} is owned by {}, not by you, mode {:04o}: its owner could plant or read credentials there. \
                     Remove it (or `chown` it to yourself) and run the command again",
                    dir.display(),
                    describe_uid(meta.uid()),
                    meta.mode() & 0o7777
                )));
            }
            // A directory of ours that others can write to is a place to plant files or symlinks: make it ours
            // alone again.
            if let Ok(meta) = std::fs::metadata(dir)
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                    Error::store_io(format!("{} is open to other users and cannot be made private", dir.display()), e)
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
    b.create(dir).map_err(|e| Error::store_io(format!("cannot create directory {}", dir.display()), e))
}

/// Write `bytes` to `path` so that readers see the old content or the new, never a torn file: a 0600 temp file
/// in the same directory, fsync, rename. A symlink planted at `path` is replaced, not followed.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::store(format!("{} has no parent directory", path.display())))?;
    ensure_private_dir(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), unique()));
    let fail = |what: &str, e: std::io::Error| Error::store_io(format!("cannot {what} {}", path.display()), e);
    let result = (|| {
        let mut f = private_options().write(true).create_new(true).open(&tmp).map_err(|e| fail("write", e))?;
        f.write_all(bytes).map_err(|e| fail("write", e))?;
        f.sync_all().map_err(|e| fail("sync", e))?;
        replace(&tmp, path).map_err(|e| fail("replace", e))?;
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

/// `rename`, retried for a moment where Windows refuses to replace a file that another process has open: a
/// concurrent `token` reading the entry while this one stores its refresh. Windows 10's POSIX rename semantics
/// allow it; Wine and older Windows answer "access denied" until the reader closes, milliseconds later (seen with
/// four concurrent refreshes under Wine, issue 23).
fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::rename(tmp, path) {
            Err(e)
                if cfg!(windows)
                    && e.kind() == std::io::ErrorKind::PermissionDenied
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// The current user's id, found once. No `libc::geteuid`: the crate forbids `unsafe`. On Linux `/proc/self` is
/// owned by the process's effective uid (proc(5)); elsewhere (or without /proc) a file we create is ours.
#[cfg(unix)]
pub fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    static UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        if cfg!(target_os = "linux")
            && let Ok(m) = std::fs::metadata("/proc/self")
        {
            return Some(m.uid());
        }
        let probe = std::env::temp_dir().join(format!(".mlflow-oidc-uid.{}.{}", std::process::id(), unique()));
        let f = private_options().write(true).create_new(true).open(&probe).ok()?;
        let uid = f.metadata().ok().map(|m| m.uid());
        let _ = std::fs::remove_file(&probe);
        uid
    })
}

/// "uid 65534 (nobody)": the name from /etc/passwd when it is there (no NSS lookup: that needs `unsafe` libc).
#[cfg(unix)]
pub fn describe_uid(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|text| {
        text.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
    });
    match name {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

/// Why a file or directory must not be trusted (ssh StrictModes, git's `safe.directory` for CVE-2022-24765):
/// owned by someone other than us or root, or writable by group or others. `None` when it is
/// trustworthy. The reason names the owner and the mode, for a message that already names the path.
#[cfg(unix)]
pub fn distrust(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    let me = current_uid();
    let foreign = me.is_some_and(|me| uid != me && uid != 0);
    // A symlink's own mode is always 0777 and means nothing; only its owner counts.
    let writable = !meta.file_type().is_symlink() && mode & 0o022 != 0;
    if !foreign && !writable {
        return None;
    }
    let who = describe_uid(uid);
    let you = me.map(|me| format!(" (you are {})", describe_uid(me))).unwrap_or_default();
    Some(if foreign {
        format!("owned by {who}, not by you{you}, mode {mode:04o}")
    } else {
        format!("writable by other users: owner {who}, mode {mode:04o}")
    })
}

/// Open (creating it 0600) the lock file at `path`, never through a symlink planted at its name. A separate
/// lock file, never the data file it guards: the data file is replaced by rename (kubelogin#1144).
pub fn open_lock_file(path: &Path) -> Result<File> {
    let mut options = private_options();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options.read(true).write(true).create(true).truncate(false).open(path).map_err(|e| {
        if is_symlink_refusal(&e) {
            Error::store(format!(
                "lock file {} is a symbolic link: not followed. Delete it and run the command again",
                path.display()
            ))
        } else {
            Error::store_io(format!("cannot open lock file {}", path.display()), e)
        }
    })
}

/// Take the exclusive advisory lock of `file` (`path` names it), waiting for another process that holds it for at
/// most `timeout`: a hung holder costs a message, not a hang.
pub fn lock_within(file: &File, path: &Path, timeout: std::time::Duration) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::store(format!(
                    "another mlflow-oidc process has held the lock {} for over {}s; try again",
                    path.display(),
                    timeout.as_secs()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::store_io(format!("cannot lock {}", path.display()), e));
            }
        }
    }
}

/// Open a store or cache file for reading without following a symlink at its name (O_NOFOLLOW: a link planted
/// there would make us read, and later trust, a file of the planter's choosing).
pub fn open_nofollow(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW);
    }
    o.open(path)
}

/// Whether an open failed because the name is a symlink (ELOOP under O_NOFOLLOW).
pub fn is_symlink_refusal(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}
