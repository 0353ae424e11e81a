"""The truncated SVD on either engine against numpy's full one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_spark.kernels import svd


def random_matrix(rows: int, cols: int, density: float) -> sp.csr_matrix:
    matrix = sp.random(rows, cols, density=density, random_state=3, format="csr")
    matrix.data[:] = np.random.default_rng(11).random(matrix.nnz)
    return matrix


def assert_top_triplets(matrix: sp.csr_matrix, k: int) -> None:
    left, values, right = svd.truncated_svd(matrix, k, seed=4)
    dense_left, dense_values, dense_right = np.linalg.svd(matrix.toarray(), full_matrices=False)
    np.testing.assert_allclose(values, dense_values[:k], rtol=1e-8)
    # The same directions up to sign, on both sides, and the same again for the same seed.
    np.testing.assert_allclose(np.abs(np.sum(left * dense_left[:, :k], axis=0)), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(right * dense_right[:k].T, axis=0)), 1.0, atol=1e-6)
    np.testing.assert_array_equal(svd.truncated_svd(matrix, k, seed=4)[2], right)


@pytest.mark.parametrize("engine", ["propack", "arpack"])
def test_either_engine_gives_the_top_triplets(monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    if engine == "propack" and not svd.propack_runs():
        pytest.skip("this scipy runs PROPACK only with SCIPY_USE_PROPACK set")
    monkeypatch.setattr(svd, "svd_engine", lambda shape, k: engine)
    assert_top_triplets(random_matrix(300, 120, 0.05), 10)


def test_arpack_takes_over_where_propack_does_not_converge() -> None:
    # A flat spectrum: PROPACK's 10 k = 80 Lanczos vectors do not settle 8 triplets.
    matrix = random_matrix(2200, 2100, 0.003)
    assert svd.svd_engine(matrix.shape, 8) == ("propack" if svd.propack_runs() else "arpack")
    assert_top_triplets(matrix, 8)


def test_arpack_where_propack_would_keep_too_many_vectors() -> None:
    assert svd.svd_engine((25_000, 10_000), 256) == ("propack" if svd.propack_runs() else "arpack")
    # 10 x 256 vectors of 1M + 10k doubles: 20 GB.
    assert svd.svd_engine((1_000_000, 10_000), 256) == "arpack"


def test_this_environment_runs_propack() -> None:
    # The project's own environment (scipy 1.17 when written) runs the faster engine.
    assert svd.propack_runs()
