//! `trust`, `trust --list`, `trust --revoke`: the user allows a project file's settings that reach their files,
//! variables and keys (issue 21), and every command checks project files against that list before resolution.

use std::path::{Path, PathBuf};

use super::{Deps, write_out};
use crate::cli::TrustArgs;
use crate::config::{self, ConfigFile, FileKind, Flags, keys};
use crate::error::{Error, Result};
use crate::trust::{TrustList, content_hash};

/// Mark each project file the user trusted with its current content. The list is read only when a project file
/// names a key that needs trust, so the common `token` path does no extra I/O.
pub(super) fn mark_allowed(files: &mut [ConfigFile], deps: &mut Deps) -> Result<()> {
    let names_a_key = |f: &ConfigFile| keys::block_settings().filter(|s| s.needs_trust).any(|s| f.text.contains(s.key));
    if !files.iter().any(|f| f.kind == FileKind::Project && !f.allowed && names_a_key(f)) {
        return Ok(());
    }
    let Some(data_dir) = deps.paths.data_dir.clone() else { return Ok(()) };
    let list = match TrustList::load(&data_dir) {
        Ok(l) => l,
        // A damaged or foreign list trusts nothing; the command still runs with the project's other settings.
        Err(e) => {
            deps.warn(e.to_string());
            return Ok(());
        }
    };
    for f in files.iter_mut().filter(|f| f.kind == FileKind::Project) {
        f.allowed = list.allows(&f.path, f.text.as_bytes());
    }
    Ok(())
}

pub(super) fn trust(flags: &Flags, args: &TrustArgs, deps: &mut Deps) -> Result<()> {
    let data_dir =
        deps.paths.data_dir.clone().ok_or_else(|| {
            Error::store("cannot find a data directory for the trust list: set HOME (or XDG_DATA_HOME)")
        })?;
    if args.list {
        return print_list(&TrustList::load(&data_dir)?, deps);
    }
    let _lock = TrustList::lock(&data_dir)?;
    let mut list = TrustList::load(&data_dir)?;
    let path = target(flags, args.path.as_deref(), deps)?;
    if args.revoke {
        if list.revoke(&path) {
            list.save()?;
            deps.note(format!("no longer trusting {}", path.display()));
        } else {
            deps.note(format!("{} was not trusted: nothing to revoke", path.display()));
        }
        return Ok(());
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::config_io(format!("cannot read {}", path.display()), e))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Error::config(format!("{} is not valid UTF-8: not a pyproject.toml", path.display())))?;
    // A file that does not parse is refused rather than trusted blind: what it would unlock is unknown.
    let keys = config::keys_needing_trust(path.clone(), text)?;
    let entry = list.add(&path, &bytes);
    list.save()?;
    let unlocks = if keys.is_empty() {
        "it names none of the keys that need trust, so nothing changes yet".to_string()
    } else {
        format!("{} now apply", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
    };
    deps.note(format!(
        "trusted {} as it is now (sha256 {}): {unlocks}. A change to the file needs `mlflow-oidc trust` again; \
         `mlflow-oidc trust --revoke` undoes this",
        entry.path.display(),
        &entry.sha256[..16]
    ));
    Ok(())
}

/// `trusted`, `changed` or `missing`, then the path: one line per file on stdout.
fn print_list(list: &TrustList, deps: &mut Deps) -> Result<()> {
    if list.entries().is_empty() {
        deps.note(format!("no project file is trusted ({} holds none)", list.path().display()));
        return Ok(());
    }
    let mut out = String::new();
    for e in list.entries() {
        let state = match std::fs::read(&e.path) {
            Ok(b) if content_hash(&b) == e.sha256 => "trusted",
            Ok(_) => "changed",
            Err(_) => "missing",
        };
        out.push_str(&format!("{state:<8} {}\n", crate::error::strip_controls(&e.path.display().to_string())));
    }
    write_out(deps, out.as_bytes())
}

/// The file to trust or revoke: PATH (a directory means its pyproject.toml), else the project file the
/// configuration walk finds from the current directory.
fn target(flags: &Flags, path: Option<&Path>, deps: &mut Deps) -> Result<PathBuf> {
    if let Some(p) = path {
        let p = match deps.env.cwd() {
            Some(cwd) if p.is_relative() => cwd.join(p),
            _ => p.to_path_buf(),
        };
        let p = if p.is_dir() { p.join("pyproject.toml") } else { p };
        return Ok(crate::trust::canonical(&p));
    }
    if flags.config.is_some() || deps.env.path("MLFLOW_OIDC_CONFIG").is_some() {
        return Err(Error::config(
            "a --config or MLFLOW_OIDC_CONFIG file is always used as it is, as your own: there is nothing to trust. \
             Give the project's pyproject.toml as PATH",
        ));
    }
    let loaded = config::load_files(flags, &deps.env, &deps.paths)?;
    if let Some(f) = loaded.files.iter().find(|f| f.kind == FileKind::Project) {
        return Ok(crate::trust::canonical(&f.path));
    }
    if let Some(s) = loaded.skipped.iter().find(|s| Some(s.path.as_path()) != deps.paths.user_config.as_deref()) {
        return Err(Error::config(s.warning.clone()));
    }
    let from = deps.env.cwd().map(|c| format!(" from {} up", c.display())).unwrap_or_default();
    Err(Error::config(format!(
        "no pyproject.toml with [tool.mlflow-oidc-client] found{from}: give its path, `mlflow-oidc trust PATH`"
    )))
}
