//! Table tests: every configuration error names the file or variable at fault, and what loopback accepts.

use super::*;

#[test]
fn uri_normalisation() {
    for (a, b) in [
        ("HTTP://Host.Example:80/", "http://host.example"),
        ("https://h:443/p/", "https://h/p"),
        ("https://h:8443/p", "https://h:8443/p"),
        ("http://h/p?x=1", "http://h/p?x=1"),
        ("databricks", "databricks"),
    ] {
        assert_eq!(normalize_uri(a), b, "{a}");
    }
}

/// Every configuration error names its culprit and exits 2.
#[test]
#[allow(clippy::type_complexity)]
fn configuration_errors_name_the_culprit() {
    let b = |extra: &str| [project(&block("http://m", extra))];
    let cases: Vec<(&str, Vec<ConfigFile>, Vec<(&str, &str)>, Option<&str>, Vec<&str>)> = vec![
        ("bad toml", vec![project("[tool\nx=")], vec![], None, vec![P, "line 1", "invalid TOML"]),
        ("bad toml line 3", vec![project("a = 1\nb = 2\nc = = 3\n")], vec![], None, vec![P, "line 3, column"]),
        (
            "servers is a table",
            vec![project("[tool.mlflow-oidc-client.tracking-servers]\nuri = \"x\"\n")],
            vec![],
            None,
            vec![P, "tool.mlflow-oidc-client.tracking-servers", "array of tables"],
        ),
        (
            "servers is a list of strings",
            vec![project("[tool.mlflow-oidc-client]\ntracking-servers = [\"a\"]\n")],
            vec![],
            None,
            vec![P, "entry #1", "must be a table"],
        ),
        (
            "tool is a string",
            vec![project("tool = \"x\"\n[x]\nmlflow-oidc-client = 1")],
            vec![],
            None,
            vec![P, "`tool`"],
        ),
        (
            "our table is a string",
            vec![project("[tool]\nmlflow-oidc-client = \"x\"\n")],
            vec![],
            None,
            vec![P, "tool.mlflow-oidc-client"],
        ),
        (
            "issuer is a number",
            vec![project(
                "[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\nissuer = 5\nclient-id = \"c\"\n",
            )],
            vec![],
            None,
            vec![P, "`issuer`", "must be a string"],
        ),
        (
            "uri is a bool",
            vec![project("[[tool.mlflow-oidc-client.tracking-servers]]\nuri = true\n")],
            vec![],
            None,
            vec![P, "`uri`"],
        ),
        (
            "bool is a date",
            b("interactive = 1979-05-27").to_vec(),
            vec![],
            None,
            vec![P, "`interactive`", "true or false"],
        ),
        ("bool is a word", b("use-id-token = \"maybe\"").to_vec(), vec![], None, vec![P, "`use-id-token`", "maybe"]),
        ("bool is 2", b("offline-access = 2").to_vec(), vec![], None, vec![P, "`offline-access`"]),
        (
            "env bool",
            b("").to_vec(),
            vec![("MLFLOW_TRACKING_OIDC_INTERACTIVE", "t")],
            None,
            vec!["MLFLOW_TRACKING_OIDC_INTERACTIVE", "\"t\""],
        ),
        (
            "env use-id-token",
            b("").to_vec(),
            vec![("MLFLOW_TRACKING_OIDC_USE_ID_TOKEN", "sure")],
            None,
            vec!["MLFLOW_TRACKING_OIDC_USE_ID_TOKEN"],
        ),
        (
            "missing issuer",
            vec![project("[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\nclient-id = \"c\"\n")],
            vec![],
            None,
            vec!["missing issuer", P, "MLFLOW_TRACKING_OIDC_ISSUER"],
        ),
        (
            "missing client id",
            vec![project("[[tool.mlflow-oidc-client.tracking-servers]]\nuri = \"http://m\"\nissuer = \"https://i\"\n")],
            vec![],
            None,
            vec!["missing client-id", P],
        ),
        ("nothing at all", vec![], vec![], None, vec!["no tracking server is configured", "pyproject.toml"]),
        (
            "only issuer in env",
            vec![],
            vec![("MLFLOW_TRACKING_OIDC_ISSUER", "https://i")],
            None,
            vec!["no tracking server is configured"],
        ),
        (
            "no match",
            b("").to_vec(),
            vec![("MLFLOW_TRACKING_URI", "http://x")],
            None,
            vec!["http://x", "MLFLOW_TRACKING_URI", P, "http://m"],
        ),
        ("no match flag", b("").to_vec(), vec![], Some("http://y"), vec!["http://y", "--server"]),
        (
            "http issuer",
            b("").to_vec(),
            vec![("MLFLOW_TRACKING_OIDC_ISSUER", "http://idp.example.com")],
            None,
            vec!["MLFLOW_TRACKING_OIDC_ISSUER", "https://"],
        ),
        (
            "relative issuer",
            b("").to_vec(),
            vec![("MLFLOW_TRACKING_OIDC_ISSUER", "idp.example.com")],
            None,
            vec!["not an absolute URL"],
        ),
        (
            "ftp issuer",
            vec![project(&block("http://m", "").replace("https://idp.example.com", "ftp://idp"))],
            vec![],
            None,
            vec!["`issuer` in", P, "ftp://"],
        ),
        ("issuer query", b("").to_vec(), vec![("MLFLOW_TRACKING_OIDC_ISSUER", "https://i/?a=b")], None, vec!["query"]),
        (
            "redirect remote host",
            b("redirect-uri = \"http://example.com:1/cb\"").to_vec(),
            vec![],
            None,
            vec!["loopback"],
        ),
        ("redirect no port", b("redirect-uri = \"http://127.0.0.1/cb\"").to_vec(), vec![], None, vec!["explicit port"]),
        (
            "redirect no path",
            vec![],
            vec![
                ("MLFLOW_TRACKING_OIDC_ISSUER", "https://i"),
                ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c"),
                ("MLFLOW_TRACKING_OIDC_REDIRECT_URI", "http://127.0.0.1:5"),
            ],
            None,
            vec!["MLFLOW_TRACKING_OIDC_REDIRECT_URI", "path"],
        ),
        ("redirect garbage", b("redirect-uri = \"::::\"").to_vec(), vec![], None, vec!["not a valid URL"]),
        (
            "auth method",
            b("token-endpoint-auth-method = \"private_key_jwt\"").to_vec(),
            vec![],
            None,
            vec!["token-endpoint-auth-method", "private_key_jwt"],
        ),
        (
            "ipv6 redirect without path",
            vec![],
            vec![
                ("MLFLOW_TRACKING_OIDC_ISSUER", "https://i"),
                ("MLFLOW_TRACKING_OIDC_CLIENT_ID", "c"),
                ("MLFLOW_TRACKING_OIDC_REDIRECT_URI", "http://[::1]:1"),
            ],
            None,
            vec!["path"],
        ),
    ];
    let n = cases.len();
    for (name, files, env, server, needles) in cases {
        let e = err(&files, &env, server);
        for n in needles {
            assert!(e.contains(n), "case `{name}`: message lacks {n:?}: {e}");
        }
    }
    assert!(n >= 25, "keep at least 25 bad-input cases ({n})");
}

#[test]
fn loopback_issuers_and_redirects_are_accepted() {
    for i in [
        "http://127.0.0.1:9000",
        "http://127.5.5.5/x",
        "http://[::1]:8080/",
        "http://localhost:1",
        "https://idp.example.com/realms/x/",
    ] {
        validate_issuer(i, "issuer").unwrap_or_else(|e| panic!("{i}: {e}"));
    }
    for r in [
        "http://127.0.0.1:0/cb",
        "http://[::1]:39303/oauth2/callback",
        "http://localhost:80/",
        "http://127.0.0.1:39303/",
    ] {
        validate_redirect_uri(r, "redirect-uri").unwrap_or_else(|e| panic!("{r}: {e}"));
    }
}
