"""What the analyst notebooks share: their parameters and config, in Databricks or as scripts.

In a Databricks notebook the parameters are widgets (``dbutils`` is in the notebook's globals);
run as a plain script (``python notebooks/x.py --param item_id=85123A``) they come from the
command line, with the same ``--target``, ``--conf`` and ``--set`` as the ``recsys`` command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame

from recsys_spark.config import TARGETS, Config, load_config, parse_settings


def notebook_params(
    namespace: dict[str, Any], defaults: dict[str, str], argv: Sequence[str] | None = None
) -> tuple[Config, dict[str, str]]:
    """The config and the parameter values (``defaults`` names them) for a notebook."""
    dbutils = namespace.get("dbutils")
    if dbutils is not None:
        dbutils.widgets.dropdown("target", "dev", list(TARGETS))
        for name, default in defaults.items():
            dbutils.widgets.text(name, default)
        values = {name: dbutils.widgets.get(name) for name in defaults}
        config = load_config(dbutils.widgets.get("target"))
        return config, values
    parser = argparse.ArgumentParser(description="run an analyst notebook as a script")
    parser.add_argument("--target", default="local", choices=TARGETS)
    parser.add_argument("--conf", action="append", default=[], metavar="FILE")
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    values = dict(defaults)
    for param in args.param:
        name, _, value = param.partition("=")
        if name not in defaults:
            parser.error(f"unknown --param {name!r}; this notebook takes {', '.join(defaults)}")
        values[name] = value
    config = load_config(args.target, extra_files=args.conf, overrides=parse_settings(args.settings))
    return config, values


def show(namespace: dict[str, Any], frame: DataFrame, title: str, rows: int = 20) -> None:
    """Databricks' ``display`` in a notebook; a printed table in a terminal."""
    print(f"\n## {title}")
    display = namespace.get("display")
    if display is not None:
        display(frame.limit(rows))
    else:
        frame.show(rows, truncate=60)
