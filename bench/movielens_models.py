"""Every collaborative model on MovieLens reshaped as implicit feedback, through conf alone.

Run: .venv/bin/python bench/movielens_models.py (or `make bench-movielens`). The shipped
MovieLens ratings (tests/data/movielens) of 4 stars or more become a `;`-separated file of
viewer, film, stars and epoch seconds (no orders, prices, descriptions or segments); then
`recsys load-sample ingest train evaluate` run with ALS, ItemKNN, UserKNN, the graph filter,
popularity and the hybrid (content is left out: no text). Prints the evaluate step's summary
(NDCG@10 and the rest per model); figures go in bench/RESULTS-models.md by hand. The
explicit-ratings run is `make demo-movielens`.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pandas as pd
import yaml
from workdir import fresh_work_dir

ROOT = Path(__file__).resolve().parent.parent
RATINGS = ROOT / "tests" / "data" / "movielens" / "ratings.csv.gz"
# Content is enabled as the demo has it and left out at training: these files have no text.
MODELS = ["als", "itemknn", "userknn", "graph", "popularity", "content", "hybrid"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/recsys-movielens", help="work folder (emptied first)")
    args = parser.parse_args()
    work = fresh_work_dir(args.work)
    landing = work / "landing"
    landing.mkdir()
    ratings = pd.read_csv(RATINGS)
    liked = ratings[ratings.rating >= 4].rename(
        columns={"userId": "viewer", "movieId": "film", "rating": "stars", "timestamp": "when_epoch"}
    )
    liked.to_csv(landing / "watched.txt", sep=";", index=False)
    absent = ["order_id", "quantity", "unit_price", "description", "category", "segment"]
    conf = {
        "work_dir": str(work),
        "load_sample": True,
        "input": {
            "landing_path": str(landing),
            "file_glob": "*.txt",
            "csv": {"delimiter": ";"},
            "columns": {"customer_id": "viewer", "item_id": "film", "event_ts": "when_epoch"}
            | dict.fromkeys(absent),
            "category_from_description": False,
            "timestamp_format": "epoch_seconds",
            "cancellation_prefix": None,
            "non_product_codes": [],
            "non_product_code_pattern": None,
        },
        "models": {"enabled": MODELS},
    }
    path = work / "conf.yml"
    path.write_text(yaml.safe_dump(conf))
    for step in ("load-sample", "ingest", "train", "evaluate"):
        command = [str(ROOT / ".venv" / "bin" / "recsys"), step, "--target", "local", "--conf", str(path)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
