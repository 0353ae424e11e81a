"""The served model against the batch: every customer of gold.recommendations, asked of the
registered champion (the MLflow pyfunc, no Spark inside it), must get the same items in the
same order with the same reasons.

    python bench/served_parity.py            # after `make demo`, in the project folder
    python bench/served_parity.py --by-id    # the same, asking by customer id alone

Prints the customers compared and the first differences; exits 1 if any list differs.
"""

from __future__ import annotations

import sys

import mlflow
import pandas as pd

from recsys_spark.config import load_config
from recsys_spark.distributed.lists import customer_histories
from recsys_spark.io.session import get_spark
from recsys_spark.io.tables import table_name
from recsys_spark.tracking.runs import tracking_uri

COLUMNS = ["segment", "customer_id", "history", "history_weights", "orders", "last_basket"]


def ranked(frame: pd.DataFrame) -> dict[tuple[str, str], list[tuple[str, str, str | None]]]:
    frame = frame.sort_values(["segment", "customer_id", "rank"])
    reason_items = frame.reason_item_id.astype(object).where(frame.reason_item_id.notna(), None)
    lists: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
    rows = zip(frame.segment, frame.customer_id, frame.item_id, frame.reason, reason_items, strict=True)
    for segment, customer, item, reason, because in rows:
        lists.setdefault((segment, customer), []).append((item, reason, because))
    return lists


def main() -> int:
    config = load_config("local")
    spark = get_spark(config)
    mlflow.set_tracking_uri(tracking_uri(config))
    model = mlflow.pyfunc.load_model(f"models:/{config.mlflow.registered_model}@champion")
    interactions = spark.table(str(table_name(config, "interactions")))
    request = customer_histories(config.models, interactions, "hybrid").select(*COLUMNS).toPandas()
    if "--by-id" in sys.argv[1:]:  # the model reads each customer's history from its own copy
        request = request[["customer_id"]].drop_duplicates()
    served = ranked(model.predict(request))
    batch = ranked(spark.table(str(table_name(config, "recommendations"))).toPandas())
    differing = [key for key in batch.keys() | served.keys() if batch.get(key) != served.get(key)]
    reasons = pd.Series([r for entries in batch.values() for _, r, _ in entries]).value_counts()
    print(f"customers: {len(batch):,} in gold.recommendations, {len(served):,} served")
    print("reasons in gold.recommendations: " + ", ".join(f"{k} {v:,}" for k, v in reasons.items()))
    print(f"lists that differ (items, order, reason or reason item): {len(differing):,}")
    for key in sorted(differing)[:5]:
        print(f"  {key}: batch {batch.get(key)}\n  {' ' * len(str(key))}  served {served.get(key)}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
