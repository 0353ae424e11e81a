"""Vector stores outside Delta: LanceDB (a folder, no server) and PostgreSQL with pgvector.

Each write replaces a table whole and atomically for readers: LanceDB commits a new version of
it; PostgreSQL loads a new table beside the served one and swaps the two in one transaction. A
store that already holds the vectors of the same training run (``run_id``) is left untouched,
so exporting again changes nothing. Their clients are imported only when used: the wheel on a
Databricks cluster has neither.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from recsys_spark.config.schema import PostgresConfig

VECTOR_COLUMNS = ("vector", "fused_vector")


def with_fixed_vectors(table: pa.Table) -> pa.Table:
    """``table`` with each vector column as fixed_size_list<float32>, what vector search needs
    (its vectors are of one length: the step pads them; a column with no vector is dropped)."""
    for column in VECTOR_COLUMNS:
        if column not in table.column_names:
            continue
        values = table[column].to_pylist()
        dims = {len(v) for v in values if v is not None}
        index = table.column_names.index(column)
        if not dims:
            table = table.remove_column(index)
            continue
        (dim,) = dims
        fixed = pa.array(values, type=pa.list_(pa.float32(), dim))
        table = table.set_column(index, column, fixed)
    return table


def stored_run(rows: list[dict[str, Any]]) -> str | None:
    return str(rows[0]["run_id"]) if rows else None


def write_lancedb(path: str, name: str, table: pa.Table) -> bool:
    """Replace LanceDB table ``name`` under ``path`` with ``table`` (one new version); False
    when it holds this run's vectors already."""
    import lancedb

    db = lancedb.connect(path)
    if name in db.table_names():
        current = db.open_table(name)
        if (
            stored_run(current.head(1).to_pylist()) == _run_of(table)
            and current.count_rows() == table.num_rows
        ):
            return False
    db.create_table(name, with_fixed_vectors(table), mode="overwrite")
    return True


@contextmanager
def postgres(conf: PostgresConfig, password: str | None = None) -> Iterator[Any]:
    """A connection from conf; ``password`` or, without one, ``password_env``'s (unset: none)."""
    import psycopg

    password = password if password is not None else os.environ.get(conf.password_env)
    with psycopg.connect(
        host=conf.host, port=conf.port, dbname=conf.database, user=conf.user, password=password
    ) as connection:
        yield connection


def write_pgvector(conf: PostgresConfig, name: str, table: pa.Table, password: str | None = None) -> bool:
    """Replace ``schema.name`` with ``table``: loaded as ``name__loading`` with an HNSW cosine
    index, then swapped in one transaction; False when it holds this run's vectors already."""
    table = with_fixed_vectors(table)
    live, loading = f'"{conf.schema}"."{name}"', f'"{conf.schema}"."{name}__loading"'
    with postgres(conf, password) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{conf.schema}"')
        exists = connection.execute("SELECT to_regclass(%s)", (f"{conf.schema}.{name}",)).fetchone()[0]
        if exists:
            held = connection.execute(f"SELECT run_id, count(*) OVER () FROM {live} LIMIT 1").fetchone()
            if held and held[0] == _run_of(table) and held[1] == table.num_rows:
                return False
        connection.execute(f"DROP TABLE IF EXISTS {loading}")
        connection.execute(f"CREATE TABLE {loading} ({_columns_sql(table)})")
        _copy_rows(connection, loading, table)
        connection.execute(
            f'CREATE INDEX "{name}__loading_vector" ON {loading} USING hnsw (vector vector_cosine_ops)'
        )
        connection.commit()
        with connection.transaction():  # readers see the old table or the new one
            connection.execute(f"DROP TABLE IF EXISTS {live}")
            connection.execute(f'ALTER TABLE {loading} RENAME TO "{name}"')
            connection.execute(
                f'ALTER INDEX "{conf.schema}"."{name}__loading_vector" RENAME TO "{name}_vector"'
            )
    return True


def _run_of(table: pa.Table) -> str | None:
    return str(table["run_id"][0]) if table.num_rows else None


def _columns_sql(table: pa.Table) -> str:
    types = []
    for field in table.schema:
        if pa.types.is_fixed_size_list(field.type):
            kind = f"vector({field.type.list_size})"
        elif pa.types.is_boolean(field.type):
            kind = "boolean"
        elif pa.types.is_timestamp(field.type):
            kind = "timestamp"
        else:
            kind = "text"
        types.append(f'"{field.name}" {kind}' + (" PRIMARY KEY" if field.name == "vector_id" else ""))
    return ", ".join(types)


def _copy_rows(connection: Any, target: str, table: pa.Table) -> None:
    names = ", ".join(f'"{n}"' for n in table.column_names)
    vectors = {n for n in table.column_names if pa.types.is_fixed_size_list(table.schema.field(n).type)}
    with connection.cursor().copy(f"COPY {target} ({names}) FROM STDIN") as copy:
        for row in table.to_pylist():
            copy.write_row([_pg_vector(row[n]) if n in vectors else row[n] for n in table.column_names])


def _pg_vector(values: list[float] | None) -> str | None:
    return (
        None
        if values is None
        else "[" + ",".join(repr(float(v)) for v in np.asarray(values, np.float32)) + "]"
    )
