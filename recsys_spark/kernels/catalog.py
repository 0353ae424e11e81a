"""One segment's candidates and the top-N against them (numpy/scipy only; no Spark).

The batch scoring (``distributed.scoring``, inside its pandas UDFs) and the served model both
build a ``Catalog`` and call ``top_for_vectors`` or ``top_for_histories``: one implementation
of "best items for these customers".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_spark.kernels.itemknn import ItemKnnModel
from recsys_spark.kernels.matrix import index_lists, rows_of
from recsys_spark.kernels.topn import DEFAULT_BLOCK_ROWS, TopN, normalize_rows, top_matches


@dataclass(frozen=True)
class Catalog:
    """The candidates of one segment: sorted ids (ties go to the smaller id), their vectors or
    ItemKNN similarity, and the indexes never to return (exclude lists)."""

    ids: np.ndarray
    blocked: np.ndarray
    vectors: np.ndarray | None = None  # float32 candidates × f
    similarity: sp.csr_matrix | None = None  # ItemKNN: candidates × candidates

    @staticmethod
    def of_vectors(
        ids: np.ndarray, vectors: np.ndarray, blocked_ids: set[str], cosine: bool = False
    ) -> Catalog:
        order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
        ids = np.asarray(ids, dtype=object)[order]
        vectors = np.asarray(vectors, dtype=np.float32)[order]
        return Catalog(ids, _blocked(ids, blocked_ids), normalize_rows(vectors) if cosine else vectors)

    @staticmethod
    def of_neighbours(
        items: np.ndarray, neighbours: np.ndarray, weights: np.ndarray, blocked_ids: set[str]
    ) -> Catalog:
        """From ItemKNN's (item, neighbour, similarity) entries."""
        # Distinct ids by hashing, then sorted: millions of entries name a few thousand items.
        both = np.concatenate([np.asarray(items, dtype=object), np.asarray(neighbours, dtype=object)])
        ids = np.sort(pd.unique(both))
        index = pd.Index(ids)
        rows, cols = index.get_indexer(items), index.get_indexer(neighbours)
        similarity = sp.csr_matrix(
            (np.asarray(weights, np.float32), (rows, cols)), shape=(len(ids), len(ids))
        )
        return Catalog(ids, _blocked(ids, blocked_ids), similarity=similarity)

    def index_lists(self, lists: Sequence[Sequence[str] | None]) -> list[np.ndarray]:
        """Each list of ids as candidate indexes (-1 for ids not in the catalogue)."""
        return index_lists(self.ids, lists)

    def top_for_vectors(
        self,
        vectors: np.ndarray,
        exclude: Sequence[Sequence[str] | None],
        n: int,
        cosine: bool = False,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> TopN:
        """The ``n`` best candidates per query vector by dot product (cosine when ``cosine``),
        each query's ``exclude`` ids and the blocked ids masked out."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if cosine:
            vectors = normalize_rows(vectors)
        masked = rows_of(self.index_lists(exclude), len(self.ids))
        return top_matches(vectors, self.vectors, n, masked, self.blocked, block_rows)

    def top_for_histories(
        self,
        histories: Sequence[Sequence[str] | None],
        weights: Sequence[Sequence[float]] | None,
        n: int,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> tuple[TopN, np.ndarray]:
        """ItemKNN's ``n`` best per history (bought items excluded; ``weights``: each item's
        confidence, default 1) and, per match, the bought item's index that contributed most."""
        history = rows_of(self.index_lists(histories), len(self.ids), weights)
        model = ItemKnnModel(self.similarity)
        top = model.recommend(np.arange(len(histories)), history, n, self.blocked, block_rows)
        return top, model.because_of(history, top)


def _blocked(ids: np.ndarray, blocked_ids: set[str]) -> np.ndarray:
    return np.flatnonzero(np.isin(ids, list(blocked_ids))) if blocked_ids else np.empty(0, np.int64)
