"""Spawning and timing processes: interleaved rounds, peak RSS, paired ratios."""

import gc
import os
import subprocess
import time

from .common import die, median, quantile


_DEVNULL_ACTIONS = [
    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
    (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
]


def spawn_timed(argv, env, cwd=None):
    """Run argv once (all streams /dev/null): (wall ns, exit status). posix_spawn has no cwd: chdir first."""
    if cwd is not None:
        os.chdir(cwd)
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=_DEVNULL_ACTIONS)
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    return t1 - t0, os.waitstatus_to_exitcode(status)


def peak_rss_kib(argv, env, cwd, runs):
    """Peak RSS through GNU time: its own small footprint is what the child inherits at fork. (The bench's
    rusage would not do: posix_spawn's vfork child carries this Python process's peak across exec.)"""
    out = []
    for _ in range(runs):
        p = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            die(f"{' '.join(argv)}: exit {p.returncode} under /usr/bin/time: {p.stderr[-500:]}")
        out.append(int(p.stderr.strip().splitlines()[-1]))
    return out


def interleaved(cases, rounds, warmup=3, repeat=None):
    """Each round runs every case once (or repeat[name] times), in an order rotated per round, so slow phases
    of a shared machine hit every case alike. Returns name -> list of wall ns, in round order."""
    names = list(cases)
    repeat = repeat or {}
    res = {n: [] for n in names}
    gc.disable()
    try:
        for r in range(-warmup, rounds):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                argv, env, cwd = cases[n]
                for _ in range(repeat.get(n, 1)):
                    wall, code = spawn_timed(argv, env, cwd)
                    if code != 0:
                        die(f"{n}: exit {code} during timing ({' '.join(argv)})")
                    if r >= 0:
                        res[n].append(wall)
    finally:
        gc.enable()
    return res


def ratio_stats(a, b):
    """Median of a / median of b, and the per-round ratios a[i] / b[i] (same round, adjacent in time):
    their median and interquartile range say how noisy the ratio was."""
    per = [x / y for x, y in zip(a, b)]
    return median(a) / median(b), median(per), quantile(per, 0.25), quantile(per, 0.75)
