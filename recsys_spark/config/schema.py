"""Typed configuration: conf/base.yml plus one overlay per target, validated at load.

Every key has a declared type below. Unknown keys, wrong types, missing required keys and
table identifiers that are not plain names fail at load with a message that names the key and
the file that set it, so a bad deploy fails before Spark starts rather than mid-run.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import datetime as dt
import os
import re
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

# base.yml and the target overlays ship inside the package, so a wheel task on Databricks finds
# them wherever the wheel is installed.
DEFAULT_CONF_DIR = Path(str(resources.files("recsys_spark") / "conf"))
TARGETS = ("local", "dev", "prod")

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Marks a string that becomes part of a table name: letters, digits, underscore only.
Identifier = Annotated[str, "identifier"]
# A table named by the user: two or three identifiers joined by dots.
QualifiedName = Annotated[str, "qualified"]
QUALIFIED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}$")


# A file path from conf; a Unity Catalog volume path must name catalog, schema and volume.
FilePath = Annotated[str, "path"]
VOLUME_RE = re.compile(r"^/Volumes/[A-Za-z0-9_]+/[A-Za-z0-9_]+/[A-Za-z0-9_]+(/|$)")


@dataclass(frozen=True)
class Range:
    """An annotation mark: the number must lie in [low, high] (an open end excludes the bound;
    None: unbounded). One place checks every number in conf, at load."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"a value above {self.low:g}" if self.low_open else f"{self.low:g} or more"
        low = "above" if self.low_open else "from"
        high = "below" if self.high_open else "to"
        return f"a value {low} {self.low:g} {high} {self.high:g}"


# Numbers in conf, by what they mean: each alias names its range once.
AtLeastOne = Annotated[int, Range(1)]
NonNegative = Annotated[int, Range(0)]
Seed = Annotated[int, Range(0, 2**32 - 1)]
Share = Annotated[float, Range(0.0, 1.0, low_open=True, high_open=True)]  # strictly between 0 and 1
Unit = Annotated[float, Range(0.0, 1.0)]  # from 0 to 1
PositiveFloat = Annotated[float, Range(0.0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(0.0)]
# Model sizes whose cost grows fast: a cap that catches a typo (factors: 5000) at load.
Factors = Annotated[int, Range(1, 1024)]
ListLength = Annotated[int, Range(1, 1000)]
# A regular expression (Java's syntax, as Spark's rlike uses): compiled at load.
Pattern = Annotated[str, "pattern"]


def on_databricks() -> bool:
    """True inside a Databricks cluster, where Spark, Delta, MLflow and volumes are provided."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the key and the file."""


def validate_identifier(value: str, what: str = "identifier") -> str:
    """Return ``value`` if it is a plain SQL identifier, else raise ConfigError."""
    if not isinstance(value, str) or not IDENTIFIER_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid identifier: use letters, digits and underscore only, "
            "starting with a letter or underscore"
        )
    return value


@dataclass(frozen=True)
class SchemasConfig:
    bronze: Identifier
    silver: Identifier
    gold: Identifier


def in_layer(layer: Literal["bronze", "silver", "gold"]) -> Any:
    """A table name field living in ``layer``'s schema (``SchemasConfig``)."""
    return field(metadata={"layer": layer})


@dataclass(frozen=True)
class TablesConfig:
    """Each logical table's name, and (as field metadata) the layer, i.e. schema, it lives in."""

    purchases: Identifier = in_layer("bronze")
    interactions: Identifier = in_layer("silver")
    interactions_quarantine: Identifier = in_layer("silver")
    user_factors: Identifier = in_layer("silver")
    item_factors: Identifier = in_layer("silver")
    recommendations: Identifier = in_layer("gold")
    similar_items: Identifier = in_layer("gold")
    item_audience: Identifier = in_layer("gold")
    frequent_itemsets: Identifier = in_layer("gold")
    association_rules: Identifier = in_layer("gold")
    frequently_bought_together: Identifier = in_layer("gold")
    substitutes: Identifier = in_layer("gold")
    baskets_quarantine: Identifier = in_layer("silver")
    item_neighbours: Identifier = in_layer("silver")
    model_settings: Identifier = in_layer("silver")
    tuning_trials: Identifier = in_layer("gold")
    lookalikes: Identifier = in_layer("gold")
    model_metrics: Identifier = in_layer("gold")
    published_model: Identifier = in_layer("gold")
    items: Identifier = in_layer("gold")
    customers: Identifier = in_layer("gold")
    category_saturation: Identifier = in_layer("gold")
    cross_sell_potential: Identifier = in_layer("gold")
    rules_graph_nodes: Identifier = in_layer("gold")
    rules_graph_edges: Identifier = in_layer("gold")
    step_runs: Identifier = in_layer("gold")
    item_vectors: Identifier = in_layer("gold")
    customer_vectors: Identifier = in_layer("gold")
    exported_lists: Identifier = in_layer("gold")
    experiment_results: Identifier = in_layer("gold")


@dataclass(frozen=True)
class SparkConfig:
    master: str
    driver_memory: str
    shuffle_partitions: Annotated[int, Range(1, 100_000)]
    timezone: str
    log_level: Literal["ERROR", "WARN", "INFO"] = "ERROR"
    # Further Spark settings of the local session (name: value as text); on Databricks the
    # cluster's own settings apply.
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MlflowConfig:
    experiment: str
    # The registry name of the published model (alias "champion" on the version that passed).
    registered_model: str
    # None: a file store under work_dir/mlruns locally, the workspace on Databricks.
    tracking_uri: str | None = None


@dataclass(frozen=True)
class ColumnMapping:
    """Input column names for each silver column. Only customer and item are required; None (null
    in conf) means the input has no such column, with the consequence docs/data.md gives:
    order_id -> one basket per customer and day (per customer without a time); event_ts -> no
    time split (evaluation holds out a seeded random share); quantity -> each line counts 1;
    unit_price -> no revenue; description -> no content model; category -> no category rules
    (unless input.category_from_description); segment -> one segment `all`; rating -> implicit
    feedback only."""

    customer_id: str
    item_id: str
    order_id: str | None = None
    event_ts: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    description: str | None = None
    category: str | None = None
    segment: str | None = None
    rating: str | None = None  # explicit feedback (models.feedback: explicit): the customer's rating


@dataclass(frozen=True)
class CsvConfig:
    """How landing CSV (or TSV, or any delimited text) files are written."""

    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'  # RFC 4180 doubles a quote inside a quoted field
    # auto: a byte-order mark's, else UTF-8, else windows-1252 (logged); or any charset Java and
    # Python both know: UTF-8, ISO-8859-1, UTF-16, windows-1252 ...
    encoding: str = "auto"
    header: bool = True
    # Without a header: the columns' names, in file order (else Spark's _c0, _c1, ...).
    column_names: list[str] = field(default_factory=list)
    # A record spanning more lines is an unbalanced quote swallowing the lines after it: the
    # file is rejected, naming the lines.
    max_lines_per_record: Annotated[int, Range(1, 100_000)] = 20


# Landing files read when input.file_glob is null, by format (gzip'd text too).
DEFAULT_GLOBS = {
    "csv": ("*.csv", "*.csv.gz", "*.tsv", "*.tsv.gz", "*.txt", "*.txt.gz"),
    "parquet": ("*.parquet",),
}
# Timestamps: a Spark datetime pattern, or one of these names.
TIMESTAMP_NAMES = ("iso8601", "epoch_seconds", "epoch_millis")


@dataclass(frozen=True)
class InputConfig:
    landing_path: FilePath
    # csv covers any delimited text file whatever its extension; parquet reads *.parquet.
    landing_format: Literal["csv", "parquet"]
    columns: ColumnMapping
    # A Spark datetime pattern ("yyyy-MM-dd HH:mm:ss"), iso8601 (offsets and Z honoured),
    # epoch_seconds or epoch_millis.
    timestamp_format: str
    cancellation_prefix: str | None
    non_product_codes: list[str]
    non_product_code_pattern: Pattern | None = None
    uppercase_item_ids: bool = True
    # Events later than now + this many hours are quarantined as future timestamps.
    future_tolerance_hours: Annotated[int, Range(0, 24 * 366)] = 24
    # Plausibility bounds: an event before this date (YYYY-MM-DD), a quantity or unit price above
    # these is quarantined with its own reason (a year-1 date, a price of 1e300).
    earliest_event: str = "1990-01-01"
    max_quantity: PositiveFloat = 1_000_000.0
    max_unit_price: PositiveFloat = 1_000_000.0
    csv: CsvConfig = field(default_factory=CsvConfig)
    # Which files in landing_path are read (a case-insensitive glob; the others are logged).
    # None: the format's usual names (DEFAULT_GLOBS).
    file_glob: str | None = None

    @property
    def file_globs(self) -> tuple[str, ...]:
        return (self.file_glob,) if self.file_glob else DEFAULT_GLOBS[self.landing_format]

    # Without a category column: the description's last word as category (retail descriptions
    # such as "WHITE HANGING HEART T-LIGHT HOLDER"); false: no category.
    category_from_description: bool = False


@dataclass(frozen=True)
class ConfidenceConfig:
    weight: Literal["count", "quantity", "revenue"]
    alpha: Annotated[float, Range(0.0, 1e6, low_open=True)]
    log_scale: bool


@dataclass(frozen=True)
class AlsConfig:
    factors: Factors
    regularization: Annotated[float, Range(0.0, 1e4)]
    iterations: Annotated[int, Range(1, 1000)]
    seed: Seed


@dataclass(frozen=True)
class BiasConfig:
    # The explicit-feedback baseline mu + b_u + b_i (kernels/bias.py): each bias is a mean of
    # residuals damped by this many ratings' weight.
    item_regularization: NonNegativeFloat
    user_regularization: NonNegativeFloat


@dataclass(frozen=True)
class GraphConfig:
    # Closed-form graph filter (GF-CF, kernels/graph_filter.py): no training loop.
    rank: Annotated[int, Range(1, 4096)]  # singular directions kept of the item-item propagation
    ideal_dims: Factors  # the ideal low-pass filter's dimensions (at most rank)
    alpha: Annotated[float, Range(0.0, 100.0)]  # the ideal low-pass filter's weight


@dataclass(frozen=True)
class BprConfig:
    factors: Factors
    learning_rate: Annotated[float, Range(0.0, 1.0, low_open=True)]
    regularization: Annotated[float, Range(0.0, 1e4)]
    iterations: Annotated[int, Range(1, 10_000)]
    seed: Seed


@dataclass(frozen=True)
class ItemKnnConfig:
    similarity: Literal["bm25", "tfidf", "cosine", "count"]
    neighbours: Annotated[int, Range(1, 10_000)]
    bm25_k1: Annotated[float, Range(0.0, 100.0)] = 1.2
    bm25_b: Unit = 0.75


@dataclass(frozen=True)
class UserKnnConfig:
    # Customer-customer neighbours (kernels/userknn.py): the K most similar customers' purchases.
    similarity: Literal["bm25", "cosine"]
    neighbours: Annotated[int, Range(1, 10_000)]
    bm25_k1: Annotated[float, Range(0.0, 100.0)] = 1.2
    bm25_b: Unit = 0.75


@dataclass(frozen=True)
class ContentConfig:
    # item vectors: TF-IDF of the description projected to this many dimensions (0: all words)
    dims: Annotated[int, Range(0, 4096)]
    min_df: AtLeastOne  # a word counts when at least this many items use it


@dataclass(frozen=True)
class PopularityConfig:
    # None: every buyer counts 1; else a purchase counts 0.5 ** (age in days / half_life_days).
    half_life_days: PositiveFloat | None = None


ModelName = Literal["als", "bpr", "itemknn", "userknn", "graph", "popularity", "content", "hybrid"]
# Candidate sources the hybrid blends: trained models, and association rules from the last basket.
HybridSource = Literal["als", "bpr", "itemknn", "userknn", "graph", "content", "rules"]


@dataclass(frozen=True)
class HybridConfig:
    candidates: Annotated[int, Range(1, 10_000)]  # top-M items taken from each source before blending
    # Per source, its weight after each list is scaled to [0, 1]; 0 or absent: not used.
    weights: dict[HybridSource, NonNegativeFloat]
    # Cold-start routing: customers with fewer orders than this get the hybrid with the weights
    # below (more content) instead of the champion; 0: off.
    short_history_orders: NonNegative
    short_history_weights: dict[HybridSource, NonNegativeFloat]


@dataclass(frozen=True)
class FusionConfig:
    # silver.item_factors model `hybrid_embedding`: ALS factors and content vectors in one vector.
    strategy: Literal["concat", "weighted_concat", "projection"]
    alpha: Unit  # the collaborative part's share of the cosine
    dims: Annotated[int, Range(1, 4096)]  # projection: principal components kept


# bias: the explicit-feedback baseline (models.feedback: explicit).
BaselineName = Literal["popularity", "popularity_global", "bias"]


@dataclass(frozen=True)
class TuningConfig:
    """Per-segment hyperparameter search on a validation part carved from the training period."""

    # per model and segment, conf's values the first; 0: no tuning, conf's values
    trials: Annotated[int, Range(0, 1000)]
    # Tuned when enabled (kernels/tuning.py: the grids); hybrid: its weights, one set for every segment.
    models: list[Literal["als", "bpr", "itemknn", "hybrid"]]
    validation_share: Share  # the share of the training period held out to validate on
    # "time": the latest share (random without times); "random": a seeded share of each
    # customer's pairs, for data whose customers come in bursts and seldom return later.
    validation: Literal["time", "random"]
    min_validation_customers: AtLeastOne  # a segment with fewer keeps conf's values
    # At most this many validation customers per segment, a seeded sample (None: all): every
    # trial is measured on the same ones; scoring all (13k a segment at 3M lines) cost a fifth
    # of tuning's time and chose the same values.
    max_validation_customers: AtLeastOne | None = 5000
    seed: Seed = 42


@dataclass(frozen=True)
class ModelsConfig:
    enabled: list[ModelName]
    # Whose top-N goes to gold.recommendations: "champion" (the evaluate step's guardrail choice)
    # or a model name. Customers of untrained segments get overall popularity either way.
    publish: Literal[
        "champion", "als", "bpr", "itemknn", "userknn", "graph", "popularity", "content", "hybrid"
    ]
    # implicit: purchases as confidences; explicit: input.columns.rating as values to predict
    # (ALS on MLlib with implicitPrefs off, the bias baseline, RMSE and MAE; docs/models.md).
    feedback: Literal["implicit", "explicit"]
    top_n: ListLength
    similar_top_k: ListLength
    audience_top_k: Annotated[int, Range(1, 1_000_000)]
    lookalike_top_k: ListLength
    min_segment_users: AtLeastOne
    min_segment_items: AtLeastOne
    # Segments with more user × item pairs than this train ALS on Spark MLlib (distributed);
    # 0: every segment.
    mllib_min_pairs: NonNegative
    score_block_rows: Annotated[int, Range(1, 10_000_000)]
    exclude_items: list[str]
    # A table (schema.table or catalog.schema.table) with an item_id column, e.g. out of stock.
    exclude_table: QualifiedName | None
    confidence: ConfidenceConfig
    als: AlsConfig
    bpr: BprConfig
    itemknn: ItemKnnConfig
    userknn: UserKnnConfig
    graph: GraphConfig
    bias: BiasConfig
    popularity: PopularityConfig
    content: ContentConfig
    hybrid: HybridConfig
    fusion: FusionConfig
    tuning: TuningConfig


@dataclass(frozen=True)
class BusinessRulesConfig:
    """Applied to every published list, after the model and before gold.recommendations; each
    rule is off when empty or null. The evaluate step measures each one on the hybrid."""

    # items per customer the rules choose from (top-M of the model)
    candidates: Annotated[int, Range(1, 10_000)]
    category_include: list[str]  # only these categories (empty: every category)
    category_exclude: list[str]  # never these categories
    max_per_category: AtLeastOne | None  # at most this many items of one category in a list
    mmr_lambda: Unit | None  # maximal marginal relevance: 1 = relevance only, lower = more diverse
    # Drop candidates whose score's 95% interval starts below this (ALS's, ItemKNN's and content's have
    # one; others are kept); in the model's own score units. null: off.
    min_score_low: float | None = None


@dataclass(frozen=True)
class SubstitutesConfig:
    min_item_support: Unit
    max_lift: PositiveFloat
    min_expected: NonNegativeFloat


@dataclass(frozen=True)
class BasketsConfig:
    # A fraction of baskets below 1, an absolute basket count from 1 up.
    min_support: PositiveFloat
    max_len: Annotated[int, Range(2, 20)]
    per_segment: bool
    include_global: bool
    min_segment_baskets: AtLeastOne
    min_count_floor: AtLeastOne
    max_basket_items: Annotated[int, Range(2, 100_000)]
    max_itemsets: AtLeastOne
    chunk_baskets: AtLeastOne
    min_confidence: Unit
    min_lift: NonNegativeFloat
    top_n: ListLength
    substitutes: SubstitutesConfig


@dataclass(frozen=True)
class EvaluationConfig:
    k: list[ListLength]
    # rmse and mae (lower is better): explicit feedback only; models that predict no rating
    # (popularity, itemknn, ...) cannot pass a guardrail on them.
    primary_metric: Literal["ndcg", "precision", "recall", "map", "hit_rate", "mrr", "rmse", "mae"]
    primary_k: ListLength
    # How to split: one time cutoff for everyone (a quantile of event times, a date, the last N
    # days), each customer's last basket, or a seeded random share of each customer's items
    # (random: what evaluate uses whatever this says when the input has no time column).
    split: Literal["quantile", "date", "last_days", "last_basket", "random"]
    cutoff_quantile: Share
    min_coverage: Unit
    # Fewer test customers than this: no model can be judged, the baseline is published (warned).
    min_test_customers: AtLeastOne
    # The model a published model must beat: segment popularity or overall popularity.
    baseline: BaselineName
    cutoff_date: str | None = None  # "YYYY-MM-DD" for split: date
    last_days: AtLeastOne | None = None  # for split: last_days
    holdout_share: Share = 0.2  # split: random: this share of customer x item pairs is the test set
    seed: Seed = 42  # split: random, and the bootstrap of the metrics' confidence intervals
    # customers resampled this many times for each metric's 95% interval
    bootstrap_samples: Annotated[int, Range(0, 100_000)] = 200


@dataclass(frozen=True)
class AnalyticsConfig:
    # Items for gold.cross_sell_potential; empty: the `cross_sell_top_sellers` most bought items.
    cross_sell_items: list[str]
    cross_sell_top_sellers: AtLeastOne
    cross_sell_customers: AtLeastOne  # customers kept per target item, by predicted affinity
    active_days: AtLeastOne  # customers.lifecycle: active = ordered within this many days of the newest event
    lapsed_days: AtLeastOne  # lapsed = no order for this many days; in between: lapsing
    rules_graph_segment: str  # whose association rules make the item graph (`all` = every basket)
    pagerank_damping: Share


@dataclass(frozen=True)
class ExportConfig:
    # Local folder (relative to the working directory) or a Unity Catalog volume path.
    path: FilePath | None  # None: <work_dir>/exports
    formats: list[Literal["csv", "parquet"]]
    # Only customers with an order in the last D days before the newest event in silver.
    active_days: AtLeastOne | None
    hash_customer_ids: bool
    # The salt for hashed ids comes from this environment variable, or on Databricks from the
    # secret scope/key below; never from conf, so it never reaches logs or MLflow params.
    salt_env: str
    salt_secret_scope: str | None
    salt_secret_key: str | None
    # customers whose list is segment popularity instead of the model (A/B)
    holdout_share: Annotated[float, Range(0.0, 1.0, high_open=True)]
    experiment: str  # hashed with the customer id: a new name reshuffles who is in the holdout


@dataclass(frozen=True)
class ExperimentConfig:
    # Days after each export's newest purchase in which what its customers bought is counted.
    windows_days: list[AtLeastOne]


@dataclass(frozen=True)
class PostgresConfig:
    host: str  # a host name, or the folder of a local server's socket
    port: Annotated[int, Range(1, 65535)]
    database: Identifier
    user: str
    # The password comes from the Databricks secret below when set and running there, else from
    # this environment variable (unset: none, e.g. local trust or a .pgpass file); never from
    # conf, so it never reaches logs or MLflow params.
    password_env: str
    schema: Identifier
    password_secret_scope: str | None = None
    password_secret_key: str | None = None


@dataclass(frozen=True)
class VectorsConfig:
    # lancedb: a folder (no server); pgvector: PostgreSQL; delta: gold.item_vectors and
    # gold.customer_vectors with change data feed, for a Databricks Vector Search delta-sync index.
    store: Literal["lancedb", "pgvector", "delta"]
    path: FilePath | None  # lancedb's folder; None: <work_dir>/vectors/<schemas.gold>
    postgres: PostgresConfig


@dataclass(frozen=True)
class Config:
    project: str
    target: Literal["local", "dev", "prod"]
    # Local only: warehouse, Delta tables, jars and the MLflow store live under this folder.
    work_dir: str
    catalog: Identifier | None
    schemas: SchemasConfig
    tables: TablesConfig
    spark: SparkConfig
    mlflow: MlflowConfig
    input: InputConfig
    baskets: BasketsConfig
    models: ModelsConfig
    business_rules: BusinessRulesConfig
    evaluation: EvaluationConfig
    analytics: AnalyticsConfig
    export: ExportConfig
    experiment: ExperimentConfig
    vectors: VectorsConfig
    load_sample: bool = False
    # Set by the loader: the files read, and the folder relative paths (work_dir, landing path,
    # export path) are resolved against: the working directory the command started in.
    sources: tuple[str, ...] = field(default=(), compare=False)
    root: str = "."

    @property
    def work_path(self) -> Path:
        return Path(self.root, self.work_dir)

    @property
    def landing_path(self) -> Path:
        return self.resolve_path(self.input.landing_path)

    def resolve_path(self, path: str) -> Path:
        """``path`` from conf as this machine sees it: relative paths start at ``root``.

        Off Databricks a Unity Catalog volume path (``/Volumes/catalog/schema/volume/...``, as
        the bundle passes) maps under ``<work_dir>/Volumes``: the local stand-in for volumes,
        so a dev or prod conf runs unchanged on a laptop.
        """
        if path.startswith("/Volumes/") and not on_databricks():
            return self.work_path / path.lstrip("/")
        return Path(self.root, path)

    def to_flat_dict(self) -> dict[str, Any]:
        """Dotted keys to values, e.g. for MLflow params."""
        return _flatten(dataclasses.asdict(self))


def load_config(
    target: str = "local",
    conf_dir: str | Path = DEFAULT_CONF_DIR,
    extra_files: typing.Sequence[str | Path] = (),
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Load ``base.yml``, then ``<target>.yml``, then ``extra_files``, then ``overrides``.

    Later sources win key by key (nested mappings merge; lists and scalars replace).
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    conf_dir = Path(conf_dir)
    files = [conf_dir / "base.yml", conf_dir / f"{target}.yml", *map(Path, extra_files)]
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in files:
        _merge(merged, _read_yaml(path), origin, str(path), "")
    if overrides:
        _merge(merged, copy.deepcopy(overrides), origin, "<overrides>", "")
    merged.setdefault("target", target)
    origin.setdefault("target", "<command line>")
    if merged["target"] != target:
        raise ConfigError(
            f"{origin['target']}: key 'target' is {merged['target']!r} but the target asked for is {target!r}"
        )
    merged["sources"] = tuple(str(p) for p in files)
    merged["root"] = str(Path.cwd())
    config = _build(Config, merged, "", origin, files)
    if config.models.publish != "champion" and config.models.publish not in config.models.enabled:
        raise ConfigError(
            f"{_where('models.publish', origin, files)}: models.publish is {config.models.publish!r} "
            f"but models.enabled is {config.models.enabled}: add it to models.enabled or publish another"
        )
    if config.evaluation.primary_k not in config.evaluation.k:
        raise ConfigError(
            f"{_where('evaluation.primary_k', origin, files)}: evaluation.primary_k is "
            f"{config.evaluation.primary_k} but evaluation.k is {config.evaluation.k}: add it to evaluation.k"
        )
    _check_hybrid(config, origin, files)
    _check_input(config, origin, files)
    _check_feedback(config, origin, files)
    _check_windows(config, origin, files)
    _check_formats(config, origin, files)
    return config


def _check_hybrid(config: Config, origin: dict[str, str], files: list[Path]) -> None:
    """Cross-key rules of the hybrid, the fusion and the business rules."""
    conf = config.models
    for key in ("weights", "short_history_weights"):
        weights: dict[str, float] = getattr(conf.hybrid, key)
        missing = [s for s, w in weights.items() if w > 0 and s != "rules" and s not in conf.enabled]
        if "hybrid" in conf.enabled and missing:
            raise ConfigError(
                f"{_where(f'models.hybrid.{key}', origin, files)}: models.hybrid.{key} weighs "
                f"{missing} but models.enabled is {conf.enabled}: enable them or set their weight to 0"
            )
        if not any(w > 0 for w in weights.values()):
            raise ConfigError(
                f"{_where(f'models.hybrid.{key}', origin, files)}: models.hybrid.{key} is {weights}: "
                "at least one weight must be above 0"
            )


def _check_input(config: Config, origin: dict[str, str], files: list[Path]) -> None:
    """Settings that need an input column the conf says the data does not have."""
    columns = config.input.columns
    needs = {
        "models.confidence.weight": (config.models.confidence.weight == "revenue", "unit_price"),
        "models.popularity.half_life_days": (config.models.popularity.half_life_days is not None, "event_ts"),
    }
    for key, (used, column) in needs.items():
        if used and getattr(columns, column) is None:
            raise ConfigError(
                f"{_where(key, origin, files)}: {key} needs input.columns.{column}, which is null "
                "(the input has none): map the column or change the setting"
            )
    timestamp = config.input.timestamp_format
    if timestamp.startswith(("epoch", "iso")) and timestamp not in TIMESTAMP_NAMES:
        raise ConfigError(
            f"{_where('input.timestamp_format', origin, files)}: input.timestamp_format {timestamp!r} "
            f"is not one of {', '.join(TIMESTAMP_NAMES)} (or a Spark datetime pattern)"
        )


def _check_feedback(config: Config, origin: dict[str, str], files: list[Path]) -> None:
    """Settings that only mean something for one kind of feedback."""
    explicit = config.models.feedback == "explicit"
    conf = config.evaluation
    problems = {
        "models.feedback": (
            explicit and config.input.columns.rating is None,
            "explicit needs input.columns.rating, which is null: map the rating column",
        ),
        "evaluation.baseline": (
            conf.baseline == "bias" and not explicit,
            "bias predicts ratings: it needs models.feedback: explicit",
        ),
        "evaluation.primary_metric": (
            conf.primary_metric in ("rmse", "mae") and not explicit,
            f"{conf.primary_metric} measures predicted ratings: it needs models.feedback: explicit",
        ),
        "models.tuning.models": (
            explicit and "als" in config.models.tuning.models and config.models.tuning.trials > 0,
            "tuning searches implicit ALS; with models.feedback: explicit leave als out of it",
        ),
    }
    for key, (wrong, why) in problems.items():
        if wrong:
            raise ConfigError(f"{_where(key, origin, files)}: {key}: {why}")


def _check_formats(config: Config, origin: dict[str, str], files: list[Path]) -> None:
    """Strings with a syntax of their own: memory sizes, time zones, charsets, CSV characters."""
    csv = config.input.csv
    problems = {
        "spark.driver_memory": (
            not re.fullmatch(r"[1-9][0-9]*[kmgt]?", config.spark.driver_memory.lower()),
            "a size such as 6g or 4096m",
        ),
        "spark.timezone": (not _known_zone(config.spark.timezone), "a zone such as UTC or Europe/London"),
        "input.earliest_event": (not _iso_date(config.input.earliest_event), "a date as YYYY-MM-DD"),
        "input.csv.encoding": (
            csv.encoding != "auto" and not _known_charset(csv.encoding),
            "auto, or a charset such as UTF-8, windows-1252, ISO-8859-1 or UTF-16",
        ),
        "input.csv.delimiter": (not csv.delimiter or "\n" in csv.delimiter, "characters, no line break"),
        "input.csv.quote": (len(csv.quote) != 1 or csv.quote == csv.delimiter, "one character, not sep"),
        "input.csv.escape": (len(csv.escape) != 1, "one character"),
    }
    for key, (bad, expected) in problems.items():
        if bad:
            value = _flatten(dataclasses.asdict(config))[key]
            raise ConfigError(f"{_where(key, origin, files)}: key '{key}' is {value!r}: use {expected}")


def _iso_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _known_charset(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _check_windows(config: Config, origin: dict[str, str], files: list[Path]) -> None:
    """Settings that only make sense together: a split and its parameter, two day windows."""
    conf = config.evaluation
    if conf.split == "date" and not _iso_date(conf.cutoff_date or ""):
        raise ConfigError(
            f"{_where('evaluation.split', origin, files)}: evaluation.split is date but "
            f"evaluation.cutoff_date is {conf.cutoff_date!r}: give a date as YYYY-MM-DD"
        )
    if conf.split == "last_days" and conf.last_days is None:
        raise ConfigError(
            f"{_where('evaluation.split', origin, files)}: evaluation.split is last_days but "
            "evaluation.last_days is null: give a number of days"
        )
    analytics = config.analytics
    if analytics.lapsed_days < analytics.active_days:
        raise ConfigError(
            f"{_where('analytics.lapsed_days', origin, files)}: analytics.lapsed_days is "
            f"{analytics.lapsed_days}, fewer than analytics.active_days ({analytics.active_days}): "
            "a customer is active, then lapsing, then lapsed"
        )
    if not config.experiment.windows_days:
        raise ConfigError(
            f"{_where('experiment.windows_days', origin, files)}: experiment.windows_days is empty: "
            "give at least one window in days, e.g. [7, 14, 30]"
        )


def _plain_path(path: str) -> bool:
    # Off Databricks a volume path maps under work_dir: '..' could climb out of it.
    if ".." in path.split("/"):
        return False
    return not path.startswith("/Volumes/") or bool(VOLUME_RE.match(path))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}{_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where, what, and the usual fix."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f":{where}: not valid YAML ({problem}); quote a value that starts with ` @ * & ! or holds ': '"


def _merge(base: dict[str, Any], overlay: dict[str, Any], origin: dict[str, str], source: str, prefix: str):
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, origin, source, dotted + ".")
        else:
            base[key] = value
            origin[dotted] = source
            if isinstance(value, dict):
                _record_origin(value, origin, source, dotted + ".")


def _record_origin(data: dict[str, Any], origin: dict[str, str], source: str, prefix: str) -> None:
    for key, value in data.items():
        origin[f"{prefix}{key}"] = source
        if isinstance(value, dict):
            _record_origin(value, origin, source, f"{prefix}{key}.")


def _where(key: str, origin: dict[str, str], files: list[Path]) -> str:
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return " + ".join(str(f) for f in files)


def _build(cls: type, data: Any, prefix: str, origin: dict[str, str], files: list[Path]) -> Any:
    where = _where(prefix.rstrip("."), origin, files)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: key '{prefix.rstrip('.')}' must be a mapping, got {data!r}")
    hints = get_type_hints(cls, include_extras=True)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{_where(prefix + str(key), origin, files)}: unknown key '{prefix}{key}'; "
                f"allowed here: {', '.join(sorted(known))}"
            )
    values = {}
    for name, fld in known.items():
        key = prefix + name
        if name not in data:
            if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                raise ConfigError(
                    f"missing required key '{key}': set it in {files[0]} (read: {', '.join(map(str, files))})"
                )
            continue
        values[name] = _coerce(hints[name], data[name], key, origin, files)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str, origin: dict[str, str], files: list[Path]) -> Any:
    where = _where(key, origin, files)

    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{where}: key '{key}' must be {expected}, got {value!r}")

    if get_origin(hint) is Annotated:
        base, *marks = get_args(hint)
        return _checked(_coerce(base, value, key, origin, files), marks, value, key, where)
    kind = get_origin(hint)
    if kind in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _coerce(inner, value, key, origin, files)
    if kind is Literal:
        if value not in get_args(hint):
            raise wrong("one of " + ", ".join(repr(a) for a in get_args(hint)))
        return value
    if kind is list:
        (inner,) = get_args(hint)
        if not isinstance(value, list):
            raise wrong("a list")
        return [_coerce(inner, item, f"{key}[{i}]", origin, files) for i, item in enumerate(value)]
    if kind is dict:
        key_hint, value_hint = get_args(hint)
        if not isinstance(value, dict):
            raise wrong("a mapping")
        return {
            _coerce(key_hint, k, f"{key}.{k}", origin, files): _coerce(
                value_hint, v, f"{key}.{k}", origin, files
            )
            for k, v in value.items()
        }
    if kind is tuple:
        return tuple(value)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".", origin, files)
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    raise TypeError(f"unsupported config type {hint!r} for key '{key}'")


def _checked(checked: Any, marks: list[Any], value: Any, key: str, where: str) -> Any:
    """``checked`` (the value as its base type), validated by its annotation's marks."""
    if checked is None:
        return None
    for mark in marks:
        if isinstance(mark, Range) and checked not in mark:
            raise ConfigError(f"{where}: key '{key}' is {value!r}: use {mark}")
    if "pattern" in marks:
        _check_pattern(checked, key, where)
    if "identifier" in marks and not IDENTIFIER_RE.match(checked):
        raise ConfigError(
            f"{where}: key '{key}' = {value!r} is not a valid table identifier: "
            "use letters, digits and underscore only"
        )
    if "path" in marks and not _plain_path(checked):
        raise ConfigError(
            f"{where}: key '{key}' = {value!r} is not a usable path: no '..' parts, and a "
            "volume path names its catalog, schema and volume (/Volumes/catalog/schema/volume/...)"
        )
    if "qualified" in marks and not QUALIFIED_RE.match(checked):
        raise ConfigError(
            f"{where}: key '{key}' = {value!r} is not a valid table name: "
            "use schema.table or catalog.schema.table, each part letters, digits and underscore"
        )
    return checked


# Java regex syntax Python's re lacks: such a pattern is left to Spark, which ingest asks first.
JAVA_ONLY_REGEX = re.compile(r"\\[pPhHQ]")


def _check_pattern(pattern: str, key: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        if not JAVA_ONLY_REGEX.search(pattern):
            raise ConfigError(f"{where}: key '{key}' = {pattern!r} is not a regex: {exc}") from None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parse_settings(settings: typing.Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML scalars)."""
    overrides: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {setting!r}: write KEY=VALUE, e.g. --set catalog=main")
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml.safe_load(value) if value else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {setting!r}{_yaml_problem(exc)}") from None
    return overrides
