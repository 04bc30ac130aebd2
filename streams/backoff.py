"""Waiting before a retry: exponential backoff with full jitter, for every retry loop in Shardwatch.

Workers that failed together (a throttled table, an unreachable endpoint, a function that keeps
failing) must not retry together, so each wait is drawn at random below a ceiling that doubles
with each attempt ("full jitter", AWS Architecture Blog, "Exponential Backoff And Jitter").
"""

import random


def backoff_delay(*, attempt: int, base_s: float, cap_s: float, doublings: int, low_s: float = 0.0) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry): a uniform draw
    between `low_s` and base_s * 2**attempt, with the ceiling capped at `cap_s` seconds.

    `doublings` caps the exponent, so that a long run of failures never makes a float
    overflow; with it above log2(cap_s / base_s) only `cap_s` limits the ceiling.
    """
    ceiling = min(cap_s, base_s * 2 ** min(attempt, doublings))
    return random.uniform(low_s, ceiling)
