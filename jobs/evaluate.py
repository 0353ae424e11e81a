"""Scheduled task: train on the past, test on the future, choose the model to publish (guardrail).

Usage: python jobs/evaluate.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("evaluate", __file__)
