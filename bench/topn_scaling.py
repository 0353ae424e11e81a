"""Exact top-N at the scale ladder's segment shapes: how its cost grows with the data.

    .venv/bin/python bench/topn_scaling.py

bench/scale.py keeps the density of the 3M set (``ladder_shape``: one customer per 30 lines and
one item per 300), so customers and items both grow with the lines. Every exact "best N of all
candidates" output then grows with their product: a customer's list scans every item, a
lookalike every customer.
This times the kernel behind them (``kernels.topn.top_matches``, one core, 64 random factors) on
a sample of queries per shape and scales to the whole segment (4 segments per size).
"""

from __future__ import annotations

import time

import numpy as np
from scale import SEGMENTS, ladder_shape

from recsys_spark.kernels.topn import limit_threads, top_matches

QUERIES = 5_000
FACTORS = 64
# output: (queries, candidates, N) as functions of the segment's customers and items
OUTPUTS = {
    "recommendations, audience (customers x items, top 50)": ("users", "items", 50),
    "lookalikes (customers x customers, top 20)": ("users", "users", 20),
    "similar items (items x items, top 20)": ("items", "items", 20),
}


def main() -> None:
    rng = np.random.default_rng(0)
    print("| lines | customers / segment | items | output | µs per query | whole segment s | 4 segments s |")
    print("|---|---|---|---|---|---|---|")
    with limit_threads(1):
        for lines in (3_000_000, 10_000_000, 30_000_000):
            customers, items = ladder_shape(lines)
            sizes = {"users": customers // SEGMENTS, "items": items}
            for output, (queries, candidates, n) in OUTPUTS.items():
                query = rng.standard_normal((QUERIES, FACTORS), dtype=np.float32)
                catalogue = rng.standard_normal((sizes[candidates], FACTORS), dtype=np.float32)
                start = time.perf_counter()
                top_matches(query, catalogue, n)
                per_query = (time.perf_counter() - start) / QUERIES
                segment = per_query * sizes[queries]
                print(
                    f"| {lines:,} | {sizes['users']:,} | {sizes['items']:,} | {output} | "
                    f"{per_query * 1e6:.0f} | {segment:.1f} | {segment * SEGMENTS:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
