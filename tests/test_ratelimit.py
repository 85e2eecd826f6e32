"""The one rate limiter of the web chat and the Slack bot."""

from __future__ import annotations

import pytest

from rag.ratelimit import RateLimiter


def test_rate_limiter_window_per_key() -> None:
    now = [100.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.retry_after("a") == pytest.approx(60.0)
    assert limiter.allow("b")
    now[0] += 30
    assert limiter.retry_after("a") == pytest.approx(30.0)
    now[0] += 30
    assert limiter.allow("a") and limiter.retry_after("b") == 0.0
    assert all(RateLimiter(0).allow("x") for _ in range(100))


def test_rate_limiter_forgets_idle_users() -> None:
    now = [0.0]
    limiter = RateLimiter(1, clock=lambda: now[0])
    for i in range(10_001):
        limiter.allow(f"user{i}")
    now[0] = 61.0
    assert limiter.allow("late") and len(limiter) == 1


def test_a_few_users_are_forgotten_too() -> None:
    """The Slack bot's old limiter kept every user it had ever seen."""
    now = [0.0]
    limiter = RateLimiter(5, clock=lambda: now[0])
    assert limiter.allow("ann") and limiter.allow("bob")
    now[0] = 30.0
    assert limiter.allow("bob") and len(limiter) == 2
    now[0] = 75.0  # ann idle for more than a minute, bob for 45 s
    assert limiter.allow("cy") and len(limiter) == 2
    now[0] = 200.0
    assert limiter.allow("dan") and len(limiter) == 1
