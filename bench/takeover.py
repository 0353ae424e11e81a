"""Benchmark: the segment size at which Spark MLlib's ALS should take over from `implicit`.

Run: .venv/bin/python bench/takeover.py  (or `make bench-takeover`); writes bench/RESULTS-takeover.md.
Per size, synthetic purchases (recsys_spark.synthetic, one segment, the density of the 3M-line
set) go to silver.interactions, and `recsys train` fits ALS twice in the same Spark session:
once through the per-segment pandas UDF that calls `implicit` (models.mllib_min_pairs above the
segment), once through Spark MLlib (models.mllib_min_pairs 0). Recorded: each fit stage's
seconds, and the peak resident memory of Spark's Python workers during the implicit fit (the
one task holds the segment's rows, its matrix and both factor matrices), sampled from /proc.

A segment is trained by one task, so the implicit path stops where that task's memory does;
MLlib spreads a segment over every executor. The takeover is the segment size whose task
memory reaches what a Python worker may use, from the bytes per pair measured here.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from pathlib import Path

from als import bench_config, prepare_synthetic
from pyspark.sql import SparkSession
from scale import children_of, resident_bytes

from recsys_spark.config import Config
from recsys_spark.io.session import get_spark
from recsys_spark.progress import setup_logging
from recsys_spark.steps.train import run_train

ROOT = Path(__file__).resolve().parents[1]
FIT_STAGE = "fit models per segment"


def python_workers_peak(jvm_parent: int, stop: threading.Event, peak: list[int]) -> None:
    """The largest resident memory (bytes) of the Python processes under the JVM (Spark's
    Python workers), sampled until ``stop``."""
    while not stop.wait(0.2):
        workers = [c for c in children_of(jvm_parent) if _is_python(c)]
        peak[0] = max(peak[0], sum(resident_bytes(w) for w in workers))


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


def workers_bytes(jvm_parent: int) -> int:
    return sum(resident_bytes(c) for c in children_of(jvm_parent) if _is_python(c))


def fit_seconds(spark: SparkSession, config: Config, jvm_parent: int, idle: int) -> tuple[float, int]:
    """(the fit stage's seconds, the Python workers' peak bytes above ``idle``: their size once
    started and warmed up by a tiny fit; Python keeps what a task freed, so each size is
    measured against that and not against the previous size's leftovers)."""
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=python_workers_peak, args=(jvm_parent, stop, peak), daemon=True)
    sampler.start()
    trained = run_train(spark, config, "takeover")
    stop.set()
    sampler.join()
    return trained.seconds[FIT_STAGE], max(0, peak[0] - idle)


OURS = bench_config("takeover", models={"enabled": ["als"], "mllib_min_pairs": 10**12})
MLLIB = bench_config("takeover", models={"enabled": ["als"], "mllib_min_pairs": 0})


def synthetic_segment(spark: SparkSession, lines: int) -> int:
    """One segment of ``lines`` synthetic lines in silver.interactions; returns its pairs."""
    prepare_synthetic(spark, OURS, max(lines // 30, 100), max(lines // 300, 1_000), lines)
    return spark.table("takeover_silver.interactions").select("customer_id", "item_id").distinct().count()


def run_size(spark: SparkSession, lines: int, idle: int) -> dict[str, float]:
    pairs = synthetic_segment(spark, lines)
    implicit_s, task_bytes = fit_seconds(spark, OURS, os.getpid(), idle)
    mllib_s, _ = fit_seconds(spark, MLLIB, os.getpid(), idle)
    return {
        "lines": lines,
        "pairs": pairs,
        "implicit_s": implicit_s,
        "mllib_s": mllib_s,
        "task_bytes": task_bytes,
    }


def write_results(out: Path, rows: list[dict[str, float]], worker_gib: float) -> None:
    per_pair = rows[-1]["task_bytes"] / rows[-1]["pairs"]  # the largest: fixed costs weigh least
    takeover = worker_gib * 2**30 / per_pair
    lines = [
        "# When MLlib ALS takes over: implicit in one task against MLlib across the cluster",
        "",
        "Reproduce: `make bench-takeover` (`.venv/bin/python bench/takeover.py`).",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, local Spark; ALS 64 factors, 15 iterations; "
        f"{time.strftime('%Y-%m-%d')}. The fit stage: the segment's rows to the task (or to MLlib), "
        "the fit, the factors back as rows.",
        "",
        "| lines | user×item pairs | implicit fit stage (s) | MLlib fit stage (s) | MLlib / implicit | "
        "implicit task peak (MiB) | bytes per pair |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lines']:,} | {r['pairs']:,} | {r['implicit_s']:.1f} | {r['mllib_s']:.1f} | "
            f"{r['mllib_s'] / r['implicit_s']:.1f}× | {r['task_bytes'] / 2**20:,.0f} | "
            f"{r['task_bytes'] / r['pairs']:,.0f} |"
        )
    lines += [
        "",
        f"At the largest size's bytes per pair ({per_pair:,.0f}), a Python worker with "
        f"{worker_gib:g} GiB holds a segment of about {takeover / 1e6:,.0f}M pairs: the size at which "
        "one task stops fitting and MLlib, which spreads the segment over the executors, must take over "
        "(`models.mllib_min_pairs`). Below it the implicit task is faster at every size measured.",
    ]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=float, nargs="+", default=[1e6, 3e6])
    parser.add_argument("--worker-gib", type=float, default=4.0, help="memory a Python worker may use")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-takeover.md"))
    args = parser.parse_args()
    setup_logging()
    spark = get_spark(bench_config("takeover"))
    synthetic_segment(spark, 30_000)  # warm-up: the Python workers started, their imports done
    run_train(spark, OURS, "takeover")
    idle = workers_bytes(os.getpid())
    rows = [run_size(spark, int(lines), idle) for lines in sorted(args.lines)]
    write_results(Path(args.out), rows, args.worker_gib)
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
