"""Fixtures shared by the reproduction tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from captum_semiring.reproductions.tasks.determinism import deterministic


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The test runs with one intra-op thread (restored after); see
    :func:`~captum_semiring.reproductions.tasks.determinism.one_thread`."""
    with deterministic(threads=1, algorithms=False):
        yield
