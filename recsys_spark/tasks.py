"""The scheduled tasks' entry points: the wheel's console scripts ``recsys-<step>``.

A Databricks ``python_wheel_task`` names one (package_name ``recsys_spark``, entry_point
``recsys-ingest``, ...) and passes the bundle's parameters, which reach the step as the
``recsys`` command's options: ``--target``, ``--conf``, ``--set``. Locally
``recsys-ingest --target local`` is ``recsys ingest --target local``.
"""

from __future__ import annotations

import sys

from recsys_spark.cli import main


def _run(step: str) -> None:
    # Raised, not returned: a wheel task ignores the entry point's return value.
    raise SystemExit(main([step, *sys.argv[1:]]))


def load_sample() -> None:
    _run("load-sample")


def ingest() -> None:
    _run("ingest")


def baskets() -> None:
    _run("baskets")


def train() -> None:
    _run("train")


def evaluate() -> None:
    _run("evaluate")


def score() -> None:
    _run("score")


def analytics() -> None:
    _run("analytics")


def export() -> None:
    _run("export")
