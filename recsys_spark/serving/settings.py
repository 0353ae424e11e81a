"""What serving a model reads and how it is configured: the served model's (the pyfunc's model
config) and the API's settings, shared with the batch scoring that makes the same lists."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from recsys_spark.config import Config
from recsys_spark.kernels.factors import EMBEDDING_MODELS


def serving_sources(config: Config, model: str) -> set[str]:
    """The models and sources serving ``model`` reads: itself, popularity for fallbacks, and the
    hybrid's sources when it is the model or takes short histories (cold-start routing)."""
    conf = config.models
    needed = {model, "popularity"}
    if model == "hybrid" or ("hybrid" in conf.enabled and conf.hybrid.short_history_orders > 0):
        for weights in (conf.hybrid.weights, conf.hybrid.short_history_weights):
            needed |= {source for source, weight in weights.items() if weight > 0}
    return needed


def serving_settings(
    config: Config, model: str, posteriors: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None
) -> dict[str, Any]:
    """The served model's config: its name and N, the hybrid and the business rules (the
    exclude lists as they stand in conf; ``models.exclude_table`` is read at batch scoring),
    and score intervals, with ALS's and BPR's settings per segment (``posteriors``:
    ``distributed.lists.interval_settings``) when known."""
    conf, rules = config.models, config.business_rules
    settings: dict[str, Any] = {
        "model": model,
        "top_n": conf.top_n,
        "rules": {
            "blocked": sorted(conf.exclude_items),
            "category_include": rules.category_include,
            "category_exclude": rules.category_exclude,
            "max_per_category": rules.max_per_category,
            "mmr_lambda": rules.mmr_lambda,
            "min_score_low": rules.min_score_low,
            "candidates": rules.candidates,
        },
        "intervals": True,
        "posteriors": {
            segment: {model: dict(values) for model, values in models.items()}
            for segment, models in (posteriors or {}).items()
        },
    }
    if "hybrid" in conf.enabled:
        settings["hybrid"] = dataclasses.asdict(conf.hybrid)
    if "userknn" in conf.enabled:
        settings["userknn"] = dataclasses.asdict(conf.userknn)
    return settings


def vector_model(published: str, trained: set[str]) -> str | None:
    """The factor model whose vectors stand for items and customers outside the lists (a cart's
    neighbours, the vector stores): the published one, else ALS, else any trained."""
    candidates = [m for m in (published, "als", *sorted(EMBEDDING_MODELS)) if m in EMBEDDING_MODELS]
    return next((m for m in candidates if m in trained), None)
