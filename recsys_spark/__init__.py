"""recsys_spark: a batch recommender pipeline for Spark and Databricks."""

__version__ = "0.1.0"
