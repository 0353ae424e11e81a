"""The published model as an MLflow pyfunc: the trained tables it needs, saved as parquet
artifacts, and top-N for any customer from the kernels (no Spark needed to serve).

Input: a DataFrame with customer_id, and optionally segment and history (the item ids the
customer bought), history_weights (their confidence weights, as ItemKNN scores them in the
batch), orders (their number of orders, for cold-start routing) and last_basket (the items of
their latest order, for the hybrid's rules). Without a history, the model reads each customer's
from the batch's histories it carries (``kernels.lists.with_histories``): a customer id alone
gets the list gold.recommendations holds for them. Output: segment, customer_id, rank, item_id, score,
reason, reason_item_id, score_low, score_high, as in gold.recommendations.

The batch scoring makes its lists with the same ``kernels.lists.ListMaker`` this model calls:
routing, candidates, blend, business rules and top-up are one implementation. A customer the
model does not know (or a segment it was not trained on) gets overall popularity. Imports no
Spark: a serving endpoint has none.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from recsys_spark.kernels.lists import ListMaker, ListSpec, ListTables, with_histories

OUTPUT_COLUMNS = ["segment", "customer_id", "rank", "item_id", "score", "reason", "reason_item_id"]
OUTPUT_COLUMNS += ["score_low", "score_high"]


class PublishedRecommender(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        categories = _optional(context, "categories")
        tables = ListTables(
            pd.read_parquet(context.artifacts["item_factors"]),
            _optional(context, "user_factors"),
            _optional(context, "item_neighbours"),
            _optional(context, "rules"),  # single-item rules: segment, antecedent_id, item_id, confidence
            dict(zip(categories.item_id, categories.category, strict=True)) if categories is not None else {},
            _optional(context, "customer_matrix"),  # UserKNN's customers x items, one row per segment
        )
        self.maker = ListMaker.of(tables, ListSpec.of(context.model_config))
        self.histories = _optional(context, "customers")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.maker.predict(with_histories(model_input, self.histories))[OUTPUT_COLUMNS]


def _optional(context: Any, key: str) -> pd.DataFrame | None:
    path = context.artifacts.get(key)
    return pd.read_parquet(path) if path else None
