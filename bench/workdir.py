"""The work folder of a benchmark: emptied, with the jars `make setup` fetched, so it runs offline."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fresh_work_dir(path: str | Path) -> Path:
    work = Path(path)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "jars").symlink_to(ROOT / "work" / "jars", target_is_directory=True)
    return work
