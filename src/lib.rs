//! `mlflow-oidc`: a credential helper for MLflow tracking servers behind an OAuth 2.1 / OpenID Connect proxy.
//!
//! The binary (`src/main.rs`) only parses the command line, builds the real [`app::Deps`] once and calls
//! [`app::main_with`]; everything below is a library so integration tests can drive it.

pub mod app;
pub mod browser;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod env;
pub mod error;
pub mod flow;
pub mod fsutil;
pub mod guard;
pub mod http;
pub mod idtoken;
pub mod jws;
pub mod keyring_store;
pub mod loopback;
pub mod output;
pub mod paths;
pub mod pdeathsig;
pub mod progress;
pub mod reverse_proxy;
pub mod store;
pub mod tokenset;
pub mod trust;
pub mod warnings;
