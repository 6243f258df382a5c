"""The cost of the plugin per request: the same MLflow call with a static MLFLOW_TRACKING_TOKEN,
with MLFLOW_TRACKING_AUTH=oidc and with the header provider, interleaved in rounds in one process
(MLflow reads its credentials from the environment on every request), so that machine noise
hits all three alike. Prints one JSON line (the last line of stdout).

    STATIC_MIN_VALID=15 python bench.py EXPERIMENT_NAME [ROUNDS] [CALLS_PER_ROUND]
The header provider needs a mlflow-oidc configuration for the tracking URI (cwd's pyproject). The static
token comes from `mlflow-oidc token --min-valid $STATIC_MIN_VALID` before each static round (untimed), so
a slow machine never sends an expired one.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import mlflow
from mlflow_oidc import _token

name = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
per_round = int(sys.argv[3]) if len(sys.argv) > 3 else 25
static_min_valid = os.environ.pop("STATIC_MIN_VALID")
server = mlflow.get_tracking_uri()
binary = _token.find_binary()


def static_token():
    out = subprocess.run([binary, "token", "--min-valid", static_min_valid], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def mode_env(mode):
    for k in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH"):
        os.environ.pop(k, None)
    if mode == "static":
        os.environ["MLFLOW_TRACKING_TOKEN"] = static_token()
    elif mode == "auth":
        os.environ["MLFLOW_TRACKING_AUTH"] = "oidc"


client = mlflow.MlflowClient()
mode_env("static")
experiment_id = client.create_experiment(name)
run_id = client.create_run(experiment_id).info.run_id

times = {"static": [], "auth": [], "header": []}
step = 0
started = time.perf_counter()
for _ in range(rounds):
    for mode in ("static", "auth", "header"):
        mode_env(mode)
        for _ in range(per_round):
            t = time.perf_counter()
            client.log_metric(run_id, "x", float(step), step=step)
            times[mode].append(time.perf_counter() - t)
            step += 1
seconds = time.perf_counter() - started

# The plugin's own work on a cached token, without the HTTP request around it.
n = 10000
t = time.perf_counter()
for _ in range(n):
    _token.CACHE.token(server)
cached_us = (time.perf_counter() - t) / n * 1e6

# One run of the binary on its cached token (what the plugin pays about once per token lifetime).
runs = []
for _ in range(10):
    t = time.perf_counter()
    subprocess.run([binary, "token", "--format", "json", "--server", server], check=True, capture_output=True)
    runs.append(time.perf_counter() - t)


def ms(xs):
    return round(1000 * statistics.median(xs), 3)


print(json.dumps({
    "requests_per_mode": len(times["static"]),
    "median_ms": {k: ms(v) for k, v in times.items()},
    "mean_ms": {k: round(1000 * statistics.fmean(v), 3) for k, v in times.items()},
    "plugin_cached_token_us": round(cached_us, 2),
    "binary_cached_token_ms": ms(runs),
    "binary_calls": _token.CACHE.calls,
    "seconds": round(seconds, 2),
}))
