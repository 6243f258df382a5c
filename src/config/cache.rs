//! What a project `pyproject.toml` holds for us, remembered between runs (issue 23): parsing the whole file is
//! most of a cached `token`'s work (BENCHMARKS.md), and the file rarely changes between two `token` calls.
//!
//! The cache memoises one pure function, [`super::view::project_view`], from the file's bytes to the table of
//! ours, so it cannot decide anything the file would not: it is keyed by the SHA-256 of the bytes just read (any
//! change, of any length or time stamp, misses), and it holds no trust. Whether the file may be used at all
//! (owner and mode), whether its directory is in `safe-directories` and whether the user trusted its content
//! (`mlflow-oidc trust`, issue 21) are decided afresh on every run from the file itself, after the cache.
//!
//! One small JSON file per project path in `<cache dir>/project-config/` (0700), written 0600 atomically. An
//! entry we did not write — a symlink, a file another user owns or may write, or one in a directory they may
//! write — is ignored like a damaged one: the file is parsed and the entry rewritten; never an error.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::fsutil::hash_key;

const DIR: &str = "project-config";
/// Bumped when the entry's meaning changes, so an older binary's entries miss instead of misleading.
const VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry<T> {
    v: u32,
    path: PathBuf,
    sha256: String,
    view: T,
}

/// The entry file for a project file path: its name says nothing about the path (a hash).
fn entry_path(cache_dir: &Path, file: &Path) -> PathBuf {
    cache_dir.join(DIR).join(format!("{}.json", hash_key(&[&file.to_string_lossy()])))
}

/// The table remembered for `file` with exactly this `text`, if any and if it is ours to trust.
pub(super) fn lookup(cache_dir: &Path, file: &Path, text: &str) -> Option<toml::Table> {
    let path = entry_path(cache_dir, file);
    let mut f = crate::fsutil::open_nofollow(&path).ok()?;
    #[cfg(unix)]
    {
        // Another user who may write the entry or its directory could hand us any table.
        let dir = std::fs::metadata(path.parent()?).ok()?;
        if crate::fsutil::distrust(&dir).is_some() || crate::fsutil::distrust(&f.metadata().ok()?).is_some() {
            return None;
        }
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    let entry: Entry<toml::Table> = serde_json::from_slice(&bytes).ok()?;
    (entry.v == VERSION && entry.path == file && entry.sha256 == crate::trust::content_hash(text.as_bytes()))
        .then_some(entry.view)
}

/// Remember `view` for `file` with this `text`. A table JSON cannot carry exactly (a float, a date-time: both
/// rejected in our table anyway) is not remembered. Failing to write only costs a parse next time.
pub(super) fn remember(cache_dir: &Path, file: &Path, text: &str, view: &toml::Table) {
    if !view.values().all(plain) {
        return;
    }
    let entry =
        Entry { v: VERSION, path: file.to_path_buf(), sha256: crate::trust::content_hash(text.as_bytes()), view };
    if let Ok(bytes) = serde_json::to_vec(&entry) {
        let _ = crate::fsutil::atomic_write(&entry_path(cache_dir, file), &bytes);
    }
}

/// A value that JSON round-trips exactly into the same `toml::Value`.
fn plain(v: &toml::Value) -> bool {
    match v {
        toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_) => true,
        toml::Value::Float(_) | toml::Value::Datetime(_) => false,
        toml::Value::Array(a) => a.iter().all(plain),
        toml::Value::Table(t) => t.values().all(plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[project]\nname = \"x\"\n[[tool.mlflow-oidc-client.tracking-servers]]\n\
                        uri = \"https://m\"\nredirect-ports = [1, 2]\nuse-id-token = false\n";

    #[test]
    fn an_entry_is_used_only_for_the_same_path_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = Path::new("/proj/pyproject.toml");
        let view = super::super::view::project_view(TEXT).unwrap();
        assert!(lookup(dir.path(), file, TEXT).is_none(), "nothing remembered yet");
        remember(dir.path(), file, TEXT, &view);
        assert_eq!(lookup(dir.path(), file, TEXT), Some(view.clone()), "the same table back");
        let changed = TEXT.replace("https://m", "https://n");
        assert!(lookup(dir.path(), file, &changed).is_none(), "a changed file misses");
        assert!(lookup(dir.path(), Path::new("/other/pyproject.toml"), TEXT).is_none(), "another path misses");
    }

    #[test]
    fn a_damaged_entry_is_ignored_and_a_float_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let file = Path::new("/proj/pyproject.toml");
        let view = super::super::view::project_view(TEXT).unwrap();
        remember(dir.path(), file, TEXT, &view);
        let entry = entry_path(dir.path(), file);
        std::fs::write(&entry, b"{\"v\":1,\"path\":").unwrap();
        assert!(lookup(dir.path(), file, TEXT).is_none());
        std::fs::remove_file(&entry).unwrap();
        let float = "[tool.mlflow-oidc-client]\nx = 1.5\n";
        remember(dir.path(), file, float, &super::super::view::project_view(float).unwrap());
        assert!(!entry.exists());
    }

    #[cfg(unix)]
    #[test]
    fn an_entry_others_may_write_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = Path::new("/proj/pyproject.toml");
        let view = super::super::view::project_view(TEXT).unwrap();
        remember(dir.path(), file, TEXT, &view);
        let entry = entry_path(dir.path(), file);
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(lookup(dir.path(), file, TEXT).is_none(), "a world-writable entry");
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(entry.parent().unwrap(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(lookup(dir.path(), file, TEXT).is_none(), "a world-writable directory");
    }
}
