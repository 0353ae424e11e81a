"""Analyst views over the gold tables (docs/analysts.md): ids joined to descriptions, latest runs.

Each view reads its tables at the versions the latest completed steps recorded (gold.step_runs),
so a run killed between two commits never shows half a step; run_steps re-creates the views
after every step. The views live in the gold schema. Locally the session catalog is in memory, so get_spark
re-creates them at start-up over the tables that earlier runs left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.io.comments import VIEWS as VIEW_DOCS
from recsys_spark.io.comments import column_comments, sql_string
from recsys_spark.io.step_runs import complete_versions, table_at
from recsys_spark.io.tables import TableName, table_name

log = logging.getLogger(__name__)

# view -> (the tables it reads, its SELECT with {table} placeholders).
VIEWS: dict[str, tuple[tuple[str, ...], str]] = {
    "v_recommendations_latest": (
        ("recommendations", "items"),
        """
        SELECT r.segment, r.customer_id, r.rank, r.item_id, i.description, i.category, r.score,
               r.model, r.reason, r.reason_item_id, ri.description AS reason_description,
               r.score_low, r.score_high, r.run_id, r.generated_at
        FROM {recommendations} r
        LEFT JOIN {items} i ON i.item_id = r.item_id
        LEFT JOIN {items} ri ON ri.item_id = r.reason_item_id
        WHERE r.run_id = (SELECT max_by(run_id, generated_at) FROM {recommendations})
        """,
    ),
    "v_top_rules": (
        ("association_rules", "items"),
        """
        WITH names AS (
            SELECT map_from_entries(collect_list(struct(item_id, coalesce(description, item_id)))) AS d
            FROM {items}
        )
        SELECT r.segment,
               row_number() OVER (PARTITION BY r.segment
                                  ORDER BY r.lift DESC, r.confidence DESC, r.support DESC,
                                           array_join(r.antecedent, ','), r.consequent[0]) AS rank,
               r.antecedent, transform(r.antecedent, x -> names.d[x]) AS antecedent_descriptions,
               r.consequent[0] AS consequent_item_id, names.d[r.consequent[0]] AS consequent_description,
               size(r.antecedent) AS antecedent_size, r.support, r.confidence, r.lift, r.leverage,
               r.conviction, r.run_id, r.generated_at
        FROM {association_rules} r CROSS JOIN names
        """,
    ),
    "v_item_audience": (
        ("item_audience", "items", "customers"),
        """
        SELECT a.segment, a.item_id, i.description, a.rank, a.customer_id, a.score, a.model,
               c.lifecycle, c.value_decile, c.orders, c.last_order_at, c.days_since_last_order,
               a.run_id, a.generated_at
        FROM {item_audience} a
        LEFT JOIN {items} i ON i.item_id = a.item_id
        LEFT JOIN {customers} c ON c.customer_id = a.customer_id
        """,
    ),
    "v_model_metrics_latest": (
        ("model_metrics", "published_model"),
        """
        SELECT m.run_id, m.model, m.segment, m.slice, m.metric, m.k, m.value, m.baseline_value,
               m.value - m.baseline_value AS over_baseline, coalesce(m.model = p.model, false) AS published,
               p.reason AS published_reason, m.evaluated_at
        FROM {model_metrics} m
        LEFT JOIN {published_model} p ON p.run_id = m.run_id
        WHERE m.run_id = (SELECT max_by(run_id, evaluated_at) FROM {model_metrics})
        """,
    ),
}


def view_name(config: Config, view: str) -> TableName:
    """The full name of analyst view ``view``: it sits beside the gold tables."""
    gold = table_name(config, "recommendations")
    return TableName(gold.schema, view, gold.catalog)


def create_views(spark: SparkSession, config: Config, changed: set[str] | None = None) -> list[TableName]:
    """Create or replace every view whose tables exist (only those reading a table in
    ``changed``, when given); return the ones created.

    A view over a table that is not there yet (e.g. no baskets step has run), or that an
    earlier version wrote without a column the view reads, is skipped, with a log line, and
    created by the next run that writes it.
    """
    created: list[TableName] = []
    wanted = {view: spec for view, spec in VIEWS.items() if changed is None or changed & set(spec[0])}
    if not wanted:
        return created
    versions = complete_versions(spark, config)
    for view, (keys, select) in wanted.items():
        names = {key: table_name(config, key) for key in keys}
        missing = [str(n) for n in names.values() if not spark.catalog.tableExists(str(n))]
        if missing:
            log.info("view %s not created: %s not written yet", view, ", ".join(missing))
            continue
        name = view_name(config, view)
        # Each table at the version its latest completed step left (gold.step_runs).
        query = select.format(**{key: table_at(config, key, versions) for key in names})
        doc = VIEW_DOCS[view]
        try:
            with _quiet_pyspark_errors():
                query_columns = spark.sql(query).columns  # analysed, not run
        except AnalysisException as exc:
            if not (exc.getCondition() or "").startswith("UNRESOLVED_COLUMN"):
                raise
            # A table an earlier version wrote lacks a column added since; its next write adds it.
            log.info("view %s not created yet: %s", view, exc.getMessage().split(";")[0])
            continue
        comments = column_comments(doc, query_columns)
        columns = ", ".join(
            f"`{c}` COMMENT {sql_string(comments[c])}" if c in comments else f"`{c}`" for c in query_columns
        )
        spark.sql(f"CREATE OR REPLACE VIEW {name} ({columns}) COMMENT {sql_string(doc.comment)} AS {query}")
        created.append(name)
    return created


@contextmanager
def _quiet_pyspark_errors() -> Iterator[None]:
    """pyspark logs each failed SQL analysis at ERROR as it raises; a failure here is handled."""
    logger = logging.getLogger("SQLQueryContextLogger")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
