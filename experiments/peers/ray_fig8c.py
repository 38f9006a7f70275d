"""Fig 8c peer: Ray Workflows (ray 2.47.1) on the same work as the engine's
fig8c bench: runs of a single-nop-task workflow, and of a workflow of 100
parallel nops feeding one, with checkpointing on (the paper's default, our
Sync analog) and off (our Skip analog), each run with a fresh workflow id,
one after another as `workflow.run` returns, as the paper's artifact does.

usage: ray_fig8c.py OUT.csv [SINGLE_RUNS FAN_RUNS REPEATS]
Writes: workload,mode,tasks_per_iteration,median_s,tasks_per_s
"""
import statistics
import sys
import time

import ray
from ray import workflow

import raypeer


@ray.remote
def nop():
    return None


@ray.remote
def sink(*_parts):
    return None


def timed(fn, repeats):
    times = []
    for r in range(repeats):
        t = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    out = sys.argv[1]
    single_runs, fan_runs, repeats = (int(x) for x in (sys.argv[2:5] or ["200", "4", "3"]))
    raypeer.start()
    rows = []
    for mode, checkpoint in [("Sync", True), ("Skip", False)]:
        opts = workflow.options(checkpoint=checkpoint)

        def single(r):
            for i in range(single_runs):
                workflow.run(nop.options(**opts).bind(), workflow_id=f"single-{mode}-{r}-{i}")

        def fan(r):
            for i in range(fan_runs):
                parts = [nop.options(**opts).bind() for _ in range(100)]
                workflow.run(sink.options(**opts).bind(*parts), workflow_id=f"fan-{mode}-{r}-{i}")

        med = timed(single, repeats)
        rows.append(["single-nop-runs", mode, single_runs, f"{med:.6f}", f"{single_runs / med:.1f}"])
        print(f"ray-workflows single-nop-runs/{mode}: {single_runs / med:.1f} runs/s", flush=True)
        med = timed(fan, repeats)
        tasks = fan_runs * 101
        rows.append(["fan100-tasks", mode, tasks, f"{med:.6f}", f"{tasks / med:.1f}"])
        print(f"ray-workflows fan100-tasks/{mode}: {tasks / med:.1f} tasks/s", flush=True)
    raypeer.finish(out, ["workload", "mode", "tasks_per_iteration", "median_s", "tasks_per_s"], sorted(rows))


if __name__ == "__main__":
    main()
