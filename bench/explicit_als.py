"""Benchmark: explicit ALS in one task (kernels/als.py, numpy) against Spark MLlib's, per segment size.

Run: .venv/bin/python bench/explicit_als.py  (or `make bench-explicit`); writes bench/RESULTS-explicit.md.
Both factorize what the bias baseline leaves of the ratings with the same objective (ALS-WR:
lambda times each row's ratings), rank, lambda and iterations (conf/movielens.yml's: 32 factors,
lambda 0.2, 15 iterations), in the same Spark session:
- MovieLens (tests/data/movielens, 100,836 ratings, one segment) through `recsys evaluate` with
  conf/movielens.yml: the fit stage's seconds and the RMSE and MAE on the time split, per engine;
- synthetic ratings (recsys_spark.synthetic purchases, one segment, each pair rated 0.5 to 5
  stars at random) through `recsys train`: the fit stage's seconds, per engine.
The engine is chosen by models.mllib_min_pairs: above the segment's pairs the kernel, 0 MLlib.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

from als import prepare_synthetic
from pyspark.sql import SparkSession

from recsys_spark.config import Config, load_config
from recsys_spark.io.session import get_spark
from recsys_spark.io.tables import table_name
from recsys_spark.pipeline import run_steps
from recsys_spark.progress import setup_logging
from recsys_spark.steps.evaluate import run_evaluate
from recsys_spark.steps.train import run_train

ROOT = Path(__file__).resolve().parents[1]
FIT_STAGE = "fit models per segment"
ENGINES = {"kernel": 10**12, "mllib": 0}  # models.mllib_min_pairs


def movielens_config(min_pairs: int) -> Config:
    overrides: dict[str, Any] = {
        "work_dir": "work/bench-explicit",
        "schemas": {layer: f"explicit_{layer}" for layer in ("bronze", "silver", "gold")},
        "models": {"enabled": ["als", "popularity"], "publish": "als", "mllib_min_pairs": min_pairs},
    }
    return load_config("local", extra_files=[str(ROOT / "conf" / "movielens.yml")], overrides=overrides)


def synthetic_config(min_pairs: int) -> Config:
    overrides: dict[str, Any] = {
        "work_dir": "work/bench-explicit",
        "schemas": {layer: f"explicit_synthetic_{layer}" for layer in ("bronze", "silver", "gold")},
        "models": {
            "enabled": ["als", "popularity"],
            "feedback": "explicit",
            "mllib_min_pairs": min_pairs,
            "tuning": {"trials": 0},
            "als": {"factors": 32, "regularization": 0.2, "iterations": 15},
        },
        "evaluation": {"baseline": "bias", "primary_metric": "rmse"},
    }
    return load_config("local", extra_files=[str(ROOT / "conf" / "movielens.yml")], overrides=overrides)


def movielens_rows(spark: SparkSession) -> list[dict[str, Any]]:
    run_steps(movielens_config(0), ["load-sample", "ingest"], spark)
    rows = []
    for engine, min_pairs in ENGINES.items():
        config = movielens_config(min_pairs)
        result = run_evaluate(spark, config, f"explicit_{engine}")
        pooled = result.ratings[(result.ratings.model == "als") & (result.ratings.segment == "all")].iloc[0]
        rows.append(
            {
                "data": "MovieLens",
                "engine": engine,
                "ratings": spark.table(str(table_name(config, "interactions"))).count(),
                "fit_s": result.seconds[FIT_STAGE],
                "rmse": pooled.rmse,
                "mae": pooled.mae,
                "rated": int(pooled.pairs),
            }
        )
    return rows


def synthetic_rows(spark: SparkSession, lines: int) -> list[dict[str, Any]]:
    config = synthetic_config(0)
    prepare_synthetic(spark, config, max(lines // 30, 100), max(lines // 300, 1_000), lines, ratings=True)
    pairs = (
        spark.table(str(table_name(config, "interactions")))
        .select("customer_id", "item_id")
        .distinct()
        .count()
    )
    rows = []
    for engine, min_pairs in ENGINES.items():
        trained = run_train(spark, synthetic_config(min_pairs), f"explicit_{engine}")
        rows.append(
            {
                "data": f"synthetic {lines:,} lines",
                "engine": engine,
                "ratings": pairs,
                "fit_s": trained.seconds[FIT_STAGE],
            }
        )
    return rows


def write_results(out: Path, rows: list[dict[str, Any]]) -> None:
    lines = [
        "# Explicit ALS: one task (numpy) against Spark MLlib",
        "",
        "Reproduce: `make bench-explicit` (`.venv/bin/python bench/explicit_als.py`).",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, local Spark; {time.strftime('%Y-%m-%d')}. "
        "ALS 32 factors, lambda 0.2, 15 iterations over the bias baseline's residuals. The fit stage: the "
        "segment's rows to the task (or to MLlib), every model's fit, the vectors back as rows.",
        "",
        "| data | rated pairs | engine | fit stage (s) | MLlib / kernel | RMSE | MAE |",
        "|---|---|---|---|---|---|---|",
    ]
    kernel_s = {r["data"]: r["fit_s"] for r in rows if r["engine"] == "kernel"}
    for r in rows:
        ratio = r["fit_s"] / kernel_s[r["data"]]
        errors = f"{r['rmse']:.4f} | {r['mae']:.4f}" if "rmse" in r else "– | –"
        lines.append(
            f"| {r['data']} | {r['ratings']:,} | {r['engine']} | {r['fit_s']:.1f} | {ratio:.1f}× | {errors} |"
        )
    lines += [
        "",
        "MovieLens: all its ratings (evaluate fits on the 90% before the time split's cutoff); RMSE and MAE "
        "over the test ratings ALS and the bias baseline both predict. Synthetic ratings are random, so "
        "only their times count. The engine is chosen per segment by `models.mllib_min_pairs` (15M: set "
        "by the implicit task's memory, bench/RESULTS-takeover.md).",
    ]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=float, nargs="*", default=[1e6, 3e6])
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-explicit.md"))
    args = parser.parse_args()
    setup_logging()
    spark = get_spark(movielens_config(0))
    rows = movielens_rows(spark)
    for lines in sorted(args.lines):
        rows += synthetic_rows(spark, int(lines))
    write_results(Path(args.out), rows)
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
