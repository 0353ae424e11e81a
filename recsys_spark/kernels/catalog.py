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

from recsys_spark.kernels import userknn
from recsys_spark.kernels.itemknn import ItemKnnModel
from recsys_spark.kernels.matrix import csr_cells, csr_of_cells, index_lists, rows_of
from recsys_spark.kernels.topn import DEFAULT_BLOCK_ROWS, TopN, normalize_rows, top_matches


@dataclass(frozen=True)
class Catalog:
    """The candidates of one segment: sorted ids (ties go to the smaller id), their vectors,
    ItemKNN similarity or UserKNN customers, and the indexes never to return (exclude lists)."""

    ids: np.ndarray
    blocked: np.ndarray
    vectors: np.ndarray | None = None  # float32 candidates × f
    similarity: sp.csr_matrix | None = None  # ItemKNN: candidates × candidates
    customers: userknn.UserKnnModel | None = None  # UserKNN: the segment's customers × candidates
    fold: np.ndarray | None = None  # graph: a customer's vector is their purchases times these rows

    @staticmethod
    def of_vectors(
        ids: np.ndarray,
        vectors: np.ndarray,
        blocked_ids: set[str],
        cosine: bool = False,
        fold: np.ndarray | None = None,
    ) -> Catalog:
        """Candidates ``ids`` with their ``vectors`` (and ``fold`` rows, in the same order)."""
        order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
        ids = np.asarray(ids, dtype=object)[order]
        vectors = np.asarray(vectors, dtype=np.float32)[order]
        folded = None if fold is None else np.asarray(fold, dtype=np.float32)[order]
        blocked = _blocked(ids, blocked_ids)
        return Catalog(ids, blocked, normalize_rows(vectors) if cosine else vectors, fold=folded)

    @staticmethod
    def of_neighbours(matrix: pd.Series, blocked_ids: set[str]) -> Catalog:
        """From one segment's ``neighbour_matrix`` row."""
        ids = np.asarray(matrix["ids"], dtype=object)
        similarity = csr_of_cells(matrix, "similarity", (len(ids), len(ids)))
        return Catalog(ids, _blocked(ids, blocked_ids), similarity=similarity)

    @staticmethod
    def of_customers(matrix: pd.Series, blocked_ids: set[str], params: userknn.UserKnnParams) -> Catalog:
        """From one segment's ``userknn.matrix_row`` row."""
        ids, model = userknn.of_matrix_row(matrix, params)
        return Catalog(ids, _blocked(ids, blocked_ids), customers=model)

    def index_lists(self, lists: Sequence[Sequence[str] | None]) -> list[np.ndarray]:
        """Each list of ids as candidate indexes (-1 for ids not in the catalogue)."""
        return index_lists(self.ids, lists)

    def history_rows(
        self, histories: Sequence[Sequence[str] | None], weights: Sequence[Sequence[float]] | None
    ) -> sp.csr_matrix:
        """The histories as rows over the candidates (``weights``: each item's confidence,
        default 1; items not among the candidates dropped)."""
        return rows_of(self.index_lists(histories), len(self.ids), weights)

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
        return self.top_for_history_rows(self.history_rows(histories, weights), n, block_rows)

    def top_for_history_rows(
        self, history: sp.csr_matrix, n: int, block_rows: int = DEFAULT_BLOCK_ROWS
    ) -> tuple[TopN, np.ndarray]:
        """``top_for_histories`` of histories already made rows (``history_rows``)."""
        model = ItemKnnModel(self.similarity)
        top = model.recommend(np.arange(history.shape[0]), history, n, self.blocked, block_rows)
        return top, model.because_of(history, top)

    def top_for_customers(
        self, history: sp.csr_matrix, customer_ids: Sequence[str], n: int
    ) -> tuple[TopN, np.ndarray]:
        """UserKNN's ``n`` best per row of ``history`` (``history_rows``; bought items excluded)
        and, per match, the index in ``customers.customer_ids`` of the most similar customer who
        bought it; each of ``customer_ids`` is never its own neighbour."""
        assert self.customers is not None, "a UserKNN catalogue"
        own = pd.Index(self.customers.customer_ids).get_indexer(np.asarray(customer_ids, dtype=object))
        return self.customers.recommend(history, own, n, self.blocked)


NEIGHBOUR_MATRIX_SCHEMA = (
    "segment string, ids array<string>, indptr array<bigint>, indices array<int>, similarity array<float>"
)


def neighbour_matrix(entries: pd.DataFrame) -> pd.DataFrame:
    """One segment's ItemKNN entries (segment, item_id, neighbour_item_id, similarity) as one
    row (NEIGHBOUR_MATRIX_SCHEMA): its item ids, sorted, and the similarity between them as CSR
    arrays. Millions of pairs of id strings become 8 bytes each: this is what reaches the list
    tasks and the served model."""
    items = entries.item_id.to_numpy(dtype=object)
    neighbours = entries.neighbour_item_id.to_numpy(dtype=object)
    # Distinct ids by hashing, then sorted: millions of entries name a few thousand items.
    ids = np.sort(pd.unique(np.concatenate([items, neighbours])))
    index = pd.Index(ids)
    similarity = sp.csr_matrix(
        (entries.similarity.to_numpy(np.float32), (index.get_indexer(items), index.get_indexer(neighbours))),
        shape=(len(ids), len(ids)),
    )
    return pd.DataFrame(
        {"segment": [entries.segment.iloc[0]], "ids": [ids], **csr_cells(similarity, "similarity")}
    )


def _blocked(ids: np.ndarray, blocked_ids: set[str]) -> np.ndarray:
    return np.flatnonzero(np.isin(ids, list(blocked_ids))) if blocked_ids else np.empty(0, np.int64)
