"""The truncated SVD the graph filter and the content model are built on (scipy; no Spark).

One name, the engine picked behind it. PROPACK (``svds(solver="propack")``) extends one Lanczos
bidiagonalisation until the top triplets converge, where ARPACK restarts an eigenproblem of the
Gram matrix: for the graph filter's 256 directions of one 25k x 10k segment 7.0 s against
12.3 s on one core, the singular values equal to 4e-15. PROPACK keeps every Lanczos vector of
both sides (up to 10 k of them: 470 MB there, against ARPACK's 180 MB), so ARPACK takes over
where those could outgrow ``PROPACK_MEMORY``, where this scipy runs PROPACK only behind its
SCIPY_USE_PROPACK switch (older releases, some Databricks runtimes), and where PROPACK does not
converge within its 10 k vectors (a flat spectrum). Both are single-vector Lanczos methods: a
repeated singular value may come out fewer times than it occurs (PROPACK more often), which is
why the graph filter decomposes each connected part of its graph on its own.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

PROPACK_MEMORY = 1 << 30  # bytes of Lanczos vectors PROPACK may keep, at its limit of 10 k


@functools.cache
def propack_runs() -> bool:
    """Whether this scipy runs PROPACK without its opt-in switch."""
    try:
        svds(sp.diags([4.0, 3.0, 2.0, 1.0], format="csr"), k=1, solver="propack", random_state=0)
    except ValueError:  # the switch is off: scipy's message names SCIPY_USE_PROPACK
        return False
    return True


def svd_engine(shape: tuple[int, int], k: int) -> str:
    """The engine, "propack" or "arpack", for the top ``k`` triplets of a matrix of ``shape``."""
    vectors_bytes = 10 * k * (shape[0] + shape[1]) * 8
    return "propack" if vectors_bytes <= PROPACK_MEMORY and propack_runs() else "arpack"


def truncated_svd(matrix: sp.spmatrix, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left vectors rows x k, singular values k, right vectors columns x k) of the ``k``
    strongest directions, strongest first; the same for the same ``seed``. ``k`` below the
    smaller side of ``matrix``.

    Example::

        left, values, right = truncated_svd(tfidf_matrix, 64, seed=42)
    """
    rng = np.random.default_rng(seed)
    found = None
    if svd_engine(matrix.shape, k) == "propack":
        try:
            found = svds(matrix, k=k, v0=rng.random(matrix.shape[0]), solver="propack", random_state=seed)
        except np.linalg.LinAlgError:  # not converged within its Krylov limit: ARPACK restarts
            found = None
    if found is None:
        found = svds(matrix, k=k, v0=rng.random(min(matrix.shape)))
    left, values, right = found
    order = np.argsort(values)[::-1]
    return left[:, order], values[order], right[order].T
