"""Hybrid item embeddings: collaborative factors and content vectors in one vector (numpy only).

With weights ``sqrt(alpha)`` and ``sqrt(1 - alpha)`` on the two L2-normalised parts, the cosine
of two fused vectors is ``alpha * cos(collaborative) + (1 - alpha) * cos(content)`` whenever both
items have both parts; an item with no collaborative factors (never bought) is placed by its
content alone, which is what makes the embedding useful for cold-start items.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from recsys_spark.kernels.topn import normalize_rows

Strategy = Literal["concat", "weighted_concat", "projection"]
FUSED_MODEL = "hybrid_embedding"  # the fused vectors' model name in silver.item_factors


def fuse(
    collaborative: np.ndarray,
    content: np.ndarray,
    strategy: Strategy = "weighted_concat",
    alpha: float = 0.5,
    dims: int = 32,
) -> np.ndarray:
    """One row per item: ``collaborative`` (rows of zeros where an item has no factors) next to
    ``content``. ``concat`` weighs the parts equally, ``weighted_concat`` by ``alpha``,
    ``projection`` is ``weighted_concat`` reduced to ``dims`` principal components. L2 rows."""
    if collaborative.shape[0] != content.shape[0]:
        raise ValueError(f"{collaborative.shape[0]} collaborative rows but {content.shape[0]} content rows")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"fusion alpha must be within [0, 1], got {alpha}")
    weight = 0.5 if strategy == "concat" else alpha
    fused = np.hstack(
        [np.sqrt(weight) * normalize_rows(collaborative), np.sqrt(1 - weight) * normalize_rows(content)]
    )
    if strategy == "projection" and dims < min(fused.shape):
        centred = fused - fused.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        fused = fused @ components[:dims].T
    elif strategy not in ("concat", "weighted_concat", "projection"):
        raise ValueError(f"unknown fusion strategy {strategy!r}: concat, weighted_concat or projection")
    return normalize_rows(fused.astype(np.float32))
