"""Typed configuration: conf/base.yml plus one overlay per target, validated at load.

Every key has a declared type below. Unknown keys, wrong types, missing required keys and
table identifiers that are not plain names fail at load with a message that names the key and
the file that set it, so a bad deploy fails before Spark starts rather than mid-run.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
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


@dataclass(frozen=True)
class SparkConfig:
    master: str
    driver_memory: str
    shuffle_partitions: int
    timezone: str
    log_level: Literal["ERROR", "WARN", "INFO"] = "ERROR"


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
    (unless input.category_from_description); segment -> one segment `all`."""

    customer_id: str
    item_id: str
    order_id: str | None = None
    event_ts: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    description: str | None = None
    category: str | None = None
    segment: str | None = None


@dataclass(frozen=True)
class CsvConfig:
    """How landing CSV (or TSV, or any delimited text) files are written."""

    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'  # RFC 4180 doubles a quote inside a quoted field
    encoding: str = "UTF-8"  # any Java charset: UTF-8 (BOM or not), ISO-8859-1, UTF-16, windows-1252
    header: bool = True
    # Without a header: the columns' names, in file order (else Spark's _c0, _c1, ...).
    column_names: list[str] = field(default_factory=list)


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
    non_product_code_pattern: str | None = None
    uppercase_item_ids: bool = True
    # Events later than now + this many hours are quarantined as future timestamps.
    future_tolerance_hours: int = 24
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
    alpha: float
    log_scale: bool


@dataclass(frozen=True)
class AlsConfig:
    factors: int
    regularization: float
    iterations: int
    seed: int


@dataclass(frozen=True)
class BprConfig:
    factors: int
    learning_rate: float
    regularization: float
    iterations: int
    seed: int


@dataclass(frozen=True)
class ItemKnnConfig:
    similarity: Literal["bm25", "tfidf", "cosine", "count"]
    neighbours: int
    bm25_k1: float = 1.2
    bm25_b: float = 0.75


@dataclass(frozen=True)
class ContentConfig:
    dims: int  # item vectors: TF-IDF of the description projected to this many dimensions (0: all words)
    min_df: int  # a word counts when at least this many items use it


@dataclass(frozen=True)
class PopularityConfig:
    # None: every buyer counts 1; else a purchase counts 0.5 ** (age in days / half_life_days).
    half_life_days: float | None = None


ModelName = Literal["als", "bpr", "itemknn", "popularity", "content", "hybrid"]
# Candidate sources the hybrid blends: trained models, and association rules from the last basket.
HybridSource = Literal["als", "bpr", "itemknn", "content", "rules"]


@dataclass(frozen=True)
class HybridConfig:
    candidates: int  # top-M items taken from each source before blending
    # Per source, its weight after each list is scaled to [0, 1]; 0 or absent: not used.
    weights: dict[HybridSource, float]
    # Cold-start routing: customers with fewer orders than this get the hybrid with the weights
    # below (more content) instead of the champion; 0: off.
    short_history_orders: int
    short_history_weights: dict[HybridSource, float]


@dataclass(frozen=True)
class FusionConfig:
    # silver.item_factors model `hybrid_embedding`: ALS factors and content vectors in one vector.
    strategy: Literal["concat", "weighted_concat", "projection"]
    alpha: float  # the collaborative part's share of the cosine
    dims: int  # projection: principal components kept


BaselineName = Literal["popularity", "popularity_global"]


@dataclass(frozen=True)
class TuningConfig:
    """Per-segment hyperparameter search on a validation part carved from the training period."""

    trials: int  # per model and segment, conf's values the first; 0: no tuning, conf's values
    # Tuned when enabled (kernels/tuning.py: the grids); hybrid: its weights, one set for every segment.
    models: list[Literal["als", "bpr", "itemknn", "hybrid"]]
    validation_share: float  # the share of the training period held out to validate on
    # "time": the latest share (random without times); "random": a seeded share of each
    # customer's pairs, for data whose customers come in bursts and seldom return later.
    validation: Literal["time", "random"]
    min_validation_customers: int  # a segment with fewer keeps conf's values
    seed: int = 42


@dataclass(frozen=True)
class ModelsConfig:
    enabled: list[ModelName]
    # Whose top-N goes to gold.recommendations: "champion" (the evaluate step's guardrail choice)
    # or a model name. Customers of untrained segments get overall popularity either way.
    publish: Literal["champion", "als", "bpr", "itemknn", "popularity", "content", "hybrid"]
    top_n: int
    similar_top_k: int
    audience_top_k: int
    lookalike_top_k: int
    min_segment_users: int
    min_segment_items: int
    # Segments with more user × item pairs than this train ALS on Spark MLlib (distributed).
    mllib_min_pairs: int
    score_block_rows: int
    exclude_items: list[str]
    # A table (schema.table or catalog.schema.table) with an item_id column, e.g. out of stock.
    exclude_table: QualifiedName | None
    confidence: ConfidenceConfig
    als: AlsConfig
    bpr: BprConfig
    itemknn: ItemKnnConfig
    popularity: PopularityConfig
    content: ContentConfig
    hybrid: HybridConfig
    fusion: FusionConfig
    tuning: TuningConfig


@dataclass(frozen=True)
class BusinessRulesConfig:
    """Applied to every published list, after the model and before gold.recommendations; each
    rule is off when empty or null. The evaluate step measures each one on the hybrid."""

    candidates: int  # items per customer the rules choose from (top-M of the model)
    category_include: list[str]  # only these categories (empty: every category)
    category_exclude: list[str]  # never these categories
    max_per_category: int | None  # at most this many items of one category in a list
    mmr_lambda: float | None  # maximal marginal relevance: 1 = relevance only, lower = more diverse


@dataclass(frozen=True)
class SubstitutesConfig:
    min_item_support: float
    max_lift: float
    min_expected: float


@dataclass(frozen=True)
class BasketsConfig:
    # A fraction of baskets below 1, an absolute basket count from 1 up.
    min_support: float
    max_len: int
    per_segment: bool
    include_global: bool
    min_segment_baskets: int
    min_count_floor: int
    max_basket_items: int
    max_itemsets: int
    chunk_baskets: int
    min_confidence: float
    min_lift: float
    top_n: int
    substitutes: SubstitutesConfig


@dataclass(frozen=True)
class EvaluationConfig:
    k: list[int]
    primary_metric: Literal["ndcg", "precision", "recall", "map", "hit_rate", "mrr"]
    primary_k: int
    # How to split: one time cutoff for everyone (a quantile of event times, a date, the last N
    # days), each customer's last basket, or a seeded random share of each customer's items
    # (random: what evaluate uses whatever this says when the input has no time column).
    split: Literal["quantile", "date", "last_days", "last_basket", "random"]
    cutoff_quantile: float
    min_coverage: float
    # The model a published model must beat: segment popularity or overall popularity.
    baseline: BaselineName
    cutoff_date: str | None = None  # "YYYY-MM-DD" for split: date
    last_days: int | None = None  # for split: last_days
    holdout_share: float = 0.2  # split: random: this share of customer x item pairs is the test set
    seed: int = 42  # split: random, and the bootstrap of the metrics' confidence intervals
    bootstrap_samples: int = 200  # customers resampled this many times for each metric's 95% interval


@dataclass(frozen=True)
class AnalyticsConfig:
    # Items for gold.cross_sell_potential; empty: the `cross_sell_top_sellers` most bought items.
    cross_sell_items: list[str]
    cross_sell_top_sellers: int
    cross_sell_customers: int  # customers kept per target item, by predicted affinity
    active_days: int  # customers.lifecycle: active = ordered within this many days of the newest event
    lapsed_days: int  # lapsed = no order for this many days; in between: lapsing
    rules_graph_segment: str  # whose association rules make the item graph (`all` = every basket)
    pagerank_damping: float


@dataclass(frozen=True)
class ExportConfig:
    # Local folder (relative to the working directory) or a Unity Catalog volume path.
    path: FilePath | None  # None: <work_dir>/exports
    formats: list[Literal["csv", "parquet"]]
    # Only customers with an order in the last D days before the newest event in silver.
    active_days: int | None
    hash_customer_ids: bool
    # The salt for hashed ids comes from this environment variable, or on Databricks from the
    # secret scope/key below; never from conf, so it never reaches logs or MLflow params.
    salt_env: str
    salt_secret_scope: str | None
    salt_secret_key: str | None
    holdout_share: float  # customers whose list is segment popularity instead of the model (A/B)
    experiment: str  # hashed with the customer id: a new name reshuffles who is in the holdout


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
    if not 0.0 <= config.export.holdout_share < 1.0:
        raise ConfigError(
            f"{_where('export.holdout_share', origin, files)}: export.holdout_share is "
            f"{config.export.holdout_share}: use a share from 0 (no holdout) up to, not including, 1"
        )
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
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ConfigError(
                f"{_where(f'models.hybrid.{key}', origin, files)}: models.hybrid.{key} is {weights}: "
                "weights must be >= 0, at least one above 0"
            )
    ranged = {
        "models.fusion.alpha": conf.fusion.alpha,
        "business_rules.mmr_lambda": config.business_rules.mmr_lambda,
    }
    for key, value in ranged.items():
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{_where(key, origin, files)}: {key} is {value}: use a value from 0 to 1")
    cap = config.business_rules.max_per_category
    if cap is not None and cap < 1:
        raise ConfigError(
            f"{_where('business_rules.max_per_category', origin, files)}: business_rules.max_per_category "
            f"is {cap}: use 1 or more, or null for no cap"
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
    if not 0.0 < config.models.tuning.validation_share < 1.0:
        raise ConfigError(
            f"{_where('models.tuning.validation_share', origin, files)}: models.tuning.validation_share "
            f"is {config.models.tuning.validation_share}: use a share between 0 and 1"
        )
    if not 0.0 < config.evaluation.holdout_share < 1.0:
        raise ConfigError(
            f"{_where('evaluation.holdout_share', origin, files)}: evaluation.holdout_share is "
            f"{config.evaluation.holdout_share}: use a share between 0 and 1"
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
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


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
        node[leaf] = yaml.safe_load(value) if value else None
    return overrides
