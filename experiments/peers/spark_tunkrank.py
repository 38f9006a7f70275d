"""Batch peer: TunkRank from scratch on PySpark `local[2]` (DataFrames, so
the rounds run in the JVM), the same exact fixed-point arithmetic as
exoflow (values in units of 1e-9, integer division, iterated from zero
until no value changes), so its table is checked against exoflow's row by
row, not just timed.

usage: spark_tunkrank.py EDGES.txt OURS.csv OUT.csv
  EDGES.txt  `a b` lines (b follows a), as `exoflow gen` writes them
  OURS.csv   `exoflow batch --edges EDGES.txt --out OURS.csv` (node,influence)
Writes OUT.csv: system,edges,rounds,seconds,equal_to_exoflow
"""
import csv
import os
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

ONE = 1_000_000_000


def main():
    edges_path, ours_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    spark = (SparkSession.builder.master("local[2]").appName("tunkrank")
             .config("spark.driver.memory", "8g")
             .config("spark.sql.shuffle.partitions", "8")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(os.path.join(os.path.dirname(os.path.abspath(out)), "spark-ckpt"))
    t0 = time.perf_counter()
    lines = spark.read.text(edges_path)
    parts = F.split(F.trim(F.col("value")), r"\s+")
    edges = (lines.where(~F.col("value").startswith("#") & (F.length(F.trim("value")) > 0))
             .select(parts.getItem(0).cast("long").alias("a"), parts.getItem(1).cast("long").alias("b"))
             .where(F.col("a") != F.col("b"))
             .distinct())
    following = edges.groupBy("b").agg(F.count("*").alias("f"))
    eb = edges.join(following, "b").cache()
    n_edges = eb.count()
    x = spark.createDataFrame([], "node long, x long")
    rounds = 0
    while True:
        rounds += 1
        terms = (eb.join(x, eb.b == x.node, "left")
                 .select("a", F.expr(f"({ONE} + (37 * coalesce(x, 0)) div 100000) div f").alias("t")))
        nx = terms.groupBy("a").agg(F.sum("t").alias("x")).withColumnRenamed("a", "node")
        nx = nx.localCheckpoint()  # cut the lineage: each round is one job
        changed = (nx.alias("n").join(x.alias("o"), "node", "full")
                   .where(~F.col("n.x").eqNullSafe(F.col("o.x"))).count())
        x = nx
        if changed == 0:
            break
    table = {r["node"]: r["x"] for r in x.collect()}
    seconds = time.perf_counter() - t0
    spark.stop()
    ours = {}
    with open(ours_path) as f:
        for r in csv.DictReader(f):
            whole, frac = r["influence"].split(".")
            ours[int(r["node"])] = int(whole) * ONE + int(frac)
    equal = ours == table
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "edges", "rounds", "seconds", "equal_to_exoflow"])
        w.writerow(["pyspark-local[2]", n_edges, rounds, f"{seconds:.2f}", equal])
    print(f"pyspark local[2]: {n_edges} edges, {rounds} rounds, {seconds:.1f} s, "
          f"table {'equal to' if equal else 'DIFFERENT from'} exoflow's", flush=True)
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()
