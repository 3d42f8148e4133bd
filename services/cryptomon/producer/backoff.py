"""Capped exponential backoff with jitter, so a fleet of producers does not reconnect in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Delay before the next attempt: uniform in [d/2, d], d = min(max, initial * 2^attempt)."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
