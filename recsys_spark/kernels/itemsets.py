"""Frequent itemsets and association rules on one block of baskets: numpy/scipy, no Spark.

Mining is Eclat over packed bitsets: each item's baskets are a bit row, an itemset's baskets the
AND of its items' rows, its count a popcount. Pairs come from one sparse product XᵀX, so only the
frequent pairs' bit rows are ever built. Work grows with the number of frequent itemsets, not
with basket width, and a ceiling on that number stops a run before memory does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


class ItemsetCeilingError(RuntimeError):
    """More frequent itemsets than the configured ceiling: min_support is too low for this data."""


@dataclass(frozen=True)
class Rule:
    antecedent: tuple[int, ...]
    consequent: int
    support: float
    confidence: float
    lift: float
    leverage: float
    conviction: float


def basket_matrix(baskets: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """Baskets of item indexes as a binary CSR matrix (baskets × items); repeats count once."""
    lengths = np.fromiter((len(b) for b in baskets), dtype=np.int64, count=len(baskets))
    indptr = np.concatenate(([0], np.cumsum(lengths)))
    indices = np.fromiter((i for b in baskets for i in b), dtype=np.int32, count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=np.int32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(baskets), n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix


def packed_bits(matrix: sp.spmatrix) -> np.ndarray:
    """Each column's baskets as a row of packed uint64 bits (items × ceil(baskets / 64))."""
    csc = sp.csc_matrix(matrix)
    words = max(1, -(-csc.shape[0] // 64))
    bits = np.zeros((csc.shape[1], words), dtype=np.uint64)
    cols = np.repeat(np.arange(csc.shape[1]), np.diff(csc.indptr))
    rows = csc.indices.astype(np.int64)
    np.bitwise_or.at(bits, (cols, rows >> 6), np.left_shift(np.uint64(1), (rows & 63).astype(np.uint64)))
    return bits


def popcount(bits: np.ndarray) -> np.ndarray:
    """Set bits per row."""
    return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)


def frequent_itemsets(
    matrix: sp.spmatrix, min_count: int, max_len: int, max_itemsets: int
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """All itemsets (as sorted column-index tuples) in at least ``min_count`` baskets (rows).

    Exact. Raises ItemsetCeilingError as soon as more than ``max_itemsets`` are found.
    Returns the itemsets and their basket counts, singles first.
    """
    matrix = sp.csr_matrix(matrix, dtype=np.int32)
    item_counts = np.asarray(matrix.sum(axis=0)).ravel()
    frequent = np.flatnonzero(item_counts >= min_count)
    found: list[tuple[int, ...]] = [(int(i),) for i in frequent]
    counts: list[int] = [int(item_counts[i]) for i in frequent]
    _check_ceiling(len(found), max_itemsets, min_count)
    if max_len < 2 or len(frequent) < 2:
        return found, np.asarray(counts, dtype=np.int64)

    sub = matrix[:, frequent]
    pair_counts = sp.triu(sub.T @ sub, k=1).tocoo()
    keep = pair_counts.data >= min_count
    first, second, pair_n = pair_counts.row[keep], pair_counts.col[keep], pair_counts.data[keep]
    bits = packed_bits(sub)
    order = np.lexsort((second, first))
    first, second, pair_n = first[order], second[order], pair_n[order]
    starts = np.searchsorted(first, np.arange(len(frequent) + 1))
    for a in range(len(frequent)):
        lo, hi = starts[a], starts[a + 1]
        if lo == hi:
            continue
        extensions = second[lo:hi]
        for b, n in zip(extensions, pair_n[lo:hi], strict=True):
            found.append((int(frequent[a]), int(frequent[b])))
            counts.append(int(n))
        _check_ceiling(len(found), max_itemsets, min_count)
        if max_len > 2:
            _extend(
                (int(frequent[a]),),
                bits[a] & bits[extensions],
                frequent[extensions],
                max_len,
                min_count,
                max_itemsets,
                found,
                counts,
            )
    return found, np.asarray(counts, dtype=np.int64)


def _extend(
    prefix: tuple[int, ...],
    child_bits: np.ndarray,
    child_items: np.ndarray,
    max_len: int,
    min_count: int,
    max_itemsets: int,
    found: list[tuple[int, ...]],
    counts: list[int],
) -> None:
    """Depth-first Eclat step: ``child_bits[i]`` holds the baskets of prefix + child_items[i]."""
    for i in range(len(child_items) - 1):
        joined = child_bits[i + 1 :] & child_bits[i]
        n = popcount(joined)
        keep = np.flatnonzero(n >= min_count)
        if not len(keep):
            continue
        head = (*prefix, int(child_items[i]))
        grand_items = child_items[i + 1 :][keep]
        for item, c in zip(grand_items, n[keep], strict=True):
            found.append((*head, int(item)))
            counts.append(int(c))
        _check_ceiling(len(found), max_itemsets, min_count)
        if len(head) + 2 <= max_len:
            _extend(head, joined[keep], grand_items, max_len, min_count, max_itemsets, found, counts)


def count_itemsets(matrix: sp.spmatrix, itemsets: Iterable[Sequence[int]]) -> np.ndarray:
    """The number of baskets (rows) that contain each itemset (column-index tuples)."""
    itemsets = list(itemsets)
    if not itemsets:
        return np.zeros(0, dtype=np.int64)
    bits = packed_bits(matrix)
    out = np.empty(len(itemsets), dtype=np.int64)
    for k, itemset in enumerate(itemsets):
        joined = bits[itemset[0]]
        for item in itemset[1:]:
            joined = joined & bits[item]
        out[k] = popcount(joined)
    return out


def association_rules(
    itemsets: dict[tuple[int, ...], int], n_baskets: int, min_confidence: float, min_lift: float
) -> list[Rule]:
    """Rules X → {y} from frequent itemsets (keys sorted tuples, values basket counts).

    Every subset of a frequent itemset is frequent, so all supports are in ``itemsets``.
    conviction is inf where confidence is 1.
    """
    rules = []
    for itemset, joint in itemsets.items():
        if len(itemset) < 2:
            continue
        support = joint / n_baskets
        for consequent in itemset:
            antecedent = tuple(i for i in itemset if i != consequent)
            confidence = joint / itemsets[antecedent]
            consequent_support = itemsets[(consequent,)] / n_baskets
            lift = confidence / consequent_support
            if confidence < min_confidence or lift < min_lift:
                continue
            antecedent_support = itemsets[antecedent] / n_baskets
            conviction = np.inf if confidence >= 1 else (1 - consequent_support) / (1 - confidence)
            rules.append(
                Rule(
                    antecedent,
                    consequent,
                    support,
                    confidence,
                    lift,
                    support - antecedent_support * consequent_support,
                    float(conviction),
                )
            )
    return rules


def pair_counts(matrix: sp.spmatrix) -> np.ndarray:
    """Dense items × items co-occurrence counts (diagonal: item counts)."""
    matrix = sp.csr_matrix(matrix, dtype=np.int64)
    return (matrix.T @ matrix).toarray()


def _check_ceiling(found: int, max_itemsets: int, min_count: int) -> None:
    if found > max_itemsets:
        raise ItemsetCeilingError(
            f"more than {max_itemsets:,} frequent itemsets at a minimum count of {min_count:,} baskets: "
            "raise baskets.min_support (or baskets.max_itemsets if the memory allows)"
        )
