# Databricks notebook source
# MAGIC %md
# MAGIC # Item rules explorer
# MAGIC
# MAGIC One item: what is bought with it (add-ons and association rules, both directions), what
# MAGIC replaces it (substitutes), how central it is in the rules graph, and which customers to
# MAGIC target with it. Leave `item_id` empty for the most central item of the rules graph.

# COMMAND ----------

from pyspark.sql import functions as F

from recsys_spark.io.session import get_spark
from recsys_spark.io.tables import table_name
from recsys_spark.io.views import view_name
from recsys_spark.notebook import notebook_params, show

config, params = notebook_params(globals(), {"item_id": "", "segment": "all"})
spark = get_spark(config)
segment = params["segment"]


def table(key: str):
    return spark.table(str(table_name(config, key)))


nodes = table("rules_graph_nodes")
item_id = params["item_id"] or nodes.orderBy("rank").first().item_id
item = table("items").where(F.col("item_id") == item_id)
if item.isEmpty():
    raise ValueError(f"item {item_id!r} is not in {table_name(config, 'items')}")
show(globals(), item.join(nodes.drop("run_id", "generated_at"), "item_id", "left"), f"Item {item_id}")

# COMMAND ----------

# MAGIC %md ## Bought together: add-ons and rules

# COMMAND ----------

descriptions = table("items").select(F.col("item_id").alias("addon_item_id"), "description")
addons = (
    table("frequently_bought_together")
    .where((F.col("item_id") == item_id) & (F.col("segment") == segment))
    .join(descriptions, "addon_item_id", "left")
    .orderBy("rank")
)
show(globals(), addons, f"Top add-ons in segment {segment}")
rules = spark.table(str(view_name(config, "v_top_rules"))).where(F.col("segment") == segment)
rules_from = rules.where(F.array_contains("antecedent", item_id)).orderBy("rank")
rules_to = rules.where(F.col("consequent_item_id") == item_id).orderBy("rank")
show(globals(), rules_from, "Rules with the item in the basket")
show(globals(), rules_to, "Rules that lead to the item")

# COMMAND ----------

# MAGIC %md ## Substitutes and audience

# COMMAND ----------

substitutes = table("substitutes").where((F.col("item_id") == item_id) & (F.col("segment") == segment))
show(globals(), substitutes, "Substitutes (rarely bought together although both are popular)")
audience = spark.table(str(view_name(config, "v_item_audience"))).where(F.col("item_id") == item_id)
show(globals(), audience.orderBy("segment", "rank"), "Customers to target (have not bought it yet)")
