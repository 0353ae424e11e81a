"""Published lists for a block of customers (kernels.lists), worked by hand on a tiny catalogue:
routes, each model's order, fallbacks, the hybrid's blend from shared candidates, the top-up,
and the business rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys_spark.kernels import userknn
from recsys_spark.kernels.candidates import POPULAR_OVERALL
from recsys_spark.kernels.catalog import neighbour_matrix
from recsys_spark.kernels.intervals import bpr_intervals, graph_intervals
from recsys_spark.kernels.lists import (
    NO_SEGMENT,
    ListError,
    ListMaker,
    ListSpec,
    ListTables,
    labelled,
    vector_column,
    with_histories,
)
from recsys_spark.kernels.rerank import Rules
from recsys_spark.kernels.topup import POPULAR_IN_SEGMENT

# Segment "s": ALS scores a > b > c > d for a customer with vector [1, 0]; popularity d > c > b > a.
ALS = {"a": [4.0, 0.0], "b": [3.0, 0.0], "c": [2.0, 0.0], "d": [1.0, 0.0]}
POPULAR = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
HYBRID = {"weights": {"als": 1.0, "popularity": 0.0}, "short_history_weights": {"als": 1.0},
          "short_history_orders": 2, "candidates": 4}  # fmt: skip


def item_rows() -> pd.DataFrame:
    rows = [("s", item, "als", np.array(v, np.float32)) for item, v in ALS.items()]
    for segment in ("s", "all"):
        rows += [(segment, item, "popularity", np.array([v], np.float32)) for item, v in POPULAR.items()]
    rows.append(("all", "z", "popularity", np.array([9.0], np.float32)))  # overall best seller
    return pd.DataFrame(rows, columns=["segment", "item_id", "model", "factors"])


def maker(rules: Rules | None = None, top_n: int = 3) -> ListMaker:
    return ListMaker.of(ListTables(item_rows()), ListSpec("als", top_n, rules or Rules(), 4, HYBRID))


def customers() -> pd.DataFrame:
    """c1: long history, bought a; c2: no history; c3: no ALS factors (new since training)."""
    return pd.DataFrame(
        {
            "segment": ["s", "s", "s"],
            "customer_id": ["c1", "c2", "c3"],
            "history": [["a"], [], ["b"]],
            "orders": [5, 0, 5],
            vector_column("als"): [np.array([1.0, 0.0], np.float32), None, None],
        }
    )


def items_of(lists: pd.DataFrame, customer: str) -> list[str]:
    return lists[lists.customer_id == customer].sort_values("rank").item_id.tolist()


def test_each_route_gets_its_list_and_the_unknown_get_overall_popularity() -> None:
    lists = maker().predict(customers())
    assert items_of(lists, "c1") == ["b", "c", "d"]  # ALS order, bought a left out
    assert items_of(lists, "c2") == ["d", "c", "b"]  # no history: the segment's best sellers
    assert items_of(lists, "c3") == ["z", "d", "c"]  # no factors: overall best sellers, b bought
    by_customer = lists.groupby("customer_id").reason.first().to_dict()
    assert by_customer == {"c1": "factor_score", "c2": POPULAR_IN_SEGMENT, "c3": POPULAR_OVERALL}
    assert lists.groupby("customer_id")["rank"].apply(list).tolist() == [[1, 2, 3]] * 3


def test_a_short_list_is_topped_up_from_the_segment_then_overall() -> None:
    lists = maker(top_n=5).published(customers().iloc[:1], "als")
    assert items_of(lists, "c1") == ["b", "c", "d", "z"]  # 3 from ALS, then overall popularity
    assert lists.model.tolist() == ["als"] * 3 + ["popularity"]


def test_rules_apply_to_the_model_and_the_top_up() -> None:
    blocked = maker(Rules(blocked=frozenset({"b", "z"}), max_per_category=5)).predict(customers())
    assert items_of(blocked, "c1") == ["c", "d"]  # nothing else left to recommend
    assert "b" not in set(blocked.item_id) and "z" not in set(blocked.item_id)


def test_hybrid_weightings_blend_the_same_candidates() -> None:
    made = maker()
    block = customers().iloc[:1]
    pool = made.hybrid_candidates(block, {"als": 1.0, "popularity": 1.0})
    als_only = made.published(block, "hybrid", {"als": 1.0, "popularity": 0.0}, pool)
    popular_only = made.published(block, "hybrid", {"als": 0.0, "popularity": 1.0}, pool)
    assert items_of(als_only, "c1") == ["b", "c", "d"]
    assert items_of(popular_only, "c1") == ["d", "c", "b"]
    assert set(labelled(als_only, "x").model) == {"x"}


def test_a_customer_the_model_has_nothing_for_gets_what_remains() -> None:
    bought_everything = customers().iloc[:1].assign(history=[["a", "b", "c", "d"]])
    lists = maker().published(bought_everything, "als")
    assert items_of(lists, "c1") == ["z"]  # no ALS list at all: topped up from overall popularity


def test_a_failing_segment_is_named_with_its_model() -> None:
    broken = item_rows()
    nan = broken.model == "als"
    broken.loc[nan, "factors"] = pd.Series(
        [np.full(2, np.nan, np.float32)] * nan.sum(), index=broken.index[nan]
    )
    made = ListMaker.of(ListTables(broken), ListSpec("als", 3))
    with pytest.raises(ListError, match=r"segment 's', als: ValueError: NaN in the scores"):
        made.predict(customers())


def test_itemknn_lists_come_from_each_segments_neighbour_matrix_also_after_parquet(tmp_path) -> None:
    entries = pd.DataFrame(
        {
            "segment": ["s"] * 4,
            "item_id": ["a", "a", "b", "a"],
            "neighbour_item_id": ["b", "c", "c", "d"],
            "similarity": [0.9, 0.5, 0.8, 0.1],
        }
    )
    matrix = neighbour_matrix(entries)
    assert matrix.ids.iloc[0].tolist() == ["a", "b", "c", "d"] and len(matrix.indices.iloc[0]) == 4
    matrix.to_parquet(tmp_path / "neighbours.parquet")  # as the served model stores it
    for neighbours in (matrix, pd.read_parquet(tmp_path / "neighbours.parquet")):
        made = ListMaker.of(ListTables(item_rows(), neighbours=neighbours), ListSpec("itemknn", 2))
        lists = made.predict(
            pd.DataFrame({"segment": ["s", "s"], "customer_id": ["c1", "c2"], "history": [["a"], ["a", "b"]]})
        )
        assert items_of(lists, "c1") == ["b", "c"]  # 0.9, 0.5
        assert items_of(lists, "c2") == ["c", "d"]  # 0.5 + 0.8, 0.1
        assert set(lists.reason) == {"because_bought"}


def test_a_request_by_customer_id_alone_reads_the_batch_histories() -> None:
    histories = pd.DataFrame(
        {
            "segment": ["s", "t", "s"],
            "customer_id": ["c1", "c1", "c2"],
            "history": [["a"], ["b"], ["c"]],
            "history_weights": [[1.0], [2.0], [3.0]],
            "orders": [3, 1, 2],
        }
    )
    by_id = with_histories(pd.DataFrame({"customer_id": ["c1", "new"]}), histories)
    rows = {(r.segment, r.customer_id): (r.history, r.history_weights, r.orders) for r in by_id.itertuples()}
    assert rows == {
        ("s", "c1"): (["a"], [1.0], 3),
        ("t", "c1"): (["b"], [2.0], 1),
        (NO_SEGMENT, "new"): ([], [], 0),
    }
    in_segment = with_histories(pd.DataFrame({"segment": ["t", "s"], "customer_id": ["c1", "c9"]}), histories)
    assert in_segment[["segment", "customer_id"]].values.tolist() == [["t", "c1"], ["s", "c9"]]
    assert in_segment.history.tolist() == [["b"], []]
    given = pd.DataFrame({"segment": ["s"], "customer_id": ["c1"], "history": [["z"]]})
    assert with_histories(given, histories) is given  # a history given is used as given
    lists = maker().predict(with_histories(pd.DataFrame({"customer_id": ["new"]}), histories))
    assert set(lists.reason) == {"popular_overall"}


def test_userknn_lists_name_the_most_similar_customer_who_bought_the_item() -> None:
    """Segment "s" of four customers (k1: a b, k2: a b c, k3: b d, k4: c d), cosine, K = 2:
    k1's neighbours are k2 (2/sqrt6) and k3 (1/2), so c (from k2) ranks above d (from k3);
    a cart of a alone (customer c9, unknown) gets b from k1 and k2, k1 being the closer."""
    bought = {"k1": "ab", "k2": "abc", "k3": "bd", "k4": "cd"}
    entries = pd.DataFrame(
        [("s", c, i, 1.0) for c, items in bought.items() for i in items],
        columns=["segment", "customer_id", "item_id", "weight"],
    )
    tables = ListTables(item_rows(), customers=userknn.matrix_row(entries))
    spec = ListSpec("userknn", 2, userknn={"similarity": "cosine", "neighbours": 2})
    asked = pd.DataFrame({"segment": "s", "customer_id": ["k1", "c9"], "history": [["a", "b"], ["a"]]})
    lists = ListMaker.of(tables, spec).published(asked, "userknn")
    k1 = lists[lists.customer_id == "k1"].sort_values("rank")
    assert k1.item_id.tolist() == ["c", "d"] and k1.reason_item_id.tolist() == ["k2", "k3"]
    assert set(k1.reason) == {"similar_customer_bought"}
    np.testing.assert_allclose(k1.score, [2 / np.sqrt(6), 0.5], rtol=1e-6)
    cart = lists[lists.customer_id == "c9"].sort_values("rank")
    assert cart.item_id.tolist()[0] == "b" and cart.reason_item_id.tolist()[0] == "k1"


def test_graph_and_bpr_lists_carry_their_intervals_where_their_inputs_are() -> None:
    """The graph filter's intervals need its fold rows, BPR's its regularization (and take the
    segment's popularity as its negative draws); each equals the interval kernel called directly."""
    rng = np.random.default_rng(7)
    ids = list(ALS)
    vectors = {m: rng.normal(size=(4, 3)).astype(np.float32) for m in ("graph", "graph_fold", "bpr")}
    rows = [("s", i, m, v[n]) for m, v in vectors.items() for n, i in enumerate(ids)]
    tables = item_rows()
    tables = pd.concat([tables, pd.DataFrame(rows, columns=tables.columns)], ignore_index=True)
    user = {"graph": [1.0, 0.5, -0.2], "bpr": [0.3, -0.4, 1.0]}
    asked = pd.DataFrame(
        {
            "segment": "s",
            "customer_id": ["c1"],
            "history": [["a", "c"]],
            **{vector_column(m): [np.array(v, np.float32)] for m, v in user.items()},
        }
    )
    posteriors = {"s": {"bpr": {"regularization": 0.05}}}
    spec = ListSpec("graph", 2, intervals=True, posteriors=posteriors)
    history = sp.csr_matrix(np.array([[1.0, 0.0, 1.0, 0.0]]))
    for model in ("graph", "bpr"):
        listed = ListMaker.of(ListTables(tables), dataclasses.replace(spec, model=model)).published(
            asked, model
        )
        items = np.array([[ids.index(i) for i in listed.sort_values("rank").item_id]])
        if model == "graph":
            expected = graph_intervals(
                vectors["graph"], vectors["graph_fold"], history, items, np.array(["c1"])
            )
        else:
            shares = np.array([POPULAR[i] for i in ids]) / sum(POPULAR.values())
            user_row = np.array([user["bpr"]])
            expected = bpr_intervals(vectors["bpr"], user_row, history, items, np.array(["c1"]), shares, 0.05)
        listed = listed.sort_values("rank")
        np.testing.assert_allclose(listed.score_low, expected[0][0], rtol=1e-5)
        np.testing.assert_allclose(listed.score_high, expected[1][0], rtol=1e-5)
        assert (listed.score_low < listed.score_high).all()
    without = tables[tables.model != "graph_fold"]
    listed = ListMaker.of(ListTables(without), spec).published(asked, "graph")
    assert listed.score_low.isna().all()
    listed = ListMaker.of(
        ListTables(tables), dataclasses.replace(spec, model="bpr", posteriors={})
    ).published(asked, "bpr")
    assert listed.score_low.isna().all()
