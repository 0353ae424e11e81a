"""User-based nearest neighbours (UserKNN): a customer's scores are the purchases of the K
customers most like them, weighted by how alike they are. numpy/scipy only; no Spark.

    s_u = sum over v in N_K(u) of sim(u, v) * r_v

``sim`` is the cosine of two customers' purchase rows: the confidence weights as they are
(``cosine``), or BM25-weighted first (``bm25``: an item most customers bought says little of
taste, and each item of a long history counts less). Nothing is learned ahead: the model is the
segment's customer x item matrix, weighted once, so a customer new since training, or a cart,
is scored from its history the same way as a known customer. A recommendation's reason is the
most similar neighbour who bought the item (its customer id is the list row's reason_item_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_spark.kernels.matrix import csr_cells, csr_of_cells
from recsys_spark.kernels.topn import TopN, mask_entries, top_n

# The customer x item matrix of one segment as one row, for the list tasks and the served model.
CUSTOMER_MATRIX_SCHEMA = (
    "segment string, customer_ids array<string>, item_ids array<string>, indptr array<bigint>, "
    "indices array<int>, weights array<float>"
)
SIMILARITY_CELLS = 1 << 24  # queries x customers compared at once (64 MB of float32)


@dataclass(frozen=True)
class UserKnnParams:
    similarity: Literal["bm25", "cosine"] = "bm25"
    neighbours: int = 50  # K: the most similar customers whose purchases count
    bm25_k1: float = 1.2
    bm25_b: float = 0.75


@dataclass(frozen=True)
class UserKnnModel:
    customer_ids: np.ndarray  # the segment's customers: the rows of ``bought``
    bought: sp.csr_matrix  # customers x items, confidence weights: what a neighbour passes on
    profiles: sp.csr_matrix  # customers x items, weighted unit rows: what similarity compares
    idf: np.ndarray  # per item: BM25's inverse document frequency (ones for cosine)
    average_length: float  # the customers' mean total weight (BM25's length norm)
    params: UserKnnParams

    def profile(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """Histories (rows x items, confidence weights) as unit rows weighted like the model's."""
        return _profiles(rows, self.idf, self.average_length, self.params)

    def recommend(
        self, history: sp.csr_matrix, own: np.ndarray, n: int, exclude_items: np.ndarray | None = None
    ) -> tuple[TopN, np.ndarray]:
        """Top ``n`` items for each history row (bought items and ``exclude_items`` excluded)
        and, per match, the row in ``customer_ids`` of the most similar neighbour who bought it
        (-1: none). ``own``: each query's own row in the model (-1: not in it), never its own
        neighbour."""
        step = max(1, SIMILARITY_CELLS // max(1, len(self.customer_ids)))
        parts, reasons = [], []
        for start in range(0, history.shape[0], step):
            block = history[start : start + step]
            near, similarity = self.neighbours(block, own[start : start + step])
            weights = sp.csr_matrix(
                (similarity.ravel(), near.ravel(), np.arange(0, near.size + 1, near.shape[1])),
                shape=(block.shape[0], len(self.customer_ids)),
            )
            scores = (weights @ self.bought).toarray().astype(np.float32)
            scores[scores <= 0] = -np.inf  # no neighbour bought it
            mask_entries(scores, block, exclude_items)
            top = top_n(scores, n)
            parts.append(top)
            reasons.append(self._reasons(near, similarity, top.indices))
        if not parts:
            return TopN.concat([], n), np.empty((0, n), np.int64)
        return TopN.concat(parts, n), np.vstack(reasons)

    def neighbours(self, history: sp.csr_matrix, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(each row's K most similar customers, as rows of the model, and their similarity;
        a similarity of 0 or less, or the customer itself, weighs 0)."""
        similarity = (self.profile(history) @ self.profiles.T).toarray()
        mine = np.flatnonzero(own >= 0)
        similarity[mine, own[mine]] = 0.0
        k = min(self.params.neighbours, similarity.shape[1])
        if k == 0:
            return np.zeros((len(own), 0), np.int64), np.zeros((len(own), 0))
        near = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(similarity, near, axis=1)
        return near, np.maximum(weights, 0.0)

    def _reasons(self, near: np.ndarray, similarity: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per recommended item, the most similar of ``near`` who bought it (-1: none)."""
        rows, k = near.shape
        n = items.shape[1]
        if k == 0:
            return np.full(items.shape, -1, np.int64)
        customers = np.repeat(near, n, axis=1)  # rows x (k * n): each neighbour for each item
        wanted = np.tile(np.maximum(items, 0), (1, k))
        bought = np.asarray(self.bought[customers.ravel(), wanted.ravel()]).reshape(rows, k, n) > 0
        weight = np.where(bought, np.repeat(similarity, n, axis=1).reshape(rows, k, n), -np.inf)
        best = weight.argmax(axis=1)
        reasons = np.take_along_axis(near, best, axis=1)
        found = np.take_along_axis(weight, best[:, None, :], axis=1)[:, 0, :] > 0
        return np.where(found & (items >= 0), reasons, -1)


def fit(customer_ids: np.ndarray, bought: sp.csr_matrix, params: UserKnnParams) -> UserKnnModel:
    """The model of one segment: ``bought`` (customers x items, confidence weights) and its
    customers' profiles, weighted as ``params.similarity`` says."""
    bought = sp.csr_matrix(bought, dtype=np.float32)
    buyers = np.bincount(bought.indices, minlength=bought.shape[1])
    idf = np.ones(len(buyers))
    if params.similarity == "bm25":  # implicit's BM25 idf, kept >= 0: an item all bought says nothing
        idf = np.maximum(np.log(max(bought.shape[0], 1)) - np.log1p(buyers), 0.0)
    average = float(np.asarray(bought.sum(axis=1)).mean()) if bought.shape[0] else 0.0
    return UserKnnModel(customer_ids, bought, _profiles(bought, idf, average, params), idf, average, params)


def _profiles(
    rows: sp.csr_matrix, idf: np.ndarray, average_length: float, params: UserKnnParams
) -> sp.csr_matrix:
    """``rows`` (confidence weights) BM25-weighted with ``idf`` and ``average_length`` (for
    ``similarity: bm25``), then scaled to unit length (zero rows stay zero)."""
    weighted = sp.csr_matrix(rows, dtype=np.float64, copy=True)
    if params.similarity == "bm25":
        k1, b = params.bm25_k1, params.bm25_b
        lengths = np.repeat(np.asarray(weighted.sum(axis=1)).ravel(), np.diff(weighted.indptr))
        norm = k1 * ((1.0 - b) + b * lengths / max(average_length, 1e-12))
        weighted.data = weighted.data * (k1 + 1.0) / (weighted.data + norm) * idf[weighted.indices]
    sizes = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(np.where(sizes > 0, 1.0 / np.maximum(sizes, 1e-300), 0.0)) @ weighted)


def of_matrix_row(row: pd.Series, params: UserKnnParams) -> tuple[np.ndarray, UserKnnModel]:
    """(the segment's item ids, its model) from one ``matrix_row`` row."""
    customer_ids = np.asarray(row["customer_ids"], dtype=object)
    item_ids = np.asarray(row["item_ids"], dtype=object)
    bought = csr_of_cells(row, "weights", (len(customer_ids), len(item_ids)))
    return item_ids, fit(customer_ids, bought, params)


def matrix_row(entries: pd.DataFrame) -> pd.DataFrame:
    """One segment's weights (segment, customer_id, item_id, weight) as one row of
    CUSTOMER_MATRIX_SCHEMA: sorted customer and item ids and the weights as CSR arrays."""
    customers = entries.customer_id.to_numpy(dtype=object)
    items = entries.item_id.to_numpy(dtype=object)
    customer_ids, item_ids = np.sort(pd.unique(customers)), np.sort(pd.unique(items))
    matrix = sp.csr_matrix(
        (
            entries.weight.to_numpy(np.float32),
            (pd.Index(customer_ids).get_indexer(customers), pd.Index(item_ids).get_indexer(items)),
        ),
        shape=(len(customer_ids), len(item_ids)),
    )
    matrix.sum_duplicates()
    segment = entries.segment.iloc[0]
    cells = {"segment": [segment], "customer_ids": [customer_ids], "item_ids": [item_ids]}
    return pd.DataFrame({**cells, **csr_cells(matrix, "weights")})
