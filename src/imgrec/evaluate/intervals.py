"""Confidence intervals for proportions (accuracy, recall, precision) on small test sets.

A score measured on 40 images is a guess; the interval says how good a guess. Wilson's score
interval stays inside [0, 1] and keeps close to its nominal coverage even for tiny n or
proportions near 0 or 1, where the textbook normal interval fails (Brown, Cai & DasGupta 2001).
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval for successes/n, or None when n is 0 (nothing measured)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
