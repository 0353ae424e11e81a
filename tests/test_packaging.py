"""The wheel as Databricks installs it: runtime packages untouched, conf and entry points inside.

The wheel is built from this checkout, then pip resolves its install on Databricks Runtime 17.3
LTS's Python (3.12, manylinux x86_64) with every runtime library pinned to the runtime's version
(tests/data/databricks/runtime-17.3-lts-python.txt). A resolution that succeeds with those pins
installs or changes none of the runtime's packages; what it adds must be what the runtime lacks.
Needs the package index (PyPI), as `make test`'s own install does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = Path(__file__).parent / "data" / "databricks" / "runtime-17.3-lts-python.txt"
# What installing the wheel adds to a 17.3 LTS cluster: itself and what the runtime lacks.
ADDED_ON_DATABRICKS = {"recsys-spark", "implicit", "networkx", "tqdm"}
NEVER_ON_DATABRICKS = {"pyspark", "delta-spark", "mlflow"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_pins() -> dict[str, str]:
    pins = {}
    for line in RUNTIME.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version.strip()
    return pins


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("recsys_spark-*.whl")
    return built


def test_the_wheel_carries_conf_and_one_entry_point_per_task(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    assert {f"recsys_spark/conf/{t}.yml" for t in ("base", "local", "dev", "prod")} <= names
    for step in ("ingest", "baskets", "train", "evaluate", "score", "analytics", "export", "load_sample"):
        assert f"recsys-{step.replace('_', '-')} = recsys_spark.tasks:{step}" in entry_points
    # pyspark, delta-spark and the full mlflow only under the `local` extra.
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for line in requires:
        name = canonical(re.split(r"[ ;<>=!\[]", line.removeprefix("Requires-Dist:").strip())[0])
        if name in NEVER_ON_DATABRICKS:
            assert 'extra == "local"' in line, line


def test_installing_the_wheel_on_databricks_runtime_17_3_changes_no_runtime_package(
    wheel: Path, tmp_path: Path
) -> None:
    pins = runtime_pins()
    constraints = tmp_path / "runtime.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    report = tmp_path / "report.json"
    platform = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    command = [
        *(sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"),
        *("--report", str(report), "--python-version", "3.12", "--only-binary=:all:"),
        *(arg for p in platform for arg in ("--platform", p)),
        *("--constraint", str(constraints), str(wheel)),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    # pip fails here when the wheel demands a version of a runtime package other than the runtime's.
    assert result.returncode == 0, result.stderr[-3000:]
    installs = {
        canonical(i["metadata"]["name"]): i["metadata"]["version"]
        for i in json.loads(report.read_text())["install"]
    }
    assert not set(installs) & NEVER_ON_DATABRICKS
    changed = {n: (pins[n], v) for n, v in installs.items() if n in pins and pins[n] != v}
    assert not changed, f"runtime packages the wheel would change: {changed}"
    added = set(installs) - set(pins)
    assert added == ADDED_ON_DATABRICKS, f"the wheel would add {sorted(added)} to the cluster"
