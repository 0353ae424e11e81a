"""The evaluation report: plots and an HTML page built from gold.model_metrics and
gold.published_model, for one evaluation run (the latest by default).

`recsys report` writes it under the work folder; the evaluate step also logs the page and the plots
to MLflow; notebooks/evaluation_report.py shows the same page on Databricks.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

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
from recsys_spark.kernels.routing import GLOBAL_SEGMENT  # noqa: E402

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
    figures = make_figures(rows, conf.primary_metric, conf.primary_k)
    return Report(run_id, render(run_id, rows, choice, figures, conf.primary_metric, conf.primary_k), figures)


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
    ax.legend()
    figures["metric_vs_k.png"] = fig

    at_k = table[table.k == k]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(at_k.popularity_bias, at_k.coverage)
    for row in at_k.itertuples():
        ax.annotate(row.model, (row.popularity_bias, row.coverage))
    ax.set(
        xlabel=f"share of top-1% items in lists @{k}",
        ylabel=f"catalogue coverage @{k}",
        title="coverage vs popularity bias",
    )
    figures["coverage_vs_popularity_bias.png"] = fig

    sliced = rows[(rows.slice != ALL_SLICES) & (rows.metric == metric) & (rows.k == k)]
    by_slice = sliced.pivot(index="slice", columns="model", values="value").astype(float)
    by_slice = by_slice.reindex([s for s in SLICE_ORDER if s in by_slice.index])
    fig, ax = plt.subplots(figsize=(7, 4))
    by_slice.plot.bar(ax=ax, rot=0)
    ax.set(
        xlabel="orders before the cutoff", ylabel=f"{metric}@{k}", title=f"{metric}@{k} by customer history"
    )
    figures["metric_by_history.png"] = fig
    return figures


def render(
    run_id: str, rows: pd.DataFrame, choice: pd.DataFrame, figures: dict[str, Figure], metric: str, k: int
) -> str:
    overall = rows[(rows.segment == GLOBAL_SEGMENT) & (rows.slice == ALL_SLICES) & (rows.k == k)]
    table = overall.pivot_table(index="model", columns="metric", values="value").sort_values(
        metric, ascending=False
    )
    segments = rows[(rows.segment != GLOBAL_SEGMENT) & (rows.metric == metric) & (rows.k == k)]
    by_segment = segments.pivot(index="segment", columns="model", values="value")
    decision = "<p>No publishing decision recorded for this run.</p>"
    if len(choice):
        model, reason = html.escape(str(choice.model.iat[0])), html.escape(str(choice.reason.iat[0]))
        decision = f"<p><b>Published:</b> {model}: {reason}</p>"
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
        f"<h2>Plots</h2>{images}</body></html>"
    )


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
