#!/usr/bin/env python3
"""The highest rate that time-cut epochs sustain: stream an
R-MAT graph at each rate with `--epoch-ms`, and call a rate sustained when
the p99 epoch latency stays under the epoch and the source's lag at the end
is under one epoch of edges.

  maxrate.py EXOFLOW WORKDIR OUT.csv [--scale 22] [--epoch-ms 10000]
             [--rates 500000,1000000,2000000] [--workers 2]
"""
import csv
import glob
import math
import os
import shutil
import subprocess
import sys
import time

from drivers import arguments, write_rows


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


def main():
    ap = arguments(__doc__)
    ap.add_argument("--scale", type=int, default=22)
    ap.add_argument("--epoch-ms", type=int, default=10000)
    ap.add_argument("--rates", default="500000,1000000,2000000")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    env = dict(os.environ, EXOFLOW_LOG="error", EXOFLOW_QUIET="1")
    rows = []
    for rate in [int(r) for r in a.rates.split(",")]:
        store = os.path.join(a.work, f"maxrate-{rate}")
        shutil.rmtree(store, ignore_errors=True)
        src = f"gen:rmat?scale={a.scale}&edge-factor=16&seed=1"
        t0 = time.monotonic()
        p = subprocess.run(
            [a.exoflow, "run", "--source", src, "--rate", str(rate), "--epoch-ms", str(a.epoch_ms),
             "--checkpoint", "async", "--snapshot-every", "0", "--workers", str(a.workers),
             "--store", store, "--workflow-id", "maxrate"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"rate {rate}: exoflow failed:\n{p.stderr.decode(errors='replace')}")
        files = glob.glob(os.path.join(store, "metrics", "maxrate", "*", "epochs.csv"))
        lat, edges, lag = [], 0, []
        for fn in files:
            with open(fn) as f:
                for r in csv.DictReader(f):
                    lat.append(float(r["latency_ms"]))
                    edges += int(r["edges"])
                    if r.get("lag"):
                        lag.append(int(r["lag"]))
        # The last epoch is the source's tail: short, not a full epoch.
        steady = lat[:-1] if len(lat) > 1 else lat
        p50, p99 = pct(steady, 50), pct(steady, 99)
        end_lag = lag[-2] if len(lag) > 1 else (lag[-1] if lag else 0)
        ok = p99 < a.epoch_ms and end_lag < rate * a.epoch_ms / 1000
        row = {
            "rate": rate,
            "epoch_ms": a.epoch_ms,
            "epochs": len(lat),
            "edges": edges,
            "wall_s": round(wall, 1),
            "achieved_edges_per_s": round(edges / wall),
            "p50_ms": round(p50),
            "p99_ms": round(p99),
            "lag_before_tail": end_lag,
            "sustained": ok,
        }
        rows.append(row)
        print(f"maxrate {rate}/s: {len(lat)} epochs, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
              f"lag {end_lag} edges before the tail, {row['achieved_edges_per_s']} edges/s overall: "
              f"{'sustained' if ok else 'NOT sustained'}", flush=True)
        shutil.rmtree(store, ignore_errors=True)
    write_rows(a.out, rows)
    best = max((r["rate"] for r in rows if r["sustained"]), default=0)
    print(f"maxrate: highest sustained rate {best} edges/s (goal 2000000)")


if __name__ == "__main__":
    main()
