"""`recsys serve`: a read-only HTTP API over the latest published tables (FastAPI + uvicorn).

Every answer comes from one ``Published`` snapshot. A watcher thread loads the next snapshot when
gold.step_runs moves and swaps it in with one assignment: a request holds the snapshot it
started with, so none is dropped or sees two runs. Input errors are 404 (unknown item or
customer where there is nothing to fall back to), 413 (a cart over 100 items) or 422
(malformed), never 500. OpenAPI docs at /docs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from recsys_spark.config import Config
from recsys_spark.serving.cart import MAX_CART_ITEMS, addons, cart_segment
from recsys_spark.serving.published import Published, step_runs_version

log = logging.getLogger(__name__)

MAX_N = 100
Count = Annotated[int, Query(ge=1, le=MAX_N, description="how many to return")]
Excluded = Annotated[
    list[str] | None, Query(description="item ids to leave out (repeat, or comma-separated)")
]


class Snapshots:
    """The snapshot being served and the watcher that replaces it when a step completes."""

    def __init__(self, load: Callable[[], Published], version: Callable[[], int], interval_s: float = 5.0):
        self.load, self.version, self.interval_s = load, version, interval_s
        self.seen = version()
        self.current = load()
        self.stopped = threading.Event()

    @staticmethod
    def of(config: Config, interval_s: float = 5.0) -> Snapshots:
        return Snapshots(lambda: Published.load(config), lambda: step_runs_version(config), interval_s)

    def refresh(self) -> bool:
        """Load and swap in the newest snapshot if a step completed since; a failed load keeps
        serving the current one (logged)."""
        seen = self.version()
        if seen == self.seen:
            return False
        try:
            loaded = self.load()
        except Exception:
            log.exception("kept serving run %s: the newer tables failed to load", self.current.run_id)
            return False
        self.current, self.seen = loaded, seen
        return True

    def watch(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:  # e.g. step_runs rewritten mid-read: try again next tick
                log.exception("checking gold.step_runs for a newer run failed")


class Entry(BaseModel):
    item_id: str
    score: float | None = None
    reason: str | None = None
    reason_item_id: str | None = None
    # The score's 95% interval (ALS, BPR, graph, ItemKNN, UserKNN, content); null without one.
    score_low: float | None = None
    score_high: float | None = None
    description: str | None = None


class ItemList(BaseModel):
    run_id: str
    segment: str | None
    items: list[Entry]


class CustomerItems(ItemList):
    customer_id: str


class ItemItems(ItemList):
    item_id: str
    model: str | None = None


class Customer(BaseModel):
    customer_id: str
    score: float | None = None


class Customers(BaseModel):
    run_id: str
    segment: str | None
    customers: list[Customer]


class ItemAudience(Customers):
    item_id: str


class CustomerLookalikes(Customers):
    customer_id: str


class Cart(BaseModel):
    items: list[str] = Field(min_length=1)
    customer_id: str | None = None
    n: int = Field(default=10, ge=1, le=MAX_N)
    segment: str | None = None


def described(published: Published, entries: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first ``n`` entries, each with its item's description. Answers are dicts that
    FastAPI validates once against the response model (building the models here would make it
    validate twice: a fifth of a request's time)."""
    descriptions = published.descriptions
    return [{**entry, "description": descriptions.get(entry["item_id"])} for entry in entries[:n]]


def create_app(snapshots: Snapshots) -> FastAPI:
    """The API over ``snapshots`` (its watcher runs while the app does). Lookups are handled on
    the event loop (memory only, microseconds); the cart, milliseconds of kernel work, in the
    thread pool."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Iterator[None]:
        watcher = threading.Thread(target=snapshots.watch, name="snapshot-watcher", daemon=True)
        watcher.start()
        yield
        snapshots.stopped.set()

    app = FastAPI(title="recsys_spark", description=__doc__, lifespan=lifespan)
    app.state.snapshots = snapshots

    @app.get("/health")
    async def health() -> dict[str, Any]:
        current = snapshots.current
        return {
            "status": "ok",
            "run_id": current.run_id,
            "model": current.model,
            "loaded_at": current.loaded_at,
        }

    _customer_routes(app, snapshots)
    _item_routes(app, snapshots)
    _cart_route(app, snapshots)
    return app


def _not_found(kind: str, key: str, table: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"unknown {kind} {key!r}: not in {table} of the served run")


def _customer_routes(app: FastAPI, snapshots: Snapshots) -> None:
    @app.get("/customers/{customer_id}/recommendations", response_model=CustomerItems)
    async def recommendations(
        customer_id: str,
        n: Count = 10,
        category: str | None = None,
        exclude: Excluded = None,
        segment: str | None = None,
    ) -> dict[str, Any]:
        """The customer's published list in rank order, as in gold.recommendations; a customer
        the run does not know gets overall popularity (reason popular_overall), as the batch
        would give them."""
        current = snapshots.current
        ranked = current.lists["recommendations"]
        home = current.home.get(customer_id)
        chosen = current.segment_for(
            "customer", customer_id, segment, lambda s: (s, customer_id) in ranked, home
        )
        entries = ranked.get((chosen, customer_id)) if chosen is not None else None
        if entries is None:
            chosen, entries = segment, current.unknown_list
        left_out = {item for value in exclude or [] for item in value.split(",") if item}
        kept = [
            e
            for e in entries
            if e["item_id"] not in left_out
            and (category is None or current.categories.get(e["item_id"]) == category)
        ]
        return dict(
            customer_id=customer_id, run_id=current.run_id, segment=chosen, items=described(current, kept, n)
        )

    @app.get("/customers/{customer_id}/lookalikes", response_model=CustomerLookalikes)
    async def lookalikes(customer_id: str, n: Count = 10, segment: str | None = None) -> dict[str, Any]:
        """Customers who buy alike (gold.lookalikes: cosine of the factor model's vectors)."""
        current = snapshots.current
        ranked = current.lists["lookalikes"]
        if not current.knows_customer(customer_id):
            raise _not_found("customer", customer_id, "gold.customers")
        home = current.home.get(customer_id)
        chosen = current.segment_for(
            "customer", customer_id, segment, lambda s: (s, customer_id) in ranked, home
        )
        found = ranked.get((chosen, customer_id), [])[:n]
        return dict(
            customer_id=customer_id,
            run_id=current.run_id,
            segment=chosen,
            customers=found,
        )


def _item_routes(app: FastAPI, snapshots: Snapshots) -> None:
    def known(item_id: str) -> Published:
        current = snapshots.current
        if not current.knows_item(item_id):
            raise _not_found("item", item_id, "gold.items")
        return current

    @app.get("/items/{item_id}/similar", response_model=ItemItems)
    async def similar(
        item_id: str, n: Count = 10, segment: str | None = None, model: str | None = None
    ) -> dict[str, Any]:
        """Items like this one (gold.similar_items), by the published model's measure where it
        has one, else the first model (by name) that lists the item."""
        current = known(item_id)
        listed = current.similar
        chosen = current.segment_for(
            "item", item_id, segment, lambda s: any((s, m, item_id) in listed for m in current.similar_models)
        )
        models = [model] if model else [current.model, *current.similar_models]
        found = next((m for m in models if (chosen, m, item_id) in current.similar), None)
        entries = current.similar.get((chosen, found, item_id), [])
        return dict(
            item_id=item_id,
            run_id=current.run_id,
            segment=chosen,
            model=found,
            items=described(current, entries, n),
        )

    @app.get("/items/{item_id}/also-bought", response_model=ItemItems)
    async def also_bought(item_id: str, n: Count = 10, segment: str | None = None) -> dict[str, Any]:
        """Frequently bought together (gold.frequently_bought_together: score = confidence)."""
        current = known(item_id)
        ranked = current.lists["frequently_bought_together"]
        chosen = current.segment_for("item", item_id, segment, lambda s: (s, item_id) in ranked)
        entries = [
            {"item_id": e["item_id"], "score": e["confidence"]} for e in ranked.get((chosen, item_id), [])
        ]
        return dict(
            item_id=item_id, run_id=current.run_id, segment=chosen, items=described(current, entries, n)
        )

    @app.get("/items/{item_id}/audience", response_model=ItemAudience)
    async def audience(item_id: str, n: Count = 10, segment: str | None = None) -> dict[str, Any]:
        """The customers most likely to buy the item (gold.item_audience)."""
        current = known(item_id)
        ranked = current.lists["item_audience"]
        chosen = current.segment_for("item", item_id, segment, lambda s: (s, item_id) in ranked)
        found = ranked.get((chosen, item_id), [])[:n]
        return dict(item_id=item_id, run_id=current.run_id, segment=chosen, customers=found)


def _cart_route(app: FastAPI, snapshots: Snapshots) -> None:
    @app.post("/cart", response_model=ItemList)
    def cart(body: Cart) -> dict[str, Any]:
        """Add-ons for a cart: association rules its items fire (reason bought_with_cart), then
        the items nearest the cart's mean vector (similar_to_cart); cart items never return."""
        if len(body.items) > MAX_CART_ITEMS:
            raise HTTPException(
                status_code=413, detail=f"a cart holds at most {MAX_CART_ITEMS} items, not {len(body.items)}"
            )
        current = snapshots.current
        segment = body.segment or cart_segment(current, body.items, body.customer_id)
        found = addons(current, body.items, segment, body.n)
        return dict(run_id=current.run_id, segment=segment, items=described(current, found, body.n))
