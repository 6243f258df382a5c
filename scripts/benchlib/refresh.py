"""Figures 4 and 5: one refresh, and storms of concurrent `token` calls on an expired token."""

import os
import shutil
import subprocess
import time
from pathlib import Path

from .common import die, fmt_ms, median
from .timing import spawn_timed


def fig_refresh(rep, sb, idp, counts, stores, direct_rt):
    print("\n[4] a refresh: expired access token, valid refresh token", flush=True)
    walls = {s: [] for s in stores}
    provider = []
    requests = {s: [] for s in stores}
    for _ in range(counts["refresh_rounds"]):
        for s in stores:
            sb.expire(s)
            before = sb.cached_token(s)
            off = idp.offset()
            wall, code = spawn_timed(sb.argv("token"), sb.env(s, s), sb.proj)
            if code != 0:
                die(f"refresh ({s}): exit {code}")
            seen = idp.since(off)
            requests[s].append(seen)
            if sb.cached_token(s) == before:
                die(f"refresh ({s}): the cached token did not change")
            walls[s].append(wall)
            t, direct_rt = idp.refresh_direct(direct_rt)
            provider.append(t)
    prov = median(provider)
    rep.data["refresh"] = {"provider_median_ns": prov, "provider_runs": len(provider)}
    for s in stores:
        n = [len(x) for x in requests[s]]
        grants = [sum(1 for e in x if e.get("grant_type") == "refresh_token") for x in requests[s]]
        kinds = sorted({f"{e['method']} {e['path']}" for x in requests[s] for e in x})
        w = median(walls[s])
        rep.data["refresh"][s] = {"median_ns": w, "requests": n, "routes": kinds}
        rep.row(4, f"HTTP requests per refresh ({s} store)", f"{max(n)} ({', '.join(kinds)}; {len(n)} refreshes)",
                "1", max(n) == 1 and min(grants) == 1)
        rep.row(4, f"refresh wall time minus the provider's ({s} store)",
                f"{fmt_ms(w - prov)} ({fmt_ms(w)} wall - {fmt_ms(prov)} provider)", "reported", None)
    if shutil.which("valgrind"):
        # CPU work of one refresh, free of the machine's noise: user-space instructions under callgrind.
        sb.expire("file")
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *sb.argv("token")],
                           env=sb.env("file", "file"), cwd=sb.proj, capture_output=True, text=True)
        n = next((int(line.split()[-1]) for line in p.stderr.splitlines() if "Collected :" in line), None)
        if p.returncode == 0 and n:
            rep.data["refresh"]["instructions"] = n
            cached = rep.data.get("instructions", {}).get("token")
            vs = f" ({n / cached:.0f}x a cached `token`)" if cached else ""
            rep.row(4, "instructions of one refresh (callgrind, file store)", f"{n / 1e6:.1f}M{vs}", "reported", None)
    return direct_rt


def fig_storm(rep, sb, idp, counts, stores):
    print("\n[5] a storm: N concurrent `token` calls on an expired access token", flush=True)
    out_dir = sb.root / "storm"
    out_dir.mkdir()
    os.chdir(sb.proj)
    rep.data["storm"] = {}
    for s in stores:
        for n in counts["storm_sizes"]:
            walls, grants, failures, distinct = [], [], [], []
            for rep_i in range(counts["storm_reps"]):
                sb.expire(s)
                off = idp.offset()
                env = sb.env(s, s)
                pids = {}
                t0 = time.perf_counter_ns()
                for i in range(n):
                    o = out_dir / f"{s}-{n}-{rep_i}-{i}"
                    actions = [
                        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_OPEN, 1, f"{o}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                        (os.POSIX_SPAWN_OPEN, 2, f"{o}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                    ]
                    argv = sb.argv("token")
                    pids[os.posix_spawn(argv[0], argv, env, file_actions=actions)] = o
                bad = 0
                for _ in range(n):
                    pid, status = os.wait()
                    if os.waitstatus_to_exitcode(status) != 0:
                        bad += 1
                t1 = time.perf_counter_ns()
                outs = {Path(f"{o}.out").read_text() for o in pids.values()}
                bad += sum(1 for o in pids.values() if not Path(f"{o}.out").read_text().strip())
                seen = idp.since(off)
                walls.append(t1 - t0)
                grants.append(sum(1 for e in seen if e.get("grant_type") == "refresh_token"))
                failures.append(bad)
                distinct.append(len(outs))
            w = median(walls)
            rep.data["storm"][f"{s}-{n}"] = {"walls_ns": walls, "grants": grants, "failures": failures,
                                            "distinct_tokens": distinct}
            ok = max(grants) == 1 and max(failures) == 0
            rep.row(5, f"storm N={n} ({s} store)",
                    f"{fmt_ms(w)} wall, {max(grants)} refresh grant(s), {max(failures)} failure(s), "
                    f"{max(distinct)} distinct token(s) printed ({len(walls)} storm(s))",
                    "1 grant, 0 failures", ok)
