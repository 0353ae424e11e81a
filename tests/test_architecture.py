"""The layout's rules, checked on the code's own imports and functions (docs/architecture.md):

- a step (``steps/``) never imports another step;
- ``kernels/`` never imports pyspark, nor anything of the package outside ``kernels/``;
- ``distributed/`` never imports ``io/``, ``steps/`` or ``tracking/`` (it does no table I/O);
- ``io/`` never imports ``steps/``; the served model imports no Spark (an endpoint has none);
- ``serving/`` (the API) imports no Spark: nothing of ``distributed/``, ``steps/``, ``tracking/``,
  nor of ``io/`` beyond the table names;
- no import cycle between the package's modules; no function over 60 lines.

Each check is a function over a folder of sources, so the tests also run it on a small crafted
package that breaks the rule and see it fail.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "recsys_spark"
MAX_FUNCTION_LINES = 60


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}


def imports(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Per module, every module it imports (top level or inside a function); ``from a import b``
    counts as ``a.b`` when that is a module of the package, else as ``a``."""
    known = modules(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    found.add(child if child in known else node.module)
        graph[name] = found
    return graph


def violations(root: Path, package: str = PACKAGE) -> list[str]:
    """Every import that breaks a layout rule, as 'importer -> imported: rule'."""
    found = []
    for module, imported in imports(root, package).items():
        layer = module.split(".")[1] if module.count(".") else ""
        for target in sorted(imported):
            parts = target.split(".")
            inside = parts[0] == package
            target_layer = parts[1] if inside and len(parts) > 1 else ""
            rule = None
            if layer == "steps" and target_layer == "steps" and target != f"{package}.steps":
                rule = "a step imports another step"
            elif layer == "kernels" and (parts[0] == "pyspark" or (inside and target_layer != "kernels")):
                rule = "kernels/ imports pyspark or the package outside kernels/"
            elif layer == "distributed" and target_layer in ("io", "steps", "tracking"):
                rule = "distributed/ imports io/, steps/ or tracking/"
            elif layer == "io" and target_layer == "steps":
                rule = "io/ imports a step"
            elif module.endswith(".served_model") and (
                parts[0] == "pyspark" or target_layer == "distributed"
            ):
                rule = "the served model imports Spark"
            elif layer == "serving" and (
                parts[0] == "pyspark"
                or target_layer in ("distributed", "steps", "tracking")
                or (target_layer == "io" and target != f"{package}.io.names")
            ):
                rule = "serving/ imports Spark"
            if rule:
                found.append(f"{module} -> {target}: {rule}")
    return found


def import_cycle(root: Path, package: str = PACKAGE) -> tuple[str, ...] | None:
    graph = {m: {t for t in ts if t.startswith(package + ".")} for m, ts in imports(root, package).items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        return tuple(error.args[1])
    return None


def long_functions(root: Path, package: str = PACKAGE) -> list[str]:
    found = []
    for name, path in modules(root, package).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{name}.{node.name}: {lines} lines")
    return found


def test_the_package_keeps_its_layout() -> None:
    assert violations(ROOT) == []
    assert import_cycle(ROOT) is None
    assert long_functions(ROOT) == []


def test_the_layers_are_where_the_docs_say() -> None:
    layers = {name.split(".")[1] for name in modules(ROOT) if name.count(".") >= 2}
    assert {"config", "io", "kernels", "distributed", "steps", "tracking", "serving"} <= layers
    steps = {name.split(".")[-1] for name in modules(ROOT) if name.startswith(f"{PACKAGE}.steps.")}
    assert steps == {"ingest", "experiment", "baskets", "train", "evaluate"} | {
        "score",
        "analytics",
        "export",
        "vectors",
    }
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert all(f"{layer}/" in doc for layer in layers)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "broken"),
    [
        ({"steps/score.py": "from recsys_spark.steps import train\n", "steps/train.py": ""}, "another step"),
        ({"steps/score.py": "", "steps/train.py": "import recsys_spark.steps.score\n"}, "another step"),
        ({"kernels/als.py": "def fit():\n    from pyspark.sql import functions\n"}, "kernels/"),
        ({"kernels/als.py": "from recsys_spark.io import tables\n", "io/tables.py": ""}, "kernels/"),
        ({"distributed/lists.py": "from recsys_spark.io.tables import x\n", "io/tables.py": ""}, "io/"),
        ({"io/tables.py": "from recsys_spark.steps.score import x\n", "steps/score.py": ""}, "a step"),
        ({"tracking/served_model.py": "import pyspark.sql\n"}, "Spark"),
        ({"serving/api.py": "from recsys_spark.io.tables import x\n", "io/tables.py": ""}, "serving/"),
        (
            {"serving/api.py": "from recsys_spark.io.names import x\nimport pyspark\n", "io/names.py": ""},
            "serving/",
        ),
    ],
)
def test_each_rule_catches_its_breach(tmp_path: Path, files: dict[str, str], broken: str) -> None:
    found = violations(write_package(tmp_path, files))
    assert len(found) == 1 and broken in found[0]


def test_a_cycle_and_a_long_function_are_caught(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    root = write_package(
        tmp_path,
        {
            "io/tables.py": "from recsys_spark.io import views\n",
            "io/views.py": "from recsys_spark.io.tables import name\n",
            "steps/score.py": f"def run():\n{body}",
        },
    )
    assert set(import_cycle(root) or ()) == {"recsys_spark.io.tables", "recsys_spark.io.views"}
    assert long_functions(root) == ["recsys_spark.steps.score.run: 61 lines"]
