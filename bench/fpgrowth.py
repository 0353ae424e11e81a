"""Benchmark: our distributed itemset mining + rules vs Spark MLlib FPGrowth, in the same run.

Run: .venv/bin/python bench/fpgrowth.py  (or `make bench-baskets`); writes bench/RESULTS-fpgrowth.md.
Needs silver.interactions from `make demo` (it runs load-sample + ingest itself when missing).
Both sides get the same cached baskets (segment `all`, baskets over max_basket_items removed) and
are timed to fully materialised itemsets and rules. MLlib runs in a child process per case and is
stopped after --mllib-timeout seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, load_config
from recsys_spark.distributed import baskets as mining
from recsys_spark.io.session import get_spark
from recsys_spark.io.tables import table_name
from recsys_spark.pipeline import run_steps
from recsys_spark.progress import setup_logging

ROOT = Path(__file__).resolve().parents[1]
GROCERIES = ROOT / "tests" / "data" / "groceries" / "groceries.csv"
MIN_CONFIDENCE = 0.05


@dataclass
class Outcome:
    seconds: float | None
    itemsets: int | None
    rules: int | None
    error: str | None = None
    result: set | None = None


def groceries_baskets(spark: SparkSession) -> DataFrame:
    lines = spark.read.text(str(GROCERIES))
    return lines.select(
        F.lit(mining.GLOBAL_SEGMENT).alias("segment"),
        F.monotonically_increasing_id().cast("string").alias("order_id"),
        F.array_sort(F.array_distinct(F.transform(F.split("value", ","), F.trim))).alias("items"),
    ).withColumn("n_items", F.size("items"))


def retail_baskets(spark: SparkSession, config: Config) -> DataFrame:
    name = table_name(config, "interactions")
    if not spark.catalog.tableExists(str(name)):
        run_steps(config, ["load-sample", "ingest"], spark)
    baskets = mining.build_baskets(spark.table(str(name)), per_segment=False, include_global=True)
    return baskets.where(F.col("n_items") <= config.baskets.max_basket_items)


def run_ours(spark: SparkSession, baskets: DataFrame, min_support: float) -> Outcome:
    settings = mining.MiningSettings(
        min_support,
        max_len=100,
        max_itemsets=5_000_000,
        chunk_baskets=50_000,
        min_segment_baskets=1,
        min_count_floor=1,
    )
    start = time.perf_counter()
    plan = mining.segment_plan(baskets, settings)
    mined = mining.mine(spark, baskets, plan, settings, mining.RuleSettings(MIN_CONFIDENCE, 0.0))
    rows = mined.itemsets.collect()
    n_rules = mined.rules.count()
    seconds = time.perf_counter() - start
    return Outcome(seconds, len(rows), n_rules, result={(tuple(sorted(r["items"])), r.freq) for r in rows})


def run_mllib(data: str, min_support: float, timeout: float) -> Outcome:
    """MLlib in a child process with its own JVM: a StackOverflowError there can take the JVM down."""
    cmd = [sys.executable, __file__, "--mllib-case", data, str(min_support)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(timeout, None, None, f"did not finish in {timeout:.0f} s")
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode == 0 and last.startswith("{"):
        found = json.loads(last)
        result = {(tuple(items), freq) for items, freq in found["itemsets"]}
        return Outcome(found["seconds"], len(result), found["rules"], result=result)
    reported = json.loads(last) if last.startswith("{") else {}
    output = done.stdout + done.stderr
    error = "java.lang.StackOverflowError" if "StackOverflowError" in output else f"exit {done.returncode}"
    return Outcome(reported.get("seconds", 0.0), None, None, error)


def mllib_case(data: str, min_support: float) -> None:
    """Child process: warm up, then time MLlib FPGrowth + associationRules; print one JSON line."""
    config = load_config("local")
    spark = get_spark(config)
    baskets = (groceries_baskets(spark) if data == "Groceries" else retail_baskets(spark, config)).persist()
    baskets.count()
    FPGrowth(itemsCol="items", minSupport=0.1).fit(groceries_baskets(spark)).freqItemsets.count()  # warm-up
    start = time.perf_counter()
    try:
        model = FPGrowth(itemsCol="items", minSupport=min_support, minConfidence=MIN_CONFIDENCE).fit(baskets)
        rows = model.freqItemsets.collect()
        n_rules = model.associationRules.count()
    except Exception:
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
        raise
    itemsets = [[sorted(r["items"]), r.freq] for r in rows]
    print(json.dumps({"seconds": time.perf_counter() - start, "itemsets": itemsets, "rules": n_rules}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mllib-timeout", type=float, default=300.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-fpgrowth.md"))
    parser.add_argument("--mllib-case", nargs=2, metavar=("DATA", "SUPPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_logging()
    if args.mllib_case:
        return mllib_case(args.mllib_case[0], float(args.mllib_case[1]))
    config = load_config("local")
    spark = get_spark(config)
    cases: list[tuple[str, Callable[[], DataFrame], list[float]]] = [
        ("Groceries", lambda: groceries_baskets(spark), [0.01]),
        ("Online Retail invoices", lambda: retail_baskets(spark, config), [0.01, 0.005, 0.002]),
    ]
    rows = []
    for name, make, supports in cases:
        baskets = make().persist()
        n = baskets.count()
        for support in supports:
            # Ours is quick enough to repeat: report the median of three; MLlib runs once.
            ours = sorted((run_ours(spark, baskets, support) for _ in range(3)), key=lambda o: o.seconds)[1]
            mllib = run_mllib(name, support, args.mllib_timeout)
            rows.append(table_row(name, n, support, ours, mllib))
            print(rows[-1], flush=True)
        baskets.unpersist()
    write_results(Path(args.out), rows, spark)


def table_row(name: str, n: int, support: float, ours: Outcome, mllib: Outcome) -> str:
    if mllib.error is None:
        same = "yes" if mllib.result == ours.result else "NO"
        mllib_cells = f"{mllib.seconds:.2f} | {mllib.itemsets:,} | {mllib.rules:,}"
        ratio = f"{mllib.seconds / ours.seconds:.1f}×"
    else:
        same, ratio = "n/a", "MLlib failed"
        mllib_cells = f"failed after {mllib.seconds:.0f} s: {mllib.error} | - | -"
    ours_cells = f"{ours.seconds:.2f} | {ours.itemsets:,} | {ours.rules:,}"
    return f"| {name} | {n:,} | {support} | {ours_cells} | {mllib_cells} | {same} | {ratio} |"


def write_results(path: Path, rows: list[str], spark: SparkSession) -> None:
    context = spark.sparkContext
    lines = [
        "# FP-Growth benchmark: recsys_spark vs Spark MLlib FPGrowth",
        "",
        "Reproduce: `make demo` once (silver.interactions), then `make bench-baskets`.",
        f"Machine: {platform.machine()}, {context.defaultParallelism} cores for Spark (`{context.master}`), "
        f"Spark {spark.version}. Both sides in the same run on the same cached baskets; timed to "
        f"materialised itemsets + rules (min_confidence {MIN_CONFIDENCE}). Ours: median of 3 runs; "
        "MLlib: one run in a child process of its own (a StackOverflowError there can kill its JVM), "
        "after a warm-up fit. "
        "Seconds on these shared machines are noisy: read the ratios.",
        "",
        "| data | baskets | min_support | ours (s) | itemsets | rules | MLlib (s) | MLlib itemsets | "
        "MLlib rules | same itemsets & counts | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
