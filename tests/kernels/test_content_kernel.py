"""The content-based kernel by hand: TF-IDF weights, profiles, and reaching unbought items."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_spark.kernels.content import ContentParams, fit, item_vectors, tfidf, tokens


def test_tokens_keep_words_of_two_or_more_letters() -> None:
    assert tokens("Set of 3 cake-tins, PANTRY") == ["SET", "OF", "CAKE", "TINS", "PANTRY"]
    assert tokens(None) == [] and tokens("3 x") == []


def test_tfidf_weights_by_hand() -> None:
    matrix, vocabulary = tfidf(["red bag", "red red box", "blue"])
    assert vocabulary == ["BAG", "BLUE", "BOX", "RED"]
    idf = {w: math.log(4 / (1 + df)) + 1 for w, df in {"BAG": 1, "BLUE": 1, "BOX": 1, "RED": 2}.items()}
    second = np.array([0, 0, idf["BOX"], 2 * idf["RED"]])
    assert matrix[1].toarray().ravel() == pytest.approx(second / np.linalg.norm(second))
    assert matrix[2].toarray().ravel() == pytest.approx([0, 1, 0, 0])
    assert np.linalg.norm(matrix.toarray(), axis=1) == pytest.approx([1, 1, 1])


def test_min_df_drops_rare_words_and_empty_texts_stay_zero() -> None:
    matrix, vocabulary = tfidf(["red bag", "red box", None], min_df=2)
    assert vocabulary == ["RED"]
    assert matrix.toarray().ravel().tolist() == [1.0, 1.0, 0.0]


def test_projection_keeps_cosines_of_similar_texts() -> None:
    texts = [f"jumbo bag {c}" for c in ("red", "pink", "blue")] + [f"cake tin {c}" for c in ("red", "pink")]
    texts += [f"word{i} other{i}" for i in range(6)]
    full = item_vectors(texts, ContentParams(dims=0, min_df=1))
    small = item_vectors(texts, ContentParams(dims=4, min_df=1))
    assert small.shape == (len(texts), 4)
    assert np.linalg.norm(small, axis=1) == pytest.approx(np.ones(len(texts)), abs=1e-5)
    # The two bag items stay closer to each other than to a cake tin, in both spaces.
    for vectors in (full, small):
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[3]


def test_profile_is_the_weighted_mean_and_new_items_are_reachable() -> None:
    texts = ["red jumbo bag", "pink jumbo bag", "cake tin", "blue jumbo bag"]  # item 3: nobody bought it
    user_items = sp.csr_matrix(np.array([[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))
    model = fit(user_items, texts, ContentParams(dims=0, min_df=1))
    items = item_vectors(texts, ContentParams(dims=0, min_df=1))
    expected = 2 * items[0] + items[1]
    assert model.user_factors[0] == pytest.approx(expected / np.linalg.norm(expected), abs=1e-6)
    top = model.recommend(np.array([0, 1]), user_items, 1)
    assert top.indices[0].tolist() == [3]  # the bag lover gets the new bag, by description alone
    assert top.scores[0][0] == pytest.approx(float(model.user_factors[0] @ items[3]), abs=1e-6)


def test_texts_must_match_the_item_columns() -> None:
    with pytest.raises(ValueError, match="2 item texts for 3 item columns"):
        fit(sp.csr_matrix((1, 3)), ["a", "b"], ContentParams())
