"""Ingest throughput on synthetic purchases, against the floor of the same work done bare.

Run: .venv/bin/python bench/ingest.py --lines 3e6  (or `make bench-ingest`); writes
bench/RESULTS-ingest.md. The scale ladder's generator (bench/scale.py) lands the lines as Parquet;
then, in this order and each in a fresh process:

- **floor**: a bare Spark job reads the Parquet files, keys each line by the SHA-256 of its
  columns, drops exact duplicates and writes the rest as a Delta table: what any ingest must do;
- **load-sample**: `recsys load-sample` lands the files as bronze.purchases;
- **ingest**: `recsys ingest` maps, validates, deduplicates (exact and near duplicates) and MERGEs
  bronze into silver.interactions and its quarantine.

Rows per second are the lines over the step's stage seconds (its own log lines; the floor's is
its job's wall time), so JVM start is left out of all three.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from scale import STAGE, landing, overlay
from workdir import fresh_work_dir

ROOT = Path(__file__).resolve().parent.parent


def floor(landing_path: Path, conf: Path) -> None:
    """The bare job, in this process (run with --floor): prints its seconds."""
    from pyspark.sql import functions as F

    from recsys_spark.config import load_config
    from recsys_spark.io.session import get_spark

    config = load_config("local", extra_files=[conf])
    spark = get_spark(config)
    start = time.perf_counter()
    lines = spark.read.parquet(str(landing_path))
    line_id = F.sha2(F.to_json(F.struct(*lines.columns)), 256)
    keyed = lines.withColumn("line_id", line_id).dropDuplicates(["line_id"])
    keyed.write.format("delta").mode("overwrite").save(str(conf.parent / "floor_table"))
    print(f"floor seconds {time.perf_counter() - start:.2f}")
    spark.stop()


def run_step(args: list[str], log: Path) -> tuple[int, dict[str, float]]:
    """Exit code and seconds per stage of one command, its output kept in ``log``."""
    with log.open("w") as handle:
        code = subprocess.call(args, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    stages: dict[str, float] = defaultdict(float)
    for step, name, seconds in STAGE.findall(log.read_text()):
        stages[f"{step}: {name}"] += float(seconds)
    return code, dict(stages)


def measure(work: Path, lines: int, segments: int, seed: int, driver_memory: str) -> list[str]:
    name = f"{lines // 1000}k"
    folder = work / f"landing_{name}"
    landing(folder, lines, segments, seed)
    conf = overlay(work, name, folder, driver_memory)
    python = sys.executable
    code, _ = run_step([python, __file__, "--floor", str(folder), str(conf)], work / "floor.log")
    printed = (work / "floor.log").read_text().splitlines()
    found = [line for line in printed if line.startswith("floor seconds")]
    if code or not found:
        raise SystemExit(f"the floor job failed; see {work / 'floor.log'}")
    floor_seconds = float(found[0].split()[-1])
    rows = [f"| floor: Parquet read, SHA-256 line id, dedupe, Delta write | {floor_seconds:.1f} | "
            f"{lines / floor_seconds:,.0f} | 1.00 |"]  # fmt: skip
    for step in ("load-sample", "ingest"):
        command = [python, "-m", "recsys_spark.cli", step, "--conf", str(conf)]
        code, stages = run_step(command, work / f"{step}.log")
        if code:
            raise SystemExit(f"recsys {step} failed; see {work / f'{step}.log'}")
        seconds = sum(v for k, v in stages.items() if not k.endswith("mark complete"))
        ratio = seconds / floor_seconds
        rows.append(f"| **{step}** | {seconds:.1f} | {lines / seconds:,.0f} | {ratio:.2f} |")
        rows += [f"| &nbsp;&nbsp;{k} | {v:.1f} | | |" for k, v in stages.items()]
    return rows


def main() -> None:
    if sys.argv[1:2] == ["--floor"]:
        floor(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=float, default=3e6)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--driver-memory", default="12g")
    parser.add_argument("--work", default=str(ROOT / "work" / "bench-ingest"))
    args = parser.parse_args()
    work = fresh_work_dir(args.work)
    lines = int(args.lines)
    rows = measure(work, lines, args.segments, args.seed, args.driver_memory)
    text = [
        "# Ingest throughput against its floor",
        "",
        f"`.venv/bin/python bench/ingest.py --lines {args.lines:g}` on {platform.node()} "
        f"({os.cpu_count()} cores, driver memory {args.driver_memory}), {lines:,} synthetic lines in "
        f"{args.segments} segments. Seconds are each step's stage lines (JVM start left out); the "
        "ratio is against the floor measured in the same run.",
        "",
        "| job / stage | seconds | rows/s | × floor |",
        "|---|---|---|---|",
        *rows,
    ]
    (ROOT / "bench" / "RESULTS-ingest.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
