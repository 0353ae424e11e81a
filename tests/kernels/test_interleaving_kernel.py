"""Team-draft interleaving worked by hand, and the Wilson interval of a preference share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_spark.kernels.interleaving import preference, preference_share, preferences, team_draft


class Coins:
    """A generator whose ``random()`` gives fixed values: the draft's coin flips, chosen."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def test_team_draft_by_hand() -> None:
    # Even: coin 0.3 -> first picks a. First ahead: second picks b. Even: coin 0.7 -> second
    # picks d (its next unused). First behind: its b is taken, it picks c.
    merged, teams = team_draft(["a", "b", "c"], ["b", "d", "e"], 4, Coins(0.3, 0.7))  # type: ignore[arg-type]
    assert (merged, teams) == (["a", "b", "d", "c"], [0, 1, 1, 0])
    # A list that runs out hands the turn to the other one; both out: the merged list ends early.
    merged, teams = team_draft(["a"], ["a", "b", "c"], 5, Coins(0.3, 0.3))  # type: ignore[arg-type]
    assert (merged, teams) == (["a", "b", "c"], [0, 1, 1])


def test_credit_goes_to_the_team_that_picked_the_bought_item() -> None:
    merged, teams = ["a", "b", "d", "c"], [0, 1, 1, 0]
    assert preference(merged, teams, {"d"}) == -1
    assert preference(merged, teams, {"a", "c", "d"}) == 1
    assert preference(merged, teams, {"a", "b"}) == 0
    assert preference(merged, teams, {"z"}) == 0


def test_a_list_holding_every_purchase_is_preferred_by_everyone_with_a_preference() -> None:
    """The first model lists every item each customer bought, the second none: 100% / 0%."""
    rng = np.random.default_rng(7)
    catalogue = [f"i{n}" for n in range(200)]
    rows = []
    for customer in range(300):
        bought = list(rng.choice(catalogue[:100], size=rng.integers(1, 4), replace=False))
        first = bought + [i for i in catalogue[:100] if i not in bought][:7]
        second = list(rng.choice(catalogue[100:], size=10, replace=False))
        rows.append(("all", f"c{customer}", first, second, bought))
    block = pd.DataFrame(rows, columns=["segment", "customer_id", "first", "second", "relevant"])
    found = preferences(block, 10, seed=42)
    assert (found.preference >= 0).all() and (found.preference == 1).all()  # bought items lead its list
    wins, losses = int((found.preference > 0).sum()), int((found.preference < 0).sum())
    assert preference_share(wins, losses)[0] == 1.0 and preference_share(losses, wins)[0] == 0.0
    assert preference_share(losses, wins)[1] == pytest.approx(0.0, abs=1e-12)
    assert preference_share(wins, losses)[2] == pytest.approx(1.0)
    # Missing lists are empty; the same seed interleaves the same way.
    block.loc[0, "second"] = None
    assert preferences(block, 10, seed=42).preference.tolist() == found.preference.tolist()


def test_wilson_interval_by_hand() -> None:
    # 8 of 10: centre (0.8 + 1.92/10) / 1.384 = 0.7167, half 1.96 x sqrt(0.016 + 0.0096) / 1.384 = 0.2266.
    share, low, high = preference_share(8, 2)
    assert share == 0.8 and (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert all(np.isnan(preference_share(0, 0)))
