//! `status` through the real binary: configuration resolution end to end, JSON shape, exit codes, secrecy.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod sandbox;

use sandbox::{Out, Sandbox};

const SECRET: &str = "sup3r-s3cret-value";

fn pyproject(uri: &str, extra: &str) -> String {
    format!(
        "[project]\nname = \"demo\"\n\n[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"{uri}\"\nissuer = \"https://idp.example.com/realms/ml\"\nclient-id = \"mlflow-cli\"\n{extra}\n"
    )
}

#[test]
fn status_json_has_exactly_the_documented_fields() {
    let s = Sandbox::new();
    let file = s.write("proj/pyproject.toml", &pyproject("https://mlflow.example.com", ""));
    let o = s.run("proj", &["status", "--json"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let config = v["config"].as_object().unwrap();
    let mut keys: Vec<&str> = config.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "audience",
            "client_id",
            "client_secret_set",
            "credential",
            "interactive",
            "issuer",
            "redirect_uri",
            "scope",
            "sources",
            "uri",
            "use_id_token"
        ]
    );
    assert_eq!(config["uri"], "https://mlflow.example.com");
    assert_eq!(config["issuer"], "https://idp.example.com/realms/ml");
    assert_eq!(config["client_id"], "mlflow-cli");
    assert_eq!(config["client_secret_set"], false);
    assert_eq!(config["redirect_uri"], "http://127.0.0.1:39303/oauth2/callback");
    assert_eq!(config["scope"], "openid profile email");
    assert_eq!(config["audience"], "mlflow-cli");
    assert_eq!(config["interactive"], true);
    assert_eq!(config["use_id_token"], true);
    let f = format!("file:{}", file.display());
    assert_eq!(config["sources"]["issuer"], f.as_str());
    assert_eq!(config["sources"]["uri"], f.as_str());
    assert_eq!(config["sources"]["scope"], "default");
    assert_eq!(o.stdout.lines().count(), 1, "one JSON object on one line");
}

#[test]
fn status_text_names_server_and_sources() {
    let s = Sandbox::new();
    s.write("proj/pyproject.toml", &pyproject("https://mlflow.example.com", ""));
    let o = s.run("proj", &["status"], &[("MLFLOW_TRACKING_OIDC_SCOPE", "openid mlflow")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("https://mlflow.example.com"), "{}", o.stdout);
    assert!(o.stdout.contains("openid mlflow  (env)"), "{}", o.stdout);
    assert!(o.stdout.contains("client secret: not set"), "{}", o.stdout);
}

#[test]
fn the_secret_never_appears_in_any_output() {
    let s = Sandbox::new();
    s.write("proj/pyproject.toml", &pyproject("https://mlflow.example.com", &format!("client-secret = \"{SECRET}\"")));
    for args in [&["status"][..], &["status", "--json"], &["-v", "status"]] {
        let o = s.run("proj", args, &[]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(!o.stdout.contains(SECRET) && !o.stderr.contains(SECRET), "secret printed by {args:?}");
    }
    let o = s.run("proj", &["status", "--json"], &[("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", "env-secret-xyz")]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["config"]["client_secret_set"], true);
    assert_eq!(v["config"]["sources"]["client_secret"], "env");
    assert!(!o.stdout.contains("env-secret-xyz"));
    // Confidential defaults follow the secret.
    assert_eq!(v["config"]["interactive"], false);
}

#[test]
fn config_is_found_walking_up_from_a_subdirectory() {
    let s = Sandbox::new();
    s.write("proj/pyproject.toml", &pyproject("https://mlflow.example.com", ""));
    // A nested pyproject without our table does not stop the walk.
    s.write("proj/sub/pyproject.toml", "[project]\nname = \"sub\"\n");
    let o = s.run("proj/sub/deeper", &["status", "--json"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["config"]["client_id"], "mlflow-cli");
}

#[test]
fn user_config_is_merged_and_project_wins() {
    let s = Sandbox::new();
    let user = s.user_config();
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(
        &user,
        // The same issuer as the project's: a project block that names another issuer for a server of the user
        // config is refused (tests/security.rs `a_project_block_cannot_redirect_a_server_of_the_user_config`).
        "[[tracking-servers]]\nuri = \"https://mlflow.example.com\"\nissuer = \"https://idp.example.com/realms/ml\"\nclient-id = \"user\"\n\n\
         [[tracking-servers]]\nuri = \"https://other.example.com\"\nissuer = \"https://user-idp.example.com\"\nclient-id = \"user-other\"\n",
    )
    .unwrap();
    s.write("proj/pyproject.toml", &pyproject("https://mlflow.example.com", ""));
    let o = s.run("proj", &["--server", "https://mlflow.example.com/", "status", "--json"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["config"]["client_id"], "mlflow-cli");
    assert_eq!(v["config"]["sources"]["uri"], "flag");
    let o = s.run("proj", &["status", "--json"], &[("MLFLOW_TRACKING_URI", "https://other.example.com")]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["config"]["client_id"], "user-other");
    assert_eq!(v["config"]["sources"]["client_id"], format!("file:{}", user.display()));
    // Outside any project, only the user file counts, and it has two servers: an error listing both.
    let o = s.run("home", &["status"], &[]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("https://mlflow.example.com") && o.stderr.contains("https://other.example.com"));
}

#[test]
fn explicit_config_flag_and_env_var() {
    let s = Sandbox::new();
    let f = s.write(
        "elsewhere/my.toml",
        "[[tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://i\"\nclient-id = \"explicit\"\n",
    );
    s.write("proj/pyproject.toml", &pyproject("http://m", ""));
    let o = s.run("proj", &["--config", f.to_str().unwrap(), "status", "--json"], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("\"client_id\":\"explicit\""), "{}", o.stdout);
    let o = s.run("proj", &["status", "--json"], &[("MLFLOW_OIDC_CONFIG", f.to_str().unwrap())]);
    assert!(o.stdout.contains("\"client_id\":\"explicit\""), "{}", o.stdout);
}

#[test]
fn env_only_configuration_without_any_file() {
    let s = Sandbox::new();
    let o = s.run(
        "proj",
        &["status", "--json"],
        &[
            ("MLFLOW_TRACKING_URI", "https://mlflow.example.com"),
            ("MLFLOW_TRACKING_OIDC_ISSUER", "https://idp.example.com"),
            ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "ci"),
            ("MLFLOW_TRACKING_OIDC_CLIENT_SECRET", SECRET),
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["config"]["uri"], "https://mlflow.example.com");
    assert_eq!(v["config"]["use_id_token"], false);
    assert!(!o.stdout.contains(SECRET));
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    let s = Sandbox::new();
    s.write("proj/pyproject.toml", &pyproject("http://m", "use_id_token = true"));
    let o = s.run("proj", &["status", "--json"], &[]);
    assert_eq!(o.code, 0);
    assert!(
        o.stderr.contains("warning: unknown key `use_id_token`") && o.stderr.contains("did you mean `use-id-token`?"),
        "{}",
        o.stderr
    );
    assert!(serde_json::from_str::<serde_json::Value>(&o.stdout).is_ok());
}

struct BadCase {
    name: &'static str,
    pyproject: Option<&'static str>,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    code: i32,
    needles: Vec<String>,
}

/// Bad inputs through the binary: exit code, a message naming the culprit, nothing on stdout, no panic.
#[test]
fn bad_inputs_fail_cleanly() {
    let s = Sandbox::new();
    let dir = s.path("proj").display().to_string();
    let pp = format!("{dir}/pyproject.toml");
    let tbl = "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\n";
    let cases = vec![
        BadCase {
            name: "malformed toml",
            pyproject: Some("[tool.mlflow-oidc-client\n"),
            args: vec![],
            env: vec![],
            code: 2,
            needles: vec![pp.clone(), "line 1".into()],
        },
        BadCase {
            name: "wrong shape",
            pyproject: Some("[tool.mlflow-oidc-client]\ntracking-servers = 3\n"),
            args: vec![],
            env: vec![],
            code: 2,
            needles: vec![pp.clone(), "tracking-servers".into()],
        },
        BadCase {
            name: "missing required",
            pyproject: Some(tbl),
            args: vec![],
            env: vec![],
            code: 2,
            needles: vec![pp.clone(), "issuer and client-id".into()],
        },
        BadCase {
            name: "bad boolean",
            pyproject: Some(
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://i\"\nclient-id = \"c\"\ninteractive = \"perhaps\"\n",
            ),
            args: vec![],
            env: vec![],
            code: 2,
            needles: vec![pp.clone(), "interactive".into()],
        },
        BadCase {
            name: "env boolean",
            pyproject: None,
            args: vec![],
            env: vec![
                ("MLFLOW_TRACKING_OIDC_ISSUER", "https://i"),
                ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c"),
                ("MLFLOW_TRACKING_OIDC_USE_ID_TOKEN", "nah"),
            ],
            code: 2,
            needles: vec!["MLFLOW_TRACKING_OIDC_USE_ID_TOKEN".into()],
        },
        BadCase {
            name: "http issuer",
            pyproject: None,
            args: vec![],
            env: vec![
                ("MLFLOW_TRACKING_OIDC_ISSUER", "http://idp.example.com"),
                ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c"),
            ],
            code: 2,
            needles: vec!["MLFLOW_TRACKING_OIDC_ISSUER".into(), "https".into()],
        },
        BadCase {
            name: "bad redirect",
            pyproject: None,
            args: vec![],
            env: vec![
                ("MLFLOW_TRACKING_OIDC_ISSUER", "https://i"),
                ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c"),
                ("MLFLOW_TRACKING_OIDC_REDIRECT_URI", "http://10.0.0.1:8080/cb"),
            ],
            code: 2,
            needles: vec!["MLFLOW_TRACKING_OIDC_REDIRECT_URI".into(), "loopback".into()],
        },
        BadCase {
            name: "config is a directory",
            pyproject: None,
            args: vec!["--config".into(), dir.clone()],
            env: vec![],
            code: 2,
            needles: vec![dir.clone(), "directory".into()],
        },
        BadCase {
            name: "config missing",
            pyproject: None,
            args: vec!["--config".into(), format!("{dir}/nope.toml")],
            env: vec![],
            code: 2,
            needles: vec![format!("{dir}/nope.toml"), "--config".into()],
        },
        BadCase {
            name: "config under a file",
            pyproject: Some(tbl),
            args: vec!["--config".into(), format!("{pp}/x.toml")],
            env: vec![],
            code: 2,
            needles: vec![format!("{pp}/x.toml")],
        },
        BadCase {
            name: "env config missing",
            pyproject: None,
            args: vec![],
            env: vec![("MLFLOW_OIDC_CONFIG", "/nonexistent/c.toml")],
            code: 2,
            needles: vec!["/nonexistent/c.toml".into(), "MLFLOW_OIDC_CONFIG".into()],
        },
        BadCase {
            name: "no match",
            pyproject: Some(
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://i\"\nclient-id = \"c\"\n",
            ),
            args: vec!["--server".into(), "http://other".into()],
            env: vec![],
            code: 2,
            needles: vec!["http://other".into(), "http://m".into()],
        },
        BadCase {
            name: "nothing configured",
            pyproject: None,
            args: vec![],
            env: vec![],
            code: 2,
            needles: vec!["no tracking server is configured".into()],
        },
        BadCase {
            name: "unknown flag",
            pyproject: None,
            args: vec!["--frobnicate".into()],
            env: vec![],
            code: 2,
            needles: vec!["--frobnicate".into()],
        },
    ];
    let n = cases.len();
    for case in cases {
        let _ = std::fs::remove_file(&pp);
        if let Some(text) = case.pyproject {
            s.write("proj/pyproject.toml", text);
        }
        for json in [false, true] {
            let mut args: Vec<&str> = case.args.iter().map(String::as_str).collect();
            args.push("status");
            if json {
                args.push("--json");
            }
            let o = s.run("proj", &args, &case.env);
            assert_eq!(o.code, case.code, "case `{}` (json={json}): {}", case.name, o.stderr);
            for needle in &case.needles {
                assert!(
                    o.stderr.contains(needle.as_str()),
                    "case `{}`: stderr lacks {needle:?}: {}",
                    case.name,
                    o.stderr
                );
            }
            assert!(!o.stderr.contains("panicked"), "case `{}` panicked", case.name);
            if json && case.name != "unknown flag" {
                let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| {
                    panic!("case `{}`: stdout is not one JSON object ({e}): {}", case.name, o.stdout)
                });
                assert_eq!(v["error"]["exit_code"], case.code);
                assert!(v["error"]["message"].is_string());
            } else {
                assert_eq!(o.stdout, "", "case `{}`: nothing on stdout on error", case.name);
            }
        }
    }
    assert!(n >= 14);
}

#[cfg(unix)]
#[test]
fn non_utf8_env_value_is_a_named_config_error() {
    use std::os::unix::ffi::OsStrExt;
    let s = Sandbox::new();
    let mut c = s.cmd("proj", &["status"]);
    c.env("MLFLOW_TRACKING_OIDC_ISSUER", std::ffi::OsStr::from_bytes(b"https://\xff\xfe"));
    c.env("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c");
    let o = Out::from(c.output().unwrap());
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("MLFLOW_TRACKING_OIDC_ISSUER") && o.stderr.contains("UTF-8"), "{}", o.stderr);
    assert_eq!(o.stdout, "");
}

#[test]
fn no_arguments_prints_an_orientation() {
    let s = Sandbox::new();
    let o = s.run("proj", &[], &[]);
    assert_eq!(o.code, 0);
    assert!(o.stderr.contains("mlflow-oidc login") && o.stderr.contains("mlflow-oidc status"), "{}", o.stderr);
    assert_eq!(o.stdout, "");
}

#[test]
fn version_and_help() {
    let s = Sandbox::new();
    let o = s.run("proj", &["--version"], &[]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout.trim(), format!("mlflow-oidc {}", env!("CARGO_PKG_VERSION")));
    let o = s.run("proj", &["--help"], &[]);
    assert_eq!(o.code, 0);
    for sub in ["login", "token", "logout", "status"] {
        assert!(o.stdout.contains(sub), "{sub} missing from --help");
    }
}

#[test]
fn an_unconfigured_server_has_its_own_error_kind() {
    // The MLflow plugin stays silent for servers without configuration and warns about broken ones.
    let s = Sandbox::new();
    s.write("proj/pyproject.toml", &pyproject("http://m", ""));
    let o = s.run("proj", &["--server", "http://elsewhere", "status", "--json"], &[]);
    assert_eq!(o.code, 2);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "no_server");
    s.write("proj/pyproject.toml", &pyproject("http://m", "interactive = \"perhaps\""));
    let o = s.run("proj", &["--server", "http://m", "status", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "config");
}

/// The Python plugin's contract (issue 24): a failing `token --format json` prints the same JSON error object as
/// `status --json`, with the kind, the exit code, the binary's message and the command to run next.
#[test]
fn a_failing_token_in_json_format_prints_the_error_object() {
    let s = Sandbox::new();
    s.write("proj/pyproject.toml", &pyproject("https://mlflow.example.com", ""));
    let json = |o: &Out| -> serde_json::Value {
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", o.stdout))
    };

    // The provider cannot be reached (example.com's issuer does not resolve here): a network error, no hint.
    let o = s.run("proj", &["token", "--format", "json", "--no-login"], &[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let v = json(&o);
    assert_eq!((v["error"]["kind"].as_str(), v["error"]["exit_code"].as_i64()), (Some("network"), Some(1)));
    assert!(v["error"]["hint"].is_null(), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(o.stderr.contains(message), "the same message on stderr: {}", o.stderr);

    // No server for the URI: the hint repeats the --server it was given.
    let o = s.run("proj", &["--server", "https://other.example.com", "token", "--format", "json"], &[]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let v = json(&o);
    assert_eq!(v["error"]["kind"], "no_server");
    assert_eq!(v["error"]["hint"], "mlflow-oidc status --server https://other.example.com");

    // The raw format keeps stdout for the token alone.
    let o = s.run("proj", &["token", "--no-login"], &[]);
    assert_eq!((o.code, o.stdout.as_str()), (1, ""), "{}", o.stderr);
}

// The cache of project configuration (issue 23, src/config/cache.rs): a cached `token` remembers what a
// pyproject.toml holds for us, so these run every command twice or more, the later runs from the cache.

fn status_json(s: &Sandbox) -> serde_json::Value {
    let o = s.mo(&["status", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap()
}

fn cache_entries(s: &Sandbox) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(s.cache_dir().join("project-config")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_changed_pyproject_takes_effect_at_once_even_with_its_old_size_and_time() {
    let s = Sandbox::new();
    let file = s.write("proj/pyproject.toml", &pyproject("https://m.example.com", "scope = \"openid one\""));
    assert_eq!(status_json(&s)["config"]["scope"], "openid one");
    assert_eq!(cache_entries(&s).len(), 1, "the first run remembers the file");
    assert_eq!(status_json(&s)["config"]["scope"], "openid one", "from the cache");
    // Same length, and its modification time put back: only the bytes say it changed.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, pyproject("https://m.example.com", "scope = \"openid two\"")).unwrap();
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
    assert_eq!(status_json(&s)["config"]["scope"], "openid two");
    assert_eq!(cache_entries(&s).len(), 1, "one entry per project file, replaced");
}

#[test]
fn a_project_stays_untrusted_with_the_cache_warm_until_trusted_and_again_once_changed() {
    let s = Sandbox::new();
    let file = s.write("proj/pyproject.toml", &pyproject("https://m.example.com", "client-assertion-key = \"k.pem\""));
    for run in ["first", "cached"] {
        let v = status_json(&s);
        assert_eq!(v["untrusted"]["ignored_keys"], serde_json::json!(["client-assertion-key"]), "{run} run");
        assert_eq!(v["config"]["credential"]["kind"], "none", "{run} run");
    }
    assert_eq!(s.mo(&["trust"]).code, 0);
    for run in ["first", "cached"] {
        let v = status_json(&s);
        assert!(v["untrusted"].is_null(), "{run} run after trust: {v}");
    }
    std::fs::write(&file, pyproject("https://m.example.com", "client-assertion-key = \"x.pem\"")).unwrap();
    let v = status_json(&s);
    assert_eq!(v["untrusted"]["ignored_keys"], serde_json::json!(["client-assertion-key"]), "changed: {v}");
}

#[test]
fn a_damaged_or_foreign_cache_entry_is_ignored_and_rewritten() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new();
    s.write("proj/pyproject.toml", &pyproject("https://m.example.com", ""));
    status_json(&s);
    let entries = cache_entries(&s);
    let [entry] = entries.as_slice() else { panic!("one entry: {entries:?}") };
    let good = std::fs::read_to_string(entry).unwrap();
    assert!(good.contains("https://idp.example.com/realms/ml"), "{good}");

    std::fs::write(entry, "{\"v\":1,\"path\":").unwrap();
    let o = s.mo(&["status", "--json"]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "a damaged entry is no error and no warning");
    assert_eq!(std::fs::read_to_string(entry).unwrap(), good, "rewritten");

    // An entry others may write could name any provider: it is not used, whatever it says.
    let forged = good.replace("https://idp.example.com/realms/ml", "https://evil.example.com");
    std::fs::write(entry, &forged).unwrap();
    std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(status_json(&s)["config"]["issuer"], "https://idp.example.com/realms/ml");
    let mode = std::fs::metadata(entry).unwrap().permissions().mode() & 0o777;
    assert_eq!((std::fs::read_to_string(entry).unwrap(), mode), (good, 0o600), "rewritten, private");
}
