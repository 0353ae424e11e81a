"""Bayesian Personalized Ranking through the `implicit` library (weights are read as bought / not).

The item factors carry a bias as their last column and the user factors a matching 1, so a plain
dot product is the model's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from recsys_spark.kernels.factors import FactorModel


@dataclass(frozen=True)
class BprParams:
    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 42


def fit(user_items: sp.csr_matrix, params: BprParams, threads: int = 1) -> FactorModel:
    """Fit BPR; with more than one thread the SGD updates race (Hogwild), so only one is exact."""
    model = BayesianPersonalizedRanking(
        factors=params.factors,
        learning_rate=params.learning_rate,
        regularization=params.regularization,
        iterations=params.iterations,
        random_state=params.seed,
        num_threads=threads,
    )
    model.fit(user_items.astype(np.float32), show_progress=False)
    return FactorModel(np.asarray(model.user_factors), np.asarray(model.item_factors))
