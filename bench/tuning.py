"""Benchmark: NDCG@10 on the test period with conf's settings and with tuned ones, every model.

Run: .venv/bin/python bench/tuning.py  (or `make bench-tuning`); writes bench/RESULTS-tuning.md.
Cases: Online Retail (the bundled files, base.yml's conf) and MovieLens as implicit feedback
(tests/data/movielens: user, movie, a count of 2 x the rating, epoch seconds, tab-separated,
no orders, prices, descriptions or segments). Per case the pipeline runs load-sample, ingest,
baskets, train and evaluate with ``models.tuning.trials: 0`` (conf's values), then train and
evaluate again with the trials asked for; the evaluation's split is the same both times, and
tuning only ever validates on the latest tenth of its train part.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, load_config
from recsys_spark.io.session import get_spark
from recsys_spark.io.tables import table_name
from recsys_spark.pipeline import run_steps
from recsys_spark.progress import setup_logging

ROOT = Path(__file__).resolve().parent.parent
MOVIELENS = ROOT / "tests" / "data" / "movielens" / "ratings.csv.gz"
ABSENT = {c: None for c in ("order_id", "quantity", "unit_price", "description", "category", "segment")}


def movielens_overrides(work: Path) -> dict[str, Any]:
    """A tab-separated play log with a spaced header, as a music service would export it."""
    with gzip.open(MOVIELENS, "rt") as handle:
        ratings = pd.read_csv(handle)
    landing = work / "movielens_tsv"
    landing.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "User ID": ratings.userId,
            "Movie ID": ratings.movieId,
            "Play Count": (ratings.rating * 2).astype(int),
            "Watched At": ratings.timestamp,
        }
    ).to_csv(landing / "plays.tsv", sep="\t", index=False)
    return {
        "input": {
            "landing_path": str(landing),
            "csv": {"delimiter": "\t"},
            "columns": {
                **ABSENT,
                "customer_id": "User ID",
                "item_id": "Movie ID",
                "quantity": "Play Count",
                "event_ts": "Watched At",
            },
            "category_from_description": False,
            "timestamp_format": "epoch_seconds",
            "cancellation_prefix": None,
            "non_product_codes": [],
            "non_product_code_pattern": None,
        },
        "models": {
            "enabled": ["als", "itemknn", "bpr", "popularity", "hybrid"],
            "min_segment_users": 10,
            # No descriptions, so no content model: the hybrid blends the others.
            "hybrid": {"weights": {"content": 0.0}, "short_history_weights": {"content": 0.0}},
            # Raters come in bursts, so a later time window holds few returning ones (a time carve
            # of 10% or 30% left fewer than min_validation_customers): validate on a random share.
            "tuning": {"validation": "random"},
        },
        "evaluation": {"min_coverage": 0.01},
        "business_rules": {"max_per_category": None},
    }


def run_case(
    name: str, overrides: dict[str, Any], work: Path, trials: int, spark: SparkSession | None, reuse: bool
) -> dict:
    """The case's figures: run both ways, or with ``reuse`` read from the tables of the last run."""
    base = {
        "work_dir": str(work),
        "load_sample": True,
        "schemas": {layer: f"bench_tuning_{name}_{layer}" for layer in ("bronze", "silver", "gold")},
        "mlflow": {"experiment": f"bench_tuning_{name}", "registered_model": f"bench_tuning_{name}"},
    }
    results = {}
    for latest, (label, count, steps) in enumerate(
        (
            ("conf", 0, ["load-sample", "ingest", "baskets", "train", "evaluate"]),
            ("tuned", trials, ["train", "evaluate"]),
        )
    ):
        config = load_config("local", overrides=_merged(base, overrides, count))
        spark = spark or get_spark(config)
        start = time.perf_counter()
        if not reuse:
            print("\n".join(run_steps(config, steps, spark)), flush=True)
        seconds = time.perf_counter() - start if not reuse else float("nan")
        # Reused, conf's evaluation is the one before the latest; run, each is the latest when read.
        results[label] = (_metrics(spark, config, 1 - latest if reuse else 0), seconds)
        if label == "tuned":
            results["chosen"] = _chosen(spark, config)
    return results


def _merged(base: dict[str, Any], overrides: dict[str, Any], trials: int) -> dict[str, Any]:
    merged = json.loads(json.dumps(base))
    for key, value in overrides.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    models = merged.setdefault("models", {})
    models["tuning"] = {**models.get("tuning", {}), "trials": trials}
    return merged


def _metrics(spark: SparkSession, config: Config, before_latest: int) -> pd.DataFrame:
    """NDCG@10 per model of the latest evaluation (``before_latest`` 0) or the one before it (1)."""
    metrics = spark.table(str(table_name(config, "model_metrics")))
    times = [
        r[0] for r in metrics.select("evaluated_at").distinct().orderBy(F.desc("evaluated_at")).collect()
    ]
    return (
        metrics.where(
            (F.col("evaluated_at") == times[before_latest])
            & (F.col("segment") == "all")
            & (F.col("slice") == "all")
            & (F.col("metric") == "ndcg")
            & (F.col("k") == 10)
        )
        .select("model", "value", "ci_low", "ci_high")
        .toPandas()
        .set_index("model")
    )


def _chosen(spark: SparkSession, config: Config) -> pd.DataFrame:
    trials = spark.table(str(table_name(config, "tuning_trials")))
    latest = trials.agg(F.max("tuned_at")).first()[0]
    return (
        trials.where((F.col("tuned_at") == latest) & F.col("chosen"))
        .select("segment", "model", "trial", "params", "ndcg", "validation_customers")
        .orderBy("segment", "model")
        .toPandas()
    )


def report(results: dict[str, dict], trials: int) -> str:
    lines = [
        "# Tuning: NDCG@10 on the test period, conf's settings against tuned ones",
        "",
        f"`make bench-tuning` on {platform.node()} ({platform.processor() or platform.machine()}), "
        f"{time.strftime('%Y-%m-%d')}; {trials} trials per model and segment. Intervals: 95% Poisson "
        "bootstrap over test customers (evaluation.bootstrap_samples).",
    ]
    for case, result in results.items():
        conf, conf_seconds = result["conf"]
        tuned, tuned_seconds = result["tuned"]
        lines += ["", f"## {case}", "", "| model | conf's settings | tuned | change |", "|---|---|---|---|"]
        for model in [m for m in conf.index if "+" not in m]:
            before, after = conf.loc[model], tuned.loc[model]
            change = (after.value - before.value) / before.value if before.value else float("nan")
            lines.append(f"| {model} | {_cell(before)} | {_cell(after)} | {change:+.0%} |")
        lines += [
            "",
            f"Pipeline seconds: {conf_seconds:.0f} with conf's settings (load, ingest, baskets, train, "
            f"evaluate), {tuned_seconds:.0f} tuned (train with tuning, evaluate)."
            if not math.isnan(conf_seconds)
            else "Pipeline seconds: not timed (--reuse: read from the tables of an earlier run).",
            "",
            "Chosen (gold.tuning_trials, validation NDCG@10):",
            "",
        ]
        for row in result["chosen"].itertuples():
            lines.append(
                f"- {row.segment}, {row.model}: {row.params} (trial {row.trial}, validation "
                f"{row.ndcg:.4f} on {row.validation_customers:,} customers)"
            )
    return "\n".join(lines) + "\n"


def _cell(row: pd.Series) -> str:
    return f"{row.value:.4f} ({row.ci_low:.4f}–{row.ci_high:.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--work", type=Path, default=ROOT / "work", help="work_dir (Delta jars, tables)")
    parser.add_argument("--cases", nargs="+", default=["online_retail", "movielens"])
    parser.add_argument(
        "--reuse", nargs="*", default=[], help="cases whose last bench run's tables are read, not run again"
    )
    args = parser.parse_args()
    setup_logging()
    cases = {
        "online_retail": lambda: {"input": {"landing_path": str(ROOT / "data" / "online-retail")}},
        "movielens": lambda: movielens_overrides(args.work / "bench-tuning"),
    }
    results, spark = {}, None
    for case in args.cases:
        results[case] = run_case(case, cases[case](), args.work, args.trials, spark, case in args.reuse)
        spark = SparkSession.getActiveSession()
    text = report(results, args.trials)
    (ROOT / "bench" / "RESULTS-tuning.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
