"""Unit tests of the MLflow plugin in the installed mlflow-oidc wheel, against a fake binary.

Run by tests/mlflow_e2e.rs as `python -m unittest discover -s tests/python` from a scratch
directory with the test venv's python, so `mlflow_oidc` is imported from site-packages (the
first test checks that). The fake binary (MLFLOW_OIDC_BIN) is a Python script driven by a JSON
control file; it appends each argv to a log.
"""

import json
import logging
import os
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
import unittest
from unittest import mock

import mlflow_oidc
from mlflow_oidc import _token, plugin

SERVER = "https://mlflow.example.test"

FAKE = textwrap.dedent(
    """\
    #!{python}
    import datetime, json, os, sys, time
    ctl = json.load(open(os.environ["FAKE_CTL"]))
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
    time.sleep(ctl.get("sleep", 0))
    cmd = sys.argv[1]
    if cmd == "status":
        code = ctl.get("status_exit", 0)
        if code:
            msg = ctl.get("status_message", "no tracking server matches x")
            kind = ctl.get("status_kind", "no_server")
            print(json.dumps({{"error": {{"kind": kind, "message": msg, "exit_code": code}}}}))
            print("error: " + msg, file=sys.stderr)
        else:
            print("{{}}")
        sys.exit(code)
    code = ctl.get("exit", 0)
    if ctl.get("warn"):
        print("warning: " + ctl["warn"], file=sys.stderr)
    if code:
        print(ctl.get("stderr", "error: boom"), file=sys.stderr)
        sys.exit(code)
    n = ctl.setdefault("n", 0) + 1
    ctl["n"] = n
    json.dump(ctl, open(os.environ["FAKE_CTL"], "w"))
    exp = int(time.time()) + ctl.get("expires_in", 3600)
    at = datetime.datetime.fromtimestamp(exp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(json.dumps({{"token": "tok-%d" % n, "token_type": "Bearer", "kind": "access_token",
                      "expires_at": at, "expires_in": exp - int(time.time()), "server": None}}))
    """
)


class FakeBinaryCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        self.bin = os.path.join(d, "fake-mlflow-oidc")
        with open(self.bin, "w") as f:
            f.write(FAKE.format(python=sys.executable))
        os.chmod(self.bin, 0o755)
        self.ctl = os.path.join(d, "ctl.json")
        self.log = os.path.join(d, "calls.log")
        self.control()
        env = {"MLFLOW_OIDC_BIN": self.bin, "FAKE_CTL": self.ctl, "FAKE_LOG": self.log}
        self.env = mock.patch.dict(os.environ, env)
        self.env.start()
        for k in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_USERNAME",
                  "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
            os.environ.pop(k, None)
        self.source = _token.TokenSource()

    def tearDown(self):
        self.env.stop()
        self.dir.cleanup()

    def control(self, **ctl):
        with open(self.ctl, "w") as f:
            json.dump(ctl, f)

    def calls(self):
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []


class InstalledWheel(unittest.TestCase):
    def test_the_package_and_the_binary_come_from_the_installed_wheel(self):
        self.assertIn("site-packages", mlflow_oidc.__file__)
        with mock.patch.dict(os.environ):
            os.environ.pop("MLFLOW_OIDC_BIN", None)
            found = mlflow_oidc.find_binary()
        self.assertEqual(found, os.path.join(sysconfig.get_path("scripts"), "mlflow-oidc"))
        out = subprocess.run([found, "--version"], capture_output=True, text=True, check=True).stdout
        self.assertTrue(out.startswith("mlflow-oidc "), out)

    def test_mlflow_registers_both_plugins(self):
        from mlflow.tracking.request_auth.registry import _request_auth_provider_registry
        from mlflow.tracking.request_header.registry import _request_header_provider_registry

        self.assertTrue(any(isinstance(p, plugin.OidcRequestAuthProvider) for p in _request_auth_provider_registry))
        self.assertTrue(any(isinstance(p, plugin.OidcRequestHeaderProvider) for p in _request_header_provider_registry))
        self.assertEqual(plugin.OidcRequestAuthProvider().get_name(), "oidc")


class FindBinary(FakeBinaryCase):
    def test_the_override_must_exist(self):
        os.environ["MLFLOW_OIDC_BIN"] = os.path.join(self.dir.name, "nope")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            mlflow_oidc.find_binary()
        self.assertIn("MLFLOW_OIDC_BIN", str(cm.exception))

    def test_the_override_wins(self):
        self.assertEqual(mlflow_oidc.find_binary(), self.bin)


class Caching(FakeBinaryCase):
    def test_a_token_is_fetched_once_and_reused_until_near_expiry(self):
        for _ in range(50):
            self.assertEqual(self.source.token(SERVER), "tok-1")
        self.assertEqual(self.calls(), [["token", "--format", "json", "--server", SERVER]])
        self.assertEqual(self.source.calls["token"], 1)

    def test_renewal_at_a_quarter_of_the_life_left_passes_that_margin_as_min_valid(self):
        self.control(expires_in=4)  # margin 1 s: renewed after ~3 s
        self.assertEqual(self.source.token(SERVER), "tok-1")
        self.assertEqual(self.source.token(SERVER), "tok-1")
        entry = self.source._entries[SERVER]
        self.assertAlmostEqual(entry.expires_at - entry.renew_at, entry.margin, places=3)
        self.assertLessEqual(entry.margin, 1.0)
        time.sleep(max(0.0, entry.renew_at - time.time()) + 0.05)
        self.assertEqual(self.source.token(SERVER), "tok-2")
        calls = self.calls()
        self.assertEqual(len(calls), 2)
        self.assertEqual(calls[1][-2:], ["--min-valid", "1"])

    def test_warnings_of_the_binary_are_logged_once(self):
        self.control(warn="unknown key `client_secert` in pyproject.toml", expires_in=1)
        with self.assertLogs("mlflow_oidc", logging.WARNING) as logs:
            self.source.token(SERVER)
            self.source._entries[SERVER].renew_at = 0
            self.source.token(SERVER)
        self.assertEqual(len(self.calls()), 2)
        self.assertEqual(logs.output, ["WARNING:mlflow_oidc:mlflow-oidc warning: unknown key `client_secert` in pyproject.toml"])

    def test_the_margin_is_at_most_a_minute(self):
        self.control(expires_in=3600)
        self.source.token(SERVER)
        entry = self.source._entries[SERVER]
        self.assertAlmostEqual(entry.expires_at - entry.renew_at, 60.0, places=3)

    def test_servers_are_cached_separately(self):
        self.assertEqual(self.source.token(SERVER), "tok-1")
        self.assertEqual(self.source.token(SERVER + "/other"), "tok-2")
        self.assertEqual(self.source.token(SERVER), "tok-1")

    def test_threads_share_one_call_in_flight(self):
        self.control(sleep=0.5)
        results, barrier = [], threading.Barrier(16)

        def worker():
            barrier.wait()
            results.append(self.source.token(SERVER))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, ["tok-1"] * 16)
        self.assertEqual(len(self.calls()), 1)


class Failures(FakeBinaryCase):
    def test_login_required_names_the_login_command(self):
        self.control(exit=3, stderr="error: not logged in")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.source.token(SERVER)
        self.assertEqual(str(cm.exception), f"not logged in to {SERVER}: run `mlflow-oidc login --server {SERVER}`")

    def test_a_config_error_carries_the_binarys_message(self):
        self.control(exit=2, stderr="warning: x\nerror: issuer must be https")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.source.token(SERVER)
        msg = str(cm.exception)
        self.assertIn("issuer must be https", msg)
        self.assertIn(f"mlflow-oidc status --server {SERVER}", msg)

    def test_a_runtime_failure_names_the_server(self):
        self.control(exit=1, stderr="error: cannot reach https://idp/token: connection refused")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.source.token(SERVER)
        self.assertEqual(str(cm.exception),
                         f"mlflow-oidc could not get a token for {SERVER}: cannot reach https://idp/token: connection refused")

    def test_garbage_output_is_an_error_not_a_crash(self):
        with open(self.bin, "w") as f:
            f.write(f"#!{sys.executable}\nprint('not json')\n")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.source.token(SERVER)
        self.assertIn("was malformed (not JSON)", str(cm.exception))

    def test_a_still_valid_token_is_used_on_when_renewal_fails(self):
        self.control(expires_in=8)  # margin 2 s
        self.assertEqual(self.source.token(SERVER), "tok-1")
        entry = self.source._entries[SERVER]
        entry.renew_at = time.time() - 1  # due for renewal now
        self.control(exit=1, stderr="error: provider down")
        with self.assertLogs("mlflow_oidc", logging.WARNING) as logs:
            self.assertEqual(self.source.token(SERVER), "tok-1")
        self.assertIn("provider down", logs.output[0])
        # Not asked again on every request while it is down.
        self.assertEqual(self.source.token(SERVER), "tok-1")
        self.assertEqual(len(self.calls()), 2)


class HeaderProvider(FakeBinaryCase):
    def setUp(self):
        super().setUp()
        self.patch = mock.patch.object(plugin, "SOURCE", self.source)
        self.patch.start()
        self.provider = plugin.OidcRequestHeaderProvider()

    def tearDown(self):
        self.patch.stop()
        super().tearDown()

    def uri(self, uri):
        return mock.patch.object(plugin, "_tracking_uri", lambda: uri)

    def test_active_when_configured_and_asks_once_per_uri(self):
        with self.uri(SERVER):
            for _ in range(20):
                self.assertTrue(self.provider.in_context())
            self.assertEqual(self.provider.request_headers(), {"Authorization": "Bearer tok-1"})
        self.assertEqual(self.calls()[0], ["status", "--json", "--server", SERVER])
        self.assertEqual(len(self.calls()), 2)

    def test_inactive_without_configuration_and_silent(self):
        self.control(status_exit=2, status_message=f"no tracking server matches {SERVER} (from --server)")
        with self.uri(SERVER), self.assertNoLogs("mlflow_oidc"):
            self.assertFalse(self.provider.in_context())
            self.assertFalse(self.provider.in_context())
        self.assertEqual(len(self.calls()), 1)

    def test_a_broken_configuration_is_reported_once(self):
        self.control(status_exit=2, status_kind="config",
                     status_message="pyproject.toml: `interactive` must be a boolean")
        with self.uri(SERVER), self.assertLogs("mlflow_oidc", logging.WARNING) as logs:
            self.assertFalse(self.provider.in_context())
            self.assertFalse(self.provider.in_context())
        self.assertEqual(len(logs.output), 1)
        self.assertIn("must be a boolean", logs.output[0])

    def test_a_missing_binary_is_reported_once(self):
        os.environ["MLFLOW_OIDC_BIN"] = os.path.join(self.dir.name, "nope")
        with self.uri(SERVER), self.assertLogs("mlflow_oidc", logging.WARNING) as logs:
            self.assertFalse(self.provider.in_context())
            self.assertFalse(self.provider.in_context())
        self.assertEqual(len(logs.output), 1)
        self.assertIn("MLFLOW_OIDC_BIN", logs.output[0])

    def test_non_http_tracking_uris_never_run_the_binary(self):
        for uri in ("file:///tmp/mlruns", "databricks", "sqlite:///x.db", ""):
            with self.uri(uri):
                self.assertFalse(self.provider.in_context())
        self.assertEqual(self.calls(), [])

    def test_explicit_mlflow_credentials_and_the_auth_provider_take_over(self):
        with self.uri(SERVER):
            for env in ({"MLFLOW_TRACKING_TOKEN": "t"}, {"MLFLOW_TRACKING_AUTH": "oidc"},
                        {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}):
                with mock.patch.dict(os.environ, env):
                    self.assertFalse(self.provider.in_context(), env)
        self.assertEqual(self.calls(), [])


class AuthProvider(FakeBinaryCase):
    def setUp(self):
        super().setUp()
        self.patch = mock.patch.object(plugin, "SOURCE", self.source)
        self.patch.start()

    def tearDown(self):
        self.patch.stop()
        super().tearDown()

    def prepared(self, url):
        import requests

        return requests.Request("GET", url, headers={"Authorization": "Bearer from-env"}).prepare()

    def test_sets_the_header_over_any_other(self):
        auth = plugin.OidcRequestAuthProvider().get_auth()
        with mock.patch.object(plugin, "_tracking_uri", lambda: SERVER), \
                mock.patch.object(plugin, "_registry_uri", lambda: SERVER):
            r = auth(self.prepared(f"{SERVER}/api/2.0/mlflow/experiments/search"))
        self.assertEqual(r.headers["Authorization"], "Bearer tok-1")
        self.assertEqual(self.calls()[0][-1], SERVER)

    def test_a_separate_registry_server_gets_its_own_token(self):
        registry = "https://registry.example.test/mlflow"
        auth = plugin.OidcRequestAuthProvider().get_auth()
        with mock.patch.object(plugin, "_tracking_uri", lambda: SERVER), \
                mock.patch.object(plugin, "_registry_uri", lambda: registry):
            auth(self.prepared(f"{registry}/api/2.0/mlflow/registered-models/search"))
            auth(self.prepared(f"{SERVER}/api/2.0/mlflow/runs/get"))
        self.assertEqual([c[-1] for c in self.calls()], [registry, SERVER])


if __name__ == "__main__":
    unittest.main()
