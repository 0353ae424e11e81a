"""Progress lines for long jobs: one log line per stage with row counts and seconds."""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("recsys_spark")


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines with a timestamp to stderr; quiet the chatty libraries."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("py4j", "mlflow", "alembic", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class Stage:
    step: str
    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        fields = " ".join(f"{k}={_fmt(v)}" for k, v in self.counts.items())
        return f"{self.step} | {self.name} | {fields} | {self.seconds:.1f}s"


@contextmanager
def stage(step: str, name: str, timings: dict[str, float] | None = None) -> Iterator[Stage]:
    """Time a stage; the caller fills ``counts``; one line is logged when it ends.

    ``timings``, if given, receives the stage's seconds under its name (for reports and benchmarks).
    """
    kill_point(step, name)
    current = Stage(step, name)
    start = time.perf_counter()
    try:
        yield current
    finally:
        current.seconds = time.perf_counter() - start
        if timings is not None:
            timings[name] = current.seconds
        log.info(current.line())


# Crash tests (tests/reliability/test_crashes.py): a glob over "<step>|<stage>" or
# "write|<table>"; the process kills itself with SIGKILL when a matching stage starts or that
# table's write begins, as a lost driver or node would end it.
KILL_AT = "RECSYS_KILL_AT"


def kill_point(step: str, name: str) -> None:
    """A place a crash test may kill the process at (stage starts, and each table write)."""
    pattern = os.environ.get(KILL_AT)
    if pattern and fnmatch.fnmatchcase(f"{step}|{name}", pattern):
        log.warning("%s=%s: killing this process at %s | %s", KILL_AT, pattern, step, name)
        os.kill(os.getpid(), signal.SIGKILL)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
