"""Shared fixtures and checks for the Captum attribution classes."""

from __future__ import annotations

import os
import sys
from typing import Any

import matplotlib
import pytest
import torch
from torch import nn

# The suite runs with --import-mode=importlib; make the helper module importable.
sys.path.insert(0, os.path.dirname(__file__))
from attr_models import SmallCNN, TitanicNet, TwoInputNet, titanic_data  # noqa: E402

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def titanic() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TitanicNet().double().eval(), titanic_data()


@pytest.fixture
def cnn() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return SmallCNN().double().eval(), torch.randn(2, 3, 8, 8, dtype=torch.float64)


@pytest.fixture
def two_input() -> tuple[nn.Module, tuple[torch.Tensor, ...], tuple[Any, ...]]:
    torch.manual_seed(0)
    model = TwoInputNet().double().eval()
    x1 = torch.randn(3, 3, dtype=torch.float64)
    x2 = torch.randn(3, 4, dtype=torch.float64)
    extra = torch.randn(3, 5, dtype=torch.float64)
    return model, (x1, x2), (extra, 0.5)


@pytest.fixture(scope="session")
def minilm() -> tuple[nn.Module, Any]:
    from captum_semiring.reproductions.tasks import load_minilm

    return load_minilm()


@pytest.fixture(autouse=True)
def no_global_hooks_left():
    """Every test leaves PyTorch's global module hooks as it found them."""
    from torch.nn.modules import module as module_lib

    before = (
        dict(module_lib._global_forward_hooks),
        dict(module_lib._global_forward_pre_hooks),
    )
    yield
    after = (
        dict(module_lib._global_forward_hooks),
        dict(module_lib._global_forward_pre_hooks),
    )
    assert after == before, "global forward hooks were left behind"
