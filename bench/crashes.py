"""Seeded crash chain: SIGKILL a small real pipeline at random points across every step.

Run: .venv/bin/python bench/crashes.py --points 20 --seed 7  (or `make bench-crashes`); writes
bench/RESULTS-crashes.md. On the bundled 42-customer sample:

1. an uninterrupted `recsys run` (schemas ref_*): the reference tables, and from its log every
   stage of every step and every table write, the places a kill can land;
2. ``--points`` of them drawn with ``--seed``; for each, `recsys run` (schemas crash_*) with
   ``RECSYS_KILL_AT`` set to it, so the process SIGKILLs itself there; after each kill, without
   Spark (delta-rs): every table readable, and each completed step's tables (gold.step_runs, the
   versions the views and the export read) from that step's run alone, silver and quarantine
   disjoint with unique line ids;
3. a last `recsys run` without a kill: it must say that the previous run was interrupted and end
   with the same tables as the reference (run stamps aside, doubles to 1e-9).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from deltalake import DeltaTable
from workdir import fresh_work_dir

from recsys_spark.config import load_config
from recsys_spark.io.tables import TABLE_LAYERS, local_location, table_name
from recsys_spark.progress import KILL_AT

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "online_retail_sample"
STAGE_LINE = re.compile(r" INFO recsys_spark: ([a-z-]+) \| (.+?) \| ")
# Run stamps, and seconds: a tuning trial's measured time.
STAMPS = {"run_id", "generated_at", "ingested_at", "trained_at", "evaluated_at", "decided_at", "loaded_at",
          "completed_at", "tuned_at", "seconds"}  # fmt: skip
# Tables MERGEd line by line: each row keeps the run that first inserted it.
ACCUMULATING = {"purchases", "interactions", "interactions_quarantine"}
# Tables that keep the rows of every run: the latest run's are compared.
PER_RUN = {"model_metrics": "evaluated_at", "published_model": "decided_at", "tuning_trials": "tuned_at"}


def overlay(work: Path, prefix: str) -> Path:
    """The conf of one chain: the sample, sizes for 42 customers, schemas of its own."""
    values = {
        "work_dir": str(work),
        "load_sample": True,
        "schemas": {layer: f"{prefix}_{layer}" for layer in ("bronze", "silver", "gold")},
        "mlflow": {"experiment": f"crashes_{prefix}"},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "2g"},
        "input": {"landing_path": str(SAMPLE)},
        "baskets": {"min_support": 3, "min_count_floor": 3, "min_segment_baskets": 10, "max_len": 3},
        "models": {"min_segment_users": 10, "als": {"factors": 8, "iterations": 3}, "tuning": {"trials": 2}},
        "business_rules": {"mmr_lambda": None},
        "evaluation": {"min_test_customers": 1},
        "export": {"path": str(work / f"exports_{prefix}")},
    }
    path = work / f"{prefix}.yml"
    path.write_text(yaml.safe_dump(values))
    return path


def recsys_run(conf: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT} | ({KILL_AT: kill_at} if kill_at else {})
    command = [sys.executable, "-m", "recsys_spark.cli", "run", "--conf", str(conf)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)


def kill_points(log: str, written: dict[str, list[str]]) -> list[str]:
    """Every stage start and table write of the reference run, in the order they happened."""
    points: list[str] = []
    for step, name in STAGE_LINE.findall(log):
        for key in written.get(step, []) if name == "mark complete" else []:
            points.append(f"write|{key}")
        points.append(f"{step}|{name}")
    # Stage names hold table names: the chain writes its own schemas.
    return [p.replace("`ref_", "`crash_") for p in dict.fromkeys(points)]


def glob_escaped(point: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", point)


def tables(prefix_conf: Path) -> dict[str, Path]:
    config = load_config("local", extra_files=[prefix_conf])
    found = {}
    for key in TABLE_LAYERS:
        location = local_location(config, table_name(config, key))
        if (location / "_delta_log").is_dir():
            found[key] = location
    return found


def check_after_kill(conf: Path) -> list[str]:
    """Problems found without Spark: unreadable tables, completed steps mixing runs, lines twice."""
    found, problems = tables(conf), []
    for key, location in found.items():
        try:
            DeltaTable(str(location)).to_pyarrow_table()
        except Exception as exc:  # noqa: BLE001 - reported, the chain goes on
            problems.append(f"{key} unreadable by delta-rs: {exc}")
    if "step_runs" not in found:
        return problems
    steps = DeltaTable(str(found["step_runs"])).to_pandas().sort_values("completed_at").groupby("step").last()
    for step, row in steps.iterrows():
        for key, version in dict(row.tables).items():
            frame = DeltaTable(str(found[key]), version=int(version)).to_pandas()
            if key in PER_RUN or key in ACCUMULATING or frame.empty or "run_id" not in frame:
                continue
            if set(frame.run_id) != {row.run_id}:
                problems.append(f"{step}: {key} at version {version} holds runs {sorted(set(frame.run_id))}")
    silver = set()
    if "interactions" in found:
        silver = set(DeltaTable(str(found["interactions"])).to_pandas(columns=["line_id"]).line_id)
    if "interactions_quarantine" in found:
        quarantine = DeltaTable(str(found["interactions_quarantine"])).to_pandas(columns=["line_id"]).line_id
        if not quarantine.is_unique or silver & set(quarantine):
            problems.append("a line is twice in the quarantine or in both silver and the quarantine")
    return problems


def comparable(location: Path, key: str) -> pd.DataFrame:
    frame = DeltaTable(str(location)).to_pandas()
    if key in PER_RUN:
        frame = frame[frame.run_id == frame.sort_values(PER_RUN[key]).run_id.iloc[-1]]
    if key == "step_runs":
        frame = frame.assign(tables=frame.tables.map(lambda t: sorted(dict(t))))
    frame = frame.drop(columns=[c for c in frame.columns if c in STAMPS]).map(_cell)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _cell(value: Any) -> Any:
    """Maps and arrays as text, so rows can be sorted and compared."""
    if isinstance(value, dict):
        return repr(sorted(value.items()))
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return repr([_cell(v) for v in value])
    return value


def differences(reference: Path, crashed: Path) -> list[str]:
    ref, got = tables(reference), tables(crashed)
    problems = [f"{key}: missing after the chain" for key in ref if key not in got and key != "step_runs"]
    for key in ref.keys() & got.keys():
        if key == "step_runs":
            continue  # the chain has a row per completed step of every run
        try:
            expected, actual = comparable(ref[key], key), comparable(got[key], key)
            pd.testing.assert_frame_equal(expected, actual, rtol=1e-9, atol=1e-9)
        except AssertionError as exc:
            problems.append(f"{key}: differs from the uninterrupted run: {str(exc).splitlines()[0]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", default=str(ROOT / "work" / "bench-crashes"))
    args = parser.parse_args()
    work = fresh_work_dir(args.work)
    reference, crashed = overlay(work, "ref"), overlay(work, "crash")
    start = time.perf_counter()
    ref_run = recsys_run(reference)
    assert ref_run.returncode == 0, ref_run.stderr[-3000:]
    ref_seconds = time.perf_counter() - start
    steps = DeltaTable(str(tables(reference)["step_runs"])).to_pandas()
    written = {row.step: sorted(dict(row.tables)) for row in steps.itertuples()}
    candidates = kill_points(ref_run.stderr, written)
    chosen = sorted(
        random.Random(args.seed).sample(range(len(candidates)), min(args.points, len(candidates)))
    )
    rows: list[dict[str, Any]] = []
    for index in chosen:
        point = candidates[index]
        start = time.perf_counter()
        killed = recsys_run(crashed, glob_escaped(point))
        outcome = "killed" if killed.returncode == -signal.SIGKILL else f"exit {killed.returncode}"
        problems = check_after_kill(crashed)
        if outcome != "killed":
            problems.insert(0, f"the kill did not fire: {killed.stderr[-300:]}")
        seconds = time.perf_counter() - start
        rows.append({"point": point, "outcome": outcome, "seconds": seconds, "problems": problems})
        print(f"{point}: {outcome}, {len(problems)} problems {problems[:3]}", flush=True)
    start = time.perf_counter()
    final = recsys_run(crashed)
    final_seconds = time.perf_counter() - start
    said = [line for line in final.stdout.splitlines() if "was interrupted" in line]
    diff = differences(reference, crashed) if final.returncode == 0 else [final.stderr[-2000:]]
    write_results(args, len(candidates), rows, ref_seconds, final_seconds, final.returncode, said, diff)


def write_results(
    args: argparse.Namespace, candidates: int, rows: list[dict[str, Any]], ref_seconds: float,
    final_seconds: float, final_rc: int, said: list[str], diff: list[str],
) -> None:  # fmt: skip
    lines = [
        "# Crash chain: SIGKILL at random points of a real pipeline run",
        "",
        f"`.venv/bin/python bench/crashes.py --points {args.points} --seed {args.seed}` on the bundled",
        f"42-customer sample ({os.cpu_count()} cores). {candidates} places a kill can land (every stage",
        f"start and table write of the reference run, {ref_seconds:.0f} s uninterrupted); {len(rows)} drawn:",
        "",
        "| # | killed at | outcome | seconds | problems found after the kill (delta-rs) |",
        "|---|---|---|---|---|",
    ]
    for n, row in enumerate(rows, 1):
        problems = "; ".join(row["problems"]) or "none"
        point = row["point"].replace("|", "\\|")  # a table cell: the pipe escaped, backticks kept
        lines.append(f"| {n} | `` {point} `` | {row['outcome']} | {row['seconds']:.0f} | {problems} |")
    lines += [
        "",
        f"Final run without a kill: exit {final_rc} in {final_seconds:.0f} s; it said: "
        + ("; ".join(f"`{s}`" for s in said) or "nothing about an interrupted run"),
        "",
        "Tables after the chain against the uninterrupted run: "
        + ("identical (run stamps aside, doubles to 1e-9)" if not diff else "; ".join(diff)),
        "",
    ]
    (ROOT / "bench" / "RESULTS-crashes.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
