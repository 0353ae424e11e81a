"""The scheduled tasks' entry points: the wheel's console scripts ``recsys-<step>``.

A Databricks ``python_wheel_task`` names one (package_name ``recsys_spark``, entry_point
``recsys-ingest``, ...) and passes the bundle's parameters, which reach the step as the
``recsys`` command's options: ``--target``, ``--conf``, ``--set``. Locally
``recsys-ingest --target local`` is ``recsys ingest --target local``.
"""

from __future__ import annotations

import sys
from functools import partial

from recsys_spark.cli import main


def _run(step: str) -> None:
    # Raised, not returned: a wheel task ignores the entry point's return value.
    raise SystemExit(main([step, *sys.argv[1:]]))


load_sample = partial(_run, "load-sample")
ingest = partial(_run, "ingest")
experiment = partial(_run, "experiment")
baskets = partial(_run, "baskets")
train = partial(_run, "train")
evaluate = partial(_run, "evaluate")
score = partial(_run, "score")
analytics = partial(_run, "analytics")
export = partial(_run, "export")
export_vectors = partial(_run, "export-vectors")
