"""UserKNN (kernels/userknn.py) on four customers worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from recsys_spark.kernels import userknn
from recsys_spark.kernels.userknn import UserKnnParams

# Items a b c d; customers u0: a b, u1: a b c, u2: b d, u3: c d.
BOUGHT = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=np.float32)
CUSTOMERS = np.array(["u0", "u1", "u2", "u3"], dtype=object)


def model(similarity: str = "cosine", neighbours: int = 2) -> userknn.UserKnnModel:
    return userknn.fit(CUSTOMERS, sp.csr_matrix(BOUGHT), UserKnnParams(similarity, neighbours))  # type: ignore[arg-type]


def test_scores_are_the_k_nearest_customers_purchases_weighted_by_cosine() -> None:
    top, because = model().recommend(sp.csr_matrix(BOUGHT), np.arange(4), 3)
    # u0 = (a+b)/sqrt2: cos(u0,u1) = 2/sqrt6 = 0.8165, cos(u0,u2) = 1/2, cos(u0,u3) = 0; K = 2.
    # c: 0.8165 (from u1); d: 0.5 (from u2); a, b bought.
    assert list(top.indices[0]) == [2, 3, -1]
    np.testing.assert_allclose(top.scores[0, :2], [2 / np.sqrt(6), 0.5], rtol=1e-6)
    assert list(because[0, :2]) == [1, 2]
    # u3 = (c+d)/sqrt2: cos(u3,u2) = 1/2, cos(u3,u1) = 1/sqrt6, itself excluded.
    # b: 0.5 + 0.408 (reason: u2, the more similar buyer of b); a: 0.408 (reason: u1).
    assert list(top.indices[3, :2]) == [1, 0]
    np.testing.assert_allclose(top.scores[3, :2], [0.5 + 1 / np.sqrt(6), 1 / np.sqrt(6)], rtol=1e-6)
    assert list(because[3, :2]) == [2, 1]


def test_a_new_customer_or_cart_is_scored_from_its_history() -> None:
    cart = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    top, because = model().recommend(cart, np.array([-1]), 2, exclude_items=np.array([2]))
    # cos(cart,u0) = 1/sqrt2, cos(cart,u1) = 1/sqrt3: b from both; c excluded for everyone.
    assert list(top.indices[0]) == [1, -1]
    assert top.scores[0, 0] == pytest.approx(1 / np.sqrt(2) + 1 / np.sqrt(3))
    assert because[0, 0] == 0


def test_bm25_profiles_are_implicits_bm25_weights_as_unit_rows() -> None:
    fitted = model("bm25")
    expected = bm25_weight(sp.coo_matrix(BOUGHT), K1=1.2, B=0.75).tocsr().toarray()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(fitted.profiles.toarray(), expected, rtol=1e-6)


def test_the_matrix_row_round_trips_the_segment() -> None:
    rows, cols = np.nonzero(BOUGHT)
    entries = pd.DataFrame(
        {
            "segment": "s",
            "customer_id": CUSTOMERS[rows],
            "item_id": np.array(list("abcd"))[cols],
            "weight": 2.0,
        }
    )
    items, rebuilt = userknn.of_matrix_row(userknn.matrix_row(entries).iloc[0], UserKnnParams())
    assert list(items) == list("abcd") and list(rebuilt.customer_ids) == list(CUSTOMERS)
    np.testing.assert_array_equal(rebuilt.bought.toarray(), 2 * BOUGHT)
