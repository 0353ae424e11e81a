"""The published model as an MLflow pyfunc: the trained tables it needs, saved as parquet
artifacts, and top-N for any customer from the kernels (no Spark needed to serve).

Input: a DataFrame with segment, customer_id and history (the item ids the customer bought).
Output: segment, customer_id, rank, item_id, score. A customer the model does not know (or a
segment it was not trained on) gets overall popularity.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.itemknn import ItemKnnModel
from recsys_spark.kernels.matrix import index_ids, index_lists, rows_of
from recsys_spark.kernels.topn import TopN, top_matches

OVERALL = "all"


class PublishedRecommender(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        config = context.model_config
        self.model, self.top_n = config["model"], int(config["top_n"])
        self.items = pd.read_parquet(context.artifacts["item_factors"])
        path = context.artifacts.get("user_factors")
        self.users = pd.read_parquet(path) if path else None
        path = context.artifacts.get("item_neighbours")
        self.neighbours = pd.read_parquet(path) if path else None

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frames = [
            self._segment(segment, part) for segment, part in model_input.groupby("segment", sort=False)
        ]
        columns = ["segment", "customer_id", "rank", "item_id", "score"]
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

    def _segment(self, segment: str, part: pd.DataFrame) -> pd.DataFrame:
        items = self.items[(self.items.segment == segment) & (self.items.model == self.model)]
        if self.model == "itemknn" and self.neighbours is not None:
            entries = self.neighbours[self.neighbours.segment == segment]
            if len(entries):
                has_history = part.history.map(lambda h: h is not None and len(h) > 0)
                known, rest = part[has_history], part[~has_history]
                return pd.concat([self._itemknn(segment, known, entries), self._popular(rest)])
        if self.model in FACTOR_MODELS and len(items) and self.users is not None:
            users = self.users[
                (self.users.segment == segment) & self.users.customer_id.isin(part.customer_id)
            ]
            known = part[part.customer_id.isin(users.customer_id)]
            vectors = users.set_index("customer_id").loc[known.customer_id, "factors"]
            rest = part[~part.customer_id.isin(users.customer_id)]
            return pd.concat([self._rank(segment, known, items, np.stack(vectors)), self._popular(rest)])
        own = self.items[(self.items.segment == segment) & (self.items.model == "popularity")]
        if self.model == "popularity" and len(own):
            return self._rank(segment, part, own, np.ones((len(part), 1), np.float32))
        return self._popular(part)

    def _popular(self, part: pd.DataFrame) -> pd.DataFrame:
        overall = self.items[(self.items.segment == OVERALL) & (self.items.model == "popularity")]
        return self._rank(OVERALL, part, overall, np.ones((len(part), 1), np.float32), keep_segment=True)

    def _rank(
        self,
        segment: str,
        part: pd.DataFrame,
        items: pd.DataFrame,
        vectors: np.ndarray,
        keep_segment: bool = False,
    ) -> pd.DataFrame:
        if not len(part) or not len(items):
            return pd.DataFrame()
        ids = items.item_id.to_numpy()
        exclude = rows_of(index_lists(ids, part.history), len(ids))
        top = top_matches(vectors, np.stack(items.factors.to_numpy()), self.top_n, exclude)
        return _rows(part, ids, top, None if keep_segment else segment)

    def _itemknn(self, segment: str, part: pd.DataFrame, entries: pd.DataFrame) -> pd.DataFrame:
        _, ids = index_ids(pd.concat([entries.item_id, entries.neighbour_item_id]))
        index = pd.Index(ids)
        rows, cols = index.get_indexer(entries.item_id), index.get_indexer(entries.neighbour_item_id)
        weights = entries.similarity.to_numpy(np.float32)
        similarity = sp.csr_matrix((weights, (rows, cols)), shape=(len(ids), len(ids)))
        history = rows_of(index_lists(ids, part.history), len(ids))
        top = ItemKnnModel(similarity).recommend(np.arange(len(part)), history, self.top_n)
        return _rows(part, ids, top, segment)


def _rows(part: pd.DataFrame, ids: np.ndarray, top: TopN, segment: str | None) -> pd.DataFrame:
    rows, ranks = np.nonzero(top.indices >= 0)
    return pd.DataFrame(
        {
            "segment": part.segment.to_numpy()[rows] if segment is None else segment,
            "customer_id": part.customer_id.to_numpy()[rows],
            "rank": ranks + 1,
            "item_id": ids[top.indices[rows, ranks]],
            "score": top.scores[rows, ranks],
        }
    )
