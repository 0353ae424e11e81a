"""The graph filter (GF-CF) against its formula, and on a small graph worked by hand."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_spark.kernels.graph_filter import GraphParams, fit, top_right_singular


def formula_filter(bought: np.ndarray, alpha: float, k: int) -> np.ndarray:
    """The item x item filter R~'R~ + alpha D_I^-1/2 V_k V_k' D_I^1/2, written out densely."""
    du, di = bought.sum(axis=1), bought.sum(axis=0)
    normalised = bought / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    _, _, right = np.linalg.svd(normalised)
    top = right[:k].T
    ideal = np.diag(di**-0.5) @ top @ top.T @ np.diag(di**0.5)
    return normalised.T @ normalised + alpha * ideal


def test_scores_follow_the_formula() -> None:
    rng = np.random.default_rng(3)
    bought = (rng.random((40, 25)) < 0.2).astype(float)
    bought[:, 0] = bought[0, :] = 1.0  # nobody and nothing without an edge
    model = fit(sp.csr_matrix(bought), GraphParams(rank=25, ideal_dims=5, alpha=0.3))
    scores = model.user_factors.astype(float) @ model.item_factors.T
    graph_filter = formula_filter(bought, 0.3, 5)
    np.testing.assert_allclose(scores, bought @ graph_filter, atol=1e-4)
    # The customer side is linear in the purchases: the fold rows give any history its vector.
    assert model.fold is not None
    np.testing.assert_allclose(model.user_factors, bought @ model.fold, atol=1e-5)
    cart = np.zeros(25)
    cart[[2, 7]] = 1.0
    np.testing.assert_allclose((cart @ model.fold) @ model.item_factors.T, cart @ graph_filter, atol=1e-4)


def test_a_small_graph_by_hand() -> None:
    """Customers a: {1, 2}, b: {2, 3}, c: {3}. Without the ideal filter (alpha 0) a's score of
    item 3 is r_a R~'R~ e_3 = sum over j in {1, 2} and customers v of R~[v, j] R~[v, 3]: only b
    holds 2 and 3, R~[b, 2] R~[b, 3] = 1/sqrt(2 * 2) * 1/sqrt(2 * 2) = 1/4."""
    bought = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=float)
    model = fit(sp.csr_matrix(bought), GraphParams(rank=3, ideal_dims=1, alpha=0.0))
    scores = model.user_factors @ model.item_factors.T
    assert abs(scores[0, 2] - 0.25) < 1e-6
    # c's score of item 1: c holds 3 only, and no customer holds both 3 and 1: nothing reaches it.
    assert abs(scores[2, 0]) < 1e-6
    # Item 2 (two buyers) reaches c through b: R~[b, 3] R~[b, 2] = 1/4, as item 3 reached a.
    assert abs(scores[2, 1] - 0.25) < 1e-6


def test_the_sparse_svd_agrees_with_the_dense_one() -> None:
    rng = np.random.default_rng(5)
    matrix = sp.random(2200, 2100, density=0.003, random_state=7, format="csr")
    matrix.data[:] = rng.random(matrix.nnz)
    sparse_vectors, sparse_values = top_right_singular(matrix, 8, seed=1)
    _, values, right = np.linalg.svd(matrix.toarray(), full_matrices=False)
    np.testing.assert_allclose(sparse_values, values[:8], rtol=1e-6)
    overlap = np.abs(np.sum(sparse_vectors * right[:8].T, axis=0))  # the same directions, up to sign
    np.testing.assert_allclose(overlap, 1.0, atol=1e-5)


def test_a_graph_of_many_parts_keeps_every_strongest_direction() -> None:
    """Singular value 1 comes once per connected part of the normalised graph; a Lanczos solver
    on the whole graph missed copies of it (40 parts, top 40: 14 of the 40 found)."""
    rng = np.random.default_rng(0)
    blocks = [
        sp.csr_matrix(rng.random((rng.integers(3, 200), rng.integers(2, 150))) < 0.1) for _ in range(30)
    ]
    blocks += [sp.csr_matrix(np.ones((1, 1)))] * 50  # customers alone with an item of their own
    bought = sp.block_diag(blocks).tocsr().astype(float)
    bought = bought[np.asarray(bought.sum(axis=1)).ravel() > 0]
    bought = bought[:, np.asarray(bought.sum(axis=0)).ravel() > 0]
    du, di = np.asarray(bought.sum(axis=1)).ravel(), np.asarray(bought.sum(axis=0)).ravel()
    normalised = sp.csr_matrix(sp.diags(du**-0.5) @ bought @ sp.diags(di**-0.5))
    dense = np.linalg.svd(normalised.toarray(), compute_uv=False)
    assert (dense > 1 - 1e-9).sum() > 40  # many parts, each with its singular value 1
    for k in (40, 100):
        vectors, values = top_right_singular(normalised, k, seed=1)
        np.testing.assert_allclose(values, dense[:k], atol=1e-8)
        np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-8)  # independent directions
        reach = np.linalg.norm(normalised @ vectors, axis=0)  # each is a singular direction of its value
        np.testing.assert_allclose(reach, values, atol=1e-8)
