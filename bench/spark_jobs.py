"""Where a pipeline run's Spark time goes: its jobs per step, from Spark's event log.

    printf 'spark:\\n  conf: {"spark.eventLog.enabled": "true", "spark.eventLog.compress": "false",
      "spark.eventLog.dir": "file:///tmp/events"}\\n' > /tmp/events.yml
    .venv/bin/recsys run --target local --conf /tmp/events.yml > /tmp/run.log 2>&1
    .venv/bin/python bench/spark_jobs.py /tmp/events /tmp/run.log

For each step (its span from the run log's "step X done in Ys" lines): the Spark jobs it
started, their tasks, the seconds at least one job was running, and the seconds none was (the
driver's own work: planning, Delta commits, Python); then the jobs by duration, which tells
fixed cost per job from work.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

STEP_DONE = re.compile(r"^(\S+ \S+),(\d+) INFO recsys_spark\.pipeline: step (\S+) done in ([\d.]+)s")
BUCKETS = (0.1, 0.3, 1.0, 3.0, float("inf"))  # job seconds, upper bounds


@dataclass(frozen=True)
class Job:
    start_ms: int
    end_ms: int
    tasks: int

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


@dataclass(frozen=True)
class Step:
    name: str
    start_ms: float
    end_ms: float


def read_jobs(event_log: Path) -> list[Job]:
    """Every finished job in the (uncompressed) event log file or folder."""
    files = sorted(event_log.glob("**/events_*")) if event_log.is_dir() else [event_log]
    started: dict[int, tuple[int, int]] = {}
    jobs = []
    for path in files:
        for line in path.open():
            event = json.loads(line)
            if event["Event"] == "SparkListenerJobStart":
                tasks = sum(stage["Number of Tasks"] for stage in event["Stage Infos"])
                started[event["Job ID"]] = (event["Submission Time"], tasks)
            elif event["Event"] == "SparkListenerJobEnd" and event["Job ID"] in started:
                start, tasks = started.pop(event["Job ID"])
                jobs.append(Job(start, event["Completion Time"], tasks))
    return jobs


def read_steps(run_log: Path) -> list[Step]:
    """Each step's span, from the time its "done" line was logged back by its seconds."""
    steps = []
    for line in run_log.open():
        if found := STEP_DONE.match(line):
            stamp, millis, name, seconds = found.groups()
            when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            end = when.timestamp() * 1000 + int(millis)
            steps.append(Step(name, end - float(seconds) * 1000, end))
    return steps


def busy_seconds(jobs: list[Job]) -> float:
    """Seconds at least one of ``jobs`` was running (overlaps counted once)."""
    total, current = 0.0, None
    for job in sorted(jobs, key=lambda j: j.start_ms):
        if current is None or job.start_ms > current[1]:
            total += 0 if current is None else current[1] - current[0]
            current = [job.start_ms, job.end_ms]
        else:
            current[1] = max(current[1], job.end_ms)
    return (total + (0 if current is None else current[1] - current[0])) / 1000


def report(jobs: list[Job], steps: list[Step]) -> list[str]:
    lines = ["| step | seconds | jobs | tasks | in jobs s | outside jobs s |", "|---|---|---|---|---|---|"]
    for step in steps:
        own = [j for j in jobs if step.start_ms <= j.start_ms < step.end_ms]
        wall, busy = (step.end_ms - step.start_ms) / 1000, busy_seconds(own)
        tasks = sum(j.tasks for j in own)
        lines.append(f"| {step.name} | {wall:.1f} | {len(own)} | {tasks} | {busy:.1f} | {wall - busy:.1f} |")
    lines += ["", "| job seconds | jobs | their seconds |", "|---|---|---|"]
    low = 0.0
    for high in BUCKETS:
        inside = [j.seconds for j in jobs if low <= j.seconds < high]
        label = f"{low:g} to {high:g}" if high != float("inf") else f"{low:g} and more"
        lines.append(f"| {label} | {len(inside)} | {sum(inside):.1f} |")
        low = high
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("event_log", type=Path, help="spark.eventLog.dir's application folder or file")
    parser.add_argument("run_log", type=Path, help="the `recsys run` output, its log lines included")
    args = parser.parse_args()
    print("\n".join(report(read_jobs(args.event_log), read_steps(args.run_log))))


if __name__ == "__main__":
    main()
