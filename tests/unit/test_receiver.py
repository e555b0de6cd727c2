"""Early-webhook row reads get the share of the base's rate that the leader leaves free."""

from __future__ import annotations

import pytest

from controller.receiver import adoption_interval


@pytest.mark.parametrize(
    ("leader_rate", "interval"),
    [(4.5, 2.0), (4.0, 1.0), (3.0, 0.5), (4.95, None), (5.0, None), (20.0, None)],
)
def test_a_follower_reads_within_what_the_leader_leaves_free(
    leader_rate: float, interval: float | None
) -> None:
    assert adoption_interval(leader_rate) == (pytest.approx(interval) if interval is not None else None)
