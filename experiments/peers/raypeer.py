"""What the Ray Workflows peers share: one local Ray of 2 CPUs with its
workflow storage in a fresh directory, and the CSV each writes at the end."""
import csv
import sys
import tempfile

import ray


def start():
    """Starts Ray; returns the command's OUT.csv and REPEATS (default 5)."""
    out = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    storage = tempfile.mkdtemp(prefix="ray-workflow-")
    ray.init(num_cpus=2, storage=storage, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, object_store_memory=1 << 30)
    return out, repeats


def finish(out, header, rows):
    ray.shutdown()
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
