"""Unit tests of the MLflow plugin in the installed mlflow-oidc wheel, against a fake binary.

Run by scripts/test, early and on their own, as `python -m unittest discover -s tests/python` from a
scratch directory with the test venv's python (scripts/plugin-tests), so `mlflow_oidc` is imported from site-packages (the
first test checks that; set MLFLOW_OIDC_TEST_FROM_SOURCE=1 to skip it when running them against
python/ with PYTHONPATH). The fake binary (MLFLOW_OIDC_BIN) is a Python script driven by a JSON
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
import requests

from mlflow_oidc import _guard, _match, _token, plugin

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
            print(json.dumps(ctl.get("status_json", {{}})))
        sys.exit(code)
    code = ctl.get("exit", 0)
    if "raw" in ctl:
        sys.stdout.write(ctl["raw"])
        sys.exit(0)
    if ctl.get("warn"):
        print("warning: " + ctl["warn"], file=sys.stderr)
    if code:
        # As the binary fails: its JSON error object on stdout (the plugin's contract), the message on stderr;
        # "crash" leaves the object out, as a killed or older binary would.
        if not ctl.get("crash"):
            err = {{"kind": ctl.get("kind", "provider"), "exit_code": code, "message": ctl.get("message", "boom"),
                   "hint": ctl.get("hint")}}
            print(json.dumps({{"error": err}}))
        print(ctl.get("stderr", "error: " + ctl.get("message", "boom")), file=sys.stderr)
        sys.exit(code)
    n = ctl.setdefault("n", 0) + 1
    ctl["n"] = n
    json.dump(ctl, open(os.environ["FAKE_CTL"], "w"))
    # "now" is the test's fake clock, when a test compares the expiry with it: the real one may have
    # ticked into the next second since the test read it, which moves a 4 s life to 4.9 s.
    now = int(ctl.get("now", time.time()))
    exp = now + ctl.get("expires_in", 3600)
    at = datetime.datetime.fromtimestamp(exp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(json.dumps({{"token": "tok-%d" % n, "token_type": "Bearer", "kind": "access_token",
                      "expires_at": at, "expires_in": exp - now, "server": None}}))
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
        # The source's clock is a fake the tests move (STYLE habit 7): no test sleeps for a token to age.
        self.now = time.time()
        self.cache = _token.TokenCache(clock=lambda: self.now)

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
    @unittest.skipIf(os.environ.get("MLFLOW_OIDC_TEST_FROM_SOURCE"), "run against the source tree")
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
            self.assertEqual(self.cache.token(SERVER), "tok-1")
        self.assertEqual(self.calls(), [["token", "--format", "json", "--server", SERVER]])
        self.assertEqual(self.cache.calls["token"], 1)

    def test_renewal_at_a_quarter_of_the_life_left_passes_that_margin_as_min_valid(self):
        self.control(expires_in=4, now=self.now)  # margin at most 1 s: renewed after ~3 s
        self.assertEqual(self.cache.token(SERVER), "tok-1")
        self.assertEqual(self.cache.token(SERVER), "tok-1")
        entry = self.cache._entries[SERVER]
        self.assertAlmostEqual(entry.expires_at - entry.renew_at, entry.margin, places=3)
        self.assertLessEqual(entry.margin, 1.0)
        self.now = entry.renew_at - 0.05
        self.assertEqual(self.cache.token(SERVER), "tok-1", "not yet due")
        self.now = entry.renew_at + 0.05
        self.assertEqual(self.cache.token(SERVER), "tok-2")
        calls = self.calls()
        self.assertEqual(len(calls), 2)
        self.assertEqual(calls[1][-2:], ["--min-valid", "1"])

    def test_warnings_of_the_binary_are_logged_once(self):
        self.control(warn="unknown key `client_secert` in pyproject.toml", expires_in=1)
        with self.assertLogs("mlflow_oidc", logging.WARNING) as logs:
            self.cache.token(SERVER)
            self.cache._entries[SERVER].renew_at = 0
            self.cache.token(SERVER)
        self.assertEqual(len(self.calls()), 2)
        self.assertEqual(logs.output, ["WARNING:mlflow_oidc:mlflow-oidc warning: unknown key `client_secert` in pyproject.toml"])

    def test_the_margin_is_at_most_a_minute(self):
        self.control(expires_in=3600)
        self.cache.token(SERVER)
        entry = self.cache._entries[SERVER]
        self.assertAlmostEqual(entry.expires_at - entry.renew_at, 60.0, places=3)

    def test_servers_are_cached_separately(self):
        self.assertEqual(self.cache.token(SERVER), "tok-1")
        self.assertEqual(self.cache.token(SERVER + "/other"), "tok-2")
        self.assertEqual(self.cache.token(SERVER), "tok-1")

    def test_threads_share_one_call_in_flight(self):
        self.control(sleep=0.5)
        results, barrier = [], threading.Barrier(16)

        def worker():
            barrier.wait()
            results.append(self.cache.token(SERVER))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, ["tok-1"] * 16)
        self.assertEqual(len(self.calls()), 1)


class Failures(FakeBinaryCase):
    def test_login_required_names_the_login_command(self):
        self.control(exit=3, kind="login_required", hint=f"mlflow-oidc login --server {SERVER}",
                     message=f"not logged in to {SERVER}: run `mlflow-oidc login --server {SERVER}`")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.cache.token(SERVER)
        self.assertEqual(str(cm.exception), f"not logged in to {SERVER}: run `mlflow-oidc login --server {SERVER}`")

    def test_a_config_error_carries_the_binarys_message(self):
        self.control(exit=2, kind="config", message="issuer must be https", hint=f"mlflow-oidc status --server {SERVER}",
                     stderr="warning: x\nerror: issuer must be https")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.cache.token(SERVER)
        msg = str(cm.exception)
        self.assertIn("issuer must be https", msg)
        self.assertIn(f"mlflow-oidc status --server {SERVER}", msg)

    def test_a_runtime_failure_names_the_server(self):
        self.control(exit=1, kind="network", message="cannot reach https://idp/token: connection refused",
                     stderr="error: something else entirely")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.cache.token(SERVER)
        self.assertEqual(str(cm.exception),
                         f"mlflow-oidc could not get a token for {SERVER}: cannot reach https://idp/token: connection refused")

    def test_a_binary_that_died_without_its_json_error_is_reported_by_its_last_line(self):
        self.control(exit=1, crash=True, stderr="thread 'main' panicked\nerror: out of memory")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.cache.token(SERVER)
        self.assertEqual(str(cm.exception), f"mlflow-oidc could not get a token for {SERVER}: out of memory")

    def test_control_characters_in_the_binarys_message_never_reach_the_log(self):
        self.control(exit=1, kind="provider", message="denied\x1b]52;c;ZXZpbA==\x07 by the provider")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.cache.token(SERVER)
        self.assertNotIn("\x1b", str(cm.exception))
        self.assertNotIn("\x07", str(cm.exception))

    def test_garbage_output_is_an_error_not_a_crash(self):
        with open(self.bin, "w") as f:
            f.write(f"#!{sys.executable}\nprint('not json')\n")
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.cache.token(SERVER)
        self.assertIn("was malformed (not JSON)", str(cm.exception))

    def test_a_still_valid_token_is_used_on_when_renewal_fails(self):
        self.control(expires_in=8)  # margin 2 s
        self.assertEqual(self.cache.token(SERVER), "tok-1")
        entry = self.cache._entries[SERVER]
        entry.renew_at = self.now - 1  # due for renewal now
        self.control(exit=1, kind="network", message="provider down")
        with self.assertLogs("mlflow_oidc", logging.WARNING) as logs:
            self.assertEqual(self.cache.token(SERVER), "tok-1")
        self.assertIn("provider down", logs.output[0])
        # Not asked again on every request while it is down.
        self.assertEqual(self.cache.token(SERVER), "tok-1")
        self.assertEqual(len(self.calls()), 2)


class HeaderProvider(FakeBinaryCase):
    def setUp(self):
        super().setUp()
        self.patch = mock.patch.object(plugin, "CACHE", self.cache)
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

    def test_a_project_file_waiting_for_trust_is_reported_once_with_the_command(self):
        untrusted = {"file": "/p/pyproject.toml", "ignored_keys": ["subject-token"],
                     "trust_command": "mlflow-oidc trust /p/pyproject.toml"}
        self.control(status_json={"untrusted": untrusted})
        with self.uri(SERVER), self.assertLogs("mlflow_oidc", logging.WARNING) as logs:
            self.assertTrue(self.provider.in_context())
            self.assertTrue(self.provider.in_context())
        self.assertEqual(len(logs.output), 1)
        self.assertIn("subject-token", logs.output[0])
        self.assertIn("run `mlflow-oidc trust /p/pyproject.toml`", logs.output[0])

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
        self.patch = mock.patch.object(plugin, "CACHE", self.cache)
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


class RejectedTokens(AuthProvider):
    """A 401 from the tracking server is explained once, from the token's own claims (issue 16)."""

    def test_a_401_is_explained_once_with_the_kind_issuer_and_audience_but_never_the_token(self):
        import base64
        import requests

        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        exp = int(time.time()) + 600
        jwt = f"{b64({'alg': 'RS256'})}.{b64({'iss': 'https://idp.test', 'aud': 'mlflow-cli', 'exp': exp})}.c2ln"
        self.control(raw=json.dumps({"token": jwt, "token_type": "Bearer", "kind": "id_token",
                                     "expires_at": None, "expires_in": 600, "server": SERVER}))
        auth = plugin.OidcAuth(SERVER)
        r = auth(self.prepared(f"{SERVER}/api/2.0/mlflow/experiments/search"))
        resp = requests.Response()
        resp.status_code = 401
        with self.assertLogs("mlflow_oidc", level="WARNING") as logs:
            for hook in r.hooks["response"]:
                hook(resp)
            for hook in r.hooks["response"]:
                hook(resp)  # a second 401: no second line
        self.assertEqual(len(logs.output), 1, logs.output)
        line = logs.output[0]
        for needle in ("HTTP 401", "id token", "https://idp.test", "mlflow-cli", "audience", "status --server"):
            self.assertIn(needle, line)
        self.assertNotIn(jwt, line)
        ok = requests.Response()
        ok.status_code = 200
        with self.assertNoLogs("mlflow_oidc", level="WARNING"):
            for hook in auth(self.prepared(f"{SERVER}/x")).hooks["response"]:
                hook(ok)


class MalformedAnswers(FakeBinaryCase):
    """What the binary prints is checked before its token goes into a header (issue 12)."""

    ABSENT = object()

    def answer(self, **fields):
        obj = {"token": "eyJ.secret.sig", "token_type": "Bearer", "kind": "access_token",
               "expires_at": "2099-01-01T00:00:00Z", "expires_in": 3600, "server": None}
        obj.update(fields)
        for k in [k for k, v in fields.items() if v is self.ABSENT]:
            del obj[k]
        self.control(raw=json.dumps(obj) + "\n")

    def assert_malformed(self, why):
        with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
            self.cache.token(SERVER)
        msg = str(cm.exception)
        self.assertIn(f"for {SERVER} was malformed ({why})", msg)
        self.assertNotIn("secret", msg)
        return msg

    def test_a_well_formed_answer_is_used(self):
        self.answer()
        self.assertEqual(self.cache.token(SERVER), "eyJ.secret.sig")
        self.assertEqual(self.cache._entries[SERVER].expires_at, 4070908800.0)

    def test_a_token_that_is_a_number_is_refused(self):
        self.answer(token=12345)
        self.assert_malformed("`token` is not a string")

    def test_a_missing_token_is_refused(self):
        self.answer(token=self.ABSENT)
        self.assert_malformed("`token` is missing")

    def test_an_empty_token_is_refused(self):
        self.answer(token="")
        self.assert_malformed("`token` is empty")

    def test_a_token_with_a_line_break_is_refused_not_sent_as_a_second_header(self):
        for token in ("eyJ.secret\r\nX-Injected: 1", "eyJ.secret\n", "eyJ.se cret", "eyJ.secret\x1b[2J", "eyJ.sécret"):
            self.answer(token=token)
            self.assert_malformed("`token` has characters a bearer token cannot have")
        self.assertNotIn(SERVER, self.cache._entries)

    def test_a_missing_expiry_is_refused(self):
        self.answer(expires_at=self.ABSENT, expires_in=self.ABSENT)
        self.assert_malformed("neither `expires_at` nor `expires_in`")

    def test_a_non_numeric_expires_in_is_refused(self):
        for left in ("3600", True, -1, [3600], {}):
            self.answer(expires_at=self.ABSENT, expires_in=left)
            self.assert_malformed("`expires_in` is not a number of seconds")
        self.control(raw='{"token": "eyJ.secret.sig", "expires_in": NaN}')
        self.assert_malformed("`expires_in` is not a number of seconds")

    def test_expires_in_alone_is_enough(self):
        self.answer(expires_at=self.ABSENT, expires_in=120)
        self.assertEqual(self.cache.token(SERVER), "eyJ.secret.sig")
        self.assertEqual(self.cache._entries[SERVER].expires_at, self.now + 120)

    def test_an_expires_at_that_is_not_rfc3339_is_refused(self):
        # A local time without offset would be read in this machine's time zone.
        for at in ("soon", "2099-01-01T00:00:00", "2099-13-01T00:00:00Z", "20990101T000000Z", "", 4070908800):
            self.answer(expires_at=at)
            why = "`expires_at` is not a string" if isinstance(at, int) else "`expires_at` is not an RFC 3339 date-time"
            self.assert_malformed(why)

    def test_an_answer_that_is_not_an_object_is_refused(self):
        self.control(raw='["eyJ.secret.sig"]')
        self.assert_malformed("not a JSON object")

    def test_the_auth_object_sends_nothing_on_a_malformed_answer(self):
        self.answer(token="eyJ.secret\r\nX-Injected: 1")
        import requests

        r = requests.Request("GET", f"{SERVER}/api/2.0/mlflow/runs/get").prepare()
        with mock.patch.object(plugin, "CACHE", self.cache), self.assertRaises(mlflow_oidc.MlflowOidcError):
            plugin.OidcAuth(SERVER)(r)
        self.assertNotIn("Authorization", r.headers)


class TrustBoundaries(FakeBinaryCase):
    """A token goes only to the origin and path of the server it is for (issue 12). Each hostile
    URL: no Authorization header, and the binary is not run at all."""

    TRACKING = "https://m.example.com"

    def setUp(self):
        super().setUp()
        for p in (mock.patch.object(plugin, "CACHE", self.cache),
                  mock.patch.object(plugin, "_tracking_uri", lambda: self.tracking),
                  mock.patch.object(plugin, "_registry_uri", lambda: self.registry)):
            p.start()
            self.addCleanup(p.stop)
        self.tracking, self.registry = self.TRACKING, self.TRACKING

    def sent(self, url, auth=None):
        """The Authorization header a request to `url` goes out with (None: none)."""
        import requests

        auth = auth or plugin.OidcRequestAuthProvider().get_auth()
        return requests.Request("GET", url, auth=auth).prepare().headers.get("Authorization")

    def assert_no_token(self, url, auth=None):
        self.assertIsNone(self.sent(url, auth), url)
        self.assertEqual(self.calls(), [], url)

    def test_a_look_alike_host_gets_no_token(self):
        self.assert_no_token("https://m.example.com.evil.test/api/2.0/mlflow/runs/get")
        self.assert_no_token("https://evil-m.example.com/api/2.0/mlflow/runs/get")

    def test_another_port_gets_no_token(self):
        self.assert_no_token("https://m.example.com:8443/api/2.0/mlflow/runs/get")

    def test_another_scheme_gets_no_token(self):
        self.assert_no_token("http://m.example.com/api/2.0/mlflow/runs/get")

    def test_userinfo_is_not_the_host(self):
        self.assert_no_token("https://m.example.com@evil.test/api/2.0/mlflow/runs/get")
        self.assert_no_token("https://m.example.com:443@evil.test/api/2.0/mlflow/runs/get")

    def test_a_path_beside_the_prefix_gets_no_token(self):
        self.tracking = self.registry = "https://m.example.com/mlflow"
        self.assert_no_token("https://m.example.com/mlflowx/api/2.0/mlflow/runs/get")
        self.assert_no_token("https://m.example.com/api/2.0/mlflow/runs/get")
        self.assert_no_token("https://m.example.com/mlflow/%2e%2e/admin")
        self.assertEqual(self.sent("https://m.example.com/mlflow/api/2.0/mlflow/runs/get"), "Bearer tok-1")

    def test_explicit_oidc_auth_decorates_only_its_own_server(self):
        auth = mlflow_oidc.OidcAuth("https://m.example.com/mlflow/")
        self.tracking = self.registry = "https://elsewhere.example.com"  # not consulted
        for url in ("https://m.example.com.evil.test/mlflow/api", "https://m.example.com:8443/mlflow/api",
                    "http://m.example.com/mlflow/api", "https://m.example.com@evil.test/mlflow/api",
                    "https://m.example.com/mlflowx/api", "https://elsewhere.example.com/mlflow/api"):
            self.assert_no_token(url, auth)
        self.assertEqual(self.sent("https://m.example.com/mlflow/api", auth), "Bearer tok-1")
        self.assertEqual(self.calls()[0][-1], "https://m.example.com/mlflow/")

    def test_explicit_oidc_auth_refuses_a_uri_it_cannot_match(self):
        for uri in ("m.example.com", "file:///tmp/mlruns", "https://m.example.com /"):
            with self.assertRaises(mlflow_oidc.MlflowOidcError) as cm:
                mlflow_oidc.OidcAuth(uri)
            self.assertIn(repr(uri), str(cm.exception))

    def test_the_default_port_spelt_out_is_the_same_server(self):
        self.assertEqual(self.sent("https://m.example.com:443/api/2.0/mlflow/runs/get"), "Bearer tok-1")
        auth = mlflow_oidc.OidcAuth("http://m.example.com:80")
        self.assertEqual(self.sent("http://m.example.com/api", auth), "Bearer tok-2")

    def test_host_names_are_compared_without_case(self):
        self.tracking = self.registry = "https://M.Example.COM/"
        self.assertEqual(self.sent("https://m.example.com/api/2.0/mlflow/runs/get"), "Bearer tok-1")
        auth = mlflow_oidc.OidcAuth("https://m.example.com")
        self.assertEqual(self.sent("HTTPS://M.EXAMPLE.COM/api/2.0/mlflow/runs/get", auth), "Bearer tok-2")

    def test_a_registry_on_another_origin_gets_its_own_token_and_a_third_origin_none(self):
        self.registry = "https://registry.example.com/mlflow"
        self.assertEqual(self.sent("https://registry.example.com/mlflow/api/2.0/mlflow/registered-models/get"),
                         "Bearer tok-1")
        self.assertIsNone(self.sent("https://registry.example.com/other/api"))
        self.assertIsNone(self.sent("https://third.example.com/api"))
        self.assertEqual([c[-1] for c in self.calls()], ["https://registry.example.com/mlflow"])

    def test_an_artifact_store_on_another_origin_gets_no_token_from_mlflow(self):
        # MLflow itself, with MLFLOW_TRACKING_AUTH=oidc: an experiment's artifact location may be any
        # http(s) URL (whoever created the experiment chose it); only the tracking origin gets a token.
        import requests
        from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

        seen = []

        def send(adapter, request, **kwargs):
            seen.append((request.url, request.headers.get("Authorization")))
            resp = requests.Response()
            resp.status_code, resp._content, resp.url, resp.request = 200, b"{}", request.url, request
            resp.headers["Content-Type"] = "application/json"
            return resp

        # Registered as the wheel's entry point would (InstalledWheel checks that it is), so that
        # this also runs against python/ on PYTHONPATH.
        from mlflow.tracking.request_auth.registry import _request_auth_provider_registry as registry

        env = {"MLFLOW_TRACKING_AUTH": "oidc", "MLFLOW_TRACKING_URI": self.TRACKING}
        with mock.patch.dict(os.environ, env), \
                mock.patch.object(registry, "_registry", [plugin.OidcRequestAuthProvider()]), \
                mock.patch.object(requests.adapters.HTTPAdapter, "send", autospec=True, side_effect=send):
            HttpArtifactRepository("https://artifacts.evil.test/api/2.0/mlflow-artifacts/artifacts/1").list_artifacts()
            self.assertEqual(self.calls(), [])
            HttpArtifactRepository(f"{self.TRACKING}/api/2.0/mlflow-artifacts/artifacts/1").list_artifacts()
        self.assertEqual([(u.split("?")[0], a) for u, a in seen], [
            ("https://artifacts.evil.test/api/2.0/mlflow-artifacts/artifacts", None),
            (f"{self.TRACKING}/api/2.0/mlflow-artifacts/artifacts", "Bearer tok-1"),
        ])


class Guard(unittest.TestCase):
    """The twin of src/guard.rs: the same verdicts in the same words (the Rust unit tests hold the same table)."""

    def test_a_redirect_or_an_html_page_is_the_proxy_refusing_the_token(self):
        self.assertEqual(
            _guard.diagnose(302, "/oauth2/sign_in?rd=%2Fapi%2F2.0%2Fmlflow%2Fexperiments%2Fsearch", None),
            "the tracking server's proxy redirected to its login page (HTTP 302 to /oauth2/sign_in): it did not "
            "accept the token (audience? email_verified?)")
        login = _guard.diagnose(302, "http://127.0.0.1:8080/realms/r/protocol/openid-connect/auth?state=s3cr3t", None)
        self.assertNotIn("s3cr3t", login)
        self.assertIn("not MLflow's JSON", _guard.diagnose(200, None, "Text/HTML; charset=utf-8"))
        self.assertNotIn("\x1b", _guard.diagnose(302, "https://evil.test/\x1b[31mred", None))

    def test_mlflow_answers_are_left_alone(self):
        for status, ctype in ((200, "application/json"), (404, "application/json"), (500, "text/html"),
                              (304, None), (401, None), (403, "text/html")):
            self.assertIsNone(_guard.diagnose(status, "/x", ctype), (status, ctype))

    def test_the_auth_object_stops_at_the_redirect(self):
        auth = plugin.OidcAuth(SERVER)
        with mock.patch.object(_token.CACHE, "token", return_value="tok"):
            r = auth(requests.Request("GET", SERVER + "/api/2.0/mlflow/experiments/search").prepare())
        resp = requests.Response()
        resp.status_code = 302
        resp.headers["Location"] = "/oauth2/sign_in?rd=x"
        with self.assertRaises(_token.MlflowOidcError) as e:
            for hook in r.hooks["response"]:
                hook(resp)
        self.assertIn("redirected to its login page (HTTP 302 to /oauth2/sign_in)", str(e.exception))
        self.assertIn("--api-route", str(e.exception))


class Matching(unittest.TestCase):
    """The rule itself, on URLs as given (requests normalises some of these before the auth object sees them)."""

    def test_what_is_within_a_server(self):
        server = "https://m.example.com/mlflow"
        within = ["https://m.example.com/mlflow", "https://m.example.com/mlflow/", "https://m.example.com/mlflow/api?x=1",
                  "https://M.EXAMPLE.com:443/mlflow/api", "HTTPS://m.example.com:/mlflow/api",
                  "https://user:pw@m.example.com/mlflow/api"]
        outside = ["https://m.example.com.evil.test/mlflow/api", "https://m.example.com:8443/mlflow/api",
                   "http://m.example.com/mlflow/api", "https://m.example.com@evil.test/mlflow/api",
                   "https://evil.test\\@m.example.com/mlflow/api", "https://m.example.com/mlflowx/api",
                   "https://m.example.com/", "https://m.example.com/mlflow/../admin",
                   "https://m.example.com/mlflow/%2E%2e/admin", "https://m.example.com/mlflow/..%2Fadmin",
                   "https://m.example.com\t/mlflow/api", "https://m.example.com /mlflow/api",
                   "https://m.example.com\u200b/mlflow/api", "https://m.example.com/mlflow/api\u00a0",
                   "https://m.example.com:+443/mlflow/api", "https://m.example.com:99999/mlflow/api",
                   "https://m%2Eexample.com/mlflow/api", "ftp://m.example.com/mlflow/api", "/mlflow/api", ""]
        for url in within:
            self.assertTrue(_match.matches(url, server), url)
        for url in outside:
            self.assertFalse(_match.matches(url, server), url)

    def test_a_server_uri_we_cannot_interpret_matches_nothing(self):
        for server in ("file:///tmp/mlruns", "databricks", "https://m.example.com /", "https://", ""):
            self.assertFalse(_match.matches("https://m.example.com/api", server), server)


if __name__ == "__main__":
    unittest.main()
