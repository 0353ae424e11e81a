"""Content-based model: items as TF-IDF vectors of their text, customers as the weighted mean of
what they bought, scores as cosine (scipy only; no Spark).

The TF-IDF matrix is projected onto its top singular vectors (latent semantic analysis) so that
item vectors are compact and dense like ALS factors; the result is a FactorModel, so scoring,
similar items and serving are the same code as for ALS. Items nobody has bought yet still have a
vector: new products are reachable through their description.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_spark.kernels.factors import FactorModel
from recsys_spark.kernels.svd import truncated_svd
from recsys_spark.kernels.topn import normalize_rows

TOKEN_RE = re.compile(r"[A-Za-z]{2,}")


@dataclass(frozen=True)
class ContentParams:
    dims: int = 64  # size of the projected item vectors; 0 keeps the full TF-IDF vocabulary
    min_df: int = 2  # a word must appear in this many item texts to count
    seed: int = 42


def tokens(text: str | None) -> list[str]:
    """Upper-cased words of two or more letters ("SET OF 3 CAKE TINS" -> SET, OF, CAKE, TINS)."""
    return [t.upper() for t in TOKEN_RE.findall(text or "")]


def document_frequencies(docs: Sequence[list[str]]) -> dict[str, int]:
    """Per word, how many of ``docs`` (token lists) hold it."""
    df: dict[str, int] = {}
    for doc in docs:
        for word in set(doc):
            df[word] = df.get(word, 0) + 1
    return df


def has_vocabulary(texts: Sequence[str | None], min_df: int) -> bool:
    """Whether any word is used by at least ``min_df`` of ``texts``: without one, every item
    vector would be zero and the model would rank at random."""
    return any(n >= min_df for n in document_frequencies([tokens(t) for t in texts]).values())


def tfidf(texts: Sequence[str | None], min_df: int = 1) -> tuple[sp.csr_matrix, list[str]]:
    """Items × words TF-IDF, rows L2-normalised, and the vocabulary (sorted).

    tf = count of the word in the text; idf = ln((1 + n) / (1 + df)) + 1 (smoothed, as in
    scikit-learn); an item without any counted word has an all-zero row.
    """
    docs = [tokens(t) for t in texts]
    df = document_frequencies(docs)
    vocabulary = sorted(w for w, n in df.items() if n >= min_df)
    column = {w: j for j, w in enumerate(vocabulary)}
    rows, cols, counts = [], [], []
    for i, doc in enumerate(docs):
        for word in doc:
            if word in column:
                rows.append(i)
                cols.append(column[word])
                counts.append(1.0)
    matrix = sp.csr_matrix((counts, (rows, cols)), shape=(len(docs), len(vocabulary)), dtype=np.float64)
    matrix.sum_duplicates()
    idf = np.log((1 + len(docs)) / (1 + np.array([df[w] for w in vocabulary], dtype=np.float64))) + 1
    weighted = sp.csr_matrix(matrix.multiply(idf[None, :]))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1 / norms) @ weighted), vocabulary


def item_vectors(texts: Sequence[str | None], params: ContentParams) -> np.ndarray:
    """Dense, L2-normalised item vectors: TF-IDF, projected to ``params.dims`` when smaller."""
    matrix, _ = tfidf(texts, params.min_df)
    if matrix.shape[1] == 0:
        return np.zeros((matrix.shape[0], 1), dtype=np.float32)
    rank = min(matrix.shape) - 1
    if params.dims and params.dims < rank:
        left, singular, _ = truncated_svd(matrix, params.dims, params.seed)
        dense = left * singular
    else:
        dense = matrix.toarray()
    return normalize_rows(dense.astype(np.float32))


def fit(user_items: sp.csr_matrix, texts: Sequence[str | None], params: ContentParams) -> FactorModel:
    """Item vectors from ``texts`` (one per item column of ``user_items``) and each user's
    profile: the weighted mean of the vectors of the items they bought, L2-normalised, so that
    a dot product is the cosine of profile and item."""
    if len(texts) != user_items.shape[1]:
        raise ValueError(f"{len(texts)} item texts for {user_items.shape[1]} item columns")
    items = item_vectors(texts, params)
    profiles = np.asarray(user_items.astype(np.float32) @ items)
    return FactorModel(normalize_rows(profiles), items)
