"""Scheduled task: silver.interactions -> frequent itemsets, rules, add-ons, substitutes.

Usage: python jobs/baskets.py [--target local|dev|prod] [--conf extra.yml] [--set key=value]
"""

from recsys_spark.cli import run_job

if __name__ == "__main__":
    run_job("baskets", __file__)
