"""Item graph measures over association rules (networkx; no Spark)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd


def item_pagerank(edges: pd.DataFrame, damping: float = 0.85) -> pd.DataFrame:
    """PageRank of items over directed rule edges (source -> target, weighted by ``lift``).

    ``edges``: source, target, lift. Returns item_id, pagerank, in_degree, out_degree, rank (1 =
    most central; ties by item id), one row per item that appears in an edge. An item that many
    rules lead to, from items that are themselves central, ranks high: a hub of the assortment.
    """
    columns = ["item_id", "pagerank", "in_degree", "out_degree", "rank"]
    if edges.empty:
        dtypes = [str, float, int, int, int]
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, dtypes, strict=True)})
    if not np.isfinite(edges["lift"].to_numpy(dtype=float)).all() or (edges["lift"] <= 0).any():
        raise ValueError("rule edges need a finite, positive lift for PageRank weights")
    graph = nx.DiGraph()
    graph.add_weighted_edges_from(edges[["source", "target", "lift"]].itertuples(index=False, name=None))
    scores = nx.pagerank(graph, alpha=damping, weight="weight")
    nodes = pd.DataFrame(
        {
            "item_id": list(scores),
            "pagerank": list(scores.values()),
            "in_degree": [graph.in_degree(n) for n in scores],
            "out_degree": [graph.out_degree(n) for n in scores],
        }
    )
    nodes = nodes.sort_values(["pagerank", "item_id"], ascending=[False, True], ignore_index=True)
    nodes["rank"] = np.arange(1, len(nodes) + 1)
    return nodes[columns]
