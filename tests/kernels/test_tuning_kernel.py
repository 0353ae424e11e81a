"""The tuning kernel: trial points, NDCG as evaluate measures it, and a search that keeps conf's
values unless another point validates better."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from recsys_spark import synthetic
from recsys_spark.kernels import tuning
from recsys_spark.kernels.als import AlsParams
from recsys_spark.kernels.itemknn import ItemKnnParams
from recsys_spark.kernels.matrix import build_interactions
from recsys_spark.kernels.topn import TopN


def test_trial_points_start_with_conf_values_are_distinct_and_seeded():
    defaults = AlsParams(factors=64, regularization=0.05, alpha=40.0)
    points = tuning.trial_points("als", dataclasses.asdict(defaults), 6, seed=7)
    assert points[0] == {"factors": 64, "regularization": 0.05, "alpha": 40.0, "log_scale": False}
    assert len(points) == 6
    assert len({tuple(sorted(p.items())) for p in points}) == 6
    assert points == tuning.trial_points("als", dataclasses.asdict(defaults), 6, seed=7)
    assert points != tuning.trial_points("als", dataclasses.asdict(defaults), 6, seed=8)
    for point in points:
        for name, value in point.items():
            assert value in tuning.SEARCH_SPACE["als"][name] or value == getattr(defaults, name)


def test_fixed_parameters_keep_conf_value_and_budget_caps_at_grid_size():
    points = tuning.trial_points(
        "itemknn", dataclasses.asdict(ItemKnnParams()), 100, seed=1, fixed=("similarity",)
    )
    assert all("similarity" not in p for p in points)
    assert len(points) == len(tuning.SEARCH_SPACE["itemknn"]["neighbours"])
    assert tuning.trial_points("itemknn", dataclasses.asdict(ItemKnnParams()), 0, seed=1) == []


def test_ndcg_at_k_worked_by_hand():
    top = TopN(np.array([[2, 0, 1], [5, 6, -1], [0, 1, 2]], np.int32), np.zeros((3, 3), np.float32))
    relevant = [np.array([0]), np.array([6, 9]), np.array([], np.int32)]
    values = tuning.ndcg_at_k(top, relevant, 3)
    # Row 0: one hit at rank 2 of one relevant item: (1 / log2 3) / 1.
    assert values[0] == pytest.approx(1 / math.log2(3))
    # Row 1: one hit at rank 2 of two relevant: (1 / log2 3) / (1 + 1 / log2 3).
    assert values[1] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # A padding index (-1) never counts as a hit, and a customer with nothing relevant scores 0.
    assert values[2] == 0.0


def test_search_scores_every_point_and_best_keeps_conf_values_on_a_tie():
    frame = synthetic.purchases(n_users=150, n_items=40, n_events=2500, n_categories=4, n_segments=1, seed=3)
    data = build_interactions(frame.customer_id, frame.item_id, np.ones(len(frame)))
    matrix = data.weights.tolil()
    users, relevant = [], []
    for user in range(0, data.shape[0], 3):  # hold out one bought item of every third customer
        items = matrix.rows[user]
        if len(items) >= 2:
            users.append(user)
            relevant.append(np.array([items[-1]], np.int32))
            matrix[user, items[-1]] = 0
    fit_part = matrix.tocsr()
    fit_part.eliminate_zeros()
    defaults = AlsParams(factors=8, iterations=3)
    points = tuning.trial_points("als", dataclasses.asdict(defaults), 4, seed=0)
    trials = tuning.search("als", fit_part, np.array(users), relevant, points, defaults, k=10)
    assert [t.trial for t in trials] == [0, 1, 2, 3]
    assert [t.params for t in trials] == points
    assert all(0.0 <= t.ndcg <= 1.0 for t in trials)
    rows = pd.DataFrame(
        {"segment": "s", "model": "als", "trial": [t.trial for t in trials], "ndcg": [t.ndcg for t in trials]}
    )
    assert tuning.best_trials(rows).ndcg.item() == max(t.ndcg for t in trials)


def test_best_trials_per_segment_and_model_keep_conf_values_on_a_tie():
    rows = pd.DataFrame(
        {
            "segment": ["a", "a", "a", "b", "b"],
            "model": ["als", "als", "itemknn", "als", "als"],
            "trial": [0, 1, 0, 0, 1],
            "ndcg": [0.5, 0.5, 0.2, 0.1, 0.3],
            "params": ['{"factors": 64}', '{"factors": 32}', '{"neighbours": 100}', "{}", '{"factors": 128}'],
        }
    )
    best = tuning.best_trials(rows)
    assert sorted(zip(best.segment, best.model, best.trial, strict=True)) == [
        ("a", "als", 0),  # a tie: conf's values (trial 0) stay
        ("a", "itemknn", 0),
        ("b", "als", 1),
    ]
    assert tuning.chosen_values(best) == {
        "a": {"als": {"factors": 64}, "itemknn": {"neighbours": 100}},
        "b": {"als": {"factors": 128}},
    }


def test_hybrid_points_weigh_conf_sources_only_never_all_zero():
    conf = {"als": 1.0, "itemknn": 1.0, "content": 0.3, "rules": 0.0}
    points = tuning.hybrid_points(conf, 40, seed=2)
    assert points[0] == {"als": 1.0, "itemknn": 1.0, "content": 0.3}
    assert len(points) == 40
    assert all(set(p) == {"als", "itemknn", "content"} and any(p.values()) for p in points)
    assert all(v in tuning.HYBRID_WEIGHTS for p in points[1:] for v in p.values())
    everything = tuning.hybrid_points({"als": 1.0}, 10, seed=2)
    assert everything == [{"als": 1.0}, {"als": 0.3}, {"als": 3.0}]  # {"als": 0.0} left out
