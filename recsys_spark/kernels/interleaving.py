"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008) of two models' lists, credited
by what each customer bought: an offline stand-in for showing one merged list and seeing whose
items get bought. pandas/numpy only.

Per customer the two models take turns like team captains: the one with fewer picks so far
picks next (a coin decides when even), taking its best item not yet in the merged list. The
model whose picks hold more of the customer's purchases wins that customer; equal credit (often
none) is a tie.

Example::

    team_draft(["a", "b", "c"], ["b", "d"], 4, np.random.default_rng(0))
    # (["b", "a", "d", "c"], [1, 0, 1, 0]) or another order, by the coins
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys_spark.kernels.uplift import Z_95

FIRST, SECOND = 0, 1  # teams; a preference is +1 (first wins), -1 (second wins) or 0


def team_draft(
    first: Sequence[str], second: Sequence[str], length: int, rng: np.random.Generator
) -> tuple[list[str], list[int]]:
    """The merged list (up to ``length`` items) and the team that picked each item."""
    lists = (list(first), list(second))
    positions, picks = [0, 0], [0, 0]
    merged: list[str] = []
    teams: list[int] = []
    taken: set[str] = set()
    while len(merged) < length:
        even = picks[FIRST] == picks[SECOND]
        team = FIRST if picks[FIRST] < picks[SECOND] or (even and rng.random() < 0.5) else SECOND
        item = _next_unused(lists[team], positions, team, taken)
        if item is None:  # this team has nothing left: the other one picks
            team = 1 - team
            item = _next_unused(lists[team], positions, team, taken)
            if item is None:
                break
        merged.append(item)
        teams.append(team)
        taken.add(item)
        picks[team] += 1
    return merged, teams


def _next_unused(items: list[str], positions: list[int], team: int, taken: set[str]) -> str | None:
    while positions[team] < len(items):
        item = items[positions[team]]
        positions[team] += 1
        if item not in taken:
            return item
    return None


def preference(merged: list[str], teams: list[int], bought: set[str]) -> int:
    """+1 when the first team's picks hold more purchases, -1 when the second's do, else 0."""
    credit = [0, 0]
    for item, team in zip(merged, teams, strict=True):
        credit[team] += item in bought
    return int(np.sign(credit[FIRST] - credit[SECOND]))


def preferences(block: pd.DataFrame, length: int, seed: int) -> pd.DataFrame:
    """Per customer of ``block`` (segment, customer_id, first, second, relevant: item lists; a
    missing list is empty), their ``preference``. The coins come from the seed and the
    customer, so a rerun interleaves the same way."""
    out = []
    for segment, customer, first, second, relevant in block[
        ["segment", "customer_id", "first", "second", "relevant"]
    ].itertuples(index=False):
        rng = np.random.default_rng([seed, zlib.crc32(f"{segment}\x1f{customer}".encode())])
        merged, teams = team_draft(_items(first), _items(second), length, rng)
        out.append(preference(merged, teams, set(_items(relevant))))
    return block[["segment", "customer_id"]].assign(preference=np.asarray(out, dtype=np.int32))


def _items(value: object) -> list[str]:
    return [] if value is None or (isinstance(value, float) and math.isnan(value)) else list(value)


def preference_share(wins: int, losses: int) -> tuple[float, float, float]:
    """(share of the customers with a preference who prefer this model, its 95% Wilson interval);
    NaNs when no customer has a preference. Wilson's interval stays inside [0, 1] at 0% and 100%."""
    n = wins + losses
    if n == 0:
        return math.nan, math.nan, math.nan
    share = wins / n
    z2 = Z_95 * Z_95
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return share, max(0.0, centre - half), min(1.0, centre + half)
