"""The Databricks bundle: every task runs an existing entry point for its step, in a valid DAG."""

from __future__ import annotations

import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_spark.cli import build_parser, parse_settings
from recsys_spark.config import ConfigError, load_config
from recsys_spark.pipeline import STEPS, run_order

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "databricks.yml").read_text())


def tasks_of(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (job,) = bundle["resources"]["jobs"].values()
    return {task["task_key"]: task for task in job["tasks"]}


def dag(tasks: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    return {key: {d["task_key"] for d in task.get("depends_on", [])} for key, task in tasks.items()}


def test_every_task_runs_its_own_step_from_an_existing_entry_point(bundle: dict[str, Any]) -> None:
    tasks = tasks_of(bundle)
    scheduled_steps = [s for s in run_order(load_config("local")) if s != "load-sample"]
    assert sorted(tasks) == sorted(scheduled_steps)
    for key, task in tasks.items():
        entry = ROOT / task["spark_python_task"]["python_file"]
        assert entry.is_file(), f"task {key}: {entry} does not exist"
        assert f'run_job("{key}", __file__)' in entry.read_text(), f"{entry} does not run step {key}"
        assert key in STEPS
        assert task["libraries"] == [{"whl": "./dist/*.whl"}]
        # With each target's variables filled in, the arguments parse and make a valid config.
        for target in bundle["targets"]:
            argv = [_resolve(bundle, target, a) for a in task["spark_python_task"]["parameters"]]
            args = build_parser().parse_args([key, *argv])
            config = load_config(args.target, overrides=parse_settings(args.settings))
            assert config.target == target
            assert config.catalog == bundle["targets"][target]["variables"]["catalog"]


def test_dag_has_no_cycle_and_follows_the_pipeline_order(bundle: dict[str, Any]) -> None:
    tasks = tasks_of(bundle)
    graph = dag(tasks)
    for key, deps in graph.items():
        assert deps <= set(tasks), f"task {key} depends on unknown tasks {deps - set(tasks)}"
    order = list(TopologicalSorter(graph).static_order())
    steps = run_order(load_config("local"))
    for key, deps in graph.items():
        assert all(steps.index(d) < steps.index(key) for d in deps)
    assert order[0] == "ingest" and order[-1] == "export"
    # What each step reads is upstream of it.
    upstream = {key: _ancestors(graph, key) for key in graph}
    assert {"baskets", "evaluate"} <= upstream["score"]  # the hybrid reads the association rules
    assert {"baskets", "score"} <= upstream["analytics"]
    assert {"train", "evaluate", "score", "analytics"} <= upstream["export"]


def test_cycle_detection_catches_a_cycle() -> None:
    with pytest.raises(CycleError):
        list(TopologicalSorter({"a": {"b"}, "b": {"a"}}).static_order())


def test_targets_schedule_notifications_and_permissions(bundle: dict[str, Any]) -> None:
    targets = bundle["targets"]
    assert targets["dev"]["mode"] == "development" and targets["prod"]["mode"] == "production"
    for target, settings in targets.items():
        conf_file = ROOT / "conf" / f"{target}.yml"
        assert conf_file.is_file(), f"target {target} has no {conf_file}"
        # The bundle's catalog for the target agrees with the target's conf.
        assert settings["variables"]["catalog"] == load_config(target).catalog
    assert {"catalog", "schema", "analysts_group"} <= set(bundle["variables"])
    (job,) = bundle["resources"]["jobs"].values()
    cron = job["schedule"]["quartz_cron_expression"]
    assert len(cron.split()) in (6, 7) and re.match(r"^[0-9]+ [0-9]+ [0-9]+ ", cron)
    assert job["schedule"]["timezone_id"]
    assert job["email_notifications"]["on_failure"]
    assert {"group_name": "${var.analysts_group}", "level": "CAN_VIEW"} in bundle["permissions"]
    clusters = {c["job_cluster_key"] for c in job["job_clusters"]}
    assert all(t["job_cluster_key"] in clusters for t in tasks_of(bundle).values())
    assert bundle["artifacts"]["recsys_wheel"]["type"] == "whl"


def test_set_overrides_parse_and_are_validated() -> None:
    assert parse_settings(["catalog=main", "models.top_n=5", "export.path="]) == {
        "catalog": "main",
        "models": {"top_n": 5},
        "export": {"path": None},
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_settings(["catalog"])
    with pytest.raises(ConfigError, match="not a valid table identifier"):
        load_config("dev", overrides=parse_settings(["schemas.gold=x; DROP TABLE y"]))


def _resolve(bundle: dict[str, Any], target: str, text: str) -> str:
    """``text`` with ${bundle.target} and ${var.NAME} replaced as the bundle would for ``target``."""
    values = {name: spec.get("default") for name, spec in bundle["variables"].items()}
    values.update(bundle["targets"][target].get("variables", {}))
    text = text.replace("${bundle.target}", target)
    return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(values[m.group(1)]), text)


def _ancestors(graph: dict[str, set[str]], key: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[key])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return seen
