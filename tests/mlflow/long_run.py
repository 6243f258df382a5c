"""A long run: log one metric every INTERVAL seconds for SECONDS seconds, counting failures, then
read the history back and print one JSON line (the last line of stdout).

    python long_run.py EXPERIMENT_NAME SECONDS [INTERVAL]
Meant for MLFLOW_TRACKING_AUTH=oidc with access tokens that live much shorter than SECONDS.
"""

import json
import sys
import time

import mlflow
from mlflow_oidc import _token

name, seconds = sys.argv[1], float(sys.argv[2])
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0

failures, errors, latencies = 0, [], []
t0 = time.monotonic()
experiment_id = mlflow.create_experiment(name)
run = mlflow.start_run(experiment_id=experiment_id, run_name="long")
step = 0
while time.monotonic() - t0 < seconds:
    started = time.perf_counter()
    try:
        mlflow.log_metric("elapsed", time.monotonic() - t0, step=step)
    except Exception as e:  # noqa: BLE001 - every failure counts, whatever its type
        failures += 1
        if len(errors) < 3:
            errors.append(str(e)[:160])
    latencies.append(time.perf_counter() - started)
    step += 1
    time.sleep(max(0.0, interval - (time.perf_counter() - started)))
try:
    mlflow.end_run()
    history_len = len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "elapsed"))
except Exception as e:  # noqa: BLE001 - reported, not raised: the summary must still be printed
    failures += 1
    errors.append(str(e)[:160])
    history_len = -1
latencies.sort()
print(json.dumps({
    "steps": step,
    "failures": failures,
    "errors": errors,
    "history_len": history_len,
    "seconds": round(time.monotonic() - t0, 1),
    "binary_calls": _token.CACHE.calls,
    "latency_ms_median": round(1000 * latencies[len(latencies) // 2], 2),
    "latency_ms_max": round(1000 * latencies[-1], 2),
}))
