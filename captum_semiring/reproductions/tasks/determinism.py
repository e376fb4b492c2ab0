"""Deterministic kernels and pinned thread counts for the reproductions' trainings and
sweeps: the one place that sets them, restoring the previous settings afterwards.

The models of the paper are small enough that a second intra-op thread buys nothing,
and on a shared machine a thread that waits for a busy core made a 100-step MLP
training 40x slower (10 s instead of 0.25 s); a fixed thread count also fixes the
order of floating-point reductions, so trainings are repeatable.

Examples::

    >>> import torch
    >>> from captum_semiring.reproductions.tasks.determinism import (
    ...     deterministic, one_thread)
    >>> before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    >>> with deterministic(threads=1):
    ...     torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    (1, True)
    >>> (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    True
    >>> @one_thread
    ... def threads() -> int:
    ...     return torch.get_num_threads()
    >>> threads()
    1
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import torch

__all__ = ["deterministic", "one_thread"]

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def deterministic(threads: int | None = 1, algorithms: bool = True) -> Iterator[None]:
    """Within the block, ``threads`` intra-op threads (None or 0: leave the count) and,
    with ``algorithms``, PyTorch's deterministic kernels (warning, not raising, where
    an op has none). Both are restored when the block ends, also on errors.

    Args:
        threads: the thread count inside the block.
        algorithms: also switch on ``torch.use_deterministic_algorithms``.
    """
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_threads = torch.get_num_threads()
    if algorithms:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if algorithms:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


def one_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``fn`` with one intra-op thread (``deterministic(threads=1,
    algorithms=False)``), restoring the count after."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with deterministic(threads=1, algorithms=False):
            return fn(*args, **kwargs)

    return wrapper
