"""Scheduled task: item and customer dimensions, merchandiser tables, analyst views.

Usage: python jobs/analytics.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("analytics", __file__)
