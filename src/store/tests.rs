//! Unit tests of the store: the pinned cache format, atomic private writes, locks, keys, the keyring fallback.

use super::*;
use crate::tokenset::Secret;

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
    let store = FileStore::new(dir.clone(), Default::default());
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
    crate::fsutil::ensure_private_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("k.json")).unwrap();
    let store = FileStore::new(dir.clone(), Default::default());
    let lock = store.lock("k", Duration::from_secs(1)).unwrap();
    store.save("k", &entry(), &lock).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(!std::fs::symlink_metadata(dir.join("k.json")).unwrap().file_type().is_symlink());
}

#[test]
fn corrupt_entries_are_reported_with_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("k.json"), "{\"version\":").unwrap();
    let e = FileStore::new(tmp.path().to_path_buf(), Default::default()).load("k").unwrap_err();
    assert!(e.to_string().contains("k.json") && e.to_string().contains("corrupt"), "{e}");
}

#[test]
fn the_lock_excludes_a_second_holder_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path().to_path_buf(), Default::default());
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

#[test]
fn a_keyring_fallback_is_asked_again_after_a_day() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |now: i64, fails: bool| {
        let settings = StoreSettings {
            mode: StoreMode::Auto,
            mode_source: "default".into(),
            data_dir: tmp.path().to_path_buf(),
            bus_available: true,
            now,
            warnings: Default::default(),
        };
        Store::new(settings, Box::new(crate::keyring_store::MemorySecrets::failing(fails)))
    };
    let dead = at(1_000, true);
    assert_eq!(dead.backend().0, Backend::File);
    assert!(dead.take_warnings()[0].contains("asked again in a day"));
    // An hour later the keyring works again, but the fallback still holds (no probe, no warning) …
    let (backend, why) = at(1_000 + 3600, false).backend();
    assert_eq!(backend, Backend::File);
    assert!(why.contains("remembered until 1970-01-02T00:16:40Z"), "{why}");
    // … until a day has passed: then the keyring is asked, and used.
    let later = at(1_000 + REPROBE_AFTER, false);
    assert_eq!(later.backend().0, Backend::Keyring);
    assert!(!tmp.path().join("store-choice.json").exists());
}

#[test]
fn where_the_refresh_token_lives_is_read_tolerantly_and_written_as_before() {
    assert_eq!(serde_json::to_string(&super::Elsewhere::Keyring).unwrap(), r#""keyring""#);
    let read = |v: &str| serde_json::from_str::<super::Elsewhere>(v).unwrap();
    assert_eq!(read(r#""keyring""#), super::Elsewhere::Keyring);
    // A newer version's place is no refresh token here, not a corrupt entry.
    assert_eq!(read(r#""vault""#), super::Elsewhere::Unknown);
}

/// Issue 24: a store failure keeps the I/O error underneath (`source()`) for callers that branch on its kind,
/// and prints the same words as before it was kept.
#[cfg(unix)]
#[test]
fn a_store_failure_keeps_its_io_error() {
    use std::error::Error as _;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let store = FileStore::new(file.join("tokens"), Default::default());
    let Err(e) = store.lock("k", Duration::from_secs(1)) else { panic!("a directory under a file was created") };
    assert_eq!(e.to_string(), format!("cannot create directory {}/tokens: not a directory", file.display()));
    assert_eq!(e.exit_code(), 1);
    assert_eq!(e.kind(), "store");
    let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the I/O error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::NotADirectory);
}
