"""Online: the API over the published tables and what the served model is configured with (no Spark)."""
