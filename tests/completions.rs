//! The committed completion scripts and man page match the clap definition.
//! Regenerate with: `UPDATE_GENERATED=1 cargo test --test completions`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;

fn generated(args: &[&str]) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_mlflow-oidc")).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn check(rel: &str, content: Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &content).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == content,
        "{rel} is stale: regenerate with `UPDATE_GENERATED=1 cargo test --test completions` and commit it"
    );
}

#[test]
fn completions_are_up_to_date() {
    for (shell, file) in [
        ("bash", "completions/mlflow-oidc.bash"),
        ("zsh", "completions/_mlflow-oidc"),
        ("fish", "completions/mlflow-oidc.fish"),
        ("powershell", "completions/_mlflow-oidc.ps1"),
        ("elvish", "completions/mlflow-oidc.elv"),
    ] {
        let content = generated(&["completions", shell]);
        assert!(content.len() > 500, "{shell} completion suspiciously small");
        check(file, content);
    }
}

#[test]
fn man_page_is_up_to_date() {
    let content = generated(&["man"]);
    assert!(String::from_utf8_lossy(&content).contains(".TH mlflow-oidc"));
    check("man/mlflow-oidc.1", content);
}
