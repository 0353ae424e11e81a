"""Scale ladder: the whole pipeline on synthetic purchases of growing size, per-step seconds and
peak driver memory.

Run: .venv/bin/python bench/scale.py --lines 1e6 3e6 10e6 30e6  (or `make bench-scale`); writes
bench/RESULTS-scale.md. Per size, the project's generator (recsys_spark.synthetic: power-law
items in categories, customers with category tastes) makes the lines, grouped into orders of
three lines per customer, in ``--segments`` segments; they land as Parquet files
of at most 1M lines, and `recsys run` (load-sample through export, local target, its own
schemas) runs in a fresh process. Its stage lines give each step's seconds (train's include the
tuning stages, also shown as "tune"); the peak resident memory of the run's processes together
(Python, the JVM, where local Spark's executors run, and its Python workers) is sampled from
/proc every half second.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from workdir import fresh_work_dir

from recsys_spark import synthetic

ROOT = Path(__file__).resolve().parent.parent
STAGE = re.compile(r" INFO recsys_spark: ([a-z-]+) \| (.+?) \| (?:.* \| )?([0-9.]+)s$", re.MULTILINE)
FILE_LINES = 1_000_000
COLUMNS = ("customer_id", "item_id", "order_id", "event_ts", "quantity", "unit_price", "category", "segment")


SEGMENTS = 4  # the ladder's default


def ladder_shape(lines: int) -> tuple[int, int]:
    """(customers, items) of a size: one customer per 30 lines and one item per 300 (at least
    1,000), so that each size has the density of the 3M-line set (100k x 10k)."""
    return max(lines // 30, 100), max(lines // 300, 1_000)


def landing(folder: Path, lines: int, segments: int, seed: int) -> None:
    """Synthetic purchases of ``ladder_shape(lines)`` as Parquet files."""
    folder.mkdir(parents=True)
    customers, items = ladder_shape(lines)
    frame = synthetic.purchases(
        n_users=customers,
        n_items=items,
        n_events=lines,
        n_segments=segments,
        seed=seed,
    )
    frame = _in_orders(frame)
    for part, start in enumerate(range(0, lines, FILE_LINES)):
        frame.iloc[start : start + FILE_LINES].to_parquet(
            folder / f"purchases-{part:03d}.parquet", index=False
        )


def _in_orders(frame: pd.DataFrame) -> pd.DataFrame:
    """Each customer's lines in time order, cut into orders of three lines; an order takes its
    first line's time."""
    frame = frame.sort_values(["customer_id", "event_ts"], kind="stable").reset_index(drop=True)
    rank = frame.groupby("customer_id").cumcount().to_numpy()
    frame["order_id"] = frame.customer_id + "-" + (rank // 3).astype(str)
    frame["event_ts"] = frame.groupby("order_id").event_ts.transform("min")
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)  # files not sorted by customer


def overlay(work: Path, name: str, landing_path: Path, driver_memory: str) -> Path:
    values: dict[str, Any] = {
        "work_dir": str(work),
        "load_sample": True,
        "schemas": {layer: f"scale_{name}_{layer}" for layer in ("bronze", "silver", "gold")},
        "mlflow": {"experiment": f"bench_scale_{name}", "registered_model": f"bench_scale_{name}"},
        "spark": {"driver_memory": driver_memory},
        "input": {
            "landing_path": str(landing_path),
            "landing_format": "parquet",
            "columns": {c: c for c in COLUMNS} | {"description": None},
            "category_from_description": False,
            "cancellation_prefix": None,
            "non_product_codes": [],
            "non_product_code_pattern": None,
            "uppercase_item_ids": False,
        },
        # No descriptions, so no content model: the hybrid blends the others.
        "models": {"hybrid": {"weights": {"content": 0.0}, "short_history_weights": {"content": 0.0}}},
        "export": {"path": str(work / f"exports_{name}")},
    }
    path = work / f"{name}.yml"
    path.write_text(yaml.safe_dump(values))
    return path


def peak_memory(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """The largest resident memory (bytes) of ``pid`` and its children, sampled until ``stop``."""
    while not stop.wait(0.5):
        peak[0] = max(peak[0], resident_bytes(pid) + sum(resident_bytes(child) for child in children_of(pid)))


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid``: the JVM starts Spark's Python workers from its own threads,
    so the parent links in /proc/*/stat are read rather than the main thread's child list."""
    parents: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(fields[1])].append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def resident_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else 0


def run_size(work: Path, lines: int, segments: int, seed: int, driver_memory: str) -> dict[str, Any]:
    name = f"{lines // 1000}k"
    folder = work / f"landing_{name}"
    landing(folder, lines, segments, seed)
    conf = overlay(work, name, folder, driver_memory)
    command = [sys.executable, "-m", "recsys_spark.cli", "run", "--conf", str(conf)]
    log = work / f"{name}.log"
    stop, peak = threading.Event(), [0]
    start = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, text=True)
        sampler = threading.Thread(target=peak_memory, args=(process.pid, stop, peak), daemon=True)
        sampler.start()
        code = process.wait()
    stop.set()
    seconds = time.perf_counter() - start
    steps: dict[str, float] = defaultdict(float)
    text = log.read_text()
    for step, _stage, stage_seconds in STAGE.findall(text):
        steps[step] += float(stage_seconds)
    shutil.rmtree(folder)  # the next size's landing needs the disk
    tail = "" if code == 0 else text[-1500:]
    return {
        "lines": lines, "exit": code, "seconds": seconds, "steps": dict(steps),
        "peak_gib": peak[0] / 2**30, "log": log, "tail": tail,
    }  # fmt: skip


def write_results(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    steps = list(dict.fromkeys(s for row in rows for s in row["steps"]))
    sizes = " ".join(str(row["lines"]) for row in rows)
    lines = [
        "# Scale ladder: the whole pipeline on synthetic purchases",
        "",
        f"`.venv/bin/python bench/scale.py --lines {sizes} --segments {args.segments}` on "
        f"{platform.node()} ({os.cpu_count()} cores, driver memory {args.driver_memory}). Seconds per "
        "step are the sums of its stage lines; the total is the `recsys run` process, JVM start and "
        "MLflow included; peak memory is the resident memory of the run's processes together (its "
        "Python, the JVM and Spark's Python workers).",
        "",
        "| lines | exit | total s | " + " | ".join(steps) + " | peak GiB | lines/s overall |",
        "|---" * (len(steps) + 5) + "|",
    ]
    for row in rows:
        cells = [f"{row['steps'].get(s, float('nan')):.0f}" for s in steps]
        rate = row["lines"] / row["seconds"]
        lines.append(
            f"| {row['lines']:,} | {row['exit']} | {row['seconds']:.0f} | "
            + " | ".join(cells)
            + f" | {row['peak_gib']:.1f} | {rate:,.0f} |"
        )
    for row in rows:
        if row["exit"]:
            lines += [
                "",
                f"{row['lines']:,} lines failed; the end of {row['log'].name}:",
                "",
                "```",
                row["tail"],
                "```",
            ]
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = (last["seconds"] / first["seconds"]) / (last["lines"] / first["lines"])
        lines += [
            "",
            f"Time per line at {last['lines']:,} over time per line at {first['lines']:,}: {growth:.2f}.",
        ]
    (ROOT / "bench" / "RESULTS-scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=float, nargs="+", default=[1e6, 3e6, 10e6, 30e6])
    parser.add_argument("--segments", type=int, default=SEGMENTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--driver-memory", default="16g")
    parser.add_argument("--work", default=str(ROOT / "work" / "bench-scale"))
    args = parser.parse_args()
    work = fresh_work_dir(args.work)
    rows = []
    for lines in sorted(int(n) for n in args.lines):
        rows.append(run_size(work, lines, args.segments, args.seed, args.driver_memory))
        row = rows[-1]
        per_step = {k: round(v) for k, v in row["steps"].items()}
        print(f"{lines:,} lines: exit {row['exit']} in {row['seconds']:.0f} s, {per_step}", flush=True)
    write_results(args, rows)


if __name__ == "__main__":
    main()
