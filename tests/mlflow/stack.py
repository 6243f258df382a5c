#!/usr/bin/env python3
"""MLflow behind Apache + mod_auth_openidc on 127.0.0.1, for the end-to-end tests.

    stack.py --dir DIR --issuer URL --ca PEM --mlflow PATH [--audience mlflow] [--remove PATH]...

Starts `mlflow server` (one worker, SQLite, no job runner) and Apache with httpd.conf beside this
file (AuthType oauth20: JWT access tokens checked against the provider's JWKS, iss and aud
required), prints one line `STACK_READY <json>` on stdout once both answer, then waits. It tears
everything down when its stdin reaches EOF (the test process that holds the pipe ended, even by
SIGKILL) or on SIGTERM/SIGINT: each server's whole process group gets SIGTERM, then SIGKILL
after a grace period, and every descendant is reaped (this process is a child subreaper), so no
MLflow worker outlives the tests. DIR and every --remove PATH are deleted at the end.

Stdlib only; run it with the test venv's python (the one that has mlflow). Needs apache2 and
libapache2-mod-auth-openidc (Debian); ./scripts/test installs them.
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALL_HINT = "run ./scripts/test, or: apt-get install apache2 libapache2-mod-auth-openidc"
MLFLOW_READY_TIMEOUT = 180.0  # first start migrates the SQLite schema: 9-17 s measured on 2 cores
APACHE_READY_TIMEOUT = 20.0
STOP_GRACE = 10.0
PORT_ATTEMPTS = 3

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def log(msg):
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    raise SystemExit(1)


def die_with_parent():
    """In the child before exec: SIGKILL if this supervisor dies (belt and braces for teardown)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port():
    # Apache and MLflow take a port number, not port 0, so a free one is picked here; a race with
    # another process is handled by retrying the start on a new port (see start_with_retries).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, urllib.error.URLError):
        return None


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def apache_binary():
    for cand in (shutil.which("apache2"), "/usr/sbin/apache2"):
        if cand and os.access(cand, os.X_OK):
            return cand
    die(f"apache2 not found; {INSTALL_HINT}")


class Server:
    def __init__(self, name, proc, log_path):
        self.name, self.proc, self.log_path = name, proc, log_path


# Every server process started, including failed attempts: all are stopped at the end.
SPAWNED = []


def spawn(name, argv, log_path, env, cwd):
    out = open(log_path, "ab")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group: one killpg reaches every worker
        preexec_fn=die_with_parent,
    )
    out.close()
    server = Server(name, proc, log_path)
    SPAWNED.append(server)
    return server


def wait_ready(server, url, timeout, ok):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        status = http_status(url)
        if status is not None and ok(status):
            return True
        time.sleep(0.2)
    die(f"{server.name} was not ready within {timeout:.0f}s:\n{tail(server.log_path)}")


def start_with_retries(name, start, log_path):
    """start(port) -> Server or None when the process exited (maybe the port was taken)."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        server = start(port)
        if server is not None:
            return server, port
        log(f"{name} exited during start-up on port {port} (attempt {attempt}):\n{tail(log_path, 15)}")
    die(f"{name} did not start after {PORT_ATTEMPTS} attempts:\n{tail(log_path)}")


def start_mlflow(args, env):
    data = os.path.join(args.dir, "mlflow")
    os.makedirs(data, exist_ok=True)
    log_path = os.path.join(args.dir, "mlflow.log")
    env = dict(env)
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        # No huey job runner: ~1.1 GiB less memory, 8 fewer processes, no stragglers on stop.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )

    def start(port):
        server = spawn(
            "mlflow server",
            [
                args.mlflow, "server", "--host", "127.0.0.1", "--port", str(port),
                "--backend-store-uri", f"sqlite:///{data}/mlflow.db",
                "--artifacts-destination", f"{data}/artifacts",
                "--workers", "1",
                "--serve-artifacts",  # mlflow-artifacts:/ through the tracking server (the proxy tests)
            ],
            log_path,
            env,
            data,
        )
        ok = wait_ready(server, f"http://127.0.0.1:{port}/health", MLFLOW_READY_TIMEOUT, lambda s: s == 200)
        return server if ok else None

    return start_with_retries("mlflow server", start, log_path)


def start_apache(args, env, backend):
    conf = os.path.join(HERE, "httpd.conf")
    log_path = os.path.join(args.dir, "httpd-stdout.log")
    apache = apache_binary()
    if not os.path.isfile("/usr/lib/apache2/modules/mod_auth_openidc.so"):
        die(f"mod_auth_openidc is not installed; {INSTALL_HINT}")
    defines = [] if os.geteuid() == 0 else ["-DNOUSER"]

    def start(port):
        penv = dict(env)
        penv.update(
            E2E_DIR=args.dir, E2E_ISSUER=args.issuer, E2E_AUDIENCE=args.audience, E2E_CA=args.ca,
            E2E_PORT=str(port), E2E_BACKEND=backend,
        )
        check = subprocess.run([apache, "-f", conf, "-t", *defines], env=penv, capture_output=True, text=True)
        if check.returncode != 0:
            die(f"apache2 -t rejected {conf}:\n{check.stdout}{check.stderr}")
        server = spawn("apache2", [apache, "-f", conf, "-DFOREGROUND", *defines], log_path, penv, args.dir)
        # Any HTTP answer (401 without a token) means it listens.
        ok = wait_ready(server, f"http://127.0.0.1:{port}/", APACHE_READY_TIMEOUT, lambda s: True)
        return server if ok else None

    return start_with_retries("apache2", start, log_path)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop(servers):
    for s in servers:
        try:
            os.killpg(s.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        reap()
        if not any(group_alive(s.proc.pid) for s in servers):
            return
        time.sleep(0.1)
    for s in servers:
        if group_alive(s.proc.pid):
            log(f"{s.name} still running {STOP_GRACE:.0f}s after SIGTERM: SIGKILL")
            try:
                os.killpg(s.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(group_alive(s.proc.pid) for s in servers):
        reap()
        time.sleep(0.05)
    reap()


def become_supervisor():
    """Orphaned descendants (a worker whose parent died first) are re-parented to us, not to init, so stop() can
    see and reap them; SIGTERM, SIGINT and SIGHUP end us through the caller's `finally` (tear_down)."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)


def serve(info):
    """Tell the test process the stack is up (its STACK_READY line), then block until it closes our stdin or dies."""
    print(f"STACK_READY {json.dumps(info)}", flush=True)
    while sys.stdin.buffer.read(65536):
        pass


def tear_down(paths):
    """Stop everything spawned, signals ignored meanwhile, and remove `paths`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    t0 = time.monotonic()
    stop(SPAWNED)
    log(f"stopped {', '.join(s.name for s in SPAWNED) or 'nothing'} in {time.monotonic() - t0:.1f}s")
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--mlflow", required=True)
    p.add_argument("--audience", default="mlflow")
    p.add_argument("--remove", action="append", default=[])
    args = p.parse_args()
    args.dir = os.path.abspath(args.dir)
    args.mlflow = os.path.abspath(args.mlflow)
    os.makedirs(args.dir, exist_ok=True)
    # Apache's children run as www-data when started as root: DIR must be traversable for them.
    os.chmod(args.dir, 0o755)

    become_supervisor()

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    try:
        started = time.monotonic()
        mlflow, mlflow_port = start_mlflow(args, env)
        log(f"mlflow server ready on port {mlflow_port} after {time.monotonic() - started:.1f}s")
        backend = f"http://127.0.0.1:{mlflow_port}"
        apache, apache_port = start_apache(args, env, backend)
        info = {
            "proxy": f"http://127.0.0.1:{apache_port}",
            "backend": backend,
            "access_log": os.path.join(args.dir, "httpd-access.log"),
            "error_log": os.path.join(args.dir, "httpd-error.log"),
            "mlflow_log": mlflow.log_path,
            "mlflow_pid": mlflow.proc.pid,
            "apache_pid": apache.proc.pid,
            "startup_seconds": round(time.monotonic() - started, 1),
        }
        serve(info)
    finally:
        tear_down([args.dir, *args.remove])


if __name__ == "__main__":
    main()
