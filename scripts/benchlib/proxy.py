"""Figure 9: `mlflow-oidc proxy` against direct requests to one local upstream."""

import http.client
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import IDP_DIR, MIB, die, median, ms, quantile


UPSTREAM_PY = r"""
import sys, http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    def log_message(self, *a): pass
    def _reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._reply(b'{"experiments": [{"experiment_id": "0", "name": "Default"}]}')
    def do_PUT(self):
        n, left = 0, int(self.headers.get("Content-Length", "0"))
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            n += len(chunk); left -= len(chunk)
        self._reply(('{"read": %d}' % n).encode())
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 128
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def fig_proxy(rep, sb, counts, label=""):
    """The proxy vs direct, side by side in one run, against the same local upstream (a threaded Python
    HTTP/1.1 server that ignores the token): added latency per small request (p50, p99), throughput at 16
    concurrent clients (wrk), a 1 GiB upload (curl -T) and the proxy's peak RSS."""
    up = subprocess.Popen([sys.executable, "-c", UPSTREAM_PY], stdout=subprocess.PIPE, text=True)
    proxy = None
    try:
        port = int(up.stdout.readline())
        upstream = f"http://127.0.0.1:{port}"
        env = dict(sb.env_only("direct", "file"), MLFLOW_TRACKING_URI=upstream)
        env = {k: v for k, v in env.items()}
        subprocess.run(sb.argv("login"), cwd=sb.noconf, env=dict(env, BROWSER=str(IDP_DIR / "browser-curl.sh")),
                       stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120)
        proxy = subprocess.Popen(sb.argv("proxy"), cwd=sb.noconf, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        uri = proxy.stdout.readline().strip()
        if not uri.startswith("http://127.0.0.1:"):
            die(f"the proxy printed no URI: {uri!r}")
        paddr = uri.split("/")[2]
        path = "/api/2.0/mlflow/experiments/search?max_results=1"
        cap_prefix = "/" + uri.rstrip("/").rsplit("/", 1)[1]

        def latencies(host_port, prefix, n):
            c = http.client.HTTPConnection(host_port)
            out = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                c.request("GET", prefix + path)
                r = c.getresponse()
                r.read()
                out.append(time.perf_counter_ns() - t0)
                if r.status != 200:
                    die(f"GET {host_port}: {r.status}")
            c.close()
            return out

        n = 200 if counts["rounds"] < 100 else 3000
        direct, via = [], []
        for _ in range(5):  # interleaved blocks
            direct += latencies(f"127.0.0.1:{port}", "", n // 5)
            via += latencies(paddr, cap_prefix, n // 5)
        added50 = median(via) - median(direct)
        added99 = quantile(via, 0.99) - quantile(direct, 0.99)
        rep.data["proxy_latency" + label] = {"direct_ns": direct, "proxy_ns": via}
        rep.row(9, f"proxy{label}: added latency per small GET (p50 / p99)",
                f"+{ms(added50):.3f} / +{ms(added99):.3f} ms (direct p50 {ms(median(direct)):.3f} ms, via proxy "
                f"{ms(median(via)):.3f} ms; {len(via)} requests, one keep-alive connection)",
                "p50 <= 0.3 ms", added50 <= 0.3e6)

        if shutil.which("wrk"):
            secs = "2s" if counts["rounds"] < 100 else "8s"

            def rps(url):
                p = subprocess.run(["wrk", "-t2", "-c16", f"-d{secs}", url], capture_output=True, text=True)
                for line in p.stdout.splitlines():
                    if line.startswith("Requests/sec:"):
                        return float(line.split()[1])
                die(f"wrk: {p.stdout}{p.stderr}")

            d1, p1 = rps(f"http://127.0.0.1:{port}{path}"), rps(f"{uri.rstrip('/')}{path}")
            d2, p2 = rps(f"http://127.0.0.1:{port}{path}"), rps(f"{uri.rstrip('/')}{path}")
            d, pr = (d1 + d2) / 2, (p1 + p2) / 2
            rep.row(9, f"proxy{label}: throughput at 16 concurrent clients (wrk)",
                    f"{pr:.0f} req/s via proxy vs {d:.0f} direct = {100 * pr / d:.0f} %", ">= 90 %", pr >= 0.9 * d)
        else:
            rep.row(9, f"proxy{label}: throughput at 16 concurrent clients", "skipped: wrk not installed (apt-get install wrk)")

        size = (64 if counts["rounds"] < 100 else 1024) << 20
        big = sb.root / "upload.bin"
        with open(big, "wb") as f:
            f.truncate(size)  # sparse: the page cache serves zeros, the disk is not the bottleneck

        def upload(url):
            t0 = time.perf_counter()
            p = subprocess.run(["curl", "-sS", "-T", str(big), "-o", "/dev/null", "-w", "%{http_code}", url],
                               capture_output=True, text=True)
            if p.stdout != "200":
                die(f"upload to {url}: {p.stdout} {p.stderr}")
            return time.perf_counter() - t0

        # One transfer takes well under a second on loopback, so single runs swing by ±50 %: interleave
        # rounds (direct, then via the proxy) and compare medians, as figure 1 does.
        rounds = 3 if counts["rounds"] < 100 else 9
        direct, via = [], []
        for _ in range(rounds):
            direct.append(upload(f"http://127.0.0.1:{port}/up"))
            via.append(upload(f"{uri}up"))
        td, tp = statistics.median(direct), statistics.median(via)
        per_round = statistics.median(d / v for d, v in zip(direct, via))
        status = Path(f"/proc/{proxy.pid}/status").read_text()
        hwm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
        ratio = td / tp
        rep.row(9, f"proxy{label}: {size >> 20} MiB upload throughput via proxy vs direct",
                f"{size / tp / MIB:.0f} vs {size / td / MIB:.0f} MiB/s = {100 * ratio:.0f} % "
                f"(medians of {rounds} interleaved rounds; per-round {100 * per_round:.0f} %)", ">= 90 %", ratio >= 0.9)
        rep.row(9, f"proxy{label}: peak RSS after everything above (VmHWM)", f"{hwm / 1024:.1f} MiB", "<= 20 MB",
                hwm * 1024 <= 20e6)
    finally:
        for p in (proxy, up):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
