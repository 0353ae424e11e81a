"""conf -> the kernels' and the distributed layer's parameters, field by field by name.

A parameter class's fields are read from the conf section's fields of the same name, so
reordering either side changes nothing and a renamed field fails loudly (AttributeError).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from recsys_spark.config.schema import BasketsConfig, BusinessRulesConfig, ModelsConfig
from recsys_spark.distributed.baskets import MiningSettings
from recsys_spark.distributed.training import FusionParams, TrainSettings, Tuned
from recsys_spark.kernels import als, bias, bpr, content, graph_filter, itemknn, popularity
from recsys_spark.kernels.rerank import Rules

P = TypeVar("P")
# Made at scoring, nothing of their own to train: the hybrid blends trained models, UserKNN
# compares the customers' purchases.
DERIVED_MODELS = ("hybrid", "userknn")


def by_name(params: type[P], section: Any, **given: Any) -> P:
    """``params`` built from ``section``'s fields of the same names, plus ``given``."""
    names = [f.name for f in dataclasses.fields(params) if f.name not in given]  # type: ignore[arg-type]
    return params(**{name: getattr(section, name) for name in names}, **given)


def train_settings(models: ModelsConfig, tuned: Tuned | None = None) -> TrainSettings:
    """conf's model settings, with per-segment values chosen by tuning (``tuned``) over them."""
    return by_name(
        TrainSettings,
        models,
        models=trained_models(models),
        # ALS's own log scale is tuning's choice; conf's confidence.log_scale scales every model's weights.
        als=by_name(
            als.AlsParams,
            models.als,
            alpha=models.confidence.alpha,
            log_scale=False,
            feedback=models.feedback,
        ),
        bias=by_name(bias.BiasParams, models.bias),
        bpr=by_name(bpr.BprParams, models.bpr),
        itemknn=by_name(itemknn.ItemKnnParams, models.itemknn),
        graph=by_name(graph_filter.GraphParams, models.graph, seed=models.als.seed),
        popularity=by_name(popularity.PopularityParams, models.popularity),
        content=by_name(content.ContentParams, models.content, seed=models.als.seed),
        fusion=by_name(FusionParams, models.fusion),
        hybrid_weights=dict(models.hybrid.weights) if "hybrid" in models.enabled else {},
        tuned=tuned or {},
    )


def trained_models(models: ModelsConfig) -> tuple[str, ...]:
    """The models training fits: the enabled ones, and with explicit feedback the bias baseline,
    which the guardrail measures every model against (as popularity, always trained)."""
    enabled = tuple(m for m in models.enabled if m not in DERIVED_MODELS)
    return (*enabled, "bias") if models.feedback == "explicit" else enabled


def mining_settings(baskets: BasketsConfig) -> MiningSettings:
    return by_name(MiningSettings, baskets)


def business_rules(rules: BusinessRulesConfig, blocked: set[str]) -> Rules:
    """conf ``business_rules`` (and the exclude lists) as the kernel's rules."""
    return by_name(
        Rules,
        rules,
        blocked=frozenset(blocked),
        category_include=frozenset(rules.category_include),
        category_exclude=frozenset(rules.category_exclude),
    )


def hybrid_uses_rules(models: ModelsConfig) -> bool:
    """Whether the hybrid is enabled and weighs association rules (also under cold-start routing)."""
    hybrid = models.hybrid
    weights = (hybrid.weights.get("rules", 0.0), hybrid.short_history_weights.get("rules", 0.0))
    return "hybrid" in models.enabled and max(weights) > 0
