//! The user's list of trusted project files (issue 21): a project `pyproject.toml` may use the settings the
//! table marks `needs_trust` (key files, `file:`/`env:`/`command:`/`github-actions` sources, TLS keys) only
//! once the user ran `mlflow-oidc trust` for its canonical path and exact content, as `direnv allow` and
//! `mise trust` do. A changed file needs trusting again.
//!
//! The list lives in the data directory next to the credentials (direnv keeps its allow list in its data
//! directory too), written atomically, and is used only when the file-trust rule holds for it: a list another
//! user could write would let them trust files for us.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const FILE_NAME: &str = "trusted-projects.json";
const LOCK_NAME: &str = "trusted-projects.lock";
/// How long `trust` waits for another `trust` run to finish with the list.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One trusted file: where it is and what it held.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes when it was trusted.
    pub sha256: String,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct OnDisk {
    #[serde(default)]
    trusted: Vec<Entry>,
}

/// The trust list, as read from the data directory.
#[derive(Debug)]
pub struct TrustList {
    path: PathBuf,
    entries: Vec<Entry>,
}

/// The SHA-256 of a file's content, as recorded.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical form of a path recorded in the list (symlinks resolved), or the path itself when it cannot be
/// resolved.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl TrustList {
    /// The list in `data_dir`, empty when there is none. A list others could have written is refused.
    pub fn load(data_dir: &Path) -> Result<TrustList> {
        let path = data_dir.join(FILE_NAME);
        let mut list = TrustList { path: path.clone(), entries: Vec::new() };
        let file = match crate::fsutil::open_nofollow(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(list),
            Err(e) if crate::fsutil::is_symlink_refusal(&e) => {
                return Err(Error::store(format!(
                    "{} is a symbolic link: refusing to read the list of trusted project files through it; \
                     remove it and trust your projects again",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::store_io(format!("cannot read {}", path.display()), e)),
        };
        #[cfg(unix)]
        {
            let meta = file.metadata().map_err(|e| Error::store_io(format!("cannot read {}", path.display()), e))?;
            if let Some(why) = crate::fsutil::distrust(&meta) {
                return Err(Error::store(format!(
                    "{} is {why}: another user could have trusted project files for you. Remove it (or `chown` it \
                     to yourself and `chmod 600` it) and trust your projects again",
                    path.display()
                )));
            }
        }
        let disk: OnDisk = serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
            Error::store(format!(
                "{} is damaged ({}): remove it and trust your projects again",
                path.display(),
                crate::error::parse_error(&e)
            ))
        })?;
        list.entries = disk.trusted;
        Ok(list)
    }

    /// Hold the list's lock (a file beside it) while it is read, changed and written: two `trust` runs at once
    /// (two terminals, a CI matrix on one runner) must not lose each other's entry. Dropping the file unlocks.
    pub fn lock(data_dir: &Path) -> Result<std::fs::File> {
        crate::fsutil::ensure_private_dir(data_dir)?;
        let path = data_dir.join(LOCK_NAME);
        let file = crate::fsutil::open_lock_file(&path)?;
        crate::fsutil::lock_within(&file, &path, LOCK_WAIT)?;
        Ok(file)
    }

    /// Whether the file at `path` (canonicalised) is trusted with exactly this content.
    pub fn allows(&self, path: &Path, content: &[u8]) -> bool {
        let path = canonical(path);
        let hash = content_hash(content);
        self.entries.iter().any(|e| e.path == path && e.sha256 == hash)
    }

    /// The entry for `path`, whatever its content.
    pub fn entry(&self, path: &Path) -> Option<&Entry> {
        let path = canonical(path);
        self.entries.iter().find(|e| e.path == path)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Trust `path` with `content`, replacing an earlier entry for it.
    pub fn add(&mut self, path: &Path, content: &[u8]) -> Entry {
        let entry = Entry { path: canonical(path), sha256: content_hash(content) };
        self.entries.retain(|e| e.path != entry.path);
        self.entries.push(entry.clone());
        entry
    }

    /// Forget `path`; true when it was listed.
    pub fn revoke(&mut self, path: &Path) -> bool {
        let path = canonical(path);
        let before = self.entries.len();
        self.entries.retain(|e| e.path != path);
        before != self.entries.len()
    }

    /// Write the list: a 0600 file written atomically in the private data directory.
    pub fn save(&self) -> Result<()> {
        let disk = OnDisk { trusted: self.entries.clone() };
        let mut bytes = serde_json::to_vec_pretty(&disk)
            .map_err(|e| Error::store(format!("cannot encode {}: {e}", self.path.display())))?;
        bytes.push(b'\n');
        crate::fsutil::atomic_write(&self.path, &bytes)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_no_longer_trusted_and_revoke_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let proj = dir.path().join("pyproject.toml");
        std::fs::write(&proj, "a").unwrap();
        let mut list = TrustList::load(&data).unwrap();
        assert!(!list.allows(&proj, b"a"));
        list.add(&proj, b"a");
        list.save().unwrap();
        let list = TrustList::load(&data).unwrap();
        assert!(list.allows(&proj, b"a"));
        assert!(!list.allows(&proj, b"a "), "another content");
        let mut list = TrustList::load(&data).unwrap();
        assert!(list.revoke(&proj));
        assert!(!list.revoke(&proj));
        assert!(!list.allows(&proj, b"a"));
    }

    #[test]
    fn the_wire_format_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = TrustList::load(dir.path()).unwrap();
        list.entries.push(Entry { path: "/p/pyproject.toml".into(), sha256: content_hash(b"") });
        list.save().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "{\n  \"trusted\": [\n    {\n      \"path\": \"/p/pyproject.toml\",\n      \"sha256\": \
             \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n    }\n  ]\n}\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_list_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        std::fs::write(&p, "{\"trusted\":[]}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = TrustList::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("writable by other users") && e.contains(FILE_NAME), "{e}");
    }
}
