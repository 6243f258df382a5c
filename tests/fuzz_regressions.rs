//! Inputs that made a fuzz target (or the bad-input catalogue) find a bug, replayed on every `cargo test` through
//! the very same target bodies: `fuzz/src/lib.rs` is included here as a module, and each file under
//! `fuzz/regressions/<target>/` is fed to its target, together with the hand-written seeds of `fuzz/seeds/<target>/`.
//! See fuzz/README.md for running the fuzzers themselves.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

/// Feed every file of `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/` to `body`; none may panic.
fn replay(target: &str, body: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<_> = ["regressions", "seeds"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz.join(kind).join(target)).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs for {target} under {}", fuzz.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            failed.push(file.strip_prefix(&fuzz).unwrap().display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: {} of {} inputs panic: {failed:?}", failed.len(), files.len());
}

#[test]
fn config() {
    replay("config", targets::config);
}

#[test]
fn loopback() {
    replay("loopback", targets::loopback);
}

#[test]
fn discovery() {
    replay("discovery", targets::discovery);
}

#[test]
fn claims() {
    replay("claims", targets::claims);
}

#[test]
fn store_entry() {
    replay("store_entry", targets::store_entry);
}

#[test]
fn times() {
    replay("times", targets::times);
}
