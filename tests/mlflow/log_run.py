"""Create an experiment, log params, metrics and an artifact through the tracking server, read
them back, and print one JSON line (the last line of stdout; MLflow prints its own lines too).

    python log_run.py EXPERIMENT_NAME
Credentials come from the environment: MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_AUTH=oidc, or the
mlflow-oidc header provider.
"""

import json
import os
import sys
import tempfile
import time

import mlflow

name = sys.argv[1]
t0 = time.perf_counter()
experiment_id = mlflow.create_experiment(name)
mlflow.set_experiment(experiment_id=experiment_id)
with mlflow.start_run(run_name="e2e") as run:
    mlflow.log_params({"lr": 0.01, "optimizer": "adam"})
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "note.txt")
        with open(path, "w") as f:
            f.write("hello through apache\n")
        mlflow.log_artifact(path)  # a PUT to /api/2.0/mlflow-artifacts/..., through the proxy too

client = mlflow.MlflowClient()
got = client.get_run(run.info.run_id)
with tempfile.TemporaryDirectory() as d:
    local = client.download_artifacts(run.info.run_id, "note.txt", d)
    with open(local) as f:
        text = f.read()
print(json.dumps({
    "experiment_id": experiment_id,
    "experiment_name": client.get_experiment(experiment_id).name,
    "run_id": got.info.run_id,
    "status": got.info.status,
    "params": got.data.params,
    "metrics": got.data.metrics,
    "history": [m.value for m in client.get_metric_history(run.info.run_id, "loss")],
    "artifacts": [a.path for a in client.list_artifacts(run.info.run_id)],
    "artifact_text": text,
    "seconds": round(time.perf_counter() - t0, 2),
}))
