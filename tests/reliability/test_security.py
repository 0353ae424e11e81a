"""Secrets stay secret: the CRM salt never reaches logs, MLflow or exceptions; no credentials in
the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import SparkSession

from recsys_spark.steps.export import ExportError, run_export
from recsys_spark.tracking.runs import tracking_uri
from tests.reliability.conftest import SALT, PipelineRuns

ROOT = Path(__file__).resolve().parents[2]

# Shapes of real credentials (pieces joined so that this file does not match itself).
CREDENTIAL_PATTERNS = [
    "dap" + r"i[0-9a-f]{32}",  # Databricks personal access token
    "AK" + r"IA[0-9A-Z]{16}",  # AWS access key id
    "-----BEGIN " + r"(RSA |EC |OPENSSH )?PRIVATE KEY-----",
    "gh" + r"p_[A-Za-z0-9]{36}",  # GitHub token
    "xox" + r"[abprs]-[A-Za-z0-9-]{10,}",  # Slack token
    r"(?i)(password|passwd|secret|token)\s*[:=]\s*['\"][^'\"\s]{8,}['\"]",
]

EXPORT_RUN = "export_test_run"  # the run an export is recorded under in gold.exported_lists


def test_no_credentials_in_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".gz", ".parquet", ".png"} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {p}" for p in CREDENTIAL_PATTERNS if re.search(p, text)]
    assert not found


def test_the_salt_never_reaches_logs_mlflow_or_files(
    spark: SparkSession,
    runs: PipelineRuns,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    config = runs.config
    assert config.export.hash_customer_ids
    # Everything the two pipeline runs printed, and everything MLflow stored for them.
    printed = "\n".join(runs.first + runs.second)
    assert SALT not in printed
    client = mlflow.MlflowClient(tracking_uri(config))
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    for run in client.search_runs([experiment.experiment_id]):
        data = run.data
        assert SALT not in repr(data.params) + repr(data.tags) + repr(data.metrics)
    store = Path(tracking_uri(config).removeprefix("file://"))
    for path in store.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert SALT.encode() not in path.read_bytes(), path
    # The export files hold hashes, not the salt; a re-export logs nothing that shows it.
    with caplog.at_level("DEBUG"):
        result = run_export(spark, config, EXPORT_RUN)
    for path in result.folder.iterdir():
        assert SALT.encode() not in path.read_bytes(), path
    captured = capfd.readouterr()
    assert SALT not in caplog.text + captured.out + captured.err


def test_the_salt_is_not_in_errors(
    spark: SparkSession, runs: PipelineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = runs.config
    monkeypatch.setenv(config.export.salt_env, SALT[:10])  # too short: refused
    with pytest.raises(ExportError) as refused:
        run_export(spark, config, EXPORT_RUN)
    assert SALT[:10] not in str(refused.value)
    assert config.export.salt_env in str(refused.value)
