"""Tokens from the `mlflow-oidc` binary, cached in this process until shortly before they expire.

The binary does the OAuth work (cache on disk, refresh under a cross-process lock, login) and owns the
exit codes and messages (_binary.py); this module only asks it, at most once per token lifetime per
server, and shares the answer between threads: one call in flight per server, the other threads wait
for its result. Time is a parameter (`clock`), so the tests never sleep for real.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Callable, Dict, Optional

from mlflow_oidc import _binary
from mlflow_oidc._answer import read_answer
from mlflow_oidc._binary import MlflowOidcError, find_binary
from mlflow_oidc._explain import rejection
from mlflow_oidc._text import printable as _printable

__all__ = ["CACHE", "MlflowOidcError", "TokenCache", "find_binary"]

_logger = logging.getLogger("mlflow_oidc")

# A cached token is renewed when a quarter of its remaining life is left, at most 60 s before
# expiry: a 1-hour token is used for 59 minutes, a 20-second one for 15 s. The renewal call passes
# the same margin as --min-valid, so the binary refreshes instead of handing back the same token.
MAX_MARGIN = 60.0
MARGIN_FRACTION = 0.25
# After a failed renewal, a cached token that is still valid is used on, and the binary is asked
# again after this long at most (not on every request while the provider is down).
RETRY_AFTER_FAILURE = 10.0
# How long one `mlflow-oidc token` may take; it includes a browser login in a terminal (5 min).
TOKEN_TIMEOUT = 600.0
STATUS_TIMEOUT = 60.0


def _margin(seconds_left: float) -> float:
    return min(MAX_MARGIN, max(0.0, seconds_left) * MARGIN_FRACTION)


class _Entry:
    __slots__ = ("token", "expires_at", "renew_at", "margin", "kind")

    def __init__(self, token: str, expires_at: float, now: float, kind: str = "token") -> None:
        self.token = token
        self.kind = kind
        self.expires_at = expires_at
        self.margin = _margin(expires_at - now)
        self.renew_at = expires_at - self.margin


class TokenCache:
    """Per-server token cache in front of `mlflow-oidc token --format json`."""

    def __init__(self, clock: Callable[[], float] = time.time, run=None) -> None:
        self._clock = clock
        self._run = run or _binary.run
        self._guard = threading.Lock()
        self._locks: Dict[str, threading.Lock] = {}
        self._entries: Dict[str, _Entry] = {}
        self._configured: Dict[str, bool] = {}
        # How often the binary was run, by subcommand (for tests and curiosity).
        self.calls: Dict[str, int] = {"token": 0, "status": 0}
        self._warned: set = set()
        self._rejected: set = set()

    def _lock_for(self, server: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(server)
            if lock is None:
                lock = self._locks[server] = threading.Lock()
            return lock

    def token(self, server: str) -> str:
        """A bearer token for `server` that is valid for a while yet."""
        entry = self._entries.get(server)
        if entry is not None and self._clock() < entry.renew_at:
            return entry.token
        with self._lock_for(server):
            # Another thread may have renewed it while this one waited for the lock.
            entry = self._entries.get(server)
            now = self._clock()
            if entry is not None and now < entry.renew_at:
                return entry.token
            min_valid = math.ceil(entry.margin) if entry is not None else None
            try:
                fresh = self._fetch(server, min_valid)
            except MlflowOidcError as e:
                if entry is not None and entry.expires_at - now > 1.0:
                    left = entry.expires_at - now
                    entry.renew_at = now + min(RETRY_AFTER_FAILURE, left / 2)
                    _logger.warning("%s; using the current token for %s (valid %ds more)", e, server, int(left))
                    return entry.token
                raise
            self._entries[server] = fresh
            return fresh.token

    def _fetch(self, server: str, min_valid: Optional[int]) -> _Entry:
        args = ["token", "--format", "json", "--server", server]
        if min_valid is not None and min_valid > 0:
            args += ["--min-valid", str(min_valid)]
        started = self._clock()
        outcome = self._run(args, interactive=True, timeout=TOKEN_TIMEOUT)
        self.calls["token"] += 1
        if outcome.code != 0:
            raise MlflowOidcError(_failure_message(server, _binary.failure(outcome)))
        self._pass_on_warnings(outcome.err)
        try:
            answer = read_answer(outcome.out, started)
        except ValueError as e:
            raise MlflowOidcError(
                f"the answer of `mlflow-oidc token --format json` for {server} was malformed ({e}): "
                f"is {find_binary()} an mlflow-oidc that matches this plugin?"
            ) from None
        return _Entry(answer.token, answer.expires_at, self._clock(), answer.kind)

    def explain_rejection(self, server: str, token: str) -> None:
        """Log once per server why a tracking server may have answered 401 to `token`."""
        if server in self._rejected:
            return
        self._rejected.add(server)
        entry = self._entries.get(server)
        kind = entry.kind if entry is not None and entry.token == token else "token"
        _logger.warning("%s", rejection(server, token, kind, self._clock()))

    def _pass_on_warnings(self, stderr: str) -> None:
        # The binary's warnings (a misspelt key, a keyring fallback) would be lost in the captured
        # stderr of a successful call: log each distinct one once per process.
        for line in stderr.splitlines():
            line = line.strip()
            if line.startswith("warning: ") and line not in self._warned:
                self._warned.add(line)
                _logger.warning("mlflow-oidc %s", line)

    def configured(self, server: str) -> bool:
        """Whether mlflow-oidc has a configuration for `server` (`status` exit 0); asked once per server."""
        known = self._configured.get(server)
        if known is not None:
            return known
        with self._lock_for(server):
            known = self._configured.get(server)
            if known is not None:
                return known
            problem = None
            try:
                outcome = self._run(["status", "--json", "--server", server], interactive=False,
                                    timeout=STATUS_TIMEOUT)
                self.calls["status"] += 1
                ok = outcome.code == 0
                # "No server configured for this URI" means silence; any other failure means a configuration
                # that exists but is broken: say so once, rather than 401s later.
                if not ok:
                    failed = _binary.failure(outcome)
                    if failed.kind != "no_server":
                        problem = failed.message
            except MlflowOidcError as e:
                ok, problem = False, str(e)
            if problem:
                _logger.warning("mlflow-oidc plugin inactive for %s: %s", server, problem)
            elif ok:
                _warn_untrusted(server, outcome.out)
            self._configured[server] = ok
            return ok


def _failure_message(server: str, failed: _binary.Failure) -> str:
    if failed.kind == "login_required":
        # Already "not logged in to …: run `mlflow-oidc login --server …`".
        message = failed.message
    elif failed.kind in ("config", "no_server"):
        message = f"mlflow-oidc has no usable configuration for {server}: {failed.message}"
    else:
        message = f"mlflow-oidc could not get a token for {server}: {failed.message}"
    if failed.hint and failed.hint not in message:
        message += f" (run `{failed.hint}`)"
    return message


# The process-wide cache shared by the MLflow plugins and get_token().
CACHE = TokenCache()


def _warn_untrusted(server: str, status_json: str) -> None:
    """Say once that the project's pyproject.toml waits for `mlflow-oidc trust` (issue 21): in a notebook the
    binary's own warning on stderr is never seen, and the keys it ignores are why a machine login fails."""
    try:
        untrusted = json.loads(status_json).get("untrusted")
    except (ValueError, AttributeError):
        return
    if isinstance(untrusted, dict):
        _logger.warning(
            "mlflow-oidc for %s: %s ignores %s until you trust it: run `%s`",
            server,
            _printable(untrusted.get("file")),
            ", ".join(_printable(k) for k in untrusted.get("ignored_keys") or []),
            _printable(untrusted.get("trust_command")),
        )
