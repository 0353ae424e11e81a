"""Scheduled task: silver.interactions -> user and item factors, ItemKNN neighbours per segment.

Usage: python jobs/train.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("train", __file__)
