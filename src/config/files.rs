//! Finding and reading configuration files (the only I/O of configuration) and parsing their
//! `tracking-servers` blocks into raw, type-checked values, as the settings table says.

use std::path::{Path, PathBuf};

use super::keys::{self, Kind};
use super::validate::{check_auth_param, check_resource, parse_bool};
use super::{Block, ConfigFile, FileKind, Flags, SERVERS_KEY, TOOL_TABLE};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::paths::Paths;

/// The configuration files to use, and those found but skipped because another user could have written them.
#[derive(Debug, Default)]
pub struct Loaded {
    pub files: Vec<ConfigFile>,
    pub skipped: Vec<Skipped>,
}

/// A config file found but not used, and why (for the one warning and for `status`).
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    /// "owned by uid 65534 (nobody), not by you (you are uid 0 (root)), mode 0644".
    pub why: String,
    /// The warning printed for it, with the way to trust it.
    pub warning: String,
}

/// Find and read the configuration files: the explicit one (`--config`/`MLFLOW_OIDC_CONFIG`) or the nearest
/// `pyproject.toml` with a `[tool.mlflow-oidc-client]` table walking up from the working directory, then the
/// user config file. Returns them with the user file first, so project blocks win ties (last block wins).
///
/// Every file must be ours (or root's) and not writable by group or others, as git demands of a repository
/// since CVE-2022-24765: a `pyproject.toml` planted in a shared parent (/tmp, /scratch) would otherwise name
/// its owner's issuer, and `token` would send our client secret there. A project or explicit file in a
/// directory the user config lists in `safe-directories` is used whoever owns it. Windows: no owner or mode
/// checks yet (cfg(unix) only; ACLs would be needed) — see SECURITY.md.
pub fn load_files(flags: &Flags, env: &Env, paths: &Paths) -> Result<Loaded> {
    let user_config = paths.user_config.as_deref();
    let mut out = Loaded::default();
    let mut safe = SafeDirs::default();
    if let Some(path) = user_config
        && let Some(text) = read_trusted(path, &SafeDirs::default(), user_config, &mut out.skipped)?
    {
        let file = ConfigFile::new(path.to_path_buf(), FileKind::User, text);
        safe = safe_directories(&file)?;
        out.files.push(file);
    }
    let explicit = match &flags.config {
        Some(p) => Some((p.clone(), "--config")),
        None => env.path("MLFLOW_OIDC_CONFIG").map(|p| (p, "MLFLOW_OIDC_CONFIG")),
    };
    if let Some((path, origin)) = explicit {
        let path = match env.cwd() {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path,
        };
        if !path.exists() {
            return Err(Error::config(format!(
                "config file {} (from {origin}) does not exist: check the path",
                path.display()
            )));
        }
        if let Some(text) = read_trusted(&path, &safe, user_config, &mut out.skipped)? {
            out.files.push(ConfigFile::new(path, FileKind::Explicit, text));
        }
    } else if let Some(cwd) = env.cwd() {
        for dir in walk_up(cwd, env.path("HOME").as_deref()) {
            let candidate = dir.join("pyproject.toml");
            // Reading an untrusted file is harmless; using it is not. Read first to know whether it is ours.
            if let Some((text, distrusted)) = read_candidate(&candidate)? {
                // Only a pyproject that configures us stops the walk: a sub-package's own pyproject must not
                // hide the project's configuration. A cheap text test first keeps unrelated files unparsed.
                if text.contains(TOOL_TABLE) {
                    let file = ConfigFile::new(candidate.clone(), FileKind::Project, text);
                    view_from_cache(&file, paths.cache_dir.as_deref());
                    if has_tool_table(&file) {
                        // The nearest configuring file decides, trusted or not: skipping it must not let a
                        // more distant one (further up a shared tree) take its place.
                        let listed = safe.lists(dir);
                        match distrusted {
                            #[cfg(unix)]
                            Some(why) if !listed => out.skipped.push(skip_record(&candidate, why, user_config)),
                            _ => out.files.push(file.trusted(listed)),
                        }
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Fill a project file's table from the cache of earlier runs, or parse it and remember it there (issue 23:
/// the parse is most of a cached `token`). Trust is not part of it: see [`super::cache`].
fn view_from_cache(file: &ConfigFile, cache_dir: Option<&Path>) {
    let Some(dir) = cache_dir else { return };
    if let Some(view) = super::cache::lookup(dir, &file.path, &file.text) {
        let _ = file.parsed.set(Ok(view));
    } else if let Ok(view) = file.doc() {
        super::cache::remember(dir, &file.path, &file.text, view);
    }
}

/// The directories the walk may look in: from `cwd` up, but not above the home directory's parent when `cwd`
/// is inside home (a /home/pyproject.toml is another user's to write), and not across a filesystem boundary
/// (git's GIT_DISCOVERY_ACROSS_FILESYSTEM default: an automounted /net or a shared mount is someone else's).
fn walk_up<'a>(cwd: &'a Path, home: Option<&'a Path>) -> impl Iterator<Item = &'a Path> {
    let ceiling = home.filter(|h| cwd.starts_with(h)).and_then(Path::parent);
    #[cfg(unix)]
    let dev = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(cwd).ok().map(|m| m.dev())
    };
    cwd.ancestors().take_while(move |dir| {
        if Some(*dir) == ceiling {
            return false;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if let Some(dev) = dev
                && std::fs::metadata(dir).is_ok_and(|m| m.dev() != dev)
            {
                return false;
            }
        }
        true
    })
}

/// `safe-directories` from the user config: directories whose project files are used whoever owns them.
#[derive(Debug, Default)]
struct SafeDirs {
    all: bool,
    dirs: Vec<PathBuf>,
}

impl SafeDirs {
    fn lists(&self, dir: &Path) -> bool {
        // No list, no canonicalize (a readlink per path component on every `token`).
        self.all
            || !self.dirs.is_empty() && {
                let real = std::fs::canonicalize(dir).ok();
                self.dirs.iter().any(|d| d == dir || real.as_deref() == Some(d.as_path()))
            }
    }
}

fn safe_directories(file: &ConfigFile) -> Result<SafeDirs> {
    let Ok(doc) = file.doc() else { return Ok(SafeDirs::default()) };
    let Some(v) = doc.get(keys::SAFE_DIRECTORIES.key) else { return Ok(SafeDirs::default()) };
    let bad = || {
        Error::config(format!(
            "`safe-directories` in {} must be an array of absolute directory paths, e.g. [\"/shared/proj\"], or [\"*\"]",
            file.path.display()
        ))
    };
    let list = v.as_array().ok_or_else(bad)?;
    let mut out = SafeDirs::default();
    for item in list {
        let s = item.as_str().ok_or_else(bad)?;
        if s == "*" {
            out.all = true;
            continue;
        }
        let p = PathBuf::from(s);
        if !p.is_absolute() {
            return Err(bad());
        }
        // Compare real paths as git does, so that a listed symlinked path still matches the walk's directories.
        out.dirs.push(std::fs::canonicalize(&p).unwrap_or(p));
    }
    Ok(out)
}

/// A project file found by the walk, read once: its text and, on Unix, why it may not be used (owner and mode
/// of the file opened, so the bytes judged are the bytes read). `None` when there is no such file.
fn read_candidate(path: &Path) -> Result<Option<(String, Option<String>)>> {
    #[cfg(unix)]
    {
        use std::io::Read;
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // The same messages for a directory or no permission.
            Err(_) => return Ok(read_optional(path)?.map(|t| (t, None))),
        };
        let meta =
            f.metadata().map_err(|e| Error::config_io(format!("cannot read config file {}", path.display()), e))?;
        if meta.is_dir() {
            return Ok(read_optional(path)?.map(|t| (t, None)));
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::config_io(format!("cannot read config file {}", path.display()), e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::config(format!("config file {} is not valid UTF-8", path.display())))?;
        Ok(Some((text, crate::fsutil::distrust(&meta))))
    }
    #[cfg(not(unix))]
    {
        Ok(read_optional(path)?.map(|t| (t, None)))
    }
}

/// The file's text when it may be used; else `None`, with the reason recorded in `skipped`. The owner and mode
/// are those of the file opened (fstat), so a file swapped after the check is not the one read.
fn read_trusted(
    path: &Path,
    safe: &SafeDirs,
    user_config: Option<&Path>,
    skipped: &mut Vec<Skipped>,
) -> Result<Option<String>> {
    #[cfg(unix)]
    {
        use std::io::Read;
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return read_optional(path), // the same messages for a directory or no permission
        };
        let meta =
            f.metadata().map_err(|e| Error::config_io(format!("cannot read config file {}", path.display()), e))?;
        if meta.is_dir() {
            return read_optional(path);
        }
        let listed = path.parent().is_some_and(|d| safe.lists(d));
        if let Some(why) = crate::fsutil::distrust(&meta)
            && !listed
        {
            skipped.push(skip_record(path, why, user_config));
            return Ok(None);
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::config_io(format!("cannot read config file {}", path.display()), e))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::config(format!("config file {} is not valid UTF-8", path.display())))
    }
    #[cfg(not(unix))]
    {
        let _ = (safe, user_config, skipped);
        read_optional(path)
    }
}

#[cfg(unix)]
fn skip_record(path: &Path, why: String, user_config: Option<&Path>) -> Skipped {
    let dir = path.parent().unwrap_or(path).display().to_string();
    let user = user_config.map(|p| p.display().to_string()).unwrap_or_else(|| "the user config file".into());
    let trust = if user_config == Some(path) {
        "Fix its owner (`chown`) or mode (`chmod go-w`)".to_string()
    } else {
        format!(
            "If you trust it, add `safe-directories = [{}]` to {user}, or fix its owner (`chown`) or mode (`chmod go-w`)",
            toml::Value::String(dir)
        )
    };
    let warning =
        format!("ignoring config file {}: {why}; another user could have written it. {trust}", path.display());
    Skipped { path: path.to_path_buf(), why, warning }
}

fn has_tool_table(file: &ConfigFile) -> bool {
    match file.doc() {
        Ok(t) => t.get("tool").and_then(|t| t.as_table()).is_some_and(|t| t.contains_key(TOOL_TABLE)),
        // A broken file that mentions our table is ours to report, not to skip.
        Err(_) => true,
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::config(format!("config file {} is not valid UTF-8", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if path.is_dir() => {
            let _ = e;
            Err(Error::config(format!("config file {} is a directory, not a file", path.display())))
        }
        Err(e) => Err(Error::config_io(format!("cannot read config file {}", path.display()), e)),
    }
}

/// The `store` key at the top level of the user config file (or an explicit user-style file), with its file.
pub fn store_setting(files: &[ConfigFile]) -> Result<Option<(String, PathBuf)>> {
    let mut found = None;
    for f in files.iter().filter(|f| f.kind != FileKind::Project) {
        let Ok(doc) = f.doc() else { continue };
        if let Some(v) = doc.get("store") {
            let s = v.as_str().ok_or_else(|| {
                Error::config(format!(
                    "`store` in {} must be a string (auto, keyring, file or memory)",
                    f.path.display()
                ))
            })?;
            found = Some((s.to_string(), f.path.clone()));
        }
    }
    Ok(found)
}

pub(super) fn parse_file(file: &ConfigFile, warnings: &mut Vec<String>) -> Result<Vec<Block>> {
    let path = file.path.display();
    let doc: &toml::Table = file.doc().map_err(|e: &toml::de::Error| {
        let at = e
            .span()
            .map(|span| {
                let (line, col) = line_col(&file.text, span.start);
                format!(" at line {line}, column {col}")
            })
            .unwrap_or_default();
        let msg = e.message().trim_end().to_string();
        Error::config(format!("invalid TOML in {path}{at}: {msg}"))
    })?;

    let (servers, key_path) = match file.kind {
        FileKind::Project => (project_servers(doc, &path.to_string())?, "tool.mlflow-oidc-client.tracking-servers"),
        FileKind::User => (doc.get(SERVERS_KEY), SERVERS_KEY),
        FileKind::Explicit => match project_servers(doc, &path.to_string())? {
            Some(v) => (Some(v), "tool.mlflow-oidc-client.tracking-servers"),
            None => (doc.get(SERVERS_KEY), SERVERS_KEY),
        },
    };
    let Some(servers) = servers else { return Ok(Vec::new()) };
    let arr = servers.as_array().ok_or_else(|| {
        Error::config(format!(
            "{key_path} in {path} must be an array of tables ([[{key_path}]] blocks), not {}",
            type_name(servers)
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        let n = i + 1;
        let table = item.as_table().ok_or_else(|| {
            Error::config(format!("{key_path} entry #{n} in {path} must be a table, not {}", type_name(item)))
        })?;
        let mut block = Block { file: file.path.clone(), ..Block::default() };
        for (key, value) in table {
            let Some(setting) = keys::block_setting(key) else {
                let hint = keys::nearest_key(key).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                warnings.push(format!("unknown key `{key}` in {key_path} entry #{n} of {path}: ignored{hint}"));
                continue;
            };
            let known = setting.key;
            // Issue 21: a cloned repository's file names keys of the user's things; ignored until trusted.
            if setting.needs_trust && !file.allowed {
                // Every such key is a string (a path or a source); a wrong type shows once the file is trusted.
                block.untrusted.insert(known, value.as_str().unwrap_or_default().to_string());
                continue;
            }
            let at = || format!("`{known}` in {key_path} entry #{n} of {path}");
            match setting.kind {
                Kind::Bool => {
                    let b = match value {
                        toml::Value::Boolean(b) => *b,
                        toml::Value::String(s) if s.is_empty() => continue,
                        toml::Value::String(s) => parse_bool(s)
                            .ok_or_else(|| Error::config(format!("{} must be true or false, not \"{s}\"", at())))?,
                        toml::Value::Integer(1) => true,
                        toml::Value::Integer(0) => false,
                        other => {
                            return Err(Error::config(format!(
                                "{} must be true or false, not {}",
                                at(),
                                type_name(other)
                            )));
                        }
                    };
                    block.bools.insert(known, b);
                }
                Kind::Params => {
                    let t = value.as_table().ok_or_else(|| {
                        Error::config(format!(
                            "{} must be a table of strings, e.g. auth-params = {{ prompt = \"login\" }}, not {}",
                            at(),
                            type_name(value)
                        ))
                    })?;
                    let mut params = Vec::new();
                    for (k, v) in t {
                        let v = match v {
                            toml::Value::String(s) => s.clone(),
                            toml::Value::Integer(i) => i.to_string(),
                            toml::Value::Boolean(b) => b.to_string(),
                            other => {
                                return Err(Error::config(format!(
                                    "{}: `{k}` must be a string, not {}",
                                    at(),
                                    type_name(other)
                                )));
                            }
                        };
                        check_auth_param(k, &at())?;
                        params.push((k.clone(), v));
                    }
                    block.auth_params = Some(params);
                }
                Kind::List => {
                    let list = match value {
                        toml::Value::String(s) => vec![s.clone()],
                        toml::Value::Array(a) => {
                            a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>().ok_or_else(
                                || Error::config(format!("{} must be a string or an array of strings", at())),
                            )?
                        }
                        other => {
                            return Err(Error::config(format!(
                                "{} must be a string or an array of strings, not {}",
                                at(),
                                type_name(other)
                            )));
                        }
                    };
                    for r in &list {
                        check_resource(r, &at())?;
                    }
                    block.resources = Some(list);
                }
                Kind::Ports => {
                    let ports = value
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|v| v.as_integer().and_then(|i| u16::try_from(i).ok()))
                                .collect::<Option<Vec<u16>>>()
                        })
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| {
                            Error::config(format!(
                                "{} must be a non-empty array of port numbers (0-65535), e.g. [39303, 39304]",
                                at()
                            ))
                        })?;
                    block.redirect_ports = Some(ports);
                }
                _ => {
                    let s = value
                        .as_str()
                        .ok_or_else(|| Error::config(format!("{} must be a string, not {}", at(), type_name(value))))?;
                    if s.is_empty() {
                        continue; // empty strings count as unset, as the plugin's `or` chains do
                    }
                    if known == "uri" {
                        block.uri = Some(s.to_string());
                    } else {
                        block.strings.insert(known, s.to_string());
                    }
                }
            }
        }
        if block.uri.is_none() {
            warnings.push(format!("{key_path} entry #{n} in {path} has no `uri`: skipped"));
            continue;
        }
        out.push(block);
    }
    Ok(out)
}

fn project_servers<'a>(doc: &'a toml::Table, path: &str) -> Result<Option<&'a toml::Value>> {
    let Some(tool) = doc.get("tool") else { return Ok(None) };
    let tool = tool
        .as_table()
        .ok_or_else(|| Error::config(format!("`tool` in {path} must be a table, not {}", type_name(tool))))?;
    let Some(ours) = tool.get(TOOL_TABLE) else { return Ok(None) };
    let ours = ours.as_table().ok_or_else(|| {
        Error::config(format!("`tool.{TOOL_TABLE}` in {path} must be a table, not {}", type_name(ours)))
    })?;
    Ok(ours.get(SERVERS_KEY))
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}
