"""Graph-filter collaborative filtering in closed form (GF-CF: Shen et al., "How Powerful is
Graph Convolution for Recommendation?", CIKM 2021), the training-free limit of LightGCN-style
propagation over the customer-item graph. scipy/numpy only; no Spark.

With R the customers x items purchase graph (bought: 1), D_U and D_I its degrees and
R~ = D_U^-1/2 R D_I^-1/2 the normalised graph, a customer's scores are

    s_u = r_u (R~' R~  +  alpha * D_I^-1/2 V_k V_k' D_I^1/2)

the normalised item-item propagation (a linear low-pass filter) plus an ideal low-pass filter
on the graph's top k singular directions V_k. One truncated SVD of R~ = U S V' gives both:
R~' R~ = V S^2 V', kept to its top ``rank`` directions (exact when ``rank`` reaches the
graph's rank), so the model is a factor model like ALS, with

    customer u: [r_u V S^2,  alpha * r_u D_I^-1/2 V_k]      item i: [V_i,  d_i^1/2 V_k,i]

and scoring, similar items, serving and vector export are the factor models' own code. The
customer side is linear in the purchases: a customer's vector is the sum over the items bought
of each item's ``fold`` row [V_i S^2, alpha d_i^-1/2 V_k,i], kept beside the item factors (as
model ``graph_fold``) so that the score intervals can re-run it on resampled histories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from recsys_spark.kernels.factors import FactorModel
from recsys_spark.kernels.svd import truncated_svd

FOLD_MODEL = "graph_fold"  # silver.item_factors' model name of the fold rows
DENSE_SVD_MAX = 2_000  # below this many items or customers a full SVD is cheaper and exact


@dataclass(frozen=True)
class GraphParams:
    rank: int = 256  # singular directions kept of the item-item propagation R~'R~
    ideal_dims: int = 64  # k of the ideal low-pass filter (at most rank)
    alpha: float = 0.3  # the ideal low-pass filter's weight
    seed: int = 42  # the sparse SVD's start vector


def fit(user_items: sp.csr_matrix, params: GraphParams) -> FactorModel:
    """The graph filter of the users x items weights (any weight > 0 is an edge)."""
    graph = (sp.csr_matrix(user_items) > 0).astype(np.float64)
    user_degree = np.asarray(graph.sum(axis=1)).ravel()
    item_degree = np.asarray(graph.sum(axis=0)).ravel()
    normalised = sp.diags(_inverse_sqrt(user_degree)) @ graph @ sp.diags(_inverse_sqrt(item_degree))
    directions, strengths = top_right_singular(normalised.tocsr(), params.rank, params.seed)
    ideal = directions[:, : min(params.ideal_dims, directions.shape[1])]
    fold = np.hstack([directions * strengths**2, params.alpha * ideal * _inverse_sqrt(item_degree)[:, None]])
    items = np.hstack([directions, ideal * np.sqrt(item_degree)[:, None]])
    return FactorModel((graph @ fold).astype(np.float32), items.astype(np.float32), fold.astype(np.float32))


def top_right_singular(matrix: sp.csr_matrix, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(items x k right singular vectors, their k singular values), strongest first, taken
    from each connected part of the graph on its own: the normalised graph has singular value 1
    once per part, and a Lanczos solver (ARPACK or PROPACK) misses copies of a repeated value,
    so on a graph of many parts the top k were wrong."""
    _, part_of = connected_components(sp.bmat([[None, matrix], [matrix.T, None]]), directed=False)
    rows_by, items_by = _members(part_of[: matrix.shape[0]]), _members(part_of[matrix.shape[0] :])
    bought = matrix.getnnz(axis=0) > 0
    found = []  # per part with purchases: (its items, their right vectors, the values)
    for part, items in items_by.items():
        if bought[items[0]]:  # else an item nobody bought, a part of its own: no direction
            values, right = _part_singular(matrix[rows_by[part]][:, items], k, seed)
            found.append((items, right, values))
    values = np.concatenate([v for _, _, v in found]) if found else np.zeros(0)
    top = np.argsort(-values, kind="stable")[:k]
    # Each kept direction, by its part and its column there, spread over the items.
    owner = np.repeat(np.arange(len(found)), [len(v) for _, _, v in found])
    column = np.concatenate([np.arange(len(v)) for _, _, v in found]) if found else np.zeros(0, int)
    vectors = np.zeros((matrix.shape[1], len(top)))
    for position, chosen in enumerate(top):
        items, right, _ = found[owner[chosen]]
        vectors[items, position] = right[:, column[chosen]]
    return vectors, values[top]


def _members(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Label -> the positions holding it, in one sort (a mask per label was quadratic in the
    number of parts)."""
    order = np.argsort(labels, kind="stable")
    names, starts = np.unique(labels[order], return_index=True)
    return dict(zip(names.tolist(), np.split(order, starts[1:]), strict=True))


def _part_singular(matrix: sp.csr_matrix, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One connected part's top ``k`` (values, right vectors): a full SVD for small parts (exact,
    every direction), else the sparse one (``kernels.svd``)."""
    smaller = min(matrix.shape)
    if smaller <= DENSE_SVD_MAX or k >= smaller - 1:
        _, values, right = np.linalg.svd(matrix.toarray(), full_matrices=False)
        keep = min(k, int((values > values.max(initial=0.0) * 1e-12).sum()))
        return values[:keep], right[:keep].T
    _, values, right = truncated_svd(matrix, k, seed)
    return values, right


def _inverse_sqrt(degree: np.ndarray) -> np.ndarray:
    return np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
