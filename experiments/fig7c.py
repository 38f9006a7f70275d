"""Fig 7c: online latency CDF per checkpoint mode, batch latency, and the
online-versus-batch difference, from the metrics and outputs of three runs.

usage: fig7c.py WORK_DIR OUT.csv OUT.png [--base]

--base: epoch 1 of every run is a base graph loaded before the stream; it
is kept in the CSV (kind "base") and left out of the latency CDF.
"""
import csv
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = [("none", "NoCkpt"), ("async", "AsyncCkpt"), ("sync", "SyncCkpt")]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load(work, mode):
    wid = f"fig7c-{mode}"
    base = os.path.join(work, f"fig7c-{mode}")
    epochs, batches = [], []
    # Every generation of the run (a resumed run has several).
    for p in sorted(glob.glob(os.path.join(base, "metrics", wid, "*", "epochs.csv"))):
        epochs += rows(p)
    for p in sorted(glob.glob(os.path.join(base, "metrics", wid, "*", "batches.csv"))):
        batches += rows(p)
    diffs = {}
    for p in sorted(glob.glob(os.path.join(base, "outputs", wid, "batch", "*"))):
        with open(p) as f:
            out = json.load(f)
        diffs[int(out["epoch"])] = (out["mean_diff"], out["max_diff"], out["differing"])
    return epochs, batches, diffs


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def main():
    work, out_csv, out_png = sys.argv[1:4]
    base = "--base" in sys.argv[4:]
    data = {m: load(work, m) for m, _ in MODES}

    def is_base(r):
        return base and int(r["epoch"]) == 1

    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mode", "kind", "epoch", "edges", "latency_ms", "mean_diff", "max_diff", "differing"])
        for mode, _ in MODES:
            epochs, batches, diffs = data[mode]
            for r in epochs:
                kind = "base" if is_base(r) else "online"
                w.writerow([mode, kind, r["epoch"], r["edges"], r["latency_ms"], "", "", ""])
            for r in batches:
                d = diffs.get(int(r["epoch"]), ("", "", ""))
                w.writerow([mode, "batch", r["epoch"], "", r["latency_ms"], d[0], d[1], d[2]])

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    summary = []
    for mode, label in MODES:
        epochs, batches, diffs = data[mode]
        lat = sorted(float(r["latency_ms"]) for r in epochs if not is_base(r))
        if lat:
            ys = [(i + 1) / len(lat) for i in range(len(lat))]
            ax1.step(lat, ys, where="post", label=f"{label} (p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms)")
        blat = [(int(r["epoch"]), float(r["latency_ms"])) for r in batches]
        if blat:
            blat.sort()
            ax2.plot([e for e, _ in blat], [l / 1000 for _, l in blat], marker="o", label=label)
        differing = sum(int(d[2]) for d in diffs.values())
        summary.append(f"{label}: {len(diffs)} batches, {differing} differing nodes")
    ax1.set_xlabel("online latency per epoch (ms)")
    ax1.set_ylabel("CDF")
    ax1.set_title("Online latency")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("batch latency (s)")
    ax2.set_title("Batch recomputation; online vs batch difference")
    ax2.legend(fontsize=8, loc="upper left")
    ax2.text(0.98, 0.02, "\n".join(summary) + "\n(mean and max |batch - online| are exactly 0)",
             transform=ax2.transAxes, fontsize=7, va="bottom", ha="right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
