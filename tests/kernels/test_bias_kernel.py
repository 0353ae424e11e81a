"""The bias baseline (kernels/bias.py) against biases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_spark.kernels import bias


def test_the_biases_are_damped_means_of_the_residuals_items_first() -> None:
    # Two customers, two films: u0 rates i0 5 and i1 3; u1 rates i0 4. mu = 12 / 3 = 4.
    ratings = sp.csr_matrix(np.array([[5.0, 3.0], [4.0, 0.0]]))
    ratings.eliminate_zeros()
    model = bias.fit(ratings, bias.BiasParams(item_regularization=1.0, user_regularization=2.0))
    # b_i0 = ((5-4) + (4-4)) / (1 + 2) = 1/3;  b_i1 = (3-4) / (1 + 1) = -1/2
    # b_u0 = ((5-4-1/3) + (3-4+1/2)) / (2 + 2) = (2/3 - 1/2) / 4 = 1/24
    # b_u1 = (4-4-1/3) / (2 + 1) = -1/9
    b_item = np.array([1 / 3, -1 / 2])
    b_user = np.array([1 / 24, -1 / 9])
    predicted = model.user_factors @ model.item_factors.T
    expected = 4.0 + b_user[:, None] + b_item[None, :]
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)
    np.testing.assert_allclose(model.item_factors[:, 0], b_item, rtol=1e-6)


def test_without_damping_an_item_rated_once_gets_its_whole_residual_and_with_it_stays_near_the_mean() -> None:
    ratings = sp.csr_matrix(np.array([[5.0, 1.0], [5.0, 0.0], [5.0, 0.0]]))
    ratings.eliminate_zeros()
    free = bias.fit(ratings, bias.BiasParams(0.0, 0.0))
    damped = bias.fit(ratings, bias.BiasParams(25.0, 10.0))
    mu = 16 / 4
    assert free.item_factors[1, 0] == pytest.approx(1.0 - mu)
    assert abs(damped.item_factors[1, 0]) < abs(free.item_factors[1, 0]) / 10


def test_no_ratings_is_a_named_error() -> None:
    with pytest.raises(ValueError, match="no ratings"):
        bias.fit(sp.csr_matrix((2, 2)), bias.BiasParams())
