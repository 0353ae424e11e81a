"""conf: the schema and its loading (``schema``), and conf -> kernel parameters (``params``)."""

from recsys_spark.config.schema import (
    DEFAULT_CONF_DIR,
    TARGETS,
    BasketsConfig,
    BusinessRulesConfig,
    ColumnMapping,
    Config,
    ConfigError,
    EvaluationConfig,
    ModelsConfig,
    load_config,
    on_databricks,
    parse_settings,
    validate_identifier,
)

__all__ = [
    "DEFAULT_CONF_DIR",
    "TARGETS",
    "BasketsConfig",
    "BusinessRulesConfig",
    "ColumnMapping",
    "Config",
    "ConfigError",
    "EvaluationConfig",
    "ModelsConfig",
    "load_config",
    "on_databricks",
    "parse_settings",
    "validate_identifier",
]
