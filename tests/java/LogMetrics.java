// MLflow's Java client (org.mlflow:mlflow-client) logging one metric a second, for tests/keycloak_e2e.rs (issue 22).
//   java -cp CLASSPATH LogMetrics.java EXPERIMENT SECONDS
// The tracking URI comes from MLFLOW_TRACKING_URI, as `mlflow-oidc exec --proxy` sets it: the Java client sends no
// token for http(s) URIs (it builds BasicMlflowHostCreds(uri) and ignores MLFLOW_TRACKING_TOKEN), so the local proxy
// is its way in. Every call that fails is counted, not fatal; one JSON line at the end says how it went.
import java.util.ArrayList;
import java.util.List;
import org.mlflow.api.proto.Service.Metric;
import org.mlflow.api.proto.Service.RunInfo;
import org.mlflow.api.proto.Service.RunStatus;
import org.mlflow.tracking.MlflowClient;

public class LogMetrics {
    public static void main(String[] args) throws Exception {
        String name = args[0];
        double seconds = Double.parseDouble(args[1]);
        MlflowClient client = new MlflowClient();
        String experimentId = client.createExperiment(name);
        RunInfo run = client.createRun(experimentId);
        long t0 = System.nanoTime();
        int steps = 0;
        int failures = 0;
        List<String> errors = new ArrayList<>();
        while ((System.nanoTime() - t0) / 1e9 < seconds) {
            long started = System.nanoTime();
            try {
                client.logMetric(run.getRunId(), "elapsed", (started - t0) / 1e9, System.currentTimeMillis(), steps);
            } catch (Exception e) {
                failures++;
                if (errors.size() < 3) {
                    errors.add(String.valueOf(e.getMessage()).replace('"', '\'').replace('\n', ' '));
                }
            }
            steps++;
            long sleep = 1000 - (System.nanoTime() - started) / 1_000_000;
            if (sleep > 0) {
                Thread.sleep(sleep);
            }
        }
        int history = -1;
        try {
            client.setTerminated(run.getRunId(), RunStatus.FINISHED);
            List<Metric> h = client.getMetricHistory(run.getRunId(), "elapsed");
            history = h.size();
        } catch (Exception e) {
            failures++;
            errors.add(String.valueOf(e.getMessage()).replace('"', '\'').replace('\n', ' '));
        }
        client.close();
        System.out.printf(
            "{\"steps\": %d, \"failures\": %d, \"history_len\": %d, \"seconds\": %.1f, \"errors\": [%s]}%n",
            steps, failures, history, (System.nanoTime() - t0) / 1e9,
            errors.isEmpty() ? "" : "\"" + String.join("\", \"", errors) + "\"");
    }
}
