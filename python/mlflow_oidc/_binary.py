"""The `mlflow-oidc` executable: where it is, how it is run, and the contract of what it answers.

The binary owns the exit codes and the messages. A failure of `token --format json` and of
`status --json` is a JSON object on stdout, `{"error": {"kind", "exit_code", "message", "hint"}}`
(src/error.rs `Error::to_json`); this module reads it instead of scraping stderr (issue 24).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from typing import List, NamedTuple, Optional

from mlflow_oidc._text import printable

BIN_ENV = "MLFLOW_OIDC_BIN"
_EXE = "mlflow-oidc" + (".exe" if os.name == "nt" else "")


class MlflowOidcError(RuntimeError):
    """No token could be obtained; the message names the server and what to run."""


class Outcome(NamedTuple):
    code: int
    out: str
    err: str


class Failure(NamedTuple):
    """A failed run, as the binary described it."""

    kind: str
    exit_code: int
    message: str
    hint: Optional[str]


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


def run(args: List[str], interactive: bool, timeout: float) -> Outcome:
    """Run the binary; a person at a terminal sees its prompts (a browser login needs them)."""
    binary = find_binary()
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
    return Outcome(proc.returncode, proc.stdout.decode("utf-8", "replace"), err)


def _is_terminal() -> bool:
    try:
        return os.isatty(0) and os.isatty(2)
    except (OSError, ValueError):
        return False


def failure(outcome: Outcome) -> Failure:
    """What went wrong in a run that exited non-zero: the binary's JSON error object when it printed one;
    otherwise (killed, crashed, an older binary) its exit status and last stderr line."""
    try:
        obj = json.loads(outcome.out)["error"]
        kind, code, message = obj["kind"], obj["exit_code"], obj["message"]
        hint = obj.get("hint")
        if isinstance(kind, str) and isinstance(code, int) and isinstance(message, str):
            shown_hint = printable(hint, 1000) if isinstance(hint, str) else None
            return Failure(kind, code, printable(message, 1000), shown_hint)
    except (ValueError, KeyError, TypeError, RecursionError):
        pass
    detail = _last_line(outcome.err)
    code = outcome.code
    if not detail:
        # Nothing captured: the binary wrote to the terminal, where its message already is.
        detail = (f"exit {code}" if code >= 0 else f"killed by signal {-code}") + " (its message is above)"
    return Failure("unknown", code, detail, None)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return printable(line[len("error: "):] if line.startswith("error: ") else line, 1000)
