"""Top-N selection over blocks of scores: the part of scoring that costs the most.

Selection, not the matrix product, dominates: ``np.partition`` on values finds each row's N-th
best score cheaply, then only the candidates at or above it (N per row plus ties) are sorted.
Ties are broken by column index; callers index items in sorted id order, so ties go to the
smaller id and results are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

DEFAULT_BLOCK_ROWS = 4096


@dataclass(frozen=True)
class TopN:
    """Per query row, up to N matches best first: ``indices`` -1 and ``scores`` NaN past the end."""

    indices: np.ndarray  # int32, shape (rows, n)
    scores: np.ndarray  # float32, shape (rows, n)

    @property
    def counts(self) -> np.ndarray:
        return (self.indices >= 0).sum(axis=1)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        keep = self.indices[i] >= 0
        return self.indices[i][keep], self.scores[i][keep]

    @staticmethod
    def concat(parts: list[TopN], n: int) -> TopN:
        if not parts:
            return TopN(np.empty((0, n), np.int32), np.empty((0, n), np.float32))
        return TopN(np.vstack([p.indices for p in parts]), np.vstack([p.scores for p in parts]))


@contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """Cap BLAS/OpenMP threads: concurrent Spark tasks must not each start one per core."""
    with threadpool_limits(limits=max(1, threads)):
        yield


def top_n(scores: np.ndarray, n: int) -> TopN:
    """The ``n`` best finite scores of each row, best first, ties to the smaller column.

    Excluded entries must be ``-inf``; a row with fewer than ``n`` finite scores gets fewer
    matches. NaN means broken factors and raises rather than being ranked silently.
    """
    rows, cols = scores.shape
    if np.isnan(scores).any():
        raise ValueError("NaN in the scores: the factors or weights contain NaN; retrain the model")
    if cols > n:
        nth_best = np.partition(scores, cols - n, axis=1)[:, cols - n]
        candidates = (scores >= nth_best[:, None]) & np.isfinite(scores)
    else:
        candidates = np.isfinite(scores)
    row_ids, col_ids = np.nonzero(candidates)
    values = scores[row_ids, col_ids]
    order = np.lexsort((col_ids, -values, row_ids))
    row_ids, col_ids, values = row_ids[order], col_ids[order], values[order]
    starts = np.searchsorted(row_ids, np.arange(rows))
    rank = np.arange(len(row_ids)) - starts[row_ids]
    keep = rank < n
    indices = np.full((rows, n), -1, np.int32)
    best = np.full((rows, n), np.nan, np.float32)
    indices[row_ids[keep], rank[keep]] = col_ids[keep]
    best[row_ids[keep], rank[keep]] = values[keep]
    return TopN(indices, best)


def mask_entries(
    scores: np.ndarray, exclude: sp.csr_matrix | None, columns: np.ndarray | None = None
) -> None:
    """Set excluded entries to -inf in place: ``exclude``'s nonzero pattern, and whole ``columns``."""
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    if columns is not None and len(columns):
        scores[:, columns] = -np.inf


def self_mask(rows: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """An exclusion matrix that masks, for query k, column ``rows[k]`` (the query itself)."""
    ones = np.ones(len(rows), np.float32)
    return sp.csr_matrix((ones, (np.arange(len(rows)), rows)), shape=(len(rows), n_cols))


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): dot products become cosines."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)


def top_matches(
    queries: np.ndarray,
    candidates: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    exclude_columns: np.ndarray | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> TopN:
    """For each query vector, the ``n`` candidates with the largest dot product.

    ``exclude`` (queries × candidates, any nonzero excludes) and ``exclude_columns`` are masked
    before selection. Work goes in blocks of ``block_rows`` queries to bound memory.
    """
    candidates_t = np.ascontiguousarray(candidates.T, dtype=np.float32)
    parts = []
    for start in range(0, len(queries), block_rows):
        stop = min(start + block_rows, len(queries))
        scores = np.asarray(queries[start:stop], dtype=np.float32) @ candidates_t
        mask_entries(scores, exclude[start:stop] if exclude is not None else None, exclude_columns)
        parts.append(top_n(scores, n))
    return TopN.concat(parts, n)
