"""The test OpenID provider (tests/idp/idp.mjs on 127.0.0.1), as the tests start it."""

import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.parse

from .common import CLIENT_ID, IDP_DIR, die, say
from .build import target_dir


class Idp:
    def __init__(self, sandbox):
        if not shutil.which("node"):
            die("node is needed for the test OpenID provider (Node.js >= 20.18)")
        if not (IDP_DIR / "node_modules").is_dir():
            say("npm ci (tests/idp)")
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=IDP_DIR, check=True)
        self.ready = sandbox / "idp-ready"
        self.log = sandbox / "idp-requests.jsonl"
        self.log.touch()
        jwks = target_dir() / "bench" / "idp-jwks.json"
        jwks.parent.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            IDP_READY_FILE=str(self.ready),
            IDP_REQUEST_LOG=str(self.log),
            IDP_AT_TTL="3600",
            IDP_EXIT_ON_STDIN_CLOSE="1",
            IDP_JWKS_FILE=str(jwks),
        )
        self.proc = subprocess.Popen(
            ["node", str(IDP_DIR / "idp.mjs"), "0"],
            cwd=IDP_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=open(sandbox / "idp-stderr.log", "wb"),
        )
        deadline = time.monotonic() + 30
        while not (self.ready.exists() and self.ready.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                die(f"the test OpenID provider did not start; see {sandbox / 'idp-stderr.log'}")
            time.sleep(0.05)
        self.issuer = self.ready.read_text().strip()
        meta = self.get_json("/.well-known/openid-configuration")
        self.token_endpoint = meta["token_endpoint"]

    def get_json(self, path):
        u = urllib.parse.urlsplit(self.issuer)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        c.request("GET", path)
        body = c.getresponse().read()
        c.close()
        return json.loads(body)

    def offset(self):
        return self.log.stat().st_size

    def since(self, offset):
        with open(self.log, "rb") as f:
            f.seek(offset)
            return [json.loads(line) for line in f.read().splitlines() if line.strip()]

    def refresh_direct(self, rt):
        """One refresh grant sent by the bench itself, on a new connection: (wall ns, new refresh token)."""
        u = urllib.parse.urlsplit(self.token_endpoint)
        body = urllib.parse.urlencode({"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": rt})
        t0 = time.perf_counter_ns()
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.request("POST", u.path, body, {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"})
        resp = c.getresponse()
        data = resp.read()
        t1 = time.perf_counter_ns()
        c.close()
        if resp.status != 200:
            die(f"direct refresh failed: HTTP {resp.status} {data[:200]!r}")
        return t1 - t0, json.loads(data)["refresh_token"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
