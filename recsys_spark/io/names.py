"""Table names and where local tables live: what every reader needs, Spark or not (the API
server reads the published tables with delta-rs and imports no Spark)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from recsys_spark.config import Config, on_databricks, validate_identifier
from recsys_spark.config.schema import TablesConfig

# Logical table -> medallion layer (the schema it lives in), as conf's tables section declares.
TABLE_LAYERS: dict[str, str] = {f.name: f.metadata["layer"] for f in dataclasses.fields(TablesConfig)}


@dataclass(frozen=True)
class TableName:
    """A validated table name: ``schema.table`` locally, ``catalog.schema.table`` on Databricks."""

    schema: str
    table: str
    catalog: str | None = None
    key: str | None = field(default=None, compare=False)  # the logical table, e.g. "interactions"

    def __post_init__(self) -> None:
        for part in (self.catalog, self.schema, self.table):
            if part is not None:
                validate_identifier(part, "table name part")

    @property
    def schema_name(self) -> str:
        return ".".join(f"`{p}`" for p in (self.catalog, self.schema) if p)

    def __str__(self) -> str:
        return f"{self.schema_name}.`{self.table}`"


def table_name(config: Config, key: str) -> TableName:
    """The name of logical table ``key`` (e.g. "interactions") for this config and platform."""
    if key not in TABLE_LAYERS:
        raise KeyError(f"unknown table {key!r}; known: {', '.join(TABLE_LAYERS)}")
    schema = getattr(config.schemas, TABLE_LAYERS[key])
    catalog = config.catalog if on_databricks() else None
    return TableName(schema, getattr(config.tables, key), catalog, key)


def local_location(config: Config, name: TableName) -> Path:
    return config.work_path / "warehouse" / f"{name.schema}.db" / name.table
