"""Paths, constants, messages and the statistics every figure uses."""

import statistics
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent.parent
IDP_DIR = ROOT / "tests" / "idp"
# The plugin declares no MLflow dependency; its users have `pip install mlflow` (the full package, whose
# import is what a fresh process pays).
PLUGIN_REQUIREMENTS = ["mlflow-oidc-client==0.2.4", "mlflow==3.17.2"]
INNER_MARK = "MLFLOW_OIDC_BENCH_DBUS"
CLIENT_ID = "mlflow-cli"
MIB = 1 << 20

# The servers the bench logs in to; each gets its own store key.
SERVERS = {
    "file": "http://mlflow-file.bench",
    "keyring": "http://mlflow-keyring.bench",
    "direct": "http://mlflow-direct.bench",  # the bench's own refresh-token chain (provider timing)
}


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"scripts/bench: error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(1)


# --- statistics ----------------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def quantile(xs, q):
    if not xs:
        return float("nan")
    s = sorted(xs)
    i = (len(s) - 1) * q
    lo, hi = int(i), min(int(i) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def ms(ns):
    return ns / 1e6


def fmt_ms(ns):
    v = ms(ns)
    return f"{v:.3f} ms" if v < 10 else f"{v:.1f} ms" if v < 1000 else f"{v / 1000:.2f} s"
