//! The environment snapshot: the only code that reads `std::env`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Environment variables captured once at start-up, so everything else is a pure function of them.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, OsString>,
    cwd: Option<PathBuf>,
}

impl Env {
    /// Snapshot the process environment and working directory.
    #[allow(clippy::disallowed_methods)]
    pub fn capture() -> Self {
        let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))).collect();
        Env { vars, cwd: std::env::current_dir().ok() }
    }

    /// An environment built from pairs, for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let vars = pairs.into_iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Env { vars, cwd: None }
    }

    pub fn with_cwd(mut self, cwd: PathBuf) -> Self {
        self.cwd = Some(cwd);
        self
    }

    pub fn cwd(&self) -> Option<&std::path::Path> {
        self.cwd.as_deref()
    }

    /// The value of `name`; an empty value counts as unset, and a non-UTF-8 value is a configuration error.
    pub fn get(&self, name: &str) -> Result<Option<&str>> {
        match self.vars.get(name) {
            None => Ok(None),
            Some(v) => match v.to_str() {
                Some("") => Ok(None),
                Some(s) => Ok(Some(s)),
                None => Err(Error::config(format!(
                    "environment variable {name} is not valid UTF-8: set it to a plain text value or unset it"
                ))),
            },
        }
    }

    /// Like [`Env::get`] but a non-UTF-8 value counts as unset; for variables that only tune behaviour.
    pub fn get_lossy(&self, name: &str) -> Option<&str> {
        self.get(name).ok().flatten()
    }

    /// Whether `name` is set at all (even empty), as `CI` detection needs.
    pub fn is_set(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// A path-valued variable; empty counts as unset. Paths need not be UTF-8.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.vars.get(name).filter(|v| !v.is_empty()).map(PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset() {
        let env = Env::from_pairs([("A", ""), ("B", "x")]);
        assert_eq!(env.get("A").unwrap(), None);
        assert_eq!(env.get("B").unwrap(), Some("x"));
        assert!(env.is_set("A"));
        assert!(!env.is_set("C"));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_named_errors() {
        use std::os::unix::ffi::OsStringExt;
        let mut env = Env::default();
        env.vars.insert("MLFLOW_TRACKING_OIDC_ISSUER".into(), OsString::from_vec(vec![0xff, 0xfe]));
        let e = env.get("MLFLOW_TRACKING_OIDC_ISSUER").unwrap_err();
        assert!(e.to_string().contains("MLFLOW_TRACKING_OIDC_ISSUER"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
