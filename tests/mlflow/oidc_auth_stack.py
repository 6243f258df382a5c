#!/usr/bin/env python3
"""`mlflow server --app-name oidc-auth` on 127.0.0.1, for tests/oidc_auth_e2e.rs (issue 16).

    oidc_auth_stack.py --dir DIR --issuer URL --mlflow PATH [--audience mlflow] [--remove PATH]...

Starts MLflow with the mlflow-oidc-auth server plugin (one worker, SQLite for runs and for the
plugin's users), configured against the test provider at URL: bearer JWTs are checked against its
JWKS with `iss` = URL and `aud` = --audience, a user is provisioned on their first bearer request
when the token's `groups` claim holds `mlflow`, and the username is the token's `email`, else
`preferred_username`, else `sub` (client-credentials tokens carry only `sub`). Prints one line
`STACK_READY <json>` on stdout once it answers, then waits; tears down as tests/mlflow/stack.py
does (stdin EOF, SIGTERM or SIGINT), whose process handling it reuses.

Stdlib only; run it with the python of the venv that has mlflow-oidc-auth (scripts/e2e-auth-venv).
"""

import argparse
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402 - the supervisor half of the Apache stack: spawn, wait, stop

# The plugin's start-up (provider registry, FastAPI app, two Alembic migrations) is slower than
# plain MLflow's: 12-30 s measured on 2 cores.
READY_TIMEOUT = 180.0


def server_env(args, env):
    env = dict(env)
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        # The settings docs/mlflow-oidc-auth.md describes.
        OIDC_DISCOVERY_URL=f"{args.issuer}/.well-known/openid-configuration",
        OIDC_ISSUER=args.issuer,
        OIDC_AUDIENCE=args.audience,
        OIDC_USERNAME_FIELD="email,preferred_username,sub",
        OIDC_PROVISION_ON_BEARER_AUTH="true",
        OIDC_GROUP_NAME="mlflow",
        OIDC_USERS_DB_URI=f"sqlite:///{args.dir}/mlflow/auth.db",
        SECRET_KEY=secrets.token_hex(32),
        # No OIDC_CLIENT_ID: the server's own browser login is not under test, and without it
        # the plugin logs one warning and serves bearer tokens all the same.
    )
    return env


def start_mlflow(args, env):
    data = os.path.join(args.dir, "mlflow")
    os.makedirs(data, exist_ok=True)
    log_path = os.path.join(args.dir, "mlflow.log")

    def start(port):
        server = stack.spawn(
            "mlflow server --app-name oidc-auth",
            [
                args.mlflow, "server", "--app-name", "oidc-auth", "--host", "127.0.0.1", "--port", str(port),
                "--backend-store-uri", f"sqlite:///{data}/mlflow.db",
                "--artifacts-destination", f"{data}/artifacts",
                "--workers", "1",
            ],
            log_path,
            server_env(args, env),
            data,
        )
        ok = stack.wait_ready(server, f"http://127.0.0.1:{port}/health", READY_TIMEOUT, lambda s: s == 200)
        return server if ok else None

    return stack.start_with_retries("mlflow server --app-name oidc-auth", start, log_path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--mlflow", required=True)
    p.add_argument("--audience", default="mlflow")
    p.add_argument("--remove", action="append", default=[])
    args = p.parse_args()
    args.dir = os.path.abspath(args.dir)
    args.mlflow = os.path.abspath(args.mlflow)
    os.makedirs(args.dir, exist_ok=True)
    stack.become_supervisor()

    # No MLFLOW_* (a developer's MLFLOW_TRACKING_USERNAME, say) and no OIDC_* from outside.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OIDC_"))}
    try:
        started = time.monotonic()
        server, port = start_mlflow(args, env)
        stack.log(f"mlflow server --app-name oidc-auth ready on port {port} after {time.monotonic() - started:.1f}s")
        info = {
            "uri": f"http://127.0.0.1:{port}",
            "mlflow_log": server.log_path,
            "mlflow_pid": server.proc.pid,
            "startup_seconds": round(time.monotonic() - started, 1),
        }
        stack.serve(info)
    finally:
        stack.tear_down([args.dir, *args.remove])


if __name__ == "__main__":
    main()
