"""`recsys serve` as a shop calls it: the real command (uvicorn on loopback) over the tables the
dev pipeline published in this session, every endpoint checked against the gold tables."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.io.tables import table_name
from recsys_spark.serving.api import Snapshots
from recsys_spark.serving.cart import BOUGHT_WITH_CART, SIMILAR_TO_CART
from tests.bundle import dev_args

RECSYS = Path(sys.executable).parent / "recsys"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(base: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> tuple[int, Any]:
    """``path`` (ids quoted with ``quote``) with ``params`` as its query; POST ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    url = base + path + (f"?{urllib.parse.urlencode(params, doseq=True)}" if params else "")
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def served(dev_pipeline: Config, work_dir: Path) -> Iterator[str]:
    port = free_port()
    command = [str(RECSYS), "serve", *dev_args(work_dir), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                raise AssertionError(f"recsys serve exited {server.returncode}: {server.stdout.read()}")
            try:
                if call(base, "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("recsys serve did not answer /health within 60 s")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def quote(key: str) -> str:
    return urllib.parse.quote(key, safe="")


def gold(spark: SparkSession, config: Config, key: str) -> list[Any]:
    return spark.table(str(table_name(config, key))).collect()


def test_health_names_the_run_the_gold_tables_hold(
    served: str, spark: SparkSession, dev_pipeline: Config
) -> None:
    status, body = call(served, "/health")
    runs = {r.run_id for r in gold(spark, dev_pipeline, "recommendations")}
    assert status == 200 and body["status"] == "ok" and {body["run_id"]} == runs


def test_every_customers_recommendations_are_gold_recommendations_in_rank_order(
    served: str, spark: SparkSession, dev_pipeline: Config
) -> None:
    rows = sorted(
        gold(spark, dev_pipeline, "recommendations"), key=lambda r: (r.segment, r.customer_id, r["rank"])
    )
    expected: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in rows:
        expected.setdefault((r.segment, r.customer_id), []).append((r.item_id, r.reason, r.reason_item_id))
    assert expected
    for (segment, customer), items in expected.items():
        status, body = call(served, f"/customers/{quote(customer)}/recommendations", n=100, segment=segment)
        assert status == 200
        assert [(i["item_id"], i["reason"], i["reason_item_id"]) for i in body["items"]] == items
    segment, customer = next(iter(expected))
    _, top = call(served, f"/customers/{quote(customer)}/recommendations", n=2, segment=segment)
    assert [i["item_id"] for i in top["items"]] == [i for i, _, _ in expected[(segment, customer)][:2]]
    first = expected[(segment, customer)][0][0]
    _, rest = call(
        served, f"/customers/{quote(customer)}/recommendations", n=100, segment=segment, exclude=first
    )
    assert (
        first not in [i["item_id"] for i in rest["items"]]
        and len(rest["items"]) == len(expected[(segment, customer)]) - 1
    )
    category = {r.item_id: r.category for r in gold(spark, dev_pipeline, "items")}
    wanted = category[first]
    _, only = call(
        served, f"/customers/{quote(customer)}/recommendations", n=100, segment=segment, category=wanted
    )
    listed = [i for i, _, _ in expected[(segment, customer)] if category[i] == wanted]
    assert [i["item_id"] for i in only["items"]] == listed


def test_an_unknown_customer_gets_overall_popularity(served: str) -> None:
    status, body = call(served, "/customers/NO-SUCH-CUSTOMER/recommendations", n=5)
    assert status == 200 and len(body["items"]) == 5
    assert {i["reason"] for i in body["items"]} == {"popular_overall"}
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_item_lists_are_the_gold_tables(served: str, spark: SparkSession, dev_pipeline: Config) -> None:
    together = sorted(gold(spark, dev_pipeline, "frequently_bought_together"), key=lambda r: r["rank"])
    r = together[0]
    status, body = call(served, f"/items/{quote(r.item_id)}/also-bought", segment=r.segment, n=100)
    expected = [x.addon_item_id for x in together if (x.segment, x.item_id) == (r.segment, r.item_id)]
    assert status == 200 and [i["item_id"] for i in body["items"]] == expected

    similar = sorted(gold(spark, dev_pipeline, "similar_items"), key=lambda r: r["rank"])
    s = similar[0]
    _, body = call(served, f"/items/{quote(s.item_id)}/similar", segment=s.segment, model=s.model, n=100)
    wanted = [
        x.similar_item_id
        for x in similar
        if (x.segment, x.model, x.item_id) == (s.segment, s.model, s.item_id)
    ]
    assert [i["item_id"] for i in body["items"]] == wanted and body["model"] == s.model

    audience = sorted(gold(spark, dev_pipeline, "item_audience"), key=lambda r: r["rank"])
    a = audience[0]
    _, body = call(served, f"/items/{quote(a.item_id)}/audience", segment=a.segment, n=100)
    assert [c["customer_id"] for c in body["customers"]] == [
        x.customer_id for x in audience if (x.segment, x.item_id) == (a.segment, a.item_id)
    ]


def test_lookalikes_are_gold_lookalikes(served: str, spark: SparkSession, dev_pipeline: Config) -> None:
    rows = sorted(gold(spark, dev_pipeline, "lookalikes"), key=lambda r: r["rank"])
    first = rows[0]
    status, body = call(
        served, f"/customers/{quote(first.customer_id)}/lookalikes", segment=first.segment, n=100
    )
    expected = [
        r.similar_customer_id
        for r in rows
        if (r.segment, r.customer_id) == (first.segment, first.customer_id)
    ]
    assert status == 200 and [c["customer_id"] for c in body["customers"]] == expected


def test_the_cart_gets_rule_addons_then_nearest_items_never_its_own(
    served: str, spark: SparkSession, dev_pipeline: Config
) -> None:
    together = gold(spark, dev_pipeline, "frequently_bought_together")
    cart = sorted({r.item_id for r in together})[:2]
    status, body = call(served, "/cart", {"items": cart, "n": 8})
    assert status == 200 and 0 < len(body["items"]) <= 8
    assert not {i["item_id"] for i in body["items"]} & set(cart)
    reasons = [i["reason"] for i in body["items"]]
    assert set(reasons) <= {BOUGHT_WITH_CART, SIMILAR_TO_CART} and reasons == sorted(reasons)  # rules first
    assert all(i["reason_item_id"] in cart for i in body["items"] if i["reason"] == BOUGHT_WITH_CART)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/items/NO-SUCH-ITEM/similar", None, 404),
        ("GET", "/items/NO-SUCH-ITEM/also-bought", None, 404),
        ("GET", "/items/NO-SUCH-ITEM/audience", None, 404),
        ("GET", "/customers/NO-SUCH-CUSTOMER/lookalikes", None, 404),
        ("GET", "/customers/x/recommendations?n=0", None, 422),
        ("GET", "/customers/x/recommendations?n=many", None, 422),
        ("POST", "/cart", {"items": [f"i{n}" for n in range(101)]}, 413),
        ("POST", "/cart", {"basket": ["a"]}, 422),
        ("POST", "/cart", {"items": []}, 422),
        ("POST", "/cart", {"items": ["a"], "n": -1}, 422),
    ],
)
def test_bad_input_gets_a_clear_client_error(
    served: str, method: str, path: str, body: Any, status: int
) -> None:
    got, answer = call(served, path, body if method == "POST" else None)
    assert got == status and answer["detail"]


def test_the_openapi_docs_list_every_endpoint(served: str) -> None:
    status, spec = call(served, "/openapi.json")
    assert status == 200
    assert set(spec["paths"]) == {
        "/health",
        "/customers/{customer_id}/recommendations",
        "/customers/{customer_id}/lookalikes",
        "/items/{item_id}/similar",
        "/items/{item_id}/also-bought",
        "/items/{item_id}/audience",
        "/cart",
    }
    with urllib.request.urlopen(served + "/docs", timeout=30) as page:
        assert page.status == 200


def test_a_newer_run_is_swapped_in_and_a_failed_load_keeps_the_current() -> None:
    """The watcher's swap: a step completing (gold.step_runs' version moving) loads the next
    snapshot; a load that fails leaves the served one in place and is tried again."""
    version = {"now": 1}
    loads: list[str] = []

    def load() -> Any:
        loads.append("load")
        if len(loads) == 3:
            raise OSError("a table vanished mid-read")
        return SimpleNamespace(run_id=f"run{len(loads)}")

    snapshots = Snapshots(load, lambda: version["now"])
    assert snapshots.current.run_id == "run1" and not snapshots.refresh()
    version["now"] = 2
    assert snapshots.refresh() and snapshots.current.run_id == "run2"
    version["now"] = 3
    assert not snapshots.refresh() and snapshots.current.run_id == "run2"  # the failed load kept it
    assert snapshots.refresh() and snapshots.current.run_id == "run4"  # the next tick tries again
