//! Where the tool keeps its files: the user config file, the cache and the data directory.

use std::path::PathBuf;

/// The per-user directories, from `directories` (XDG on Linux).
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<config dir>/mlflow-oidc/config.toml`.
    pub user_config: Option<PathBuf>,
    /// `<cache dir>/mlflow-oidc`: discovery documents (safe to delete).
    pub cache_dir: Option<PathBuf>,
    /// `<data dir>/mlflow-oidc`: tokens and the remembered store choice (not a cache: holds credentials).
    pub data_dir: Option<PathBuf>,
}

impl Paths {
    pub fn from_system() -> Self {
        match directories::ProjectDirs::from("", "", "mlflow-oidc") {
            Some(d) => Paths {
                user_config: Some(d.config_dir().join("config.toml")),
                cache_dir: Some(d.cache_dir().to_path_buf()),
                data_dir: Some(d.data_local_dir().to_path_buf()),
            },
            None => Paths { user_config: None, cache_dir: None, data_dir: None },
        }
    }
}
