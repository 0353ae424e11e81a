# Databricks notebook source
# MAGIC %md
# MAGIC # Evaluation report
# MAGIC
# MAGIC The same page as `recsys report`: every model and both popularity baselines on the latest
# MAGIC time-respecting split, the publishing decision (guardrail) and the plots. Set `run_id` to
# MAGIC look at an earlier evaluation (the MLflow run id of its pipeline run).

# COMMAND ----------

from recsys_spark.config import load_config
from recsys_spark.io.session import get_spark
from recsys_spark.tracking.report import build_report

try:  # Databricks: widgets for the target and the run
    dbutils.widgets.text("target", "dev")  # noqa: F821
    dbutils.widgets.text("run_id", "")  # noqa: F821
    target = dbutils.widgets.get("target")  # noqa: F821
    run_id = dbutils.widgets.get("run_id") or None  # noqa: F821
except NameError:  # run as a plain script locally
    target, run_id = "local", None

config = load_config(target)  # the conf shipped in the wheel
spark = get_spark(config)
report = build_report(spark, config, run_id)

# COMMAND ----------

try:
    displayHTML(report.html)  # noqa: F821
except NameError:
    out = config.work_path / "reports" / f"evaluation_{report.run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.html)
    print(out)
