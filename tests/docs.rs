//! The documentation is true to the code: the settings reference is generated from the settings table and
//! names every variable the code reads, the README stays short, and every relative link resolves.
//! Regenerate the reference with: `UPDATE_GENERATED=1 cargo test --test docs`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

const REFERENCE: &str = "docs/reference/settings.md";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

#[test]
fn the_settings_reference_is_generated_from_the_table() {
    let content = mlflow_oidc::config::keys::reference_markdown();
    let path = root().join(REFERENCE);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &content).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == content,
        "{REFERENCE} is stale: regenerate with `UPDATE_GENERATED=1 cargo test --test docs` and commit it"
    );
}

/// Every environment variable named in the code (a string literal passed to the `Env` snapshot, or any
/// `MLFLOW_…` literal) appears in the reference: a new variable cannot go undocumented.
#[test]
fn the_reference_names_every_variable_the_code_reads() {
    let reference = mlflow_oidc::config::keys::reference_markdown();
    let mut sources = Vec::new();
    files_under(&root().join("src"), "rs", &mut sources);
    files_under(&root().join("python"), "py", &mut sources);
    let mut missing = Vec::new();
    let mut seen = 0;
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests use made-up names ("A", "B"): only code before the test module counts.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (i, _) in code.match_indices('"') {
            let rest = &code[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let lit = &rest[..end];
            let is_name = lit.len() >= 2
                && lit.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && lit.as_bytes()[0].is_ascii_uppercase();
            if !is_name {
                continue;
            }
            let before = &code[..i];
            let read_by_env = [".get(", ".get_lossy(", ".is_set(", ".path(", "environ.get(", "os.environ["]
                .iter()
                .any(|call| before.ends_with(call));
            if lit.starts_with("MLFLOW_") || read_by_env {
                seen += 1;
                if !reference.contains(&format!("`{lit}`")) {
                    missing.push(format!("{lit} ({})", file.strip_prefix(root()).unwrap().display()));
                }
            }
        }
    }
    assert!(seen > 20, "the scan found only {seen} variable names: is it still reading the sources?");
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "variables read but not in the settings table (src/config/keys.rs): {missing:?}");
}

#[test]
fn the_readme_is_short_and_every_relative_link_resolves() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.lines().count() <= 200, "README.md has {} lines; move detail to docs/", readme.lines().count());
    assert!(readme.contains("cargo install --path . && mlflow-oidc status"), "the run command left the README");
    assert!(readme.contains("./scripts/test"), "the test command left the README");
    let mut pages = vec![root().join("README.md"), root().join("CONTRIBUTING.md"), root().join("SECURITY.md")];
    files_under(&root().join("docs"), "md", &mut pages);
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            if !page.parent().unwrap().join(file).exists() {
                broken.push(format!("{} -> {target}", page.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to files that do not exist: {broken:?}");
}
