"""What every table and view means: the COMMENT on each table and column, defined once.

Writes attach these to the columns (tables.py) and views carry them (views.py), so
``DESCRIBE TABLE EXTENDED`` answers an analyst: grain, meaning and units. A column shared by
many tables (segment, run_id, ...) is described once in SHARED; a table's own text wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recsys_spark.config import ColumnMapping
from recsys_spark.kernels.candidates import REASON_MEANINGS


@dataclass(frozen=True)
class TableDoc:
    comment: str  # the table: its grain first, then what it is for
    columns: dict[str, str] = field(default_factory=dict)


RUN = "MLflow run id of the pipeline run that wrote this row"
SHARED: dict[str, str] = {
    "segment": "partition a model is trained on (input.columns.segment, e.g. country); `all` = every row",
    "customer_id": "customer id as in the input (string)",
    "item_id": "item id (SKU) as in the input, upper-cased (string)",
    "order_id": "order (basket) id as in the input",
    "run_id": RUN,
    "generated_at": "when this row was written (UTC)",
    "trained_at": "when the model was trained (UTC)",
    "model": "the model that produced the row (als, bpr, itemknn, userknn, graph, content, hybrid, "
    "popularity, ...)",
    "rank": "position in the list, 1 = best",
    "score": "the model's score; higher ranks first, comparable within one list only",
    "engine": "what fitted the factors: implicit (one machine per segment) or mllib (Spark ALS)",
    "factors": "the latent vector (array<float>)",
    "support": "share of the segment's baskets holding the itemset or rule (0..1)",
    "confidence": "P(consequent | antecedent): share of antecedent baskets that also hold the consequent",
    "lift": "confidence / support of the consequent: 1 = independent, > 1 = bought together more than chance",
    "description": "item description (the most frequent one seen for the item)",
    "category": "item category: the input's category column, or the description's last word "
    "(HOLDER, BAG, ...) with input.category_from_description; null: none",
    "source_file": "landing file the row came from",
    "line_id": "stable hash of the input line (source file and content): the dedupe key",
    "ingested_at": "when ingest wrote the row (UTC)",
    "reason": "why the row is here (see the table comment)",
    "value": "the metric's value",
    "baseline_value": "the baseline model's value for the same model/segment/slice/metric/k cell",
    "metric": "ndcg, precision, recall, map, hit_rate, coverage or diversity",
    "k": "list length the metric is computed at",
}

RECOMMENDATION_REASONS = ", ".join(f"{code} ({meaning})" for code, meaning in REASON_MEANINGS.items())

TABLES: dict[str, TableDoc] = {
    "purchases": TableDoc(
        "Bronze: one row per landed input line, every column as text, exactly as read "
        "(recsys load-sample); ingest validates it into silver.interactions"
    ),
    "interactions": TableDoc(
        "Silver: one row per valid purchase line (returns, fees and bad rows are in "
        "interactions_quarantine); insert-only, deduplicated on line_id",
        {
            "order_id": "the input's order id; without one, customer_id@date (or customer_id alone "
            "without a time): one basket per customer and day",
            "event_ts": "when the order was placed (UTC); null when the input has no time column",
            "quantity": "units bought (> 0); 1 per line when the input has no quantity column",
            "unit_price": "price per unit in the input's currency (> 0); null: the input has no price",
            "revenue": "quantity x unit_price, in the input's currency; null without a price",
            "description": "item description on this line, as in the input",
            "rating": "the customer's rating of the item (explicit feedback); null when the input "
            "has no rating column",
            "run_id": "MLflow run id of the ingest that inserted the row",
        },
    ),
    "interactions_quarantine": TableDoc(
        "Silver: one row per rejected input line, with why; nothing is dropped silently",
        {
            "raw": "the input line: input column -> value as text",
            "reason": "first failed check: malformed_line, cancellation, non_product_code, "
            "missing_customer, missing_item, missing_order, unparseable_timestamp, future_timestamp, "
            "implausible_timestamp, unparseable_quantity, non_positive_quantity, implausible_quantity, "
            "unparseable_price, non_positive_price, implausible_price, unparseable_rating, "
            "missing_segment, reserved_segment or near_duplicate",
        },
    ),
    "user_factors": TableDoc(
        "Silver: segment x customer x model, the customer's latent vector (als, bpr, graph, content)"
    ),
    "item_factors": TableDoc(
        "Silver: segment x item x model, the item's latent vector (als, bpr, graph, content, "
        "hybrid_embedding, popularity; graph_fold: what one purchase of the item adds to a "
        "customer's graph vector)"
    ),
    "item_neighbours": TableDoc(
        "Silver: segment x item x neighbour, the ItemKNN model's K nearest items",
        {
            "neighbour_item_id": "an item bought by the same customers",
            "similarity": "ItemKNN similarity (bm25, tfidf, cosine or count weighting)",
        },
    ),
    "baskets_quarantine": TableDoc(
        "Silver: one row per basket left out of itemset mining, with why",
        {
            "n_items": "distinct items in the basket",
            "reason": "why it was left out (oversized: more than baskets.max_basket_items items)",
        },
    ),
    "recommendations": TableDoc(
        "Gold: segment x customer x rank, the published top-N per customer. reason: "
        + RECOMMENDATION_REASONS,
        {
            "item_id": "the recommended item",
            "reason": "why it is recommended: factor_score, because_bought, similar_customer_bought, "
            "similar_description, bought_with_last_basket, high_predicted_rating, popular_in_segment "
            "or popular_overall",
            "reason_item_id": "the customer's purchase that led to it (because_bought, "
            "bought_with_last_basket); for similar_customer_bought the customer id of the most "
            "similar customer who bought it; null otherwise",
            "score_low": "lower end of the score's 95% interval: ALS from the customer's posterior "
            "(Y'C_uY + lambda I)^-1 (explicit ratings: sigma^2 (Y_u'Y_u + lambda n_u I)^-1), "
            "ItemKNN, UserKNN, content, graph and BPR by a bootstrap of the customer's history "
            "(BPR re-fitted by one Newton step); null for other models, blended (hybrid) and "
            "topped-up rows",
            "score_high": "upper end of the score's 95% interval (null as score_low)",
        },
    ),
    "similar_items": TableDoc(
        "Gold: segment x item x model x rank, the most similar items per item",
        {
            "similar_item_id": "an item similar to item_id",
            "score": "cosine of the item vectors, or the ItemKNN similarity",
        },
    ),
    "item_audience": TableDoc(
        "Gold: segment x item x rank, the customers most likely to buy each item (CRM targeting)",
        {"customer_id": "a customer who has not bought the item yet"},
    ),
    "lookalikes": TableDoc(
        "Gold: segment x customer x rank, the most similar customers per customer",
        {
            "similar_customer_id": "a customer with a similar vector",
            "score": "cosine of the customer vectors",
        },
    ),
    "frequent_itemsets": TableDoc(
        "Gold: segment x itemset, every set of items bought together in at least min_support of baskets",
        {
            "items": "the item ids of the set (array<string>, sorted)",
            "freq": "baskets holding every item of the set",
            "size": "items in the set",
        },
    ),
    "association_rules": TableDoc(
        "Gold: segment x rule, antecedent => consequent from the frequent itemsets",
        {
            "antecedent": "items already in the basket (array<string>)",
            "consequent": "the item the rule predicts (array<string> of one)",
            "leverage": "support - expected support under independence",
            "conviction": "(1 - consequent support) / (1 - confidence); infinite when confidence is 1",
        },
    ),
    "frequently_bought_together": TableDoc(
        "Gold: segment x item x rank, the best add-ons for an item (single-item rules by confidence)",
        {"addon_item_id": "the add-on to suggest with item_id"},
    ),
    "substitutes": TableDoc(
        "Gold: segment x item pair, popular items rarely bought together (lift <= max_lift): alternatives",
        {
            "substitute_item_id": "the alternative to item_id",
            "item_support": "share of baskets holding item_id",
            "substitute_support": "share of baskets holding substitute_item_id",
            "expected_together": "baskets expected to hold both if they were independent",
            "together": "baskets that hold both",
        },
    ),
    "model_metrics": TableDoc(
        "Gold: evaluation run x model x segment x slice x metric x k, offline metrics on the "
        "evaluation's split, with 95% bootstrap intervals",
        {
            "model": "the model evaluated; <model>+<rule> rows measure a business rule, never published",
            "metric": "ndcg, precision, recall, map, hit_rate, mrr, customers, coverage, novelty, "
            "popularity_bias, diversity; interleaving_preference (of the test customers who preferred "
            "one of the published model and the runner-up when their lists were team-draft "
            "interleaved at primary k, the share who preferred this model; Wilson interval, no "
            "baseline) and interleaving_wins (how many); with explicit feedback rmse, mae and "
            "rated_pairs (the test ratings every rating model predicts; k null, the bias baseline's "
            "value as baseline_value)",
            "slice": "customers measured: all, or a history slice (e.g. short history)",
            "ci_low": "lower end of the value's 95% interval: test customers resampled "
            "(evaluation.bootstrap_samples); ranking metrics of all customers and of each segment",
            "ci_high": "upper end of the value's 95% interval",
            "evaluated_at": "when the evaluation ran (UTC)",
        },
    ),
    "model_settings": TableDoc(
        "Silver: one row per segment and trained model, the settings its factors were trained with",
        {
            "model": "the model (als, bpr, itemknn, ...)",
            "settings": "every setting of the model's kernel, JSON (setting -> value)",
            "tuned": "the values tuning chose over conf's, JSON; null: conf's values",
            "trained_at": "when the train step ran (UTC)",
        },
    ),
    "tuning_trials": TableDoc(
        "Gold: one row per tuning trial (segment, model, values tried) with its validation NDCG",
        {
            "model": "the tuned model",
            "trial": "the trial's number per segment and model; 0 is conf's values",
            "params": "the searched settings' values in this trial, JSON",
            "ndcg": "mean NDCG at evaluation.primary_k over the validation customers",
            "validation_customers": "customers scored on the validation part of the training period",
            "seconds": "fit and score time of the trial",
            "chosen": "whether train used this trial's values for the segment",
            "tuned_at": "when the train step ran (UTC)",
        },
    ),
    "published_model": TableDoc(
        "Gold: one row per evaluation run, the model the guardrail chose to publish and why",
        {
            "model": "the published model (a baseline when no model beat it)",
            "reason": "the guardrail's reason, in words",
            "metric": "the primary metric compared",
            "k": "the list length it was compared at",
            "value": "the published model's value of the primary metric",
            "baseline_value": "the baseline's value of the primary metric",
            "split": "how train and test were split: quantile, date, last_days, last_basket or random",
            "cutoff": "the time split's cutoff (UTC); null for per-customer splits",
            "data_from": "the first purchase in silver.interactions (null without times)",
            "data_to": "the last purchase in silver.interactions",
            "train_lines": "purchase lines the models were trained on",
            "test_customers": "customers with something new to find in the test part",
            "test_pairs": "new customer x item pairs in the test part",
            "settings": "the evaluated models' hyperparameters, JSON (model -> setting -> value)",
            "decided_at": "when the choice was made (UTC)",
        },
    ),
    "step_runs": TableDoc(
        "Gold: one row per completed step of a pipeline run, written after all its tables; "
        "the analyst views and the export read each table at the version recorded here",
        {
            "run_id": RUN,
            "step": "the step: ingest, baskets, train, evaluate, score, analytics or export",
            "tables": "each table the step wrote -> the Delta version its write made",
            "completed_at": "when the step finished (UTC)",
        },
    ),
    "items": TableDoc(
        "Gold: one row per item, the item dimension with its sales",
        {
            "buyers": "distinct customers who bought it",
            "orders": "distinct orders holding it",
            "quantity": "units sold",
            "revenue": "revenue, in the input's currency",
            "first_sold": "first purchase (UTC)",
            "last_sold": "latest purchase (UTC)",
        },
    ),
    "customers": TableDoc(
        "Gold: one row per customer, the customer dimension: value and lifecycle",
        {
            "segment": "home segment: the segment of the customer's latest order",
            "segments": "every segment the customer bought in",
            "orders": "distinct orders",
            "lines": "purchase lines",
            "revenue": "total spend, in the input's currency",
            "first_order_at": "first order (UTC)",
            "last_order_at": "latest order (UTC)",
            "days_since_last_order": "days from the latest order to the newest purchase in the data",
            "value_decile": "revenue decile among customers: 10 = top 10%",
            "lifecycle": "new, active, lapsing or lapsed (analytics.active_days, lapsed_days)",
        },
    ),
    "category_saturation": TableDoc(
        "Gold: customer x category, how much of a customer's spend goes to each category",
        {
            "lines": "purchase lines in the category",
            "spend": "spend in the category, in the input's currency",
            "share": "spend / the customer's total spend (0..1)",
            "decile": "decile of share among the category's buyers: 10 = most saturated",
        },
    ),
    "cross_sell_potential": TableDoc(
        "Gold: segment x target item x rank, customers who have not bought a target item, by affinity",
        {
            "item_id": "the target item (analytics.cross_sell_items or a top seller)",
            "customer_id": "a customer who has not bought it",
            "score": "predicted affinity under the factor model",
        },
    ),
    "rules_graph_edges": TableDoc(
        "Gold: one row per single-item rule, as an edge of the item graph (Gephi-ready)",
        {"source_item_id": "the rule's antecedent", "target_item_id": "the rule's consequent"},
    ),
    "rules_graph_nodes": TableDoc(
        "Gold: one row per item in the rules graph, with its centrality",
        {
            "pagerank": "lift-weighted PageRank: how many strong rules lead to the item",
            "in_degree": "rules whose consequent is the item",
            "out_degree": "rules whose antecedent is the item",
            "rank": "by pagerank, 1 = most central",
        },
    ),
    "item_vectors": TableDoc(
        "Gold: one row per segment x item, its vectors for a vector index (recsys export-vectors; "
        "change data feed on, so a Databricks Vector Search delta-sync index can track it)",
        {
            "vector_id": "segment and item id in one key (the index's primary key)",
            "model": "the factor model the vector comes from (the published one, else als)",
            "vector": "the model's item vector (array<float>); cosine finds similar items",
            "fused_vector": "the fused ALS + content vector (hybrid_embedding); null without one",
            "blocked": "on the exclude list (models.exclude_items or exclude_table): filter it out",
            "exported_at": "when this export was written (UTC)",
        },
    ),
    "customer_vectors": TableDoc(
        "Gold: one row per segment x customer, their vector for a vector index (recsys "
        "export-vectors; change data feed on); a customer vector against item vectors scores "
        "items as the model does (dot product)",
        {
            "vector_id": "segment and customer id in one key (the index's primary key)",
            "model": "the factor model the vector comes from (the published one, else als)",
            "vector": "the model's customer vector (array<float>)",
            "exported_at": "when this export was written (UTC)",
        },
    ),
    "exported_lists": TableDoc(
        "Gold: one row per export x customer: the list the CRM export gave them and their A/B arm, "
        "kept so that `recsys experiment` measures what they bought afterwards without "
        "recomputing old lists (raw customer ids, also when the files carry hashed ones)",
        {
            "run_id": "MLflow run id of the pipeline run that exported: the experiment's "
            "results are logged to it",
            "recommendations_run_id": "the run whose gold.recommendations were exported (the "
            "export folder run_id=...): one export per such run, exporting it again replaces it",
            "experiment": "export.experiment: the name hashed with the customer id to pick the arm",
            "exported_at": "when the export ran (UTC)",
            "as_of": "the newest purchase in silver.interactions when the lists were exported: "
            "the outcome windows start right after it",
            "variant": "model (the published lists) or holdout (segment popularity)",
            "model": "the model whose list was shown; null when the list is empty",
            "items": "the item ids shown, in rank order (empty: nothing left to recommend)",
        },
    ),
    "experiment_results": TableDoc(
        "Gold: export x window x segment x metric: what the model arm's customers bought after "
        "the export against the holdout arm's (recsys experiment), with the uplift's 95% interval "
        "and a plain-sentence verdict; segment `all` pools every exported customer",
        {
            "run_id": "MLflow run id of the `recsys experiment` run that measured this row",
            "export_run_id": "MLflow run id of the run that made the export (the figures are logged there)",
            "recommendations_run_id": "the exported recommendations run (gold.exported_lists)",
            "experiment": "export.experiment of the export",
            "window_days": "purchases counted in the D days after as_of",
            "as_of": "the export's newest purchase: the window is (as_of, as_of + window_days]",
            "observed_days": "days of purchases seen so far (up to window_days)",
            "complete": "true once silver.interactions holds purchases past the window's end",
            "segment": "the customers' segment in the export; `all` = every exported customer",
            "metric": "conversion (bought a shown item), buyer_rate (bought anything), hit_rate "
            "(share of the shown items bought), shown_revenue and revenue (per customer, input's "
            "currency; left out without prices)",
            "model_customers": "customers in the model arm",
            "holdout_customers": "customers in the holdout arm",
            "model_value": "the metric over the model arm (a share, or a mean per customer)",
            "holdout_value": "the metric over the holdout arm",
            "uplift": "model_value - holdout_value",
            "ci_low": "lower end of the uplift's 95% interval (Wald for shares, Welch for means)",
            "ci_high": "upper end of the uplift's 95% interval",
            "p_value": "two-sided p-value of no difference (two-proportion z-test for shares)",
            "verdict": "the row in one sentence",
            "measured_at": "when this row was measured (UTC)",
        },
    ),
}

VIEWS: dict[str, TableDoc] = {
    "v_recommendations_latest": TableDoc(
        "View: the latest published recommendations with item and reason descriptions. reason: "
        + RECOMMENDATION_REASONS,
        {**TABLES["recommendations"].columns, "reason_description": "description of reason_item_id"},
    ),
    "v_top_rules": TableDoc(
        "View: association rules ranked by lift per segment, with item descriptions",
        {
            **TABLES["association_rules"].columns,
            "rank": "by lift within the segment, 1 = strongest",
            "antecedent_descriptions": "descriptions of the antecedent items",
            "consequent_item_id": "the item the rule predicts",
            "consequent_description": "its description",
            "antecedent_size": "items in the antecedent",
        },
    ),
    "v_item_audience": TableDoc(
        "View: item audiences with each customer's lifecycle and value",
        {**TABLES["customers"].columns, **TABLES["item_audience"].columns, "segment": SHARED["segment"]},
    ),
    "v_model_metrics_latest": TableDoc(
        "View: the latest evaluation's metrics, against the baseline, with the published model",
        {
            **TABLES["model_metrics"].columns,
            "over_baseline": "value - baseline_value",
            "published": "true for the model whose lists are in recommendations",
            "published_reason": "the guardrail's reason",
        },
    ),
}


def column_comments(doc: TableDoc, columns: list[str]) -> dict[str, str]:
    """The comment of each of ``columns`` that has one (the table's own text, else SHARED)."""
    texts = {**SHARED, **doc.columns}
    return {c: texts[c] for c in columns if c in texts}


def bronze_doc(mapping: ColumnMapping, columns: list[str]) -> TableDoc:
    """The bronze table's comments: its columns are the input's, named by conf."""
    mapped = {source: silver for silver, source in vars(mapping).items() if source}
    texts = {
        "_corrupt_record": "the raw line when it could not be parsed into columns (else null)",
        "source_file": "landing file the line came from",
        "loaded_at": "when load-sample landed the line (UTC)",
    }
    for column in columns:
        if column in mapped:
            texts[column] = f"input column, as text; ingest reads it as silver {mapped[column]}"
        else:
            texts.setdefault(column, "input column not used by the pipeline, kept as landed")
    return TableDoc(TABLES["purchases"].comment, texts)


def sql_string(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
