//! What a person sees: `--help` snapshots (reviewed when they change), the waiting and success lines on a
//! terminal and off it, colour rules, and `scripts/demo` run from a clone.
//! Regenerate snapshots with `UPDATE_GENERATED=1 cargo test --test ux`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod sandbox;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use sandbox::{PUBLIC_CLIENT, Sandbox};
use support::Idp;

fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "snapshot {name} differs; review and regenerate with `UPDATE_GENERATED=1 cargo test --test ux`\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

#[test]
fn help_of_every_subcommand_is_snapshotted() {
    let s = Sandbox::new();
    for sub in ["", "login", "token", "exec", "logout", "status", "trust"] {
        let mut args: Vec<&str> = if sub.is_empty() { vec![] } else { vec![sub] };
        args.push("--help");
        let out = s.mo(&args);
        assert_eq!(out.code, 0);
        assert!(out.stdout.contains("Examples:"), "{sub} --help has examples");
        let name = if sub.is_empty() { "help.txt".to_string() } else { format!("help-{sub}.txt") };
        snapshot(&name, &out.stdout);
    }
}

/// Replace what changes from run to run (ports, codes, times) with fixed words.
fn normalize(text: &str, issuer: &str) -> String {
    let mut t = text.replace(issuer, "ISSUER");
    // The authorization URL's query is random.
    t = t
        .lines()
        .map(|l| if l.contains("ISSUER/auth?") { "  ISSUER/auth?…" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    t = replace_times(&t);
    // Countdown values ("4:59 left") depend on timing.
    let mut out = String::new();
    for part in t.split(" left") {
        if out.is_empty() && !t.starts_with(part) {
            out.push_str(part);
            continue;
        }
        let cut = part.rfind(|c: char| !(c.is_ascii_digit() || c == ':')).map(|i| i + 1).unwrap_or(0);
        out.push_str(&part[..cut]);
        if cut < part.len() {
            out.push_str("M:SS");
        }
        out.push_str(" left");
    }
    out.truncate(out.len() - " left".len());
    out
}

/// RFC 3339 times ("2026-11-26T16:26:15Z") become TIME.
fn replace_times(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        // 2026-11-26T16:26:15Z
        if i + 20 <= chars.len()
            && chars[i..i + 4].iter().all(|c| c.is_ascii_digit())
            && chars[i + 4] == '-'
            && chars[i + 10] == 'T'
            && chars[i + 19] == 'Z'
        {
            out.push_str("TIME");
            i += 20;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn project(idp: &Idp) -> Sandbox {
    let mut s = Sandbox::with_server("http://127.0.0.1:5996", &idp.issuer, PUBLIC_CLIENT);
    s.set("MLFLOW_OIDC_STORE", "file");
    s
}

#[test]
fn login_messages_off_a_terminal() {
    let idp = Idp::start();
    let s = project(&idp);
    let out = s.mo(&["login"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "no escape codes off a terminal: {:?}", out.stderr);
    snapshot("login-plain.txt", &normalize(&out.stderr, &idp.issuer));
}

/// Run the binary under a pseudo-terminal (util-linux `script`) and return what the terminal showed.
fn under_pty(s: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let bin = env!("CARGO_BIN_EXE_mlflow-oidc");
    let cmdline =
        std::iter::once(bin.to_string()).chain(args.iter().map(|a| format!("'{a}'"))).collect::<Vec<_>>().join(" ");
    let mut c = s.cmd("proj", &[]);
    // Reuse the sandbox environment, but run `script` instead of the binary.
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &cmdline, "/dev/null"]).current_dir(s.path("proj")).env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let _ = &mut c;
    cmd.env("TERM", "xterm").envs(env.iter().copied());
    let out = cmd.output().unwrap_or_else(|e| panic!("`script` (util-linux) is needed for pty tests: {e}"));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"))
}

#[test]
fn login_messages_on_a_terminal_update_one_line() {
    let idp = Idp::start();
    let s = project(&idp);
    let (code, screen) = under_pty(&s, &["login"], &[]);
    assert_eq!(code, 0, "{screen}");
    // The countdown rewrites one line (\r) and is erased before the success line.
    assert!(screen.contains("\rWaiting for the browser login… "), "{screen:?}");
    assert!(screen.contains("\r\x1b[2K"), "{screen:?}");
    let visible = normalize(&render(&screen), &idp.issuer);
    assert!(!visible.contains("Waiting for the browser login"), "the countdown line was erased:\n{visible}");
    snapshot("login-terminal.txt", &visible);
}

/// What a terminal finally shows: `\r` returns to the line start and overwrites, `ESC[2K` erases the line.
fn render(raw: &str) -> String {
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let mut col = 0;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let line = lines.last_mut().unwrap();
        match c {
            '\n' => {
                lines.push(Vec::new());
                col = 0;
            }
            '\r' => col = 0,
            '\x1b' => {
                let mut seq = String::new();
                for n in chars.by_ref() {
                    seq.push(n);
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
                if seq == "[2K" {
                    line.clear();
                }
            }
            c => {
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    lines.into_iter().map(|l| l.into_iter().collect::<String>().trim_end().to_string()).collect::<Vec<_>>().join("\n")
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let s = Sandbox::new();
    let (code, screen) = under_pty(&s, &["status"], &[]);
    assert_eq!(code, 2);
    assert!(screen.contains("\x1b[1;31merror:\x1b[0m"), "{screen:?}");
    let (_, screen) = under_pty(&s, &["status"], &[("NO_COLOR", "1")]);
    assert!(!screen.contains('\x1b') && screen.contains("error: "), "{screen:?}");
    let out = s.mo(&["status"]);
    assert!(!out.stderr.contains('\x1b') && out.stderr.starts_with("error: "), "{:?}", out.stderr);
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[test]
fn the_demo_runs_from_a_clone_and_leaves_nothing_behind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("clone");
    let st = Command::new("git").args(["clone", "-q"]).arg(root).arg(&clone).status().unwrap();
    assert!(st.success());
    // The clone gets the npm packages the test command installed (the demo would otherwise fetch them).
    let modules = root.join("tests/idp/node_modules");
    std::os::unix::fs::symlink(&modules, clone.join("tests/idp/node_modules")).unwrap();
    let demo_tmp = tmp.path().join("tmp");
    std::fs::create_dir(&demo_tmp).unwrap();
    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_mlflow-oidc")).parent().unwrap().to_path_buf();
    let out = Command::new(clone.join("scripts/demo"))
        .arg("--non-interactive")
        .env_clear()
        .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()))
        .env("HOME", tmp.path())
        .env("TMPDIR", &demo_tmp)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for step in [
        "mlflow-oidc status",
        "mlflow-oidc login",
        "mlflow-oidc token",
        "--format header",
        "mlflow-oidc logout",
        "Done.",
    ] {
        assert!(stdout.contains(step), "the demo narrates `{step}`:\n{stdout}");
    }
    assert!(stderr.contains("Logged in to") && stderr.contains("as alice"), "{stderr}");
    // Nothing left: the provider process is gone and the demo's temp directory removed.
    let pid: u32 = stdout.split("(pid ").nth(1).and_then(|r| r.split(')').next()).and_then(|p| p.parse().ok()).unwrap();
    assert!(!pid_alive(pid), "the demo's provider (pid {pid}) is still running");
    assert_eq!(std::fs::read_dir(&demo_tmp).unwrap().count(), 0, "the demo left files in TMPDIR");
}
