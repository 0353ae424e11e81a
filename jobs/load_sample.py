"""Scheduled task: land the files under input.landing_path as the bronze purchases table.

Usage: python jobs/load_sample.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("load-sample", __file__)
