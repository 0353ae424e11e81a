"""Config loading: overlays merge, and every kind of bad file fails naming the key and the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recsys_spark.config import DEFAULT_CONF_DIR, ConfigError, load_config
from recsys_spark.config.params import by_name, mining_settings, train_settings
from recsys_spark.io.tables import TableName, table_name
from recsys_spark.kernels import als, content

CONF = DEFAULT_CONF_DIR


def conf_dir_with(tmp_path: Path, local_yaml: str) -> Path:
    (tmp_path / "base.yml").write_text((CONF / "base.yml").read_text())
    (tmp_path / "local.yml").write_text(local_yaml)
    return tmp_path


@pytest.mark.parametrize("target", ["local", "dev", "prod"])
def test_every_target_loads(target: str) -> None:
    config = load_config(target)
    assert config.target == target
    assert config.input.columns.customer_id == "CustomerID"


def test_overlay_overrides_only_what_it_sets() -> None:
    prod = load_config("prod")
    assert prod.catalog == "recsys_prod"
    assert prod.mlflow.experiment == "/Workspace/Shared/recsys_spark_prod"
    assert prod.schemas.silver == "silver"  # from base.yml
    assert load_config("local").catalog is None


def test_extra_file_and_overrides_apply_last(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yml"
    extra.write_text("models:\n  top_n: 25\n")
    config = load_config("local", extra_files=[extra], overrides={"models": {"als": {"factors": 8}}})
    assert config.models.top_n == 25
    assert config.models.als.factors == 8
    assert config.models.als.iterations == 15


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "target: local\nspark:\n  masterr: local[2]\n")
    with pytest.raises(ConfigError) as err:
        load_config("local", conf_dir=conf)
    assert "unknown key 'spark.masterr'" in str(err.value)
    assert str(conf / "local.yml") in str(err.value)


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "target: local\nmodels:\n  als:\n    factors: many\n")
    with pytest.raises(
        ConfigError, match=r"local\.yml: key 'models\.als\.factors' must be an integer, got 'many'"
    ):
        load_config("local", conf_dir=conf)


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "target: local\nmodels:\n  top_n: true\n")
    with pytest.raises(ConfigError, match="models.top_n' must be an integer"):
        load_config("local", conf_dir=conf)


def test_value_outside_choices(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "target: local\nmodels:\n  confidence:\n    weight: clicks\n")
    with pytest.raises(
        ConfigError, match="'models.confidence.weight' must be one of 'count', 'quantity', 'revenue'"
    ):
        load_config("local", conf_dir=conf)


def test_missing_required_key_names_key(tmp_path: Path) -> None:
    base = (CONF / "base.yml").read_text().replace("  gold: gold\n", "")
    (tmp_path / "base.yml").write_text(base)
    (tmp_path / "local.yml").write_text("target: local\n")
    with pytest.raises(ConfigError, match=r"missing required key 'schemas\.gold': set it in .*base\.yml"):
        load_config("local", conf_dir=tmp_path)


def test_injection_in_table_identifier_is_rejected(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "target: local\ntables:\n  interactions: 'x; DROP TABLE y'\n")
    with pytest.raises(ConfigError) as err:
        load_config("local", conf_dir=conf)
    message = str(err.value)
    assert "key 'tables.interactions'" in message and "not a valid table identifier" in message
    assert "local.yml" in message


def test_invalid_catalog_is_rejected(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "target: local\ncatalog: 'main`.evil'\n")
    with pytest.raises(ConfigError, match="key 'catalog'"):
        load_config("local", conf_dir=conf)


def test_target_mismatch_is_rejected(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "target: prod\n")
    with pytest.raises(ConfigError, match="key 'target' is 'prod'"):
        load_config("local", conf_dir=conf)


def test_unknown_target() -> None:
    with pytest.raises(ConfigError, match="unknown target 'staging'"):
        load_config("staging")


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config("local", conf_dir=conf)


def test_table_names_are_two_level_locally_three_level_on_databricks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert str(table_name(load_config("local"), "interactions")) == "`silver`.`interactions`"
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    name = table_name(load_config("prod"), "recommendations")
    assert name == TableName("gold", "recommendations", "recsys_prod")
    assert str(name) == "`recsys_prod`.`gold`.`recommendations`"


def test_table_name_parts_are_validated() -> None:
    with pytest.raises(ConfigError):
        TableName("silver", "a`b")


def test_guardrail_k_must_be_one_of_the_evaluated_ks() -> None:
    with pytest.raises(ConfigError, match=r"evaluation.primary_k is 7 but evaluation.k is \[5, 10, 20\]"):
        load_config("local", overrides={"evaluation": {"primary_k": 7}})


def test_kernel_params_are_read_field_by_field_by_name() -> None:
    """conf -> kernel params by keyword: every parameter equals the conf key of its name, so a
    reordered field cannot swap two parameters, and a missing one fails loudly."""
    conf = load_config(
        "local",
        overrides={
            "models": {
                "als": {"factors": 7, "regularization": 0.3, "iterations": 2, "seed": 5},
                "confidence": {"alpha": 3.5},
                "bpr": {"learning_rate": 0.02, "regularization": 0.04},
                "content": {"dims": 9, "min_df": 4},
            },
            "baskets": {"min_support": 0.02, "max_len": 3},
        },
    )
    settings = train_settings(conf.models)
    assert settings.als == als.AlsParams(factors=7, regularization=0.3, iterations=2, alpha=3.5, seed=5)
    assert (settings.bpr.learning_rate, settings.bpr.regularization) == (0.02, 0.04)
    assert settings.content == content.ContentParams(dims=9, min_df=4, seed=5)
    assert settings.fusion.strategy == conf.models.fusion.strategy
    # The hybrid and UserKNN are made at scoring: nothing of their own to train.
    assert settings.models == tuple(m for m in conf.models.enabled if m not in ("hybrid", "userknn"))
    mining = mining_settings(conf.baskets)
    assert (mining.min_support, mining.max_len) == (0.02, 3)

    @dataclasses.dataclass
    class Section:  # a conf section that lost (or renamed) a parameter's key
        factors: int = 1

    with pytest.raises(AttributeError, match="regularization"):
        by_name(als.AlsParams, Section(), alpha=1.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": {"feedback": "explicit"}}, r"models\.feedback: explicit needs input\.columns\.rating"),
        ({"evaluation": {"baseline": "bias"}}, r"evaluation\.baseline: bias predicts ratings"),
        ({"evaluation": {"primary_metric": "rmse"}}, r"evaluation\.primary_metric: rmse measures predicted"),
        (
            {"models": {"feedback": "explicit"}, "input": {"columns": {"rating": "stars"}}},
            r"models\.tuning\.models: tuning searches implicit ALS",
        ),
    ],
)
def test_settings_of_the_other_kind_of_feedback_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("local", overrides=overrides)


def test_the_movielens_overlay_loads_as_explicit_feedback() -> None:
    config = load_config("local", extra_files=[Path(__file__).parents[2] / "conf" / "movielens.yml"])
    assert config.models.feedback == "explicit" and config.input.columns.rating == "rating"
    assert train_settings(config.models).models == ("als", "itemknn", "popularity", "bias")
    assert train_settings(config.models).als.feedback == "explicit"


def test_spark_settings_reach_the_local_session_and_must_be_text(spark: SparkSession, tmp_path: Path) -> None:
    # The test session is built from conf's spark.conf (tests/conftest.py).
    assert spark.conf.get("spark.sql.adaptive.enabled") == "false"
    conf = conf_dir_with(tmp_path, 'target: local\nspark:\n  conf: {"spark.sql.adaptive.enabled": false}\n')
    named = r"key 'spark\.conf\.spark\.sql\.adaptive\.enabled' must be a string"
    with pytest.raises(ConfigError, match=named):
        load_config("local", conf_dir=conf)
