"""The pipeline's steps, one module each."""

# The pipeline's steps in order (``pipeline.STEPS`` maps each to its function): named here,
# apart from the step modules, so that `recsys serve` parses its command line without Spark.
STEP_NAMES = (
    "load-sample",
    "ingest",
    "experiment",
    "baskets",
    "train",
    "evaluate",
    "score",
    "analytics",
    "export",
    "export-vectors",
)
