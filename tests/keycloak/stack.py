#!/usr/bin/env python3
"""Keycloak, `mlflow server` and two oauth2-proxies in front of it, on 127.0.0.1, for tests/keycloak_e2e.rs.

    stack.py --dir DIR --keycloak KC_HOME --java-home JDK --oauth2-proxy BIN --mlflow PATH [--remove PATH]...

Keycloak runs in dev mode (`kc.sh start-dev`, H2 dev-file database) from a private home under DIR: its bin/
copied, lib/, themes/, providers/ and conf/ linked to the cached distribution, data/ (database, the imported
realm tests/keycloak/realm.json) its own. Heap bounded. oauth2-proxy runs twice with the flags of the fenced
block in docs/guards/oauth2-proxy.md (the documentation is the configuration: a flag the doc does not show is
not used here): "api" as written (--api-route: API calls without an accepted token get 401), "web" without
--api-route (they get a 302 to the login page). Prints `STACK_READY <json>` once all answer, then waits; tears
everything down (process groups, SIGTERM then SIGKILL) when stdin reaches EOF, i.e. when the test process ends.
Reuses the process handling of tests/mlflow/stack.py.
"""

import argparse
import os
import re
import secrets
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "mlflow"))
import stack as base  # noqa: E402  (tests/mlflow/stack.py: spawn, wait_ready, stop, start_mlflow)

REALM = "mlflow"
KEYCLOAK_READY_TIMEOUT = 300.0  # 25-90 s measured on 2 busy cores (the first start also builds Quarkus)
PROXY_READY_TIMEOUT = 30.0
DOC = os.path.join(REPO, "docs", "guards", "oauth2-proxy.md")


def oauth2_proxy_flags(values):
    """The flags of the first ```sh block of docs/guards/oauth2-proxy.md that starts with `oauth2-proxy`, with
    ${NAME} replaced from `values` (every placeholder must have a value)."""
    with open(DOC) as f:
        text = f.read()
    m = re.search(r"```sh\n(oauth2-proxy \\\n.*?)```", text, re.S)
    if not m:
        base.die(f"{DOC}: no ```sh block starting with `oauth2-proxy \\`")
    flags = []
    for line in m.group(1).splitlines()[1:]:
        line = line.strip().rstrip("\\").strip()
        if not line:
            continue

        def sub(v):
            if v.group(1) not in values:
                base.die(f"{DOC}: no test value for ${{{v.group(1)}}}")
            return values[v.group(1)]

        flags.append(re.sub(r"\$\{([A-Z_]+)\}", sub, line))
    return flags


def start_keycloak(args, env):
    home = os.path.join(args.dir, "keycloak")
    os.makedirs(os.path.join(home, "data", "import"))
    shutil.copy(os.path.join(HERE, "realm.json"), os.path.join(home, "data", "import", "realm.json"))
    # kc.sh finds its home from its own (resolved) path: a copied bin/ makes DIR's keycloak/ the home.
    shutil.copytree(os.path.join(args.keycloak, "bin"), os.path.join(home, "bin"))
    for d in ("lib", "themes", "providers", "conf"):
        os.symlink(os.path.join(args.keycloak, d), os.path.join(home, d))
    log_path = os.path.join(args.dir, "keycloak.log")
    kenv = {k: v for k, v in env.items() if not k.startswith(("KC_", "KEYCLOAK_", "JAVA_OPTS"))}
    kenv.update(
        JAVA_HOME=args.java_home,
        # A bounded heap (Keycloak's default takes 70% of RAM as max): ~0.5 GB RSS measured.
        JAVA_OPTS_KC_HEAP="-Xms64m -Xmx384m -XX:MaxMetaspaceSize=256m",
        KC_BOOTSTRAP_ADMIN_USERNAME="admin",
        KC_BOOTSTRAP_ADMIN_PASSWORD=secrets.token_urlsafe(16),
    )

    def start(port):
        server = base.spawn(
            "keycloak",
            [os.path.join(home, "bin", "kc.sh"), "start-dev", "--http-host=127.0.0.1", f"--http-port={port}",
             f"--http-management-port={base.free_port()}", "--import-realm", "--cache=local"],
            log_path, kenv, home,
        )
        url = f"http://127.0.0.1:{port}/realms/{REALM}/.well-known/openid-configuration"
        ok = base.wait_ready(server, url, KEYCLOAK_READY_TIMEOUT, lambda s: s == 200)
        return server if ok else None

    return base.start_with_retries("keycloak", start, log_path)


def start_oauth2_proxy(args, env, name, issuer, backend, api_route):
    log_path = os.path.join(args.dir, f"oauth2-proxy-{name}.log")

    def start(port):
        flags = oauth2_proxy_flags({
            "ISSUER": issuer,
            "CLIENT_SECRET": "oauth2-proxy-secret",
            "COOKIE_SECRET": secrets.token_hex(16),
            "MLFLOW": backend,
            "LISTEN": f"127.0.0.1:{port}",
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
        })
        if not api_route:
            flags = [f for f in flags if not f.startswith("--api-route")]
        server = base.spawn(f"oauth2-proxy ({name})", [args.oauth2_proxy, *flags], log_path, env, args.dir)
        ok = base.wait_ready(server, f"http://127.0.0.1:{port}/ping", PROXY_READY_TIMEOUT, lambda s: s == 200)
        return server if ok else None

    server, port = base.start_with_retries(f"oauth2-proxy ({name})", start, log_path)
    return server, port, log_path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--keycloak", required=True)
    p.add_argument("--java-home", required=True)
    p.add_argument("--oauth2-proxy", required=True)
    p.add_argument("--mlflow", required=True)
    p.add_argument("--remove", action="append", default=[])
    args = p.parse_args()
    args.dir = os.path.abspath(args.dir)
    args.mlflow = os.path.abspath(args.mlflow)
    os.makedirs(args.dir, exist_ok=True)
    base.become_supervisor()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    try:
        started = time.monotonic()
        # MLflow first: its start overlaps nothing else's (2 cores; Keycloak alone keeps both busy).
        mlflow, mlflow_port = base.start_mlflow(args, env)
        backend = f"http://127.0.0.1:{mlflow_port}"
        t0 = time.monotonic()
        keycloak, kc_port = start_keycloak(args, env)
        keycloak_seconds = round(time.monotonic() - t0, 1)
        base.log(f"keycloak ready on port {kc_port} after {keycloak_seconds}s")
        issuer = f"http://127.0.0.1:{kc_port}/realms/{REALM}"
        _, api_port, api_log = start_oauth2_proxy(args, env, "api", issuer, backend, True)
        _, web_port, web_log = start_oauth2_proxy(args, env, "web", issuer, backend, False)
        info = {
            "issuer": issuer,
            "keycloak": f"http://127.0.0.1:{kc_port}",
            "keycloak_pid": keycloak.proc.pid,
            "keycloak_log": keycloak.log_path,
            "keycloak_seconds": keycloak_seconds,
            "api": f"http://127.0.0.1:{api_port}",
            "web": f"http://127.0.0.1:{web_port}",
            "api_log": api_log,
            "web_log": web_log,
            "backend": backend,
            "mlflow_log": mlflow.log_path,
            "startup_seconds": round(time.monotonic() - started, 1),
        }
        base.serve(info)
    finally:
        base.tear_down([args.dir, *args.remove])


if __name__ == "__main__":
    main()
