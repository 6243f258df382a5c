//! The documentation is true to the code: the settings reference is generated from the settings table and
//! names every variable the code reads, the README stays short, every relative link resolves, and every test
//! SECURITY.md cites exists.
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

/// SECURITY.md's last column names the tests that prove each defence: every one of them must exist, or a renamed
/// or split test silently leaves a defence unproven on paper (issue 24 split `bad_input`'s tables; the names of two
/// issue-21 tests had already gone stale there).
#[test]
fn every_test_security_md_names_exists() {
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        files_under_skipping(&root().join(dir), &mut files);
    }
    let mut defined = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty());
        while let Some(w) = words.next() {
            if (w == "fn" || w == "def")
                && let Some(name) = words.next()
            {
                defined.insert(name.to_string());
            }
        }
    }
    let security = std::fs::read_to_string(root().join("SECURITY.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for row in security.lines().filter(|l| l.starts_with('|') && !l.starts_with("|---")) {
        let cells: Vec<&str> = row.split('|').collect();
        let Some(proofs) = cells.len().checked_sub(2).map(|i| cells[i]) else { continue };
        for (i, quoted) in proofs.split('`').enumerate() {
            let name = quoted.rsplit("::").next().unwrap_or(quoted);
            // Test names are sentences in snake case, or a table's `…_cases`; field names (`error_description`) and
            // files are neither.
            let is_test_name = i % 2 == 1
                && (name.matches('_').count() >= 2 || name.ends_with("_cases"))
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_test_name {
                named += 1;
                if !defined.contains(name) {
                    missing.push(quoted.to_string());
                }
            }
        }
    }
    assert!(named >= 60, "only {named} test names found in SECURITY.md: the table's layout changed?");
    assert!(missing.is_empty(), "SECURITY.md names tests that do not exist: {missing:#?}");
}

/// Rust and Python sources under `dir`, not descending into node_modules or build output.
fn files_under_skipping(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap_or_default();
        if p.is_dir() {
            if name != "node_modules" && name != "target" && name != "__pycache__" {
                files_under_skipping(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs" || x == "py") {
            out.push(p);
        }
    }
}
