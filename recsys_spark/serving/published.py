"""The published tables as the API serves them, read with delta-rs (no JVM, no Spark).

Each table is read at the Delta version the latest completed step recorded in gold.step_runs, as
the analyst views and the export read them, so a run killed between two commits is never served
half-written. ``Published.load`` reads one such snapshot and indexes it for lookups by customer
and by item; ``step_runs_version`` says cheaply whether a newer step has completed since.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from recsys_spark.config import Config, on_databricks
from recsys_spark.io.names import local_location, table_name
from recsys_spark.kernels.catalog import Catalog
from recsys_spark.kernels.lists import NO_SEGMENT, ListMaker, ListSpec, ListTables
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.serving import settings

log = logging.getLogger(__name__)

Ranked = dict[tuple[str, ...], list[dict[str, Any]]]  # (segment, [model,] id) -> entries

# The served lists: table -> (its id column, the columns each entry carries, renamed).
LIST_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "recommendations": (
        "customer_id",
        {
            "item_id": "item_id",
            "score": "score",
            "reason": "reason",
            "reason_item_id": "reason_item_id",
            "score_low": "score_low",
            "score_high": "score_high",
        },
    ),
    "item_audience": ("item_id", {"customer_id": "customer_id", "score": "score"}),
    "lookalikes": ("customer_id", {"similar_customer_id": "customer_id", "score": "score"}),
    "frequently_bought_together": (
        "item_id",
        {"addon_item_id": "item_id", "support": "support", "confidence": "confidence", "lift": "lift"},
    ),
}


class NotPublishedError(RuntimeError):
    """No completed score step to serve yet (or the tables are not where this config says)."""


def table_path(config: Config, key: str) -> str:
    if on_databricks():
        raise NotPublishedError(
            "recsys serve reads the tables from the local warehouse; on Databricks serve the "
            "registered model (Model Serving) or the Vector Search index instead"
        )
    return str(local_location(config, table_name(config, key)))


def complete_versions(config: Config) -> tuple[dict[str, int], str | None]:
    """(table key -> the version the latest completed step that wrote it recorded, the run_id
    of the latest completed score step): ``io.step_runs.complete_versions`` without Spark."""
    try:
        steps = DeltaTable(table_path(config, "step_runs")).to_pandas()
    except Exception as exc:  # deltalake names a missing table in several exception types
        raise NotPublishedError(f"no gold.step_runs to serve from: {exc}") from exc
    steps = steps.sort_values("completed_at", kind="stable")
    versions = {key: int(version) for tables in steps.tables for key, version in tables}
    scored = steps[steps.step == "score"]
    return versions, (str(scored.run_id.iloc[-1]) if len(scored) else None)


def step_runs_version(config: Config) -> int:
    """gold.step_runs' current Delta version: it moves whenever a step completes."""
    return int(DeltaTable(table_path(config, "step_runs")).version())


def read_table(config: Config, key: str, versions: Mapping[str, int], columns: list[str]) -> pd.DataFrame:
    """Table ``key``'s ``columns`` at its completed version (its latest where no step recorded
    it); a table not written yet (e.g. before the first analytics) or a column it lacks reads
    as empty, logged."""
    try:
        table = DeltaTable(table_path(config, key), version=versions.get(key))
    except TableNotFoundError:
        log.info("serving without %s: not written yet", key)
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    present = set(table.schema().to_arrow().names)
    frame = table.to_pandas(columns=[c for c in columns if c in present])
    for column in set(columns) - present:
        log.info("serving without %s.%s: the table has no such column", key, column)
        frame[column] = None
    return frame[columns]


def ranked_lists(frame: pd.DataFrame, keys: list[str], entry: Mapping[str, str]) -> Ranked:
    """Per value of ``keys``, its list's entries in rank order, each a dict of ``entry``'s
    columns under their served names (NaN as None, for JSON)."""
    frame = frame.sort_values([*keys, "rank"], kind="stable")
    values = frame[list(entry)].rename(columns=dict(entry)).astype(object)
    records = values.where(values.notna(), None).to_dict("records")
    lists: Ranked = {}
    for key, record in zip(zip(*(frame[k] for k in keys), strict=True), records, strict=True):
        lists.setdefault(key, []).append(record)
    return lists


@dataclass
class Published:
    """One snapshot of the published tables, indexed for the API's lookups."""

    run_id: str
    model: str  # the published model (gold.published_model)
    lists: dict[str, Ranked]  # LIST_TABLES key -> its lists
    similar: Ranked  # (segment, model, item) -> list
    similar_models: list[str]  # the models gold.similar_items lists, by name
    descriptions: dict[str, str | None]  # every item of gold.items -> its description
    categories: dict[str, str | None]  # and its category
    home: dict[str, str]  # customer -> home segment (gold.customers)
    segments_of: dict[tuple[str, str], list[str]]  # ("customer" | "item", id) -> segments with its lists
    single_rules: pd.DataFrame  # segment, antecedent_id, item_id, confidence
    rule_positions: dict[str, dict[str, np.ndarray]]  # segment -> antecedent -> rows of single_rules
    vectors: dict[str, Catalog]  # segment -> the cart's vector model's items (cosine)
    vector_model: str | None
    unknown_list: list[dict[str, Any]]  # what a customer the run does not know gets
    blocked: set[str]  # models.exclude_items (exclude_table needs Spark: the lists already exclude it)
    loaded_at: float = field(default_factory=time.time)

    @staticmethod
    def load(config: Config) -> Published:
        """The latest completed snapshot; raises NotPublishedError before the first score."""
        started = time.perf_counter()
        versions, run_id = complete_versions(config)
        if run_id is None:
            raise NotPublishedError("no score step has completed yet: run `recsys run` first")
        published = _published_model(config, versions)
        lists = {
            key: ranked_lists(
                read_table(config, key, versions, ["segment", id_column, "rank", *entry]),
                ["segment", id_column],
                entry,
            )
            for key, (id_column, entry) in LIST_TABLES.items()
        }
        similar = _similar(read_table(config, "similar_items", versions, SIMILAR_COLUMNS))
        factors = read_table(config, "item_factors", versions, ["segment", "item_id", "model", "factors"])
        vector_model = settings.vector_model(published, set(factors.model))
        items = _items(config, versions)
        rules = _single_rules(read_table(config, "association_rules", versions, RULE_COLUMNS))
        snapshot = Published(
            run_id,
            published,
            lists,
            similar,
            sorted({model for _, model, _ in similar}),
            *_attributes(items),
            _home(config, versions),
            _segments_of(lists, similar),
            rules,
            _positions(rules),
            _vectors(factors, vector_model, set(config.models.exclude_items)),
            vector_model,
            _unknown_list(config, published, factors),
            set(config.models.exclude_items),
        )
        log.info("serving run %s (%s): loaded in %.1f s", run_id, published, time.perf_counter() - started)
        return snapshot

    def knows_item(self, item_id: str) -> bool:
        """In gold.items, or in one of the served lists (gold.items comes with analytics)."""
        return item_id in self.descriptions or ("item", item_id) in self.segments_of

    def knows_customer(self, customer_id: str) -> bool:
        return customer_id in self.home or ("customer", customer_id) in self.segments_of

    def rules_from(self, segment: str | None, items: Sequence[str]) -> tuple[str, pd.DataFrame]:
        """(the segment whose rules a basket in ``segment`` fires: its own, else all baskets',
        the single-item rules with an antecedent among ``items`` there): the few rows
        ``rule_candidates`` needs, not the whole table, for a cart's milliseconds."""
        rules = self.single_rules
        own = segment if segment is not None and segment in self.rule_positions else GLOBAL_SEGMENT
        at = self.rule_positions.get(own, {})
        rows = [at[item] for item in items if item in at]
        return own, rules.iloc[np.concatenate(rows)] if rows else rules.iloc[:0]

    def segment_for(
        self, kind: str, key: str, wanted: str | None, holds: Callable[[str], bool], home: str | None = None
    ) -> str | None:
        """The segment to answer ``kind`` ``key`` from: ``wanted``, else ``home``, else the
        segment of all customers, else the first segment (by name) where ``holds`` a list."""
        if wanted is not None:
            return wanted
        if home is not None and holds(home):
            return home
        held = [s for s in self.segments_of.get((kind, key), []) if holds(s)]
        return min(held, key=lambda s: (s != GLOBAL_SEGMENT, s), default=None)


SIMILAR_COLUMNS = ["segment", "item_id", "rank", "similar_item_id", "score", "model"]
RULE_COLUMNS = ["segment", "antecedent", "consequent", "confidence"]


def _published_model(config: Config, versions: Mapping[str, int]) -> str:
    """As the batch decides it (``io.model_tables.published_model``): conf's choice, or the
    latest evaluation's champion, popularity before the first."""
    if config.models.publish != "champion":
        return config.models.publish
    decisions = read_table(config, "published_model", versions, ["model", "decided_at"])
    return str(decisions.sort_values("decided_at").model.iloc[-1]) if len(decisions) else "popularity"


def _similar(frame: pd.DataFrame) -> Ranked:
    return ranked_lists(
        frame, ["segment", "model", "item_id"], {"similar_item_id": "item_id", "score": "score"}
    )


def _items(config: Config, versions: Mapping[str, int]) -> pd.DataFrame:
    return read_table(config, "items", versions, ["item_id", "description", "category"])


def _attributes(items: pd.DataFrame) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(item -> description, item -> category), missing ones as None: request-time lookups."""
    values = items.astype(object).where(items.notna(), None)
    return (
        dict(zip(values.item_id, values.description, strict=True)),
        dict(zip(values.item_id, values.category, strict=True)),
    )


def _home(config: Config, versions: Mapping[str, int]) -> dict[str, str]:
    customers = read_table(config, "customers", versions, ["customer_id", "segment"])
    return dict(zip(customers.customer_id, customers.segment, strict=True))


def _segments_of(lists: Mapping[str, Ranked], similar: Ranked) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for table, ranked in lists.items():
        kind = "customer" if LIST_TABLES[table][0] == "customer_id" else "item"
        for segment, key in ranked:
            found.setdefault((kind, key), set()).add(segment)
    for segment, _, item in similar:
        found.setdefault(("item", item), set()).add(segment)
    return {key: sorted(segments) for key, segments in found.items()}


def _single_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """The rules with one antecedent item, as ``kernels.candidates.rule_candidates`` takes them."""
    single = rules[rules.antecedent.map(len) == 1]
    return pd.DataFrame(
        {
            "segment": single.segment.to_numpy(object),
            "antecedent_id": [a[0] for a in single.antecedent],
            "item_id": [c[0] for c in single.consequent],
            "confidence": single.confidence.to_numpy(np.float64),
        }
    )


def _positions(rules: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    return {
        segment: {
            item: part.index.to_numpy()[rows] for item, rows in part.groupby("antecedent_id").indices.items()
        }
        for segment, part in rules.groupby("segment")
    }


def _vectors(factors: pd.DataFrame, model: str | None, blocked: set[str]) -> dict[str, Catalog]:
    rows = factors[factors.model == model]
    return {
        segment: Catalog.of_vectors(
            part.item_id.to_numpy(), np.stack(part.factors.to_numpy()), blocked, cosine=True
        )
        for segment, part in rows.groupby("segment")
    }


def _unknown_list(config: Config, model: str, factors: pd.DataFrame) -> list[dict[str, Any]]:
    """The list the batch gives a customer it does not know: overall popularity after the
    business rules, made by ``kernels.lists`` as the served model makes it."""
    overall = factors[(factors.segment == GLOBAL_SEGMENT) & (factors.model == "popularity")]
    maker = ListMaker.of(
        ListTables(overall.reset_index(drop=True)), ListSpec.of(settings.serving_settings(config, model))
    )
    made = maker.predict(pd.DataFrame({"segment": [NO_SEGMENT], "customer_id": [""], "history": [[]]}))
    entry = LIST_TABLES["recommendations"][1]
    return ranked_lists(made, ["customer_id"], entry).get(("",), [])
