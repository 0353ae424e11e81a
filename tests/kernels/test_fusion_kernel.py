"""Fused embeddings by hand: the cosine is the alpha-weighted mix of the parts' cosines."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_spark.kernels.fusion import fuse


def test_weighted_concat_mixes_cosines_by_alpha() -> None:
    collaborative = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    content = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    fused = fuse(collaborative, content, "weighted_concat", alpha=0.25)
    # items 0 and 1: collaborative cosine 0, content cosine 1 -> 0.25 * 0 + 0.75 * 1
    assert float(fused[0] @ fused[1]) == pytest.approx(0.75)
    # items 0 and 2: collaborative cosine 1/sqrt(2), content cosine 0
    assert float(fused[0] @ fused[2]) == pytest.approx(0.25 / np.sqrt(2))
    assert np.linalg.norm(fused, axis=1) == pytest.approx([1, 1, 1])


def test_concat_is_equal_weights_and_cold_items_follow_content() -> None:
    collaborative = np.array([[1.0, 0.0], [0.0, 0.0]])  # item 1 has no factors (never bought)
    content = np.array([[1.0, 0.0], [1.0, 0.0]])
    fused = fuse(collaborative, content, "concat")
    assert fused[1].tolist() == pytest.approx([0, 0, 1, 0])  # content alone, unit length
    assert float(fused[0] @ fused[1]) == pytest.approx(np.sqrt(0.5))


def test_projection_keeps_the_neighbourhoods() -> None:
    rng = np.random.default_rng(3)
    collaborative, content = rng.normal(size=(40, 8)), rng.normal(size=(40, 12))
    full = fuse(collaborative, content, "weighted_concat", alpha=0.5)
    small = fuse(collaborative, content, "projection", alpha=0.5, dims=19)
    assert small.shape == (40, 19)

    # 19 of 20 dimensions: nearly every item keeps its nearest neighbour.
    def nearest(vectors: np.ndarray) -> np.ndarray:
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity.argmax(axis=1)

    assert (nearest(full) == nearest(small)).mean() >= 0.9


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="2 collaborative rows but 1 content rows"):
        fuse(np.ones((2, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        fuse(np.ones((1, 2)), np.ones((1, 2)), alpha=2.0)
    with pytest.raises(ValueError, match="unknown fusion strategy"):
        fuse(np.ones((1, 2)), np.ones((1, 2)), "sum")  # type: ignore[arg-type]
