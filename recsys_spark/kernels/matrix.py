"""A segment's user × item matrix with the string ids of its rows and columns.

Ids are strings everywhere outside a kernel; here they become row and column indexes, in sorted
id order so that ties broken by index are ties broken by id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    user_ids: np.ndarray  # sorted, one per row
    item_ids: np.ndarray  # sorted, one per column
    weights: sp.csr_matrix  # float32 users × items, duplicates summed
    user_codes: np.ndarray  # the row of each input entry, in input order
    item_codes: np.ndarray  # the column of each input entry

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape

    def matrix(self, values: Sequence[float] | pd.Series) -> sp.csr_matrix:
        """Another users × items matrix over the same entries (in input order), e.g. ages.

        Explicit zeros are kept, so it has the weights' sparsity pattern.
        """
        return _csr(np.asarray(values, dtype=np.float32), self.user_codes, self.item_codes, self.shape)


def index_ids(ids: Sequence[str] | np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted distinct ids): ``ids[k] == distinct[codes[k]]``."""
    codes, distinct = pd.factorize(pd.Series(ids, dtype=object), sort=True)
    return codes.astype(np.int32), np.asarray(distinct, dtype=object)


def build_interactions(
    users: Sequence[str] | pd.Series, items: Sequence[str] | pd.Series, weights: Sequence[float] | pd.Series
) -> Interactions:
    """The weights matrix from parallel columns of user ids, item ids and weights."""
    user_codes, user_ids = index_ids(users)
    item_codes, item_ids = index_ids(items)
    values = np.asarray(weights, dtype=np.float32)
    if len(values) and not np.isfinite(values).all():
        raise ValueError("interaction weights contain NaN or infinity; check models.confidence and the input")
    matrix = _csr(values, user_codes, item_codes, (len(user_ids), len(item_ids)))
    return Interactions(user_ids, item_ids, matrix, user_codes, item_codes)


def _csr(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.coo_matrix((values, (rows, cols)), shape=shape, dtype=np.float32).tocsr()
    matrix.sum_duplicates()
    return matrix


def index_lists(ids: np.ndarray, lists: Sequence[Sequence[str] | None]) -> list[np.ndarray]:
    """Each list of ids as indexes into ``ids`` (-1 for ids not there; None is an empty list),
    in one lookup."""
    arrays = [np.asarray(x, dtype=object) if x is not None else np.empty(0, object) for x in lists]
    if not arrays:
        return []
    codes = pd.Index(ids).get_indexer(np.concatenate(arrays))
    return np.split(codes, np.cumsum([len(a) for a in arrays])[:-1])


def rows_of(
    lists: Sequence[np.ndarray], n_cols: int, values: Sequence[np.ndarray] | None = None
) -> sp.csr_matrix:
    """A CSR with one row per list of column indexes; negative indexes (unknown ids) are dropped.

    ``values`` gives each entry's weight (default 1); repeated columns in a row are summed.
    """
    lengths = np.fromiter((len(x) for x in lists), np.int64, len(lists))
    cols = np.concatenate(lists).astype(np.int64) if len(lists) else np.empty(0, np.int64)
    if values is not None and len(lists):
        data = np.concatenate(values).astype(np.float32)
    else:
        data = np.ones(len(cols), np.float32)
    rows = np.repeat(np.arange(len(lists)), lengths)
    keep = cols >= 0
    return _csr(data[keep], rows[keep], cols[keep], (len(lists), n_cols))


def csr_cells(matrix: sp.csr_matrix, values: str) -> dict[str, list[np.ndarray]]:
    """``matrix``'s CSR arrays as one table row's cells (``indptr``, ``indices`` and ``values``):
    how a segment's matrix travels to the list tasks and the served model."""
    return {
        "indptr": [matrix.indptr.astype(np.int64)],
        "indices": [matrix.indices.astype(np.int32)],
        values: [matrix.data.astype(np.float32)],
    }


def csr_of_cells(row: Mapping[str, Any], values: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """The matrix ``csr_cells`` stored in ``row``."""
    return sp.csr_matrix(
        (
            np.asarray(row[values], np.float32),
            np.asarray(row["indices"], np.int32),
            np.asarray(row["indptr"], np.int64),
        ),
        shape=shape,
    )
