#!/usr/bin/env python3
"""Recovery time of the streaming job: SIGKILL a run once
epoch K is committed, then time `exoflow resume` until the next epoch is
committed (its output object appears).

  recovery.py EXOFLOW WORKDIR OUT.csv [--scale 20] [--epoch-edges 45000]
              [--snapshot-every 20] [--kills 100,119] [--modes async,sync]

A kill at epoch 100 lands just after a snapshot (little to replay); at 119,
19 epochs after it (the most a snapshot every 20 leaves to replay).
"""
import os
import shutil
import signal
import subprocess
import sys
import time

from drivers import arguments, write_rows


def committed(store, wid):
    d = os.path.join(store, "outputs", wid, "online")
    try:
        names = [n for n in os.listdir(d) if n.isdigit()]
    except FileNotFoundError:
        return 0
    return max((int(n) for n in names), default=0)


def snapshot_at_or_below(store, wid, e):
    d = os.path.join(store, "streams", wid, "snapshots")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return 0
    done = [int(n) for n in names
            if n.isdigit() and int(n) <= e and os.path.exists(os.path.join(d, n, "MANIFEST"))]
    return max(done, default=0)


def wait_for(path, proc, timeout):
    """Polls every 5 ms for `path`; the elapsed seconds, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if os.path.exists(path):
            return time.monotonic() - t0
        if proc.poll() is not None and not os.path.exists(path):
            return None
        time.sleep(0.005)
    return None


def main():
    ap = arguments(__doc__)
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--epoch-edges", type=int, default=45000)
    ap.add_argument("--snapshot-every", type=int, default=20)
    ap.add_argument("--kills", default="100,119")
    ap.add_argument("--modes", default="async,sync")
    a = ap.parse_args()
    kills = [int(k) for k in a.kills.split(",")]
    env = dict(os.environ, EXOFLOW_LOG="error", EXOFLOW_QUIET="1")
    rows = []
    for mode in a.modes.split(","):
        for k in kills:
            store = os.path.join(a.work, f"recovery-{mode}-{k}")
            shutil.rmtree(store, ignore_errors=True)
            wid = "rec"
            src = f"gen:rmat?scale={a.scale}&edge-factor=16&seed=1"
            run = subprocess.Popen(
                [a.exoflow, "run", "--source", src, "--epoch-edges", str(a.epoch_edges),
                 "--epochs", str(k + 2 * a.snapshot_every), "--checkpoint", mode,
                 "--snapshot-every", str(a.snapshot_every), "--store", store,
                 "--workflow-id", wid],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = os.path.join(store, "outputs", wid, "online", f"{k:010}")
            if wait_for(target, run, 3600) is None:
                run.kill()
                sys.exit(f"the run ended before epoch {k} was committed")
            run.send_signal(signal.SIGKILL)
            run.wait()
            c = committed(store, wid)
            snap = snapshot_at_or_below(store, wid, c)
            nxt = os.path.join(store, "outputs", wid, "online", f"{c + 1:010}")
            res = subprocess.Popen(
                [a.exoflow, "resume", "--store", store, "--workflow-id", wid],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            secs = wait_for(nxt, res, 600)
            res.send_signal(signal.SIGKILL)
            _, err = res.communicate()
            if secs is None:
                sys.exit(f"resume did not commit epoch {c + 1}:\n{err.decode(errors='replace')}")
            row = {
                "checkpoint": mode,
                "kill_at_epoch": k,
                "committed": c,
                "snapshot": snap,
                "replayed_epochs": c - snap,
                "graph_edges_approx": c * a.epoch_edges,
                "recovery_ms": round(secs * 1000),
                "goal_ms": 5000,
            }
            rows.append(row)
            print(f"recovery {mode}: killed after epoch {c}, snapshot {snap}, "
                  f"{c - snap} epochs replayed: {row['recovery_ms']} ms to commit epoch {c + 1}",
                  flush=True)
            shutil.rmtree(store, ignore_errors=True)
    write_rows(a.out, rows)


if __name__ == "__main__":
    main()
