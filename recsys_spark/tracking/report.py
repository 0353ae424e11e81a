"""The evaluation report: plots and an HTML page built from gold.model_metrics and
gold.published_model, for one evaluation run (the latest by default), with the latest export's
A/B readout from gold.experiment_results when there is one.

`recsys report` writes it under the work folder; the evaluate step also logs the page and the plots
to MLflow; notebooks/evaluation_report.py shows the same page on Databricks.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from recsys_spark.config import Config  # noqa: E402
from recsys_spark.distributed.evaluation import ALL_SLICES  # noqa: E402
from recsys_spark.io.tables import table_name  # noqa: E402
from recsys_spark.kernels.metrics import RATING_METRICS  # noqa: E402
from recsys_spark.kernels.routing import GLOBAL_SEGMENT  # noqa: E402
from recsys_spark.kernels.uplift import COMPARED_COLUMNS  # noqa: E402

SLICE_ORDER = ["cold_start", "1", "2-4", "5-19", "20+"]


@dataclass
class Report:
    run_id: str
    html: str
    figures: dict[str, Figure]
    path: Path | None = None

    def close(self) -> None:
        """Free the figures (matplotlib keeps them until closed)."""
        for figure in self.figures.values():
            plt.close(figure)


def build_report(spark: SparkSession, config: Config, run_id: str | None = None) -> Report:
    """The report of ``run_id``'s evaluation, or of the latest one."""
    metrics_name = table_name(config, "model_metrics")
    if not spark.catalog.tableExists(str(metrics_name)):
        raise ValueError(f"{metrics_name} does not exist: run `recsys evaluate` first")
    metrics = spark.table(str(metrics_name))
    if run_id is None:
        latest = metrics.orderBy(F.desc("evaluated_at")).select("run_id").first()
        if latest is None:
            raise ValueError(f"{metrics_name} is empty: run `recsys evaluate` first")
        run_id = latest.run_id
    rows = metrics.where(F.col("run_id") == run_id).toPandas()
    choice = (
        spark.table(str(table_name(config, "published_model"))).where(F.col("run_id") == run_id).toPandas()
    )
    conf = config.evaluation
    # The plots and tables by K show a ranking metric: with a rating error primary, NDCG.
    ranking = "ndcg" if conf.primary_metric in RATING_METRICS else conf.primary_metric
    figures = make_figures(rows, ranking, conf.primary_k)
    experiment = latest_experiment(spark, config)
    if len(experiment):
        figures["experiment_uplift.png"] = experiment_figure(experiment)
    page = render(run_id, rows, choice, figures, ranking, conf.primary_k, experiment)
    return Report(run_id, page, figures)


def latest_experiment(spark: SparkSession, config: Config) -> pd.DataFrame:
    """gold.experiment_results of the latest export measured, every customer (segment all);
    empty when nothing was measured yet."""
    name = str(table_name(config, "experiment_results"))
    if not spark.catalog.tableExists(name):
        return pd.DataFrame()
    results = spark.table(name).where(F.col("segment") == GLOBAL_SEGMENT)
    latest = results.orderBy(F.desc("as_of"), F.desc("measured_at")).select("recommendations_run_id").first()
    if latest is None:
        return pd.DataFrame()
    chosen = results.where(F.col("recommendations_run_id") == latest[0])
    return chosen.toPandas().sort_values(["metric", "window_days"])


def experiment_figure(results: pd.DataFrame) -> Figure:
    """The model arm's uplift in conversion on shown items per window, with its 95% interval."""
    conversion = results[results.metric == "conversion"]
    fig, ax = plt.subplots(figsize=(6, 4))
    uplift = conversion.uplift.astype(float) * 100
    spread = [uplift - conversion.ci_low.astype(float) * 100, conversion.ci_high.astype(float) * 100 - uplift]
    ax.errorbar(conversion.window_days.astype(str) + " days", uplift, yerr=spread, fmt="o", capsize=6)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set(
        xlabel="window after the export",
        ylabel="model - holdout, points",
        title="uplift in conversion on shown items (95% CI)",
    )
    return fig


def write_report(report: Report, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    report.path = folder / f"evaluation_{report.run_id}.html"
    report.path.write_text(report.html)
    return report.path


def make_figures(rows: pd.DataFrame, metric: str, k: int) -> dict[str, Figure]:
    overall = rows[(rows.segment == GLOBAL_SEGMENT) & (rows.slice == ALL_SLICES)]
    wanted = [metric, "coverage", "popularity_bias"]
    table = (
        overall.pivot(index=["model", "k"], columns="metric", values="value")
        .reindex(columns=wanted)
        .reset_index()
    )
    figures: dict[str, Figure] = {}

    fig, ax = plt.subplots(figsize=(6, 4))
    for model, part in table.groupby("model"):
        ax.plot(part.k, part[metric], marker="o", label=model)
    ax.set(xlabel="K", ylabel=f"{metric}@K", title=f"{metric} by list length")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")  # beside, never over the lines
    figures["metric_vs_k.png"] = fig

    at_k = table[table.k == k]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(at_k.popularity_bias, at_k.coverage)
    for position, row in enumerate(at_k.itertuples()):
        # Alternate the labels above and below their point so neighbours do not print over each other.
        offset = (4, 6) if position % 2 == 0 else (4, -12)
        ax.annotate(
            row.model,
            (row.popularity_bias, row.coverage),
            textcoords="offset points",
            xytext=offset,
            fontsize="small",
        )
    ax.set(
        xlabel=f"share of top-1% items in lists @{k}",
        ylabel=f"catalogue coverage @{k}",
        title="coverage vs popularity bias",
    )
    figures["coverage_vs_popularity_bias.png"] = fig

    sliced = rows[(rows.slice != ALL_SLICES) & (rows.metric == metric) & (rows.k == k)]
    by_slice = sliced.pivot(index="slice", columns="model", values="value").astype(float)
    by_slice = by_slice.reindex([s for s in SLICE_ORDER if s in by_slice.index])
    fig, ax = plt.subplots(figsize=(8, 4))
    by_slice.plot.bar(ax=ax, rot=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    ax.set(
        xlabel="orders before the cutoff", ylabel=f"{metric}@{k}", title=f"{metric}@{k} by customer history"
    )
    figures["metric_by_history.png"] = fig
    return figures


def render(
    run_id: str,
    rows: pd.DataFrame,
    choice: pd.DataFrame,
    figures: dict[str, Figure],
    metric: str,
    k: int,
    experiment: pd.DataFrame,
) -> str:
    overall = rows[(rows.segment == GLOBAL_SEGMENT) & (rows.slice == ALL_SLICES) & (rows.k == k)]
    table = overall.pivot_table(index="model", columns="metric", values="value").sort_values(
        metric, ascending=False
    )
    if "ci_low" in overall:  # the primary metric's 95% interval beside it
        primary = overall[overall.metric == metric].set_index("model")
        interval = primary.ci_low.map("{:.4f}".format) + " to " + primary.ci_high.map("{:.4f}".format)
        table.insert(0, f"{metric} 95% interval", interval.where(primary.ci_low.notna(), "n/a"))
    segments = rows[(rows.segment != GLOBAL_SEGMENT) & (rows.metric == metric) & (rows.k == k)]
    by_segment = segments.pivot(index="segment", columns="model", values="value")
    decision = "<p>No publishing decision recorded for this run.</p>"
    if len(choice):
        decision = (
            f"<p><b>{html.escape(champion_sentence(rows, choice.iloc[0]))}</b></p>"
            f"<p>The guardrail's reasoning: {html.escape(str(choice.reason.iat[0]))}</p>"
            f"{interleaving_paragraph(rows, k)}{measured(choice.iloc[0], rows)}"
        )
    images = "".join(
        f'<figure><img src="data:image/png;base64,{_png(fig)}" alt="{name}">'
        f"<figcaption>{name}</figcaption></figure>"
        for name, fig in figures.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>recsys evaluation "
        f"{run_id}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>Evaluation {html.escape(run_id)}</h1>{decision}"
        f"<h2>All customers, K = {k}</h2>{table.to_html(float_format=lambda v: f'{v:.4f}')}"
        f"<h2>{metric}@{k} by segment</h2>{by_segment.to_html(float_format=lambda v: f'{v:.4f}')}"
        f"{rating_section(rows)}{experiment_section(experiment)}"
        f"<h2>Plots</h2>{images}</body></html>"
    )


def rating_section(rows: pd.DataFrame) -> str:
    """Explicit feedback: each rating model's RMSE and MAE on the test ratings, over every
    segment (empty with implicit feedback)."""
    errors = rows[
        rows.metric.isin([*RATING_METRICS, "rated_pairs"])
        & (rows.segment == GLOBAL_SEGMENT)
        & (rows.slice == ALL_SLICES)
    ]
    if errors.empty:
        return ""
    table = errors.pivot(index="model", columns="metric", values="value").sort_values("rmse")
    pairs = int(table.rated_pairs.max())
    table = table[list(RATING_METRICS)]
    return (
        f"<h2>Predicted ratings</h2><p>On the {pairs:,} test ratings every rating model predicts "
        "(customer and item seen before the cutoff); lower is better.</p>"
        f"{table.to_html(float_format=lambda v: f'{v:.4f}')}"
    )


def interleaving_paragraph(rows: pd.DataFrame, k: int) -> str:
    """The published model against the runner-up, team-draft interleaved (empty without)."""
    cells = rows[
        (rows.metric == "interleaving_preference")
        & (rows.segment == GLOBAL_SEGMENT)
        & (rows.slice == ALL_SLICES)
    ]
    wins = (
        rows[(rows.metric == "interleaving_wins") & (rows.segment == GLOBAL_SEGMENT)].set_index("model").value
    )
    if len(cells) != 2:
        return ""
    shares = []
    for r in cells.sort_values("value", ascending=False).itertuples():
        if pd.isna(r.value):
            return "<p>Interleaved with the runner-up, no test customer preferred either list.</p>"
        interval = f"95% CI {r.ci_low:.1%} to {r.ci_high:.1%}"
        shares.append(f"{html.escape(r.model)} {r.value:.1%} ({interval}, {int(wins[r.model]):,} customers)")
    return (
        f"<p>Interleaved (team draft, K={k}, credited by the held-out purchases), the test customers "
        f"who preferred one list preferred: {'; '.join(shares)}.</p>"
    )


def experiment_section(results: pd.DataFrame) -> str:
    """The latest export's A/B readout: per window and metric, both arms, the uplift and its
    interval, and each verdict (empty when nothing was measured yet)."""
    if results.empty:
        return ""
    first = results.iloc[0]
    table = results.set_index(["window_days", "metric"])[[c for c in COMPARED_COLUMNS if c != "metric"]]
    verdicts = "".join(
        f"<li>{html.escape(str(v))}</li>" for v in results[results.metric == "conversion"].verdict
    )
    return (
        f"<h2>Did the lists sell? Export of {html.escape(str(first.recommendations_run_id))}</h2>"
        f"<p>Experiment {html.escape(str(first.experiment))}; purchases after {first.as_of:%Y-%m-%d %H:%M}, "
        f"model arm (published lists) against holdout (segment popularity).</p><ul>{verdicts}</ul>"
        f"{table.to_html(float_format=lambda v: f'{v:.4f}')}"
    )


def champion_sentence(rows: pd.DataFrame, choice: pd.Series) -> str:
    """Who is published and why, in one sentence a merchandiser can read."""
    metric, k = str(choice.metric), int(choice.k)
    name = f"{metric.upper() if metric in ('ndcg', 'map', 'mrr') else metric.replace('_', ' ')}@{k}"
    if metric in RATING_METRICS:
        name = f"{metric.upper()} on the test ratings"
    cell = rows[
        (rows.model == choice.model)
        & (rows.metric == metric)
        & (rows.k == k)
        & (rows.segment == GLOBAL_SEGMENT)
        & (rows.slice == ALL_SLICES)
    ]
    interval = ""
    if len(cell) and "ci_low" in cell and pd.notna(cell.ci_low.iat[0]):
        interval = f" (95% interval {cell.ci_low.iat[0]:.4f} to {cell.ci_high.iat[0]:.4f})"
    if choice.value == choice.baseline_value and "baseline published" in str(choice.reason):
        return (
            f"No model beat the baseline, so {choice.model} is published: its {name} is "
            f"{choice.value:.4f}{interval}."
        )
    lift = (choice.value / choice.baseline_value - 1) * 100 if choice.baseline_value else float("nan")
    return (
        f"{choice.model} is published: on the held-out purchases its {name} is {choice.value:.4f}"
        f"{interval}, {lift:+.0f}% against the baseline's {choice.baseline_value:.4f}."
    )


def measured(choice: pd.Series, rows: pd.DataFrame) -> str:
    """What the evaluation measured on: data window, split, sizes, test customers per segment
    and the models' settings (empty for runs recorded before these columns existed)."""
    if "split" not in choice or pd.isna(choice.split):
        return ""
    window = (
        "no purchase times"
        if pd.isna(choice.data_from)
        else f"{choice.data_from:%Y-%m-%d} to {choice.data_to:%Y-%m-%d}"
    )
    cutoff = f", cutoff {choice.cutoff:%Y-%m-%d %H:%M}" if pd.notna(choice.cutoff) else ""
    customers = rows[
        (rows.metric == "customers")
        & (rows.slice == ALL_SLICES)
        & (rows.model == choice.model)
        & (rows.k == choice.k)
        & (rows.segment != GLOBAL_SEGMENT)
    ]
    per_segment = ", ".join(
        f"{r.segment} {int(r.value):,}" for r in customers.sort_values("value", ascending=False).itertuples()
    )
    settings = json.loads(choice.settings) if isinstance(choice.settings, str) else {}
    tuned = settings.pop("tuned", {})
    listed = "".join(
        f"<li>{html.escape(model)}: {_values(values)}</li>" for model, values in settings.items()
    )
    chosen = "".join(
        f"<li>{html.escape(segment)}, {html.escape(model)}: {_values(values)}</li>"
        for segment, models in sorted(tuned.items())
        for model, values in sorted(models.items())
    )
    return (
        "<h2>What was measured</h2><ul>"
        f"<li>Data: {window}; split: {html.escape(str(choice.split))}{cutoff}</li>"
        f"<li>Train: {int(choice.train_lines):,} purchase lines; "
        f"test: {int(choice.test_customers):,} customers "
        f"with {int(choice.test_pairs):,} new customer x item pairs</li>"
        + (f"<li>Test customers per segment: {html.escape(per_segment)}</li>" if per_segment else "")
        + f"</ul><h3>Model settings</h3><ul>{listed}</ul>"
        + (
            "<h3>Chosen by tuning (per segment, over the settings above; every trial in "
            f"gold.tuning_trials)</h3><ul>{chosen}</ul>"
            if chosen
            else ""
        )
    )


def _values(values: dict[str, Any]) -> str:
    return html.escape(", ".join(f"{k}={v}" for k, v in values.items()))


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
