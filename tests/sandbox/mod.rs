//! A throw-away HOME, project directory and environment for running the real `mlflow-oidc` binary.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Block lines for the test provider's public client, asking for the `mlflow` resource scope.
pub const PUBLIC_CLIENT: &str = "client-id = \"mlflow-cli\"\nscope = \"openid profile email mlflow\"";

pub struct Sandbox {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let s = Sandbox { dir: tempfile::tempdir().unwrap(), env: Vec::new() };
        std::fs::create_dir_all(s.path("home")).unwrap();
        std::fs::create_dir_all(s.path("proj/sub/deeper")).unwrap();
        s
    }

    /// A project for the scripted provider (tests/fake) at `issuer`, as `client_id` with scope `openid` (so a
    /// nonce is sent and checked), the redirect `redirect`, the file store, and a `$BROWSER` that does nothing (the
    /// test plays the browser).
    pub fn for_fake(uri: &str, issuer: &str, client_id: &str, redirect: &str) -> Self {
        let mut s = Sandbox::new();
        s.write(
            "proj/pyproject.toml",
            &format!(
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{uri}\"\nissuer = \"{issuer}\"\n\
                 client-id = \"{client_id}\"\nscope = \"openid\"\nredirect-uri = \"{redirect}\"\n"
            ),
        );
        s.set("MLFLOW_OIDC_STORE", "file");
        s.set("BROWSER", "true");
        s
    }

    /// A project whose one server block names `uri` and `issuer`, a loopback redirect on any free port, and `lines`;
    /// logins go through the scripted curl browser (tests/idp/browser-curl.sh), which logs to `browser.log`.
    pub fn with_server(uri: &str, issuer: &str, lines: &str) -> Self {
        let mut s = Sandbox::new();
        s.write(
            "proj/pyproject.toml",
            &format!(
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{uri}\"\nissuer = \"{issuer}\"\n\
                 redirect-uri = \"http://127.0.0.1:0/oauth2/callback\"\n{lines}\n"
            ),
        );
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/browser-curl.sh");
        s.set("BROWSER", driver.to_str().unwrap());
        s.set("BROWSER_LOG", s.path("browser.log").to_str().unwrap());
        s
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// An executable script (e.g. a `$BROWSER` that records or forges something).
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.write(rel, body);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    }

    pub fn user_config(&self) -> PathBuf {
        self.path("home/.config/mlflow-oidc/config.toml")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path("home/.cache/mlflow-oidc")
    }

    /// `<data dir>/mlflow-oidc`: where the token files live.
    pub fn data_dir(&self) -> PathBuf {
        self.path("home/.local/share/mlflow-oidc")
    }

    pub fn tokens_dir(&self) -> PathBuf {
        self.data_dir().join("tokens")
    }

    /// The token entries of the file store, sorted (the `.lock` files beside them hold nothing).
    #[allow(dead_code)] // Not every test binary that includes the sandbox reads entries.
    pub fn token_files(&self) -> Vec<PathBuf> {
        let dir = self.tokens_dir();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
    }

    /// The token entry of the sandbox's one server (file store).
    #[allow(dead_code)]
    pub fn token_file(&self) -> PathBuf {
        let files = self.token_files();
        files.into_iter().next().unwrap_or_else(|| panic!("no token file in {}", self.tokens_dir().display()))
    }

    /// The cached entry of the sandbox's one server (file store), as JSON.
    #[allow(dead_code)]
    pub fn stored_entry(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.token_file()).unwrap()).unwrap()
    }

    /// Set an environment variable for every later command.
    pub fn set(&mut self, k: &str, v: impl AsRef<str>) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.to_string(), v.as_ref().to_string()));
    }

    pub fn cmd(&self, cwd: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mlflow-oidc"));
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("XDG_CACHE_HOME", self.path("home/.cache"))
            .env("XDG_DATA_HOME", self.path("home/.local/share"))
            .env("XDG_STATE_HOME", self.path("home/.local/state"))
            .current_dir(self.path(cwd))
            .stdin(Stdio::null())
            .args(args);
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    pub fn run(&self, cwd: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.cmd(cwd, args);
        c.envs(env.iter().copied());
        Out::from(c.output().unwrap())
    }

    /// Run in the project directory with no extra environment.
    pub fn mo(&self, args: &[&str]) -> Out {
        self.run("proj", args, &[])
    }
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Assert success and return stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success; stderr:\n{}", self.stderr);
        &self.stdout
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}
