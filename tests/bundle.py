"""The Databricks bundle as the CLI would deploy it, and its pipeline run locally as declared.

The Databricks CLI is not installed here, so ``deployed`` resolves the configuration the way
`databricks bundle deploy` does for one target and one deploying user: includes, target
overrides, variables, development mode's name prefixes (the CLI's apply_presets.go), then
references to other resources.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import sys
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_spark.cli import build_parser
from recsys_spark.config import Config, load_config, parse_settings
from tests.conftest import SAMPLE, SAMPLE_RUN, TEST_SPARK_CONF, deep_merge

ROOT = Path(__file__).resolve().parent.parent
USERS = {
    "jane": {"userName": "jane.doe@example.com", "short_name": "jane_doe"},
    "omar": {"userName": "omar.haddad@example.com", "short_name": "omar_haddad"},
}
PRINCIPAL = "6f1c2a9e-0b7d-4e35-9c1a-2d4f8e7b3a10"  # what `--var service_principal=...` passes
REFERENCE = re.compile(r"\$\{([a-zA-Z0-9_.\[\]-]+)\}")


def bundle_files() -> list[Path]:
    root = yaml.safe_load((ROOT / "databricks.yml").read_text())
    return [ROOT / "databricks.yml", *(p for g in root.get("include", []) for p in sorted(ROOT.glob(g)))]


def deployed(target: str, user: str = "jane") -> dict[str, Any]:
    """The bundle configuration the CLI would deploy for ``target`` when ``user`` deploys it.

    Production gets its service principal as the README's deploy command passes it.
    """
    config: dict[str, Any] = {}
    for path in bundle_files():
        config = deep_merge(config, yaml.safe_load(path.read_text()))
    overrides = config.pop("targets")[target]
    variables = {name: spec.get("default") for name, spec in config.pop("variables").items()}
    variables.update(overrides.pop("variables", {}))
    if target == "prod":
        variables["service_principal"] = PRINCIPAL
    config["bundle"].update(target=target, mode=overrides.pop("mode", None))
    config = deep_merge(config, overrides)
    me = {**USERS[user], "user_name": USERS[user]["userName"]}
    context = {"var": variables, "bundle": config["bundle"], "workspace": {"current_user": me}}
    config = _resolve(config, context, skip="resources.")
    if config["bundle"]["mode"] == "development":
        development_prefixes(config, me["short_name"])
    config["variables"] = _resolve(variables, context, skip=None)
    return _resolve(config, {**context, "resources": config["resources"]}, skip=None)


def task_params(config: dict[str, Any], job: str = "recsys_pipeline") -> dict[str, dict[str, Any]]:
    return {t["task_key"]: t for t in config["resources"]["jobs"][job]["tasks"]}


def config_of(task: dict[str, Any], extra: list[str] | None = None) -> Config:
    """The Config a task's entry point builds from its parameters (and ``extra`` ones)."""
    args = build_parser().parse_args(["ingest", *task["python_wheel_task"]["parameters"], *(extra or [])])
    return load_config(args.target, extra_files=args.conf, overrides=parse_settings(args.settings))


def local_args(work_dir: Path) -> list[str]:
    """What the tests add to each dev task's parameters: the test's work folder and the sizes the
    42-customer sample needs."""
    return [
        "--set",
        f"work_dir={work_dir}",
        "--set",
        "spark.shuffle_partitions=2",
        "--set",
        f"spark.conf={json.dumps(TEST_SPARK_CONF)}",
        *settings_args(SAMPLE_RUN),
    ]


def dev_args(work_dir: Path) -> list[str]:
    """The options (target, conf, settings) the dev pipeline's tasks ran with in the tests, for
    another `recsys` command over the same tables."""
    return [*task_params(deployed("dev"))["ingest"]["python_wheel_task"]["parameters"], *local_args(work_dir)]


def run_dev_pipeline(work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Run the land-files job, then every dev pipeline task in DAG order, as the bundle declares.

    Each task is its wheel entry point called with its parameters after variable substitution,
    plus the test's work folder and the sizes the 42-customer sample needs (SAMPLE_RUN, two
    shuffle partitions as every test session uses). Off
    Databricks the volume paths map under the work folder, so the sample is copied where the
    landing volume would be, as a user uploads it (README, Deploy step 4).
    """
    config = deployed("dev")
    tasks = task_params(config)
    local = local_args(work_dir)
    conf = config_of(tasks["ingest"], local)
    shutil.copytree(SAMPLE, conf.landing_path)
    monkeypatch.setenv(conf.export.salt_env, "a salt of at least sixteen characters")
    (land,) = task_params(config, "recsys_land_files").values()
    for task in [land, *(tasks[key] for key in TopologicalSorter(dag(tasks)).static_order())]:
        entry_point = task["python_wheel_task"]["entry_point"]
        (entry,) = importlib.metadata.entry_points(group="console_scripts", name=entry_point)
        monkeypatch.setattr(sys, "argv", [entry_point, *task["python_wheel_task"]["parameters"], *local])
        with pytest.raises(SystemExit) as exit_:
            entry.load()()
        assert exit_.value.code == 0, f"{entry_point} exited {exit_.value.code}"
    return conf


def dag(tasks: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    return {key: {d["task_key"] for d in t.get("depends_on", [])} for key, t in tasks.items()}


def development_prefixes(config: dict[str, Any], short_name: str) -> None:
    """apply_presets.go in development mode: '[dev <user>] ' on jobs and experiments, 'dev_<user>_'
    on schemas and registered models."""
    resources = config["resources"]
    for job in resources.get("jobs", {}).values():
        job["name"] = f"[dev {short_name}] {job['name']}"
    for kind in ("schemas", "registered_models"):
        for obj in resources.get(kind, {}).values():
            obj["name"] = f"dev_{short_name}_{obj['name']}"
    for experiment in resources.get("experiments", {}).values():
        folder, _, base = experiment["name"].rpartition("/")
        experiment["name"] = f"{folder}/[dev {short_name}] {base}"


def _resolve(node: Any, context: dict[str, Any], skip: str | None) -> Any:
    """``node`` with every ``${path}`` replaced from ``context``, except paths starting ``skip``.

    A string that is one reference takes the referenced value's type (an int, a mapping).
    """
    if isinstance(node, dict):
        return {k: _resolve(v, context, skip) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, context, skip) for v in node]

    def wanted(path: str) -> bool:
        return not (skip and path.startswith(skip))

    for _ in range(10):  # references to references
        if not isinstance(node, str) or not any(wanted(p) for p in REFERENCE.findall(node)):
            return node
        whole = REFERENCE.fullmatch(node)
        if whole:
            node = _lookup(context, whole.group(1))
        else:
            node = REFERENCE.sub(lambda m: str(_lookup(context, m[1])) if wanted(m[1]) else m[0], node)
    raise AssertionError(f"reference cycle in {node!r}")


def _lookup(context: dict[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        assert isinstance(value, dict) and part in value, f"${{{path}}} does not resolve"
        value = value[part]
    assert value is not None, f"${{{path}}} has no value"
    return value


def settings_args(values: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += settings_args(value, f"{prefix}{key}.")
        else:
            out += ["--set", f"{prefix}{key}={json.dumps(value)}"]
    return out
