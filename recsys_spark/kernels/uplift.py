"""A/B uplift of the ``model`` arm over the ``holdout`` arm, from each arm's sufficient
statistics (customers, sum and sum of squares of a per-customer value), so that millions of
customers reduce to a few numbers per arm before any of this runs (numpy only; no Spark).

Intervals are normal approximations at 95%: for a share (conversion), the unpooled Wald interval
of the difference of two proportions and the pooled two-proportion z-test; for a mean (revenue
per customer), Welch's standard error of the difference of two means. Both are what an A/B
readout computes by hand, so every figure can be checked against a worked example.

Example::

    proportion_uplift(Arm(100, 30, 30), Arm(100, 20, 20))
    # Uplift(model=0.30, holdout=0.20, uplift=0.10, low=-0.0192, high=0.2192, p_value=0.1025)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
MODEL_ARM, HOLDOUT_ARM = "model", "holdout"  # the export's variants
COMPARED_COLUMNS = [
    "metric",
    "model_customers",
    "holdout_customers",
    "model_value",
    "holdout_value",
    "uplift",
    "ci_low",
    "ci_high",
    "p_value",
]


@dataclass(frozen=True)
class Arm:
    """One arm's per-customer value: how many customers, their sum and their sum of squares
    (for a 0/1 value both sums are the count of ones)."""

    customers: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.customers if self.customers else math.nan

    @property
    def sample_variance(self) -> float:
        """The unbiased variance (n - 1 in the denominator); NaN under two customers."""
        n = self.customers
        if n < 2:
            return math.nan
        return max(0.0, (self.squares - self.total * self.total / n) / (n - 1))


@dataclass(frozen=True)
class Uplift:
    """Model arm minus holdout arm, with its 95% interval and two-sided p-value."""

    model: float
    holdout: float
    uplift: float
    low: float
    high: float
    p_value: float


Kind = Literal["share", "mean"]


@dataclass(frozen=True)
class OutcomeMetric:
    """A per-customer outcome the experiment compares: its words, whether it is a 0/1 share
    (two-proportion interval) or a mean, and whether it reads in percentage points."""

    label: str
    kind: Kind
    in_points: bool


# Per exported customer, in the window after the export (``distributed.experiments``).
OUTCOMES: dict[str, OutcomeMetric] = {
    "conversion": OutcomeMetric("conversion on shown items", "share", True),  # bought >= 1 shown item
    "buyer_rate": OutcomeMetric("share of customers buying anything", "share", True),
    "hit_rate": OutcomeMetric("hit rate of the shown list", "mean", True),  # shown items bought / shown
    "shown_revenue": OutcomeMetric("revenue from shown items", "mean", False),
    "revenue": OutcomeMetric("revenue", "mean", False),  # every purchase in the window
}
REVENUE_OUTCOMES = ("shown_revenue", "revenue")


def proportion_uplift(model: Arm, holdout: Arm) -> Uplift:
    """The difference of two shares: Wald interval (unpooled) and pooled two-proportion z-test."""
    p1, p2 = model.mean, holdout.mean
    if not (model.customers and holdout.customers):
        return Uplift(p1, p2, math.nan, math.nan, math.nan, math.nan)
    spread = math.sqrt(p1 * (1 - p1) / model.customers + p2 * (1 - p2) / holdout.customers)
    pooled = (model.total + holdout.total) / (model.customers + holdout.customers)
    null_spread = math.sqrt(pooled * (1 - pooled) * (1 / model.customers + 1 / holdout.customers))
    return _uplift(p1, p2, spread, null_spread)


def mean_uplift(model: Arm, holdout: Arm) -> Uplift:
    """The difference of two means with Welch's standard error; z-test on it."""
    m1, m2 = model.mean, holdout.mean
    if not (model.customers and holdout.customers):
        return Uplift(m1, m2, math.nan, math.nan, math.nan, math.nan)
    spread = math.sqrt(model.sample_variance / model.customers + holdout.sample_variance / holdout.customers)
    return _uplift(m1, m2, spread, spread)


def _uplift(model: float, holdout: float, spread: float, null_spread: float) -> Uplift:
    difference = model - holdout
    if math.isnan(spread):
        return Uplift(model, holdout, difference, math.nan, math.nan, math.nan)
    if null_spread == 0:  # no variation in either arm: the difference is exact
        p_value = 1.0 if difference == 0 else 0.0
    else:
        p_value = math.erfc(abs(difference / null_spread) / math.sqrt(2))
    return Uplift(model, holdout, difference, difference - Z_95 * spread, difference + Z_95 * spread, p_value)


def uplift(kind: Kind, model: Arm, holdout: Arm) -> Uplift:
    return proportion_uplift(model, holdout) if kind == "share" else mean_uplift(model, holdout)


def verdict(metric: OutcomeMetric, window_days: int, result: Uplift, observed_days: float) -> str:
    """The result in one sentence a CRM team can read, e.g. "model lists lifted 14-day
    conversion on shown items by 2.1 points, 95% CI 1.2 to 3.0"."""
    what = f"{window_days}-day {metric.label}"
    pending = ""
    if observed_days < window_days:
        pending = f"so far ({observed_days:.1f} of {window_days} days of purchases seen): "
    if math.isnan(result.uplift):
        return f"{pending}{what}: no holdout or no model customers to compare"

    unit = " points" if metric.in_points else " per customer"

    def number(value: float, sign: str = "") -> str:
        return f"{value * 100:{sign}.1f}" if metric.in_points else f"{value:{sign},.2f}"

    if math.isnan(result.low):
        return f"{pending}{what}: {number(result.uplift, '+')}{unit}, too few customers for an interval"
    interval = f"95% CI {number(result.low)} to {number(result.high)}"
    if result.low > 0 or result.high < 0:
        direction = "lifted" if result.low > 0 else "lowered"
        return f"{pending}model lists {direction} {what} by {number(abs(result.uplift))}{unit}, {interval}"
    return f"{pending}no clear difference in {what}: {number(result.uplift, '+')}{unit}, {interval}"


def compared(stats: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Per ``keys`` × metric, the model arm against the holdout arm (COMPARED_COLUMNS; NaN
    where a figure cannot be had, e.g. no holdout arm).

    ``stats``: one row per ``keys`` × ``variant`` with ``customers`` and, per metric,
    ``<metric>_total`` and ``<metric>_squares`` (an arm without a row has no customers).
    """
    rows = []
    for key, part in stats.groupby(list(keys), sort=True):
        arms = part.set_index("variant")
        for name in metrics:
            model, holdout = (_arm(arms, variant, name) for variant in (MODEL_ARM, HOLDOUT_ARM))
            result = uplift(OUTCOMES[name].kind, model, holdout)
            figures = (result.model, result.holdout, result.uplift, result.low, result.high, result.p_value)
            rows.append((*key, name, model.customers, holdout.customers, *figures))
    return pd.DataFrame(rows, columns=[*keys, *COMPARED_COLUMNS])


def pooled(stats: pd.DataFrame, keys: Sequence[str], segment: str) -> pd.DataFrame:
    """``stats`` per segment (a ``segment`` column among ``keys``) with every segment's arms
    summed into ``segment`` (the global one) in place of any rows it already had: sums and sums
    of squares add up, so the pooled arm is exact."""
    others = [k for k in keys if k != "segment"]
    totals = stats.groupby([*others, "variant"], as_index=False).sum(numeric_only=True)
    kept = stats[stats.segment != segment]
    return pd.concat([kept, totals.assign(segment=segment)], ignore_index=True)


def _arm(arms: pd.DataFrame, variant: str, metric: str) -> Arm:
    if variant not in arms.index:
        return Arm(0, 0.0, 0.0)
    row = arms.loc[variant]
    return Arm(int(row.customers), float(row[f"{metric}_total"]), float(row[f"{metric}_squares"]))
