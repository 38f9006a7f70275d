"""Fig 7a and 7b: the stateful serverless application, exoflow against the
Beldi baseline on the same machine, the same database (SQLite) and the
same function service, in one run.

usage: fig7.py a|b HOTEL_BINARY WORK_DIR OUT.csv OUT.png [--quick]

7a: the paper's request mix (60% search, 39% recommend, 0.5% user, 0.5%
reserve) at rising constant rates, for exoflow, exoflow with 10% of the
function calls failing (before any work, as the paper's), and Beldi; each
series stops at the first rate it cannot sustain (fewer than 90% of the
offered requests answered a second, or a p99 over 5 s).
7b: reservations only, 5 a second, for Beldi and exoflow's four
reservation variants.

Each series gets a freshly seeded database, a function service of two
processes and one gateway; `exoflow-hotel load` sends the requests
(open loop: latency counts from the intended send time) and
`exoflow-hotel check` checks the database against every answer the
clients got. db_ops_per_request: the database operations the functions
reported (Beldi's logs included), over the requests answered.
"""
import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"fig7: {what} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"fig7: {what} did not listen on {port} within 30 s")


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())


class Series:
    """A seeded database, a function service and a gateway."""

    def __init__(self, binary, work, name, mode, variant="parallel", failure_rate=0.0):
        self.binary, self.name, self.mode = binary, name, mode
        self.dir = os.path.join(work, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.db = "sqlite:" + os.path.join(self.dir, "hotel.db")
        subprocess.run([binary, "seed", "--db", self.db], check=True, stdout=subprocess.DEVNULL)
        log = open(os.path.join(self.dir, "processes.log"), "w")
        fn_port, self.gw_port = free_port(), free_port()
        self.functions = subprocess.Popen(
            [binary, "functions", "--db", self.db, "--listen", f"127.0.0.1:{fn_port}",
             "--processes", "2", "--failure-rate", str(failure_rate), "--failure-point", "before"],
            stdout=log, stderr=log)
        wait_port(fn_port, "the function service", self.functions)
        self.gateway = subprocess.Popen(
            [binary, "gateway", "--mode", mode, "--functions", f"http://127.0.0.1:{fn_port}",
             "--listen", f"127.0.0.1:{self.gw_port}", "--reserve", variant,
             "--store", os.path.join(self.dir, "store"), "--keep-finished", "5"],
            stdout=log, stderr=log)
        wait_port(self.gw_port, "the gateway", self.gateway)
        self.csvs = []

    def load(self, rate, duration, warmup, mix):
        """Runs one load; its summary row."""
        out = os.path.join(self.dir, f"requests-{rate:g}.csv")
        before = stats(self.gw_port)
        subprocess.run(
            [self.binary, "load", "--gateway", f"http://127.0.0.1:{self.gw_port}",
             "--rate", str(rate), "--duration", str(duration), "--warmup", str(warmup),
             "--mix", mix, "--run", f"{self.name}-{rate:g}", "--connections", "256",
             "--out", out],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = stats(self.gw_port)
        self.csvs.append(out)
        with open(out, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["warmup"] == "0"]
        lat = sorted(int(r["done_us"]) - int(r["intended_us"]) for r in rows)
        answered = [r for r in rows if r["status"] == "200"]
        span = (max(int(r["done_us"]) for r in rows) - min(int(r["intended_us"]) for r in rows)) / 1e6

        def pct(p):
            i = min(len(lat), max(1, math.ceil(p * len(lat)))) - 1
            return lat[i] / 1000.0

        ops = after["db_ops"] - before["db_ops"]
        n = max(1, after["answered"] - before["answered"])
        return {
            "offered_rps": rate,
            "achieved_rps": round(len(answered) / span, 1) if span > 0 else 0.0,
            "p50_ms": round(pct(0.50), 2),
            "p99_ms": round(pct(0.99), 2),
            "db_ops_per_request": round(ops / n, 2),
            "answered": len(answered),
            "measured": len(rows),
        }

    def check(self):
        """Violations found by `exoflow-hotel check` against every answer."""
        args = [self.binary, "check", "--mode", self.mode, "--db", self.db, "--wait", "60"]
        for c in self.csvs:
            args += ["--requests", c]
        out = subprocess.run(args, capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[0] if out.stdout else out.stderr.strip(), flush=True)
        for line in out.stdout.splitlines()[1:6]:
            print("  " + line, flush=True)
        for word in out.stdout.split(","):
            if word.strip().endswith("violations"):
                return int(word.split()[0])
        return -1

    def stop(self):
        for p in (self.gateway, self.functions):
            p.send_signal(signal.SIGTERM)
        for p in (self.gateway, self.functions):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


MIX_A = "search=60,recommend=39,user=0.5,reserve=0.5"


def fig7a(binary, work, quick):
    rates = [100, 150, 200, 300, 500, 700, 1000, 1250, 1500, 2000, 3000]
    duration, warmup = 20, 5
    if quick:
        rates, duration, warmup = [100, 400], 4, 1
    systems = [
        ("exoflow", "exoflow", 0.0),
        ("exoflow-failures-10pct", "exoflow", 0.1),
        ("beldi", "beldi", 0.0),
    ]
    out = []
    for name, mode, failures in systems:
        s = Series(binary, work, "fig7a-" + name, mode, "parallel", failures)
        rows = []
        try:
            for rate in rates:
                r = s.load(rate, duration, warmup, MIX_A)
                print(f"fig7a {name}: {rate} offered, {r['achieved_rps']} answered/s, "
                      f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                      f"{r['db_ops_per_request']} db ops/request", flush=True)
                rows.append(r)
                if r["achieved_rps"] < 0.9 * rate or r["p99_ms"] > 5000:
                    break
            violations = s.check()
        finally:
            s.stop()
        for r in rows:
            out.append({"system": name, **r, "violations": violations})
    return out


def fig7b(binary, work, quick):
    rate, duration, warmup = 5, 60, 5
    if quick:
        duration, warmup = 8, 1
    out = []
    for name, mode, variant in [("beldi", "beldi", "parallel"), ("serial", "exoflow", "serial"),
                                ("parallel", "exoflow", "parallel"), ("async", "exoflow", "async"),
                                ("async-no-overlap", "exoflow", "async-no-overlap")]:
        s = Series(binary, work, "fig7b-" + name, mode, variant)
        try:
            r = s.load(rate, duration, warmup, "reserve=1")
            violations = s.check()
        finally:
            s.stop()
        print(f"fig7b {name}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
              f"{r['db_ops_per_request']} db ops/request", flush=True)
        out.append({"variant": name, "rate": rate, "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                    "db_ops_per_request": r["db_ops_per_request"], "answered": r["answered"],
                    "violations": violations})
    return out


def plot_a(rows, png):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, col, title in [(axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")]:
        for system in dict.fromkeys(r["system"] for r in rows):
            pts = [r for r in rows if r["system"] == system]
            ax.plot([r["offered_rps"] for r in pts], [r[col] for r in pts], marker="o", label=system)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (requests/s)")
        ax.set_title(f"{title} latency")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend()
    fig.suptitle("Fig 7a: hotel reservation mix, SQLite, 2 cores")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def plot_b(rows, png):
    fig, ax = plt.subplots(figsize=(6, 4))
    names = [r["variant"] for r in rows]
    p50 = [r["p50_ms"] for r in rows]
    up = [r["p99_ms"] - r["p50_ms"] for r in rows]
    ax.bar(names, p50, yerr=[[0] * len(rows), up], capsize=6, color="#4c72b0")
    ax.set_ylabel("latency (ms): p50, bar to p99")
    ax.set_title("Fig 7b: reservations at 5/s")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main():
    if len(sys.argv) < 6 or sys.argv[1] not in ("a", "b"):
        sys.exit(__doc__)
    which, binary, work, out_csv, png = sys.argv[1:6]
    quick = "--quick" in sys.argv[6:]
    os.makedirs(work, exist_ok=True)
    rows = fig7a(binary, work, quick) if which == "a" else fig7b(binary, work, quick)
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    (plot_a if which == "a" else plot_b)(rows, png)
    bad = sum(r["violations"] != 0 for r in rows)
    if bad:
        sys.exit(f"fig7: {bad} rows with exactly-once violations (or a failed check)")


if __name__ == "__main__":
    main()
