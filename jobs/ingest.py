"""Scheduled task: bronze purchases -> silver.interactions (+ quarantine).

Usage: python jobs/ingest.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("ingest", __file__)
