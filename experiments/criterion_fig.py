"""Fig 8a, 8b and 8c from the criterion benches of `cargo bench --bench engine`:
reads target/criterion/<fig>/*/new/{benchmark,estimates}.json (medians),
writes the CSV and renders the PNG.

usage: criterion_fig.py fig8a|fig8b|fig8c CRITERION_DIR OUT.csv OUT.png [PEER.csv]

PEER.csv: Ray Workflows measured in the same run by peers/ray_<fig>.py; the
CSV then carries the ratios (x_ray_workflows: how many times faster exoflow
is, like for like: Sync against checkpointing on, Skip against off).
"""
import csv
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIZES = {"1B": 1, "128KiB": 128 << 10, "1MiB": 1 << 20, "32MiB": 32 << 20, "128MiB": 128 << 20}


def load(crit, fig):
    out = []
    for bench in glob.glob(os.path.join(crit, fig, "**", "new", "benchmark.json"), recursive=True):
        with open(bench) as f:
            meta = json.load(f)
        with open(os.path.join(os.path.dirname(bench), "estimates.json")) as f:
            est = json.load(f)
        out.append((meta, est["median"]["point_estimate"] / 1e9))  # seconds per iteration
    return out


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def fig8c(rows, out_csv, out_png, peer_csv=None):
    table = []
    for meta, secs in rows:
        workload, mode = meta["function_id"].split("/")
        n = meta["throughput"]["Elements"]
        table.append((workload, mode, n, secs, n / secs))
    # Ray Workflows, measured in the same run (checkpoint on: Sync, off: Skip).
    ray = {}
    if peer_csv:
        with open(peer_csv) as f:
            for r in csv.DictReader(f):
                ray[(r["workload"], r["mode"])] = r
    for (wl, mode), r in ray.items():
        table.append((wl, "ray-" + mode, int(r["tasks_per_iteration"]), float(r["median_s"]), float(r["tasks_per_s"])))
    table.sort()

    def vs_ray(r):
        peer = ray.get((r[0], r[1]))
        return f"{r[4] / float(peer['tasks_per_s']):.1f}" if peer else ""

    write_csv(out_csv, ["workload", "mode", "tasks_per_iteration", "median_s", "tasks_per_s", "x_ray_workflows"],
              [[r[0], r[1], r[2], f"{r[3]:.6f}", f"{r[4]:.1f}", vs_ray(r)] for r in table])
    workloads = sorted({r[0] for r in table})
    modes = ["Skip", "Async", "Sync"] + (["ray-Skip", "ray-Sync"] if ray else [])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        ys = [next((r[4] for r in table if r[0] == wl and r[1] == mode), 0) for wl in workloads]
        xs = [k + i * width for k in range(len(workloads))]
        bars = ax.bar(xs, ys, width, label=mode)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([k + width * (len(modes) - 1) / 2 for k in range(len(workloads))])
    ax.set_xticklabels(["1-task DAGs (registered, fresh ids)" if "single" in wl else "1 + 100 parallel tasks" for wl in workloads])
    ax.set_yscale("log")
    ax.set_ylabel("tasks per second")
    peer = "Ray Workflows 2.47.1 (ray-): checkpoint on = Sync, off = Skip" if ray else "Ray Workflows: not measured"
    ax.set_title(f"Fig 8c: engine throughput, local directory store\n({peer})", fontsize=9)
    ax.legend(title="checkpoint")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def fig8b(rows, out_csv, out_png, peer_csv=None):
    table = sorted((meta["function_id"], meta["throughput"]["Elements"], secs * 1000) for meta, secs in rows)
    ray = []
    if peer_csv:
        with open(peer_csv) as f:
            ray = [(r["handoff"], int(r["edges"]), float(r["median_ms"])) for r in csv.DictReader(f)]

    def vs_ray(name, ms):
        peer = None
        if name.startswith("in-memory"):
            peer = next((r for r in ray if "in-memory" in r[0]), None)
        elif name.startswith("through-store"):
            peer = next((r for r in ray if "through-storage" in r[0]), None)
        return f"{peer[2] / ms:.1f}" if peer else ""

    write_csv(out_csv, ["handoff", "edges", "median_ms", "x_ray_workflows"],
              [[r[0], r[1], f"{r[2]:.3f}", vs_ray(r[0], r[2])] for r in table] +
              [[r[0], r[1], f"{r[2]:.3f}", ""] for r in ray])
    allrows = table + ray
    fig, ax = plt.subplots(figsize=(7, 3.5 + 0.4 * len(ray)))
    colors = ["0.6", "tab:blue", "tab:orange"][: len(table)] + ["tab:purple", "tab:red"][: len(ray)]
    bars = ax.barh([r[0] for r in allrows], [r[2] for r in allrows], color=colors)
    ax.bar_label(bars, fmt="%.1f ms", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"time to hand {table[0][1]:,} edges to a batch stage (ms)")
    peer = "Ray Workflows 2.47.1 measured in this run" if ray else "Ray Workflows: not measured"
    ax.set_title(f"Fig 8b: sharing a graph snapshot between stages\n({peer})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def fig8a(rows, out_csv, out_png, peer_csv=None):
    table = []
    for meta, secs in rows:
        series = meta["function_id"]
        size = SIZES.get(meta["value_str"], 0)
        table.append((series, size, secs * 1000))
    ray = {}
    if peer_csv:
        with open(peer_csv) as f:
            for r in csv.DictReader(f):
                ray[(r["series"], int(r["bytes"]))] = float(r["median_ms"])

    def vs_ray(series, size, ms):
        mode = series.rsplit("/", 1)[-1]
        peer = ray.get((f"ray-workflows/{mode}", size))
        return f"{peer / ms:.1f}" if peer and series.startswith("local/") else ""

    table += [(series, size, ms) for (series, size), ms in ray.items()]
    table.sort()
    write_csv(out_csv, ["series", "bytes", "median_ms", "x_ray_workflows"],
              [[r[0], r[1], f"{r[2]:.4f}", vs_ray(*r)] for r in table])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for series in sorted({r[0] for r in table}):
        pts = [(r[1], r[2]) for r in table if r[0] == series]
        style = "k--" if series.startswith("raw") else (":s" if series.startswith("ray") else "-o")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=series, markersize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("object size (bytes)")
    ax.set_ylabel("producer end -> consumer start (ms)")
    peer = "Ray Workflows 2.47.1 measured in this run" if ray else "Ray Workflows: not measured"
    ax.set_title(f"Fig 8a: data movement latency ({peer})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def main():
    which, crit, out_csv, out_png = sys.argv[1:5]
    rows = load(crit, which)
    if not rows:
        sys.exit(f"no criterion results for {which} under {crit}: run `cargo bench --bench engine -- {which}`")
    peer = sys.argv[5] if len(sys.argv) > 5 else None
    {"fig8a": fig8a, "fig8b": fig8b, "fig8c": fig8c}[which](rows, out_csv, out_png, peer)
    print(f"{which}: {len(rows)} measurements")


if __name__ == "__main__":
    main()
