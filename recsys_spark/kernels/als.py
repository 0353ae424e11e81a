"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) through the `implicit` library's CPU solver.

Explicit ratings (``feedback="explicit"``) are factorized by Spark MLlib's ALS with
implicitPrefs off (``distributed.training.train_mllib_als``): this kernel refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recsys_spark.kernels.factors import FactorModel


@dataclass(frozen=True)
class AlsParams:
    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 40.0  # a bought item's confidence: alpha × weight (implicit's; unbought items 1)
    seed: int = 42
    log_scale: bool = False  # weight -> log(1 + weight) for ALS alone (tuning may choose it)
    feedback: Literal["implicit", "explicit"] = "implicit"  # explicit: ratings, on MLlib


def fit(user_items: sp.csr_matrix, params: AlsParams, threads: int = 1) -> FactorModel:
    """Factorize the users × items weights; ``threads`` is the solver's OpenMP thread count."""
    if params.feedback != "implicit":
        raise ValueError(
            "the implicit kernel factorizes confidences, not ratings: explicit ALS runs on MLlib"
        )
    # The solver parallelises over users itself; BLAS threads inside it only contend.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.seed,
            num_threads=threads,
        )
        weights = user_items.log1p() if params.log_scale else user_items
        model.fit(weights.astype(np.float32), show_progress=False)
    return FactorModel(np.asarray(model.user_factors), np.asarray(model.item_factors))
