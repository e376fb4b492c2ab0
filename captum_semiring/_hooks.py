"""Removable handles: every hook this package installs goes through here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol


class _Removable(Protocol):
    def remove(self) -> None: ...


class HandleSet:
    """Collects removable handles (hooks, dispatch modes' cleanups) to remove together."""

    def __init__(self) -> None:
        self._handles: list[_Removable] = []

    def add(self, handle: _Removable) -> _Removable:
        self._handles.append(handle)
        return handle

    def remove_all(self) -> None:
        # Newest first, so nested hooks unwind in the order they were stacked.
        while self._handles:
            self._handles.pop().remove()


@contextlib.contextmanager
def removable_handles() -> Iterator[HandleSet]:
    """Yield a :class:`HandleSet` whose handles are removed on exit, even on error.

    Examples::

        >>> import torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> with removable_handles() as handles:
        ...     _ = handles.add(layer.register_forward_hook(lambda m, a, o: None))
        ...     len(layer._forward_hooks)
        1
        >>> len(layer._forward_hooks)
        0
    """
    handles = HandleSet()
    try:
        yield handles
    finally:
        handles.remove_all()
