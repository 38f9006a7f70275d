"""Fig 8a peer: Ray Workflows (ray 2.47.1) on the same work as the engine's
fig8a bench: a producer task returns an object of SIZE bytes and a consumer
task takes it; the latency is from the producer's end to the consumer's
start, with checkpointing on (the paper's default, our Sync analog) and
off (our Skip analog). Median of REPEATS runs per point.

usage: ray_fig8a.py OUT.csv [REPEATS]
Writes: series,bytes,median_ms
"""
import statistics
import time

import ray
from ray import workflow

import raypeer

SIZES = [1, 128 << 10, 1 << 20, 32 << 20, 128 << 20]


@ray.remote
def produce(size):
    data = b"\x5a" * size
    return data, time.time()


@ray.remote
def consume(inp):
    start = time.time()
    return start - inp[1]


def main():
    out, repeats = raypeer.start()
    rows = []
    n = 0
    for mode, checkpoint in [("Sync", True), ("Skip", False)]:
        opts = workflow.options(checkpoint=checkpoint)
        for size in SIZES:
            lat = []
            for _ in range(repeats + 1):  # the first run warms up
                n += 1
                dag = consume.options(**opts).bind(produce.options(**opts).bind(size))
                lat.append(workflow.run(dag, workflow_id=f"hop-{n}"))
            med = statistics.median(lat[1:]) * 1000
            rows.append([f"ray-workflows/{mode}", size, f"{med:.4f}"])
            print(f"ray-workflows fig8a {mode} {size} B: {med:.2f} ms", flush=True)
    raypeer.finish(out, ["series", "bytes", "median_ms"], rows)


if __name__ == "__main__":
    main()
