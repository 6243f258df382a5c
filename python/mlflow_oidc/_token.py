"""Tokens from the `mlflow-oidc` binary, cached in this process until shortly before they expire.

The binary does the OAuth work (cache on disk, refresh under a cross-process lock, login); this
module only asks it, at most once per token lifetime per server, and shares the answer between
threads: one call in flight per server, the other threads wait for its result.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sysconfig
import threading
import time
from typing import Dict, List, Optional, Tuple

_logger = logging.getLogger("mlflow_oidc")

BIN_ENV = "MLFLOW_OIDC_BIN"
_EXE = "mlflow-oidc" + (".exe" if os.name == "nt" else "")

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

EXIT_CONFIG = 2
EXIT_LOGIN_REQUIRED = 3


class MlflowOidcError(RuntimeError):
    """No token could be obtained; the message names the server and what to run."""


def find_binary() -> str:
    """Path of the `mlflow-oidc` executable: $MLFLOW_OIDC_BIN, else the scripts folder of this
    Python environment (where `pip install mlflow-oidc` put it), else the user scripts folder
    (`pip install --user`), else the PATH."""
    override = os.environ.get(BIN_ENV)
    if override:
        found = shutil.which(override)
        if found is None:
            raise MlflowOidcError(f"{BIN_ENV}={override} is not an executable file")
        return found
    looked = []
    for folder in _scripts_dirs():
        candidate = os.path.join(folder, _EXE)
        looked.append(folder)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(_EXE)
    if found:
        return found
    raise MlflowOidcError(
        f"the mlflow-oidc executable was not found (looked in {', '.join(looked) or 'no scripts folder'} "
        f"and on PATH): reinstall it with `pip install --force-reinstall mlflow-oidc`, or set {BIN_ENV}"
    )


def _scripts_dirs() -> List[str]:
    dirs = []
    try:
        dirs.append(sysconfig.get_path("scripts"))
    except KeyError:
        pass
    try:
        if hasattr(sysconfig, "get_preferred_scheme"):
            user_scheme = sysconfig.get_preferred_scheme("user")
        else:  # Python 3.9
            user_scheme = f"{os.name}_user"
        dirs.append(sysconfig.get_path("scripts", user_scheme))
    except KeyError:
        pass
    seen, out = set(), []
    for d in dirs:
        if d and d not in seen:
            seen.add(d)
            out.append(d)
    return out


# RFC 3339 §5.6 as the binary prints it ("2026-11-26T14:12:45Z"), parsed by hand: fromisoformat
# takes "Z" only from 3.11, and takes other ISO 8601 shapes (and local times) RFC 3339 does not.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _parse_time(text: str) -> float:
    """Unix time of an RFC 3339 date-time with its offset; ValueError if it is not one."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError("not an RFC 3339 date-time")
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    offset = datetime.timedelta(0)
    if m.group(8):
        offset = datetime.timedelta(hours=int(m.group(9)), minutes=int(m.group(10)))
        offset = -offset if m.group(8) == "-" else offset
    tz = datetime.timezone(offset)  # ValueError past ±24 h
    when = datetime.datetime(y, mo, d, h, mi, sec, tzinfo=tz)  # ValueError on month 13, year 0...
    return when.timestamp() + float(m.group(7) or 0)


def _is_seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int too large for a float
        return False


def _is_bearer_token(value: object) -> bool:
    # RFC 6750 §2.1: a bearer credential is a b64token, all visible ASCII (VCHAR, %x21-7E). Anything
    # else (CR/LF above all: header injection, a space, a control or non-ASCII character) is refused.
    return isinstance(value, str) and value != "" and all("!" <= c <= "~" for c in value)


def _read_answer(out: str, started: float) -> Tuple[str, float]:
    """The token and its expiry (Unix time) from what `mlflow-oidc token --format json` printed:
    `{"token": "…", "token_type": "Bearer", "kind": …, "expires_at": "<RFC 3339>", "expires_in": <s>,
    "server": …}`. Unknown fields are ignored; a known field of the wrong type is a ValueError whose
    message never contains the token."""
    try:
        obj = json.loads(out)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    token = obj.get("token")
    if not isinstance(token, str):
        raise ValueError("`token` is missing" if token is None else "`token` is not a string")
    if not _is_bearer_token(token):
        raise ValueError("`token` is empty" if token == "" else "`token` has characters a bearer token cannot have")
    at, left = obj.get("expires_at"), obj.get("expires_in")
    if left is not None and not _is_seconds(left):
        raise ValueError("`expires_in` is not a number of seconds")
    if at is not None:
        if not isinstance(at, str):
            raise ValueError("`expires_at` is not a string")
        try:
            return token, _parse_time(at)
        except (ValueError, OverflowError, OSError):
            raise ValueError("`expires_at` is not an RFC 3339 date-time") from None
    if left is None:
        raise ValueError("neither `expires_at` nor `expires_in`")
    return token, started + float(left)


def _answer_kind(out: str) -> str:
    try:
        kind = json.loads(out).get("kind")
    except (ValueError, AttributeError, RecursionError):
        return "token"
    return kind if kind in ("access_token", "id_token") else "token"


def peek_claims(token: str) -> dict:
    """A JWT's payload, unverified ({} when the token is not a JWT)."""
    import base64

    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _printable(value) -> str:
    """A claim for a log line: provider-shaped text without control characters, kept short."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = "".join(c for c in str(value if value is not None else "-") if c.isprintable())
    return text[:200]


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


class TokenSource:
    """Per-server token cache in front of `mlflow-oidc token --format json`."""

    def __init__(self) -> None:
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
        if entry is not None and time.time() < entry.renew_at:
            return entry.token
        with self._lock_for(server):
            # Another thread may have renewed it while this one waited for the lock.
            entry = self._entries.get(server)
            now = time.time()
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
        started = time.time()
        code, out, err = self._run(args, interactive=True, timeout=TOKEN_TIMEOUT)
        self.calls["token"] += 1
        if code != 0:
            raise MlflowOidcError(_failure_message(server, code, err))
        self._pass_on_warnings(err)
        try:
            token, expires_at = _read_answer(out, started)
        except ValueError as e:
            raise MlflowOidcError(
                f"the answer of `mlflow-oidc token --format json` for {server} was malformed ({e}): "
                f"is {find_binary()} an mlflow-oidc that matches this plugin?"
            ) from None
        kind = _answer_kind(out)
        return _Entry(token, expires_at, time.time(), kind)

    def explain_rejection(self, server: str, token: str) -> None:
        """Log once per server why a tracking server may have answered 401 to `token`: MLflow itself reports
        only an opaque INTERNAL_ERROR (issue 16). Claims are peeked, never verified; the token is never logged."""
        if server in self._rejected:
            return
        self._rejected.add(server)
        entry = self._entries.get(server)
        kind = entry.kind if entry is not None and entry.token == token else "token"
        claims = peek_claims(token)
        exp = claims.get("exp")
        when = ""
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            when = f", expires in {int(exp - time.time())}s" if exp > time.time() else ", already expired"
        _logger.warning(
            "the tracking server %s refused the mlflow-oidc %s (HTTP 401): it was issued by %s for audience %s%s. "
            "Likely causes: the server expects another audience (set `use-id-token`, `audience` or `resource` to "
            "give the token the `aud` it checks; mlflow-oidc-auth: OIDC_AUDIENCE), trusts another issuer "
            "(OIDC_ISSUER), or the clocks differ; the server's log names the claim it refused; "
            "`mlflow-oidc status --server %s` shows what is sent",
            server, kind.replace("_", " "), _printable(claims.get("iss")), _printable(claims.get("aud")), when, server,
        )

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
            try:
                code, out, err = self._run(["status", "--json", "--server", server], interactive=False,
                                           timeout=STATUS_TIMEOUT)
                self.calls["status"] += 1
                problem = None
                if code != 0 and not (code == EXIT_CONFIG and _is_no_match(out)):
                    # A configuration that exists but is broken: say so once, rather than 401s later.
                    problem = _last_line(err) or f"`mlflow-oidc status` exited with {code}"
            except MlflowOidcError as e:
                code, problem = 1, str(e)
            if problem:
                _logger.warning("mlflow-oidc plugin inactive for %s: %s", server, problem)
            elif code == 0:
                _warn_untrusted(server, out)
            self._configured[server] = code == 0
            return code == 0

    def _run(self, args: List[str], interactive: bool, timeout: float) -> Tuple[int, str, str]:
        binary = find_binary()
        # A browser login needs the terminal: let the binary see it when we have one (its prompts
        # go straight to the user); otherwise capture stderr for the error message.
        use_terminal = interactive and _is_terminal()
        try:
            proc = subprocess.run(
                [binary, *args],
                stdin=None if use_terminal else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None if use_terminal else subprocess.PIPE,
                timeout=timeout,
                check=False,
            )
        except OSError as e:
            raise MlflowOidcError(f"cannot run {binary}: {e}") from None
        except subprocess.TimeoutExpired:
            raise MlflowOidcError(f"`mlflow-oidc {' '.join(args)}` did not finish within {timeout:.0f}s") from None
        err = proc.stderr.decode("utf-8", "replace") if proc.stderr is not None else ""
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), err


def _is_terminal() -> bool:
    try:
        return os.isatty(0) and os.isatty(2)
    except (OSError, ValueError):
        return False


def _is_no_match(status_json: str) -> bool:
    # `status --json` gives "no server configured for this URI" its own error kind: that means silence,
    # any other configuration error means "configured but broken" (warn).
    try:
        kind = json.loads(status_json)["error"]["kind"]
    except (ValueError, KeyError, TypeError):
        return True
    return kind == "no_server"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line[len("error: "):] if line.startswith("error: ") else line


def _failure_message(server: str, code: int, stderr: str) -> str:
    detail = _last_line(stderr)
    if code == EXIT_LOGIN_REQUIRED:
        return f"not logged in to {server}: run `mlflow-oidc login --server {server}`"
    if code == EXIT_CONFIG:
        what = f": {detail}" if detail else ""
        return (f"mlflow-oidc has no usable configuration for {server}{what} "
                f"(check it with `mlflow-oidc status --server {server}`)")
    what = detail or (f"exit {code}" if code >= 0 else f"killed by signal {-code}")
    more = "" if detail else " (its message is above)"
    return f"mlflow-oidc could not get a token for {server}: {what}{more}"


# The process-wide cache shared by the MLflow plugins and get_token().
SOURCE = TokenSource()


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
            untrusted.get("file"),
            ", ".join(str(k) for k in untrusted.get("ignored_keys") or []),
            untrusted.get("trust_command"),
        )
