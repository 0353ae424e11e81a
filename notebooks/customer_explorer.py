# Databricks notebook source
# MAGIC %md
# MAGIC # Customer explorer
# MAGIC
# MAGIC One customer: who they are (value, lifecycle), what they bought, what we recommend and why,
# MAGIC how saturated each product category is for them, and the customers most like them.
# MAGIC Leave `customer_id` empty to look at the customer with the most orders.

# COMMAND ----------

from pyspark.sql import functions as F

from recsys_spark.io.session import get_spark
from recsys_spark.io.tables import table_name
from recsys_spark.io.views import view_name
from recsys_spark.notebook import notebook_params, show

config, params = notebook_params(globals(), {"customer_id": ""})
spark = get_spark(config)


def table(key: str):
    return spark.table(str(table_name(config, key)))


customers = table("customers")
customer_id = params["customer_id"] or customers.orderBy(F.desc("orders"), "customer_id").first().customer_id
profile = customers.where(F.col("customer_id") == customer_id)
if profile.isEmpty():
    raise ValueError(f"customer {customer_id!r} is not in {table_name(config, 'customers')}")
show(globals(), profile, f"Customer {customer_id}")

# COMMAND ----------

# MAGIC %md ## What they bought (latest first)

# COMMAND ----------

history = (
    table("interactions")
    .where(F.col("customer_id") == customer_id)
    .groupBy("segment", "item_id")
    .agg(
        F.first("description").alias("description"),
        F.count(F.lit(1)).alias("lines"),
        F.round(F.sum("revenue"), 2).alias("spend"),
        F.max("event_ts").alias("last_bought"),
    )
    .orderBy(F.desc("last_bought"), "item_id")
)
show(globals(), history, "Purchase history")

# COMMAND ----------

# MAGIC %md ## What we recommend, and why
# MAGIC `reason`: `factor_score` (ALS/BPR), `because_bought` (ItemKNN: `reason_description` is the
# MAGIC item bought that led here), `popular_in_segment` or `popular_overall`.

# COMMAND ----------

recommendations = (
    spark.table(str(view_name(config, "v_recommendations_latest")))
    .where(F.col("customer_id") == customer_id)
    .orderBy("segment", "rank")
)
show(globals(), recommendations, "Recommendations")

# COMMAND ----------

# MAGIC %md ## Category saturation and lookalikes

# COMMAND ----------

saturation = table("category_saturation").where(F.col("customer_id") == customer_id).orderBy(F.desc("share"))
show(globals(), saturation, "Share of spend per category (decile 10 = most saturated tenth of buyers)")
lookalikes = table("lookalikes").where(F.col("customer_id") == customer_id).orderBy("rank")
show(globals(), lookalikes, "Most similar customers")
