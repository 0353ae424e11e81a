"""Scheduled task: the published top-N per customer as CSV and Parquet for CRM.

Usage: python jobs/export.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("export", __file__)
