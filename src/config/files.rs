//! Finding and reading configuration files (the only I/O of configuration) and parsing their
//! `tracking-servers` blocks into raw, type-checked values, as the settings table says.

use std::path::{Path, PathBuf};

use super::keys::{self, Kind};
use super::validate::{check_auth_param, check_resource, parse_bool};
use super::{Block, ConfigFile, FileKind, Flags, SERVERS_KEY, TOOL_TABLE};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::fsutil::io_reason;

/// Find and read the configuration files: the explicit one (`--config`/`MLFLOW_OIDC_CONFIG`) or the nearest
/// `pyproject.toml` with a `[tool.mlflow-oidc-client]` table walking up from the working directory, then the
/// user config file. Returns them with the user file first, so project blocks win ties (last block wins).
pub fn load_sources(flags: &Flags, env: &Env, user_config: Option<&Path>) -> Result<Vec<ConfigFile>> {
    let mut files = Vec::new();
    if let Some(path) = user_config
        && let Some(text) = read_optional(path)?
    {
        files.push(ConfigFile::new(path.to_path_buf(), FileKind::User, text));
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
        let text = read_optional(&path)?.ok_or_else(|| {
            Error::config(format!("config file {} (from {origin}) does not exist: check the path", path.display()))
        })?;
        files.push(ConfigFile::new(path, FileKind::Explicit, text));
    } else if let Some(cwd) = env.cwd() {
        for dir in cwd.ancestors() {
            let candidate = dir.join("pyproject.toml");
            if let Some(text) = read_optional(&candidate)? {
                // Only a pyproject that configures us stops the walk: a sub-package's own pyproject must not
                // hide the project's configuration. A cheap text test first keeps unrelated files unparsed.
                if text.contains(TOOL_TABLE) {
                    let file = ConfigFile::new(candidate, FileKind::Project, text);
                    if has_tool_table(&file) {
                        files.push(file);
                        break;
                    }
                }
            }
        }
    }
    Ok(files)
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
        Err(e) => Err(Error::config(format!("cannot read config file {}: {}", path.display(), io_reason(&e)))),
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
        let mut block = Block { file: file.path.clone(), kind: Some(file.kind), ..Block::default() };
        for (key, value) in table {
            let Some(setting) = keys::block_setting(key) else {
                let hint = keys::nearest_key(key).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                warnings.push(format!("unknown key `{key}` in {key_path} entry #{n} of {path}: ignored{hint}"));
                continue;
            };
            let known = setting.key;
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
