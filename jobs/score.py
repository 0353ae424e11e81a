"""Scheduled task: factors -> recommendations, similar items, item audience, lookalikes.

Usage: python jobs/score.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("score", __file__)
