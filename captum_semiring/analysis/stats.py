"""Small statistics shared by the reproductions: means with intervals, rank
correlation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def mean_ci(samples: Tensor, z: float = 1.96) -> tuple[Tensor, Tensor, Tensor]:
    """Mean over the first axis with a normal-approximation interval
    ``mean ± z·sd/√n``; the interval is the mean itself when ``n < 2``.

    Returns:
        ``(mean, low, high)``, each of shape ``samples.shape[1:]``.
    """
    samples = samples.double()
    n = samples.shape[0]
    mean = samples.mean(0)
    half = z * samples.std(0) / math.sqrt(n) if n > 1 else torch.zeros_like(mean)
    return mean, mean - half, mean + half


def ranks(x: Sequence[float]) -> Tensor:
    """Ranks from 0, ties sharing their average rank."""
    t = torch.tensor(list(x), dtype=torch.float64)
    order = t.argsort()
    r = torch.empty_like(t)
    r[order] = torch.arange(len(t), dtype=torch.float64)
    for v in t.unique():  # ties share their average rank
        tied = t == v
        r[tied] = r[tied].mean()
    return r


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation with average ranks for ties; None when it is
    undefined (fewer than two points, or a constant sequence).

    Examples::

        >>> from captum_semiring.analysis.stats import spearman
        >>> round(spearman([1, 2, 3, 4], [10, 20, 30, 100]), 6)
        1.0
        >>> round(spearman([1, 2, 3], [3, 2, 1]), 6)
        -1.0
    """
    if len(a) != len(b):
        raise ValueError(
            f"spearman needs sequences of one length, got {len(a)} and {len(b)}"
        )
    if len(a) < 2:
        return None
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else None
