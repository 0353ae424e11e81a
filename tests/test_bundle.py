"""The Databricks bundle: valid for the CLI, safe per target, and every task runs as declared.

The Databricks CLI is not installed here, so the checks that `databricks bundle validate` makes
are encoded: the bundle JSON schema (tests/data/databricks), the rules of development and
production mode (the CLI's bundle/config/mutator/resourcemutator/validate_target_mode.go), on
the configuration tests/bundle.py resolves as the CLI would deploy it.
"""

from __future__ import annotations

import importlib.metadata
import json
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pyspark.sql import SparkSession

from recsys_spark.config import Config, load_config
from recsys_spark.io.tables import TABLE_LAYERS, table_comments, table_name
from recsys_spark.io.views import VIEWS, view_name
from recsys_spark.pipeline import STEPS, run_order
from tests.bundle import PRINCIPAL, ROOT, USERS, bundle_files, config_of, dag, deployed, task_params

SCHEMA = ROOT / "tests" / "data" / "databricks" / "bundle_config_schema.json"
JOBS = ("recsys_pipeline", "recsys_pipeline_serverless")

# --- the bundle JSON schema ------------------------------------------------------------------


def bundle_schema() -> jsonschema.Draft202012Validator:
    # The CLI's schema writes Unicode classes as \p{L} and \p{N}; Python's re spells them otherwise.
    text = SCHEMA.read_text().replace(r"[\\p{L}\\p{N}]", r"[^\\W_]").replace(r"\\p{L}", r"[^\\W\\d_]")
    return jsonschema.Draft202012Validator(json.loads(text))


@pytest.mark.parametrize("path", bundle_files(), ids=lambda p: p.name)
def test_every_bundle_file_validates_against_the_cli_schema(path: Path) -> None:
    validator = bundle_schema()
    errors = sorted(validator.iter_errors(yaml.safe_load(path.read_text())), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message[:300]}" for e in errors)


def test_the_schema_check_rejects_what_the_cli_rejects() -> None:
    validator = bundle_schema()
    task = {"task_key": "t", "python_wheel_task": {"package_name": "p", "entry_point": "e"}}
    assert not list(validator.iter_errors({"resources": {"jobs": {"j": {"tasks": [task]}}}}))
    wrong = [
        {"resources": {"jobs": {"j": {"tasks": [{**task, "python_wheel_task": {"entry": "x"}}]}}}},
        {"resources": {"jobs": {"j": {"tasks": [{**task, "max_retries": "two"}]}}}},
        {"resources": {"jobs": {"j": {"schedule": {"quartz_cron_expression": "x", "pause_status": "OFF"}}}}},
        {"targets": {"dev": {"modes": "development"}}},
    ]
    for config in wrong:
        assert list(validator.iter_errors(config)), f"the schema accepts {config}"


# --- development mode ------------------------------------------------------------------------


def test_dev_is_development_mode_with_schedules_left_paused() -> None:
    raw = yaml.safe_load((ROOT / "databricks.yml").read_text())
    assert raw["targets"]["dev"]["mode"] == "development"
    assert raw["targets"]["dev"].get("default") is True
    # The CLI refuses UNPAUSED as the development default, and development mode pauses only
    # schedules whose status is left unset: an explicit UNPAUSED would run every developer's copy.
    config = deployed("dev")
    assert config.get("presets", {}).get("trigger_pause_status") != "UNPAUSED"
    for key, job in config["resources"]["jobs"].items():
        schedule = job.get("schedule", {})
        assert schedule.get("pause_status", "PAUSED") == "PAUSED", f"{key} would run nightly in dev"


def test_dev_names_are_per_developer() -> None:
    """Two developers deploying dev write different tables, volumes, experiment and model."""
    written = {user: _destinations(deployed("dev", user)) for user in USERS}
    jane, omar = written["jane"], written["omar"]
    assert all(USERS["jane"]["short_name"] in name for name in jane), jane
    assert not jane & omar
    # Workspace paths set in dev must hold the user's name (the CLI's rule), or be left to the mode.
    for key, path in deployed("dev").get("workspace", {}).items():
        if key.endswith("_path"):
            assert USERS["jane"]["short_name"] in path or USERS["jane"]["userName"] in path


# --- production mode -------------------------------------------------------------------------


def test_prod_sets_a_root_path_and_runs_as_a_service_principal_from_a_variable() -> None:
    raw = yaml.safe_load((ROOT / "databricks.yml").read_text())
    prod = raw["targets"]["prod"]
    assert prod["mode"] == "production"
    # validate_target_mode.go: without an explicit root_path a human deployer is refused.
    assert prod["workspace"]["root_path"].startswith("/Workspace/")
    assert "current_user" not in prod["workspace"]["root_path"]
    assert prod["run_as"] == {"service_principal_name": "${var.service_principal}"}
    assert "default" not in raw["variables"]["service_principal"], "prod must name its principal"
    config = deployed("prod")
    assert config["run_as"] == {"service_principal_name": PRINCIPAL}
    for job in config["resources"]["jobs"].values():
        assert {"group_name": "data-eng-oncall", "level": "CAN_MANAGE_RUN"} in job["permissions"]
        assert {"group_name": "analysts", "level": "CAN_VIEW"} in job["permissions"]
    assert not any(p.get("development") for p in config["resources"].get("pipelines", {}).values())


def test_exactly_one_variant_runs_nightly_in_prod() -> None:
    jobs = deployed("prod")["resources"]["jobs"]
    statuses = sorted(jobs[j]["schedule"]["pause_status"] for j in JOBS)
    assert statuses == ["PAUSED", "UNPAUSED"]
    assert jobs["recsys_pipeline"]["schedule"]["quartz_cron_expression"] == "0 0 3 * * ?"


# --- Unity Catalog resources and grants ------------------------------------------------------


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_tasks_write_to_the_objects_the_bundle_creates(target: str) -> None:
    config = deployed(target)
    resources = config["resources"]
    schemas = {key: s["name"] for key, s in resources["schemas"].items()}
    for task in task_params(config).values():
        conf = config_of(task)
        assert conf.target == target and conf.catalog == config["variables"]["catalog"]
        assert {
            "bronze": conf.schemas.bronze,
            "silver": conf.schemas.silver,
            "gold": conf.schemas.gold,
        } == schemas
        volumes = {
            key: f"/Volumes/{v['catalog_name']}/{v['schema_name']}/{v['name']}/"
            for key, v in resources["volumes"].items()
        }
        assert conf.input.landing_path.startswith(volumes["landing"])
        assert conf.export.path.startswith(volumes["exports"])
        assert conf.mlflow.experiment == resources["experiments"]["recsys"]["name"]
        model = resources["registered_models"]["recommender"]
        assert (
            conf.mlflow.registered_model == f"{model['catalog_name']}.{model['schema_name']}.{model['name']}"
        )


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_analysts_read_gold_and_nothing_else(target: str) -> None:
    resources = deployed(target)["resources"]
    analysts = "analysts"

    def granted(obj: dict[str, Any]) -> set[str]:
        return {p for g in obj.get("grants", []) if g["principal"] == analysts for p in g["privileges"]}

    assert granted(resources["schemas"]["gold"]) == {"USE_SCHEMA", "SELECT"}
    assert not granted(resources["schemas"]["bronze"]) and not granted(resources["schemas"]["silver"])
    assert not any(granted(v) for v in resources["volumes"].values())
    if target == "prod":  # dev shares a catalog owned by the workspace admins
        (catalog,) = resources["catalogs"].values()
        assert catalog["name"] == "recsys_prod" and granted(catalog) == {"USE_CATALOG"}
    experiment = resources["experiments"]["recsys"]
    assert {"group_name": analysts, "level": "CAN_READ"} in experiment["permissions"]


# --- jobs: tasks, DAG, hardening -------------------------------------------------------------


def test_both_variants_run_the_same_dag_of_wheel_entry_points() -> None:
    config = deployed("prod")
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    dags = []
    for job in JOBS:
        tasks = task_params(config, job)
        assert sorted(tasks) == sorted(s for s in run_order(load_config("local")) if s != "load-sample")
        for key, task in tasks.items():
            wheel_task = task["python_wheel_task"]
            assert wheel_task["package_name"] == "recsys_spark"
            step = wheel_task["entry_point"].removeprefix("recsys-")
            assert step == key and key in STEPS
            assert scripts[wheel_task["entry_point"]] == f"recsys_spark.tasks:{key.replace('-', '_')}"
        dags.append(dag(tasks))
    assert dags[0] == dags[1]
    graph = dags[0]
    order = list(TopologicalSorter(graph).static_order())
    assert order[0] == "ingest" and not any({"export", "export-vectors"} & deps for deps in graph.values())
    assert {"baskets", "evaluate"} <= _ancestors(graph, "score")  # the hybrid reads the rules
    assert {"baskets", "score"} <= _ancestors(graph, "analytics")
    assert graph["experiment"] == {"ingest"} and not any("experiment" in deps for deps in graph.values())
    assert {"train", "evaluate", "score", "analytics"} <= _ancestors(graph, "export")
    assert {"train", "evaluate", "analytics"} <= _ancestors(graph, "export-vectors")


def test_compute_per_variant() -> None:
    jobs = deployed("prod")["resources"]["jobs"]
    classic, serverless = jobs["recsys_pipeline"], jobs["recsys_pipeline_serverless"]
    (cluster,) = classic["job_clusters"]
    assert cluster["new_cluster"]["node_type_id"] == "Standard_D4ds_v5"  # var.node_type_id
    assert cluster["new_cluster"]["spark_version"].startswith("17.3.")
    (environment,) = serverless["environments"]
    assert environment["spec"]["dependencies"] == ["../dist/*.whl"]
    for task in classic["tasks"]:
        assert task["job_cluster_key"] == cluster["job_cluster_key"] and "environment_key" not in task
        assert task["libraries"] == [{"whl": "../dist/*.whl"}]
    for task in serverless["tasks"]:
        assert task["environment_key"] == environment["environment_key"]
        assert "job_cluster_key" not in task and "libraries" not in task
    # Paths in resources/ are relative to that folder: the wheel the artifact builds.
    assert (ROOT / "resources" / "../dist").resolve() == ROOT / "dist"
    assert "-w dist" in deployed("prod")["artifacts"]["recsys_wheel"]["build"]


def test_jobs_retry_time_out_and_warn() -> None:
    for job in deployed("prod")["resources"]["jobs"].values():
        assert job["max_concurrent_runs"] == 1
        assert job["timeout_seconds"] == 14400
        (rule,) = job["health"]["rules"]
        assert rule == {"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 7200}
        assert job["email_notifications"]["on_failure"] == ["data-eng@example.com"]
        assert job["email_notifications"]["on_duration_warning_threshold_exceeded"]
        for task in job["tasks"]:
            assert task["max_retries"] >= 1 and task["min_retry_interval_millis"] >= 60_000
            assert task["retry_on_timeout"] is False and 0 < task["timeout_seconds"] < job["timeout_seconds"]


# --- every task's entry point, run locally as declared ---------------------------------------


def test_every_task_entry_point_runs_its_step_end_to_end(spark: SparkSession, dev_pipeline: Config) -> None:
    conf = dev_pipeline
    assert conf.schemas.gold == "dev_jane_doe_gold"
    recommendations = spark.table(str(table_name(conf, "recommendations")))
    assert recommendations.count() > 0
    exports = list(conf.resolve_path(conf.export.path).glob("run_id=*/recommendations.csv"))
    assert exports, "the export task wrote no CRM file under the exports volume"


def test_every_table_and_view_explains_itself(spark: SparkSession, dev_pipeline: Config) -> None:
    conf = dev_pipeline
    names = [table_name(conf, key) for key in TABLE_LAYERS] + [view_name(conf, view) for view in VIEWS]
    undocumented = []
    for name in names:
        assert spark.catalog.tableExists(str(name)), f"{name} was not written by the pipeline"
        comments = table_comments(spark, name)
        undocumented += [f"{name}.{column}" for column, text in comments.items() if not text]
        if "" not in comments:
            undocumented.append(f"{name} (table comment)")
    assert not undocumented, "no COMMENT on: " + ", ".join(undocumented)


# --- helpers ---------------------------------------------------------------------------------


def _destinations(config: dict[str, Any]) -> set[str]:
    """Everything the dev tasks write to: schemas, volumes, experiment, model, job names."""
    names = set()
    for task in task_params(config).values():
        conf = config_of(task)
        names |= {conf.schemas.bronze, conf.schemas.silver, conf.schemas.gold}
        names |= {conf.input.landing_path, str(conf.export.path), conf.mlflow.experiment}
        names.add(conf.mlflow.registered_model)
    return names | {job["name"] for job in config["resources"]["jobs"].values()}


def _ancestors(graph: dict[str, set[str]], key: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[key])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return seen
