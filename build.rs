//! Sets `VERSION_WITH_COMMIT`, the text of `mlflow-oidc --version`: the crate version, plus the
//! commit it was built from in release builds ("0.1.0 (3f2a9c1)").
//!
//! Where the commit comes from, first found wins:
//! 1. `MLFLOW_OIDC_BUILD_COMMIT` (a packager's override; empty means "no commit"),
//! 2. `.cargo_vcs_info.json`, which `cargo package` writes (the crates.io package and the sdist
//!    have no `.git`),
//! 3. `git rev-parse --short HEAD` in a git checkout.
//!
//! Anything missing or failing means no commit, silently. Dev and test builds (profile `debug`) never
//! ask git: watching `.git/HEAD` and the branch ref would rerun this script, and so recompile the
//! crate and every test binary, after each commit, even one that only touched docs.
//! (The variable's name does not start with `MLFLOW_`: tests/docs.rs takes such literals in src/ for
//! settings read at run time.)

#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MLFLOW_OIDC_BUILD_COMMIT");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let commit = if release { commit() } else { None };
    let text = match commit {
        Some(c) => format!("{version} ({c})"),
        None => version,
    };
    println!("cargo:rustc-env=VERSION_WITH_COMMIT={text}");
}

fn commit() -> Option<String> {
    if let Ok(c) = std::env::var("MLFLOW_OIDC_BUILD_COMMIT") {
        return short(c.trim());
    }
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let vcs_info = dir.join(".cargo_vcs_info.json");
    if let Ok(text) = std::fs::read_to_string(&vcs_info) {
        watch(&vcs_info);
        // {"git": {"sha1": "…"}, "path_in_vcs": ""}: one field, no JSON parser needed at build time.
        let sha = text.split("\"sha1\"").nth(1)?.split('"').nth(1)?;
        return short(sha);
    }
    from_git(&dir)
}

fn from_git(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    // Only this crate's own checkout: not a parent repository that happens to hold an unpacked crate.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    // HEAD, the branch it points to, and packed-refs: what changes when a commit is made or checked out.
    // --git-path resolves them for worktrees too (refs live in the common dir there).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
            watch(&dir.join(p));
        }
    }
    short(&git(&["rev-parse", "HEAD"])?)
}

/// A file that does not exist must not be watched: cargo would rerun the script on every build.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn short(sha: &str) -> Option<String> {
    let ok = sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| sha[..7].to_owned())
}
