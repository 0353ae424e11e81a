"""Scheduled task: bronze purchases -> silver.interactions (+ quarantine).

Usage: python jobs/ingest.py [--target local|dev|prod] [--conf extra.yml]
"""

import sys
from pathlib import Path

from recsys_spark.cli import main

# The bundle syncs conf/ beside jobs/; the installed wheel does not carry it.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

if __name__ == "__main__":
    sys.exit(main(["ingest", "--conf-dir", str(CONF_DIR), *sys.argv[1:]]))
