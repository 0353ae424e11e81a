"""Model kernels against `implicit` called directly and against hand-computed cases (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import BM25Recommender

from recsys_spark import synthetic
from recsys_spark.kernels import als, bpr, content, itemknn, popularity
from recsys_spark.kernels.matrix import build_interactions, index_ids, rows_of
from recsys_spark.kernels.recommender import Recommender
from recsys_spark.kernels.topn import BLOCK_BYTES, MIN_BLOCK_ROWS, cached_block_rows, top_matches, top_n


@pytest.fixture(scope="module")
def data():
    frame = synthetic.purchases(n_users=400, n_items=150, n_events=6000, n_categories=8, seed=3)
    return build_interactions(frame.customer_id, frame.item_id, np.ones(len(frame)))


def test_top_n_breaks_ties_by_smaller_column_and_stops_at_finite_scores():
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 2.0, 3.0],
            [-np.inf, 5.0, -np.inf, -np.inf, -np.inf],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ],
        np.float32,
    )
    top = top_n(scores, 3)
    assert top.indices.tolist() == [[1, 2, 4], [1, -1, -1], [0, 1, 2]]
    np.testing.assert_array_equal(top.scores[0], [3, 3, 3])
    assert np.isnan(top.scores[1, 1:]).all()
    assert top.counts.tolist() == [3, 1, 3]


def test_top_n_with_n_larger_than_columns_sorts_every_finite_score():
    top = top_n(np.array([[0.5, -np.inf, 2.0]], np.float32), 5)
    assert top.indices.tolist() == [[2, 0, -1, -1, -1]]


def test_top_n_refuses_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        top_n(np.array([[0.5, np.nan]], np.float32), 1)


def test_top_matches_masks_excluded_entries_and_columns():
    queries = np.eye(2, dtype=np.float32)
    candidates = np.array([[3, 0], [2, 1], [1, 2], [0, 3]], np.float32)
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]]))
    top = top_matches(queries, candidates, 2, exclude, exclude_columns=np.array([3]), block_rows=1)
    assert top.indices.tolist() == [[1, 2], [2, 1]]


def test_blocks_shrink_to_stay_in_cache_and_never_change_the_lists():
    assert cached_block_rows(4096, 1000) == 2097  # 1,000 items: 2,097 rows of scores fill 8 MiB
    assert cached_block_rows(4096, 10_000) == BLOCK_BYTES // 40_000
    assert cached_block_rows(64, 10_000) == 64  # conf's smaller blocks stay
    assert cached_block_rows(4096, 10_000_000) == MIN_BLOCK_ROWS
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((300, 4)).astype(np.float32)
    candidates = rng.standard_normal((70_000, 4)).astype(np.float32)  # 29-row blocks
    exclude = sp.random(300, 70_000, density=0.001, format="csr", random_state=1)
    whole = top_n(np.where(exclude.toarray() > 0, -np.inf, queries @ candidates.T).astype(np.float32), 5)
    blocked = top_matches(queries, candidates, 5, exclude)
    np.testing.assert_array_equal(blocked.indices, whole.indices)


def test_index_ids_round_trips_awkward_strings():
    ids = ["a,b", 'say "hi"', "naïve ☕", "a,b", "line\nbreak"]
    codes, distinct = index_ids(ids)
    assert [distinct[c] for c in codes] == ids
    assert list(distinct) == sorted(set(ids))


def test_rows_of_drops_unknown_ids_and_sums_repeats():
    matrix = rows_of([np.array([0, 2, 2]), np.array([-1, 1])], 3, [np.array([1, 2, 3]), np.array([9, 4])])
    assert matrix.toarray().tolist() == [[1, 0, 5], [0, 4, 0]]


def test_als_factors_and_top_n_equal_implicit_called_directly(data):
    params = als.AlsParams(factors=16, regularization=0.05, iterations=5, alpha=10.0, seed=7)
    ours = als.fit(data.weights, params, threads=1)
    direct = AlternatingLeastSquares(
        factors=16, regularization=0.05, alpha=10.0, iterations=5, random_state=7, num_threads=1
    )
    direct.fit(data.weights, show_progress=False)
    np.testing.assert_allclose(ours.user_factors, direct.user_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.item_factors, direct.item_factors, rtol=1e-5, atol=1e-6)

    users = np.arange(data.shape[0])
    top = ours.recommend(users, data.weights, 10)
    ids, scores = direct.recommend(users, data.weights, N=10, filter_already_liked_items=True)
    np.testing.assert_array_equal(top.indices, ids)
    np.testing.assert_allclose(top.scores, scores, rtol=1e-4)
    in_threads = ours.recommend(users, data.weights, 10, block_rows=64, threads=2)
    np.testing.assert_array_equal(in_threads.indices, top.indices)


def test_recommendations_never_repeat_a_bought_item_and_fill_to_the_eligible_count(data):
    model = als.fit(data.weights, als.AlsParams(factors=8, iterations=2), threads=1)
    n = data.shape[1]  # ask for every item: each user gets exactly the ones not bought
    top = model.recommend(np.arange(data.shape[0]), data.weights, n, exclude_items=np.array([0]))
    bought = data.weights.toarray() > 0
    for user in range(data.shape[0]):
        items, _ = top.row(user)
        assert not bought[user, items].any()
        assert 0 not in items
        assert len(items) == n - bought[user, 1:].sum() - 1


def test_itemknn_top_n_equals_implicit_bm25_and_names_the_main_reason(data):
    params = itemknn.ItemKnnParams(similarity="bm25", neighbours=30)
    ours = itemknn.fit(data.weights, params)
    direct = BM25Recommender(K=30, K1=1.2, B=0.75)
    direct.fit(data.weights, show_progress=False)
    users = np.arange(data.shape[0])
    top = ours.recommend(users, data.weights, 10)
    ids, scores = direct.recommend(users, data.weights, N=10)
    for user in users:
        got_ids, got_scores = top.row(user)
        np.testing.assert_allclose(got_scores, scores[user][: len(got_scores)], rtol=1e-4)
        # implicit orders equal scores arbitrarily: compare ids where the score is unique.
        unique = np.abs(got_scores[:, None] - got_scores[None, :]).__lt__(1e-5).sum(axis=1) == 1
        np.testing.assert_array_equal(got_ids[unique], ids[user][: len(got_ids)][unique])

    reasons = ours.because_of(data.weights[:5], ours.recommend(users[:5], data.weights[:5], 3))
    dense_sim = ours.similarity.toarray()
    for user in range(5):
        history = data.weights[user].indices
        for rank, item in enumerate(top.row(user)[0][:3]):
            terms = data.weights[user, history].toarray().ravel() * dense_sim[history, item]
            assert reasons[user, rank] == history[terms.argmax()]


def test_itemknn_count_similarity_trains_and_scores_as_co_occurrence(data):
    """similarity: count (implicit's plain ItemItemRecommender) used to crash on float32 input."""
    model = itemknn.fit(data.weights, itemknn.ItemKnnParams(similarity="count", neighbours=1000))
    co_occurrence = (data.weights.T @ data.weights).toarray()
    np.testing.assert_allclose(model.similarity.toarray(), co_occurrence, rtol=1e-5)
    users = np.arange(20)
    top = model.recommend(users, data.weights[users], 5)
    assert (top.counts == 5).all()
    scores = (data.weights[users] @ co_occurrence).astype(np.float32)
    for user in users:
        ids, got = top.row(user)
        assert not set(ids) & set(data.weights[user].indices)
        np.testing.assert_allclose(got, scores[user, ids], rtol=1e-5)


def test_itemknn_similar_items_exclude_the_item_itself(data):
    model = itemknn.fit(data.weights, itemknn.ItemKnnParams(similarity="cosine", neighbours=10))
    top = model.similar_items(np.arange(20), 5)
    assert all(i not in top.row(i)[0] for i in range(20))


def test_popularity_counts_buyers_with_optional_half_life():
    data = build_interactions(["u1", "u1", "u2", "u3"], ["a", "b", "a", "a"], [5, 1, 1, 2])
    assert popularity.fit(data.weights, popularity.PopularityParams()).item_scores.tolist() == [3, 1]
    ages = data.matrix([0, 10, 10, 20])  # explicit zero age kept
    model = popularity.fit(data.weights, popularity.PopularityParams(half_life_days=10), ages)
    np.testing.assert_allclose(model.item_scores, [1 + 0.5 + 0.25, 0.5])
    top = model.recommend(np.arange(3), data.weights, 2)
    assert top.indices.tolist() == [[-1, -1], [1, -1], [1, -1]]


def test_bpr_scores_are_plain_dot_products_of_the_stored_factors(data):
    model = bpr.fit(data.weights, bpr.BprParams(factors=8, iterations=5), threads=1)
    assert model.item_factors.shape[1] == model.user_factors.shape[1] == 9  # bias column
    top = model.recommend(np.arange(3), data.weights[:3], 5)
    expected = model.user_factors[:3] @ model.item_factors.T
    for user in range(3):
        items, scores = top.row(user)
        np.testing.assert_allclose(scores, expected[user, items], rtol=1e-5)


@pytest.mark.parametrize("n", [1, 5, 20])
def test_top_n_equals_a_full_sort_on_random_scores_with_ties_and_exclusions(n):
    rng = np.random.default_rng(n)
    scores = rng.integers(0, 50, size=(300, 1000)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[:5, 3:] = -np.inf  # rows with fewer than n finite scores
    top = top_n(scores, n)
    for row in range(len(scores)):
        finite = np.flatnonzero(np.isfinite(scores[row]))
        expected = finite[np.lexsort((finite, -scores[row, finite]))][:n]
        assert top.row(row)[0].tolist() == expected.tolist()


def test_every_model_implements_the_recommender_interface(data) -> None:
    """Each kernel's fit returns a Recommender whose recommend and similar_items answer the same
    shapes (the contract training, batch scoring and serving rely on)."""
    matrix = data.weights
    fitted = {
        "als": als.fit(matrix, als.AlsParams(factors=8, iterations=3)),
        "bpr": bpr.fit(matrix, bpr.BprParams(factors=8, iterations=3)),
        "itemknn": itemknn.fit(matrix, itemknn.ItemKnnParams(neighbours=20)),
        "popularity": popularity.fit(matrix, popularity.PopularityParams()),
        "content": content.fit(
            matrix,
            [f"WORD{i % 7} THING{i % 3}" for i in range(matrix.shape[1])],
            content.ContentParams(dims=4, min_df=1),
        ),
    }
    users = np.arange(5)
    for name, model in fitted.items():
        assert isinstance(model, Recommender), name
        top = model.recommend(users, matrix[users], 4)
        assert top.indices.shape == (5, 4), name
        bought = [set(matrix[u].indices) for u in users]
        assert all(not (set(row[row >= 0]) & b) for row, b in zip(top.indices, bought, strict=True)), name
        assert model.similar_items(np.arange(3), 2).indices.shape == (3, 2), name
    assert not isinstance(object(), Recommender)
