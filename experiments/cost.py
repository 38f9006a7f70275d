#!/usr/bin/env python3
"""Batch TunkRank from scratch on one R-MAT graph (the COST
goal): the single-threaded reference, timely on 1 and 2 workers, and, with
a peers interpreter, PySpark local[2] on the same edge file; wall-clock
seconds of each whole run (read the text file, build, iterate, write).

  cost.py EXOFLOW WORKDIR OUT.csv [--scale 20] [--peers-python PY] [--repeats 3]
Writes: system,edges_file,seconds,x_faster_than_pyspark,x_vs_reference
"""
import csv
import os
import statistics
import subprocess
import sys
import time

from drivers import arguments, write_rows


def timed(cmd, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr.decode(errors='replace')}")
    return statistics.median(times)


def main():
    ap = arguments(__doc__)
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--peers-python")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    edges = os.path.join(a.work, f"cost-rmat{a.scale}.txt")
    if not os.path.exists(edges):
        subprocess.run([a.exoflow, "gen", "--scale", str(a.scale), "--out", edges], check=True)
    ours = os.path.join(a.work, f"cost-rmat{a.scale}.csv")
    rows = []
    for name, extra in [("exoflow-reference", ["--reference"]),
                        ("exoflow-timely-1w", ["--workers", "1"]),
                        ("exoflow-timely-2w", ["--workers", "2"])]:
        s = timed([a.exoflow, "batch", "--edges", edges, "--out", ours] + extra, a.repeats)
        rows.append({"system": name, "seconds": s})
        print(f"cost: {name}: {s:.2f} s (median of {a.repeats})", flush=True)
    if a.peers_python:
        spark_csv = os.path.join(a.work, "cost_spark.csv")
        log = os.path.join(a.work, "cost_spark.log")
        with open(log, "w") as lf:
            p = subprocess.run([a.peers_python, os.path.join(here, "peers", "spark_tunkrank.py"),
                                edges, ours, spark_csv],
                               stdout=subprocess.PIPE, stderr=lf, text=True,
                               env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1"))
        print(p.stdout.strip(), flush=True)
        if p.returncode == 0:
            with open(spark_csv) as f:
                r = next(csv.DictReader(f))
            rows.append({"system": "pyspark-local[2]", "seconds": float(r["seconds"])})
        else:
            print(f"cost: PySpark did not run or disagreed (see {log}): not measured", flush=True)
    spark = next((r["seconds"] for r in rows if r["system"].startswith("pyspark")), None)
    ref = rows[0]["seconds"]
    write_rows(a.out, [{
        "system": r["system"],
        "edges_file": os.path.basename(edges),
        "seconds": f"{r['seconds']:.2f}",
        "x_faster_than_pyspark": f"{spark / r['seconds']:.1f}" if spark else "not measured",
        "x_vs_reference": f"{ref / r['seconds']:.2f}",
    } for r in rows])


if __name__ == "__main__":
    main()
