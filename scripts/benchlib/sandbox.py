"""The throw-away HOME, the project with a typical pyproject.toml, the CLI's environment, and the Secret Service."""

import json
import os
import shutil
import subprocess
import time

from .common import CLIENT_ID, IDP_DIR, INNER_MARK, SERVERS, die


# The rest of a typical project's pyproject.toml: the cached path parses the file it finds, so the bench
# measures a realistic one rather than a file holding only our blocks.
PYPROJECT_PREAMBLE = """\
[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "churn-model"
version = "0.4.2"
description = "Training and evaluation pipeline for the churn model, tracked in MLflow"
readme = "README.md"
requires-python = ">=3.10"
license = { text = "Proprietary" }
authors = [{ name = "Data Science Team", email = "ds@example.com" }]
classifiers = [
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3.11",
    "Private :: Do Not Upload",
]
dependencies = [
    "mlflow-skinny>=2.12",
    "pandas>=2.1",
    "numpy>=1.26",
    "scikit-learn>=1.4",
    "lightgbm>=4.3",
    "pyarrow>=15",
    "hydra-core>=1.3",
    "pydantic>=2.6",
    "typer>=0.12",
    "rich>=13",
]

[project.optional-dependencies]
dev = ["pytest>=8", "pytest-cov>=4", "ruff>=0.4", "mypy>=1.9", "pre-commit>=3.7"]
docs = ["mkdocs-material>=9", "mkdocstrings[python]>=0.24"]

[project.scripts]
churn-train = "churn_model.cli:train"
churn-eval = "churn_model.cli:evaluate"

[tool.hatch.build.targets.wheel]
packages = ["src/churn_model"]

[tool.ruff]
line-length = 110
target-version = "py310"
src = ["src", "tests"]

[tool.ruff.lint]
select = ["E", "F", "I", "B", "UP", "SIM", "RUF", "PL"]
ignore = ["PLR0913", "PLR2004"]

[tool.ruff.lint.per-file-ignores]
"tests/*" = ["S101", "PLR2004"]

[tool.mypy]
python_version = "3.11"
strict = true
warn_unused_configs = true
plugins = ["pydantic.mypy"]

[[tool.mypy.overrides]]
module = ["lightgbm.*", "sklearn.*", "mlflow.*"]
ignore_missing_imports = true

[tool.pytest.ini_options]
addopts = "-ra --strict-markers --cov=churn_model --cov-report=term-missing"
testpaths = ["tests"]
markers = ["slow: long-running training tests", "integration: needs the MLflow server"]

[tool.coverage.run]
branch = true
source = ["churn_model"]

[tool.coverage.report]
fail_under = 85
exclude_lines = ["pragma: no cover", "if TYPE_CHECKING:"]

"""


class Sandbox:
    """A throw-away HOME, a project directory with a pyproject.toml, and the CLI's environment."""

    def __init__(self, root, binary, issuer):
        self.root = root
        self.binary = str(binary)
        self.issuer = issuer
        self.home = root / "home"
        self.proj = root / "project"
        self.noconf = root / "no-config"  # no pyproject.toml up to /: configuration from the environment only
        for d in (self.home, self.proj, self.noconf):
            d.mkdir()
        blocks = []
        for uri in SERVERS.values():
            blocks.append(
                "[[tool.mlflow-oidc-client.tracking-servers]]\n"
                f'uri = "{uri}"\n'
                f'issuer = "{issuer}"\n'
                f'client-id = "{CLIENT_ID}"\n'
                'scope = "openid profile email mlflow"\n'
                "# Send the access token (aud mlflow), as an MLflow proxy checking JWTs needs.\n"
                "use-id-token = false\n"
                'redirect-uri = "http://127.0.0.1:0/oauth2/callback"\n'
            )
        (self.proj / "pyproject.toml").write_text(PYPROJECT_PREAMBLE + "\n".join(blocks))
        self.base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "LANG": "C.UTF-8",
        }
        for k in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):
            if os.environ.get(k):
                self.base_env[k] = os.environ[k]
        self.tokens_dir = self.home / ".local" / "share" / "mlflow-oidc" / "tokens"

    def env(self, server, store, **extra):
        e = dict(self.base_env, MLFLOW_TRACKING_URI=SERVERS[server], MLFLOW_OIDC_STORE=store)
        e.update(extra)
        return e

    def env_only(self, server, store):
        """The same server configured by MLFLOW_TRACKING_OIDC_* variables alone (same store key)."""
        return self.env(server, store, MLFLOW_TRACKING_OIDC_ISSUER=self.issuer, MLFLOW_TRACKING_OIDC_CLIENT_ID=CLIENT_ID,
                        MLFLOW_TRACKING_OIDC_SCOPE="openid profile email mlflow",
                        MLFLOW_TRACKING_OIDC_USE_ID_TOKEN="false")

    def argv(self, *args):
        return [self.binary, *args]

    def run(self, server, store, *args, check=True, **extra):
        p = subprocess.run(
            self.argv(*args),
            cwd=self.proj,
            env=self.env(server, store, **extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and p.returncode != 0:
            die(f"mlflow-oidc {' '.join(args)} ({server}, {store}): exit {p.returncode}\n{p.stderr}")
        return p

    def login(self, server, store):
        self.run(server, store, "login", BROWSER=str(IDP_DIR / "browser-curl.sh"))
        return self.entry_path(server)

    def entry_path(self, server):
        for p in self.tokens_dir.glob("*.json"):
            try:
                if json.loads(p.read_text()).get("server") == SERVERS[server]:
                    return p
            except (OSError, ValueError):
                pass
        die(f"no token cache entry for {SERVERS[server]} in {self.tokens_dir}")

    def expire(self, server):
        """Mark the cached access token expired (the refresh token stays valid)."""
        path = self.entry_path(server)
        e = json.loads(path.read_text())
        e["tokens"]["access_expires_at"] = 1
        tmp = path.with_name(f".{path.name}.bench.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(e))
        os.replace(tmp, path)

    def cached_token(self, server):
        return json.loads(self.entry_path(server).read_text())["tokens"]["access_token"]


# --- the Secret Service ----------------------------------------------------------------------------


def start_keyring(sandbox):
    """gnome-keyring (secrets component, unlocked) on the private session bus; None or the reason it failed."""
    if os.environ.get(INNER_MARK) != "1" or not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "no private D-Bus session (dbus-run-session not found?)"
    if not shutil.which("gnome-keyring-daemon"):
        return "gnome-keyring-daemon not installed (apt-get install gnome-keyring)"
    khome = sandbox / "keyring-home"
    khome.mkdir()
    kenv = {
        "HOME": str(khome),
        "XDG_DATA_HOME": str(khome / ".local" / "share"),
        "XDG_CACHE_HOME": str(khome / ".cache"),
    }
    if shutil.which("dbus-update-activation-environment"):
        subprocess.run(
            ["dbus-update-activation-environment"] + [f"{k}={v}" for k, v in kenv.items()],
            capture_output=True,
        )
    p = subprocess.run(
        ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
        input=b"mlflow-oidc-bench",
        env=dict(os.environ, **kenv),
        capture_output=True,
    )
    if p.returncode != 0:
        return f"gnome-keyring-daemon failed: {p.stderr.decode(errors='replace').strip()}"
    for line in p.stdout.decode().splitlines():
        if "=" in line and line.split("=", 1)[0].isupper():
            k, v = line.split("=", 1)
            os.environ[k] = v
    # --unlock returns before the forked daemon owns its bus name: wait for it.
    for _ in range(100):
        q = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
             "org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.secrets"],
            capture_output=True, text=True,
        )
        if "boolean true" in q.stdout:
            return None
        time.sleep(0.05)
    return "gnome-keyring-daemon did not claim org.freedesktop.secrets"
