"""Item-item nearest neighbours through the `implicit` library: a sparse item × item similarity.

A user's score for item j is the sum over their bought items i of weight(u, i) × sim(i, j); the
item i with the largest term is the recommendation's reason ("because you bought i").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import (
    BM25Recommender,
    CosineRecommender,
    ItemItemRecommender,
    TFIDFRecommender,
)
from implicit.utils import ParameterWarning

from recsys_spark.kernels.topn import DEFAULT_BLOCK_ROWS, TopN, cached_block_rows, mask_entries, top_n

Similarity = Literal["bm25", "tfidf", "cosine", "count"]


@dataclass(frozen=True)
class ItemKnnParams:
    similarity: Similarity = "bm25"
    neighbours: int = 100  # K: neighbours kept per item
    bm25_k1: float = 1.2
    bm25_b: float = 0.75


@dataclass(frozen=True)
class ItemKnnModel:
    similarity: sp.csr_matrix  # items × items, row i holds i's K neighbours

    def scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense users × items scores; items no neighbour reaches get -inf (not recommendable)."""
        scores = (user_items @ self.similarity).toarray().astype(np.float32)
        scores[scores <= 0] = -np.inf
        return scores

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        n: int,
        exclude_items: np.ndarray | None = None,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> TopN:
        """Top ``n`` items for the users whose history rows are ``user_items`` (bought ones excluded).

        ``users`` is accepted for the common interface; an item-based model scores from history alone.
        """
        parts = []
        block_rows = cached_block_rows(block_rows, user_items.shape[1])
        for start in range(0, user_items.shape[0], block_rows):
            block = user_items[start : start + block_rows]
            scores = self.scores(block)
            mask_entries(scores, block, exclude_items)
            parts.append(top_n(scores, n))
        return TopN.concat(parts, n)

    def because_of(self, user_items: sp.csr_matrix, top: TopN, block_rows: int = 1024) -> np.ndarray:
        """For each recommendation in ``top``, the bought item that contributed most (-1 if none;
        ties: the first in the history)."""
        reasons = np.full(top.indices.shape, -1, np.int32)
        for start in range(0, user_items.shape[0], block_rows):
            stop = min(start + block_rows, user_items.shape[0])
            reasons[start:stop] = self._reasons(user_items[start:stop], top.indices[start:stop])
        return reasons

    def _reasons(self, user_items: sp.csr_matrix, indices: np.ndarray) -> np.ndarray:
        """``because_of`` for one block: every (recommendation, bought item) pair scored at once."""
        reasons = np.full(indices.shape, -1, np.int32)
        rows, ranks = np.nonzero(indices >= 0)
        counts = np.diff(user_items.indptr)[rows]
        if not counts.sum():
            return reasons
        pair = np.repeat(np.arange(len(rows)), counts)
        offsets = np.cumsum(counts) - counts  # each pair's first entry
        within = np.arange(counts.sum()) - np.repeat(offsets, counts)  # position in the history
        entry = np.repeat(user_items.indptr[rows], counts) + within
        history = user_items.indices[entry]
        similarity = np.asarray(self.similarity[history, indices[rows, ranks][pair]]).ravel()
        terms = similarity * user_items.data[entry]
        # Each pair's entries are consecutive, in history order: its first entry of the highest term.
        filled = counts > 0
        highest = np.maximum.reduceat(terms, offsets[filled])
        at_max = np.flatnonzero(terms == np.repeat(highest, counts[filled]))
        first = at_max[np.r_[True, pair[at_max][1:] != pair[at_max][:-1]]]
        reasons[rows[pair[first]], ranks[pair[first]]] = history[first]
        return reasons

    def similar_items(self, items: np.ndarray, n: int) -> TopN:
        """Top ``n`` neighbours of each item (itself excluded)."""
        scores = self.similarity[items].toarray().astype(np.float32)
        scores[scores <= 0] = -np.inf
        scores[np.arange(len(items)), items] = -np.inf
        return top_n(scores, n)


def fit(user_items: sp.csr_matrix, params: ItemKnnParams, threads: int = 1) -> ItemKnnModel:
    """Compute the K-nearest-neighbour similarity with the chosen weighting."""
    k = params.neighbours
    model: ItemItemRecommender
    if params.similarity == "bm25":
        model = BM25Recommender(K=k, K1=params.bm25_k1, B=params.bm25_b, num_threads=threads)
    elif params.similarity == "tfidf":
        model = TFIDFRecommender(K=k, num_threads=threads)
    elif params.similarity == "cosine":
        model = CosineRecommender(K=k, num_threads=threads)
    else:
        model = ItemItemRecommender(K=k, num_threads=threads)
    with warnings.catch_warnings():
        # implicit converts its own weighted COO matrix to CSR and warns about it.
        warnings.simplefilter("ignore", ParameterWarning)
        # implicit's plain co-occurrence (no weighting step) reads doubles; the others cast.
        dtype = np.float64 if params.similarity == "count" else np.float32
        model.fit(user_items.astype(dtype), show_progress=False)
    return ItemKnnModel(sp.csr_matrix(model.similarity, dtype=np.float32))
