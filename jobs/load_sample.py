"""Task: land the files under input.landing_path as the bronze purchases Delta table.

Usage: python jobs/load_sample.py [--target local|dev|prod] [--conf extra.yml]
"""

import sys
from pathlib import Path

from recsys_spark.cli import main

# The bundle syncs conf/ beside jobs/; the installed wheel does not carry it.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

if __name__ == "__main__":
    sys.exit(main(["load-sample", "--conf-dir", str(CONF_DIR), *sys.argv[1:]]))
