"""A plain MLflow client for the proxy tests: no mlflow-oidc import, MLFLOW_TRACKING_URI = the proxy's URI.
Prints one JSON line (the last line of stdout).

    python proxy_client.py long EXPERIMENT SECONDS      log a metric every second, count failures
    python proxy_client.py artifacts EXPERIMENT FILE    log_artifact FILE, download it back, sha256 both
    python proxy_client.py search                       search experiments; the exception's text on failure
"""

import hashlib
import json
import os
import sys
import tempfile
import time

import mlflow


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


mode = sys.argv[1]
if mode == "long":
    name, seconds = sys.argv[2], float(sys.argv[3])
    failures, errors = 0, []
    t0 = time.monotonic()
    experiment_id = mlflow.create_experiment(name)
    run = mlflow.start_run(experiment_id=experiment_id, run_name="long")
    step = 0
    while time.monotonic() - t0 < seconds:
        started = time.perf_counter()
        try:
            mlflow.log_metric("elapsed", time.monotonic() - t0, step=step)
        except Exception as e:  # noqa: BLE001 - every failure counts
            failures += 1
            if len(errors) < 3:
                errors.append(str(e)[:200])
        step += 1
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
    mlflow.end_run()
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "elapsed")
    print(json.dumps({"steps": step, "failures": failures, "errors": errors, "history_len": len(history)}))
elif mode == "artifacts":
    name, path = sys.argv[2], sys.argv[3]
    experiment_id = mlflow.create_experiment(name)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        t0 = time.monotonic()
        mlflow.log_artifact(path)
        up = time.monotonic() - t0
    out = tempfile.mkdtemp()
    t0 = time.monotonic()
    got = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=os.path.basename(path), dst_path=out)
    down = time.monotonic() - t0
    print(json.dumps({
        "artifact_uri": run.info.artifact_uri,
        "sent": sha256(path),
        "received": sha256(got),
        "size": os.path.getsize(got),
        "upload_s": round(up, 2),
        "download_s": round(down, 2),
    }))
elif mode == "search":
    try:
        found = mlflow.search_experiments(max_results=1)
        print(json.dumps({"ok": True, "count": len(found)}))
    except Exception as e:  # noqa: BLE001 - the text is what the test checks
        print(json.dumps({"ok": False, "type": type(e).__name__, "error": str(e)}))
else:
    raise SystemExit(f"unknown mode {mode}")
