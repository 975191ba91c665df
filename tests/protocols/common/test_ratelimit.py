"""TokenBuckets: bursts, refill, Retry-After seconds and the bounded client map."""

from __future__ import annotations

import pytest

from protocols.common.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_with_wait_times() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == 1  # half a second at 2/s, rounded up to a whole second
    assert buckets.take("b") == 0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.peek("a") == 0
    assert buckets.take("a") == 0
    assert buckets.take("a") == 1
    clock.now += 100
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 1]  # never more than the burst


def test_slow_rates_report_long_waits_and_zero_disables() -> None:
    clock = Clock()
    per_minute = TokenBuckets(10 / 60, 10, clock=clock)
    assert all(per_minute.take("x") == 0 for _ in range(10))
    assert per_minute.peek("x") == 6
    assert per_minute.take("x") == 6
    off = TokenBuckets(0, 1, clock=clock)
    assert not off.enabled
    assert all(off.take("x") == 0 for _ in range(1000))
    with pytest.raises(ValueError, match="rate"):
        TokenBuckets(-1, 1)


def test_client_map_stays_bounded() -> None:
    clock = Clock()
    buckets = TokenBuckets(1.0, 2, max_clients=100, clock=clock)
    for i in range(1000):
        buckets.take(f"client-{i}")
        clock.now += 0.001
    assert len(buckets._buckets) <= 100
