"""Shape arithmetic in plain Python. Torch's own (``torch.broadcast_shapes``,
``torch.unravel_index``) import sympy on their first call, about a second of a fresh
process's first sweep or path, and cost more per call."""

from __future__ import annotations

from collections.abc import Sequence


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Two shapes broadcast together, for shapes that already met in an op (so
    they are not checked)."""
    a, b = tuple(a), tuple(b)
    if a == b:
        return a
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    return tuple(y if x == 1 else x for x, y in zip(a, b, strict=True))


def unravel_index(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    """The index of element ``flat`` of a row-major tensor of ``shape``."""
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))
