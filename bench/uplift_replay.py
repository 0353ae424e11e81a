"""Replay of a CRM experiment on Online Retail: export in the past, then let the later months
arrive and measure what the exported customers bought.

Run: .venv/bin/python bench/uplift_replay.py --cutoff 2011-10 --holdout-share 0.5
(or `make bench-uplift`). The bundled monthly files up to ``--cutoff`` land first and
`recsys run` goes end to end on them (train, evaluate with interleaving, score, export with
``--holdout-share`` of the customers in the holdout arm). Then the later months land, and
`recsys load-sample`, `recsys ingest` and `recsys experiment` run, as the next nights would.
Prints each step's output and gold.experiment_results (every customer, the conversion and
revenue rows); figures go in bench/RESULTS-experiment.md by hand.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml
from deltalake import DeltaTable
from workdir import fresh_work_dir

from recsys_spark.config import load_config
from recsys_spark.io.names import local_location, table_name

ROOT = Path(__file__).resolve().parent.parent
MONTHS = ROOT / "data" / "online-retail"


def recsys(conf: Path, *steps: str) -> float:
    """Run ``recsys <step>`` for each step in a process of its own; seconds taken."""
    start = time.perf_counter()
    for step in steps:
        command = [str(ROOT / ".venv" / "bin" / "recsys"), step, "--target", "local", "--conf", str(conf)]
        subprocess.run(command, check=True)
    return time.perf_counter() - start


def land(landing: Path, months: list[Path]) -> None:
    for month in months:
        (landing / month.name).symlink_to(month)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cutoff", default="2011-10", help="last month (YYYY-MM) landed before the export")
    parser.add_argument("--holdout-share", type=float, default=0.5, help="export.holdout_share")
    parser.add_argument("--work", default="/tmp/recsys-uplift", help="work folder (emptied)")
    args = parser.parse_args()
    work = fresh_work_dir(args.work)
    landing = work / "landing"
    landing.mkdir()
    months = sorted(MONTHS.glob("online_retail_*.csv.gz"))
    before = [m for m in months if m.name.removeprefix("online_retail_")[:7] <= args.cutoff]
    after = [m for m in months if m not in before]
    if not before or not after:
        sys.exit(f"--cutoff {args.cutoff} leaves no month before or after it")
    conf = work / "replay.yml"
    overlay = {
        "work_dir": str(work),
        "input": {"landing_path": str(landing)},
        "export": {"holdout_share": args.holdout_share, "experiment": f"replay_{args.cutoff}"},
    }
    conf.write_text(yaml.safe_dump(overlay))
    land(landing, before)
    print(f"landed {len(before)} months up to {args.cutoff}: recsys run", flush=True)
    seconds = recsys(conf, "run")
    print(f"recsys run: {seconds:.0f}s", flush=True)
    land(landing, after)
    print(f"landed {len(after)} later months: load-sample, ingest, experiment", flush=True)
    seconds = recsys(conf, "load-sample", "ingest", "experiment")
    print(f"later months and experiment: {seconds:.0f}s", flush=True)
    config = load_config("local", extra_files=[str(conf)])
    results = DeltaTable(str(local_location(config, table_name(config, "experiment_results")))).to_pandas()
    everyone = results[(results.segment == "all")].sort_values(["metric", "window_days"])
    columns = ["window_days", "metric", "model_customers", "holdout_customers", "model_value"]
    columns += ["holdout_value", "uplift", "ci_low", "ci_high", "p_value"]
    print(everyone[columns].to_string(index=False))
    for verdict in everyone.verdict:
        print(" ", verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
