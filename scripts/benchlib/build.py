"""The machine's description and the builds: the shipped static musl binary and the hello-world floor."""

import os
import platform
import shutil
import subprocess
from pathlib import Path

from .common import ROOT, die, say


def machine():
    info = {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    info["kernel"] = platform.release()
    info["loadavg_at_start"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        info["rustc"] = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    except OSError:
        info["rustc"] = "?"
    return info


def target_dir():
    t = os.environ.get("CARGO_TARGET_DIR")
    return (ROOT / t if not os.path.isabs(t) else Path(t)) if t else ROOT / "target"


def profile_release_text():
    """The [profile.release] table of Cargo.toml, verbatim, so the hello-world is built the same way."""
    out, inside = [], False
    for line in (ROOT / "Cargo.toml").read_text().splitlines():
        s = line.strip()
        if s.startswith("["):
            inside = s == "[profile.release]"
            if inside:
                out.append(line)
            continue
        if inside:
            out.append(line)
    return "\n".join(out).strip() + "\n" if out else ""


def ensure_time():
    """GNU time measures peak RSS (figure 6); install Debian's `time` when it is missing and we can."""
    if os.path.exists("/usr/bin/time") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    say("apt-get install time")
    subprocess.run(["apt-get", "install", "-y", "-qq", "time"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                   stdout=subprocess.DEVNULL)


def musl_target():
    return f"{platform.machine()}-unknown-linux-musl"


def build(no_build, own_binary=False):
    """The shipped binary (static musl), the dynamic hello-world (host glibc) and the static one (musl).
    With own_binary (--binary), only the hello-worlds must be there."""
    tdir = target_dir()
    target = musl_target()
    binary = tdir / target / "release" / "mlflow-oidc"
    hello_dir = tdir / "bench" / "hello"
    hello = hello_dir / "target" / "release" / "hello"
    hello_static = hello_dir / "target" / target / "release" / "hello"
    if no_build:
        for p in (hello, hello_static) if own_binary else (binary, hello, hello_static):
            if not p.exists():
                die(f"--no-build but {p} does not exist")
        return binary, hello, hello_static
    if not shutil.which("musl-gcc"):
        die("musl-gcc is needed for the static build (Debian: apt-get install musl-tools)")
    # musl-gcc for ring's and libdbus's C, as scripts/e2e-venv and the release build do.
    musl_env = dict(os.environ, **{f"CC_{target.replace('-', '_')}": "musl-gcc"})
    say(f"cargo build --release --target {target}")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", target], cwd=ROOT, env=musl_env,
                   check=True)
    (hello_dir / "src").mkdir(parents=True, exist_ok=True)
    manifest = (
        '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2024"\npublish = false\n\n'
        "# Not part of any workspace above it.\n[workspace]\n\n" + profile_release_text()
    )
    main_rs = 'fn main() {\n    println!("hello, world");\n}\n'
    for path, text in ((hello_dir / "Cargo.toml", manifest), (hello_dir / "src" / "main.rs", main_rs)):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    say("cargo build --release (hello-world with the same [profile.release], dynamic and static)")
    env = dict(musl_env, CARGO_TARGET_DIR=str(hello_dir / "target"))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=hello_dir, env=env, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", target], cwd=hello_dir, env=env, check=True)
    return binary, hello, hello_static
