"""One place that builds the tiny models the tests share."""

from __future__ import annotations

import torch
from torch import nn


def two_layer_mlp() -> tuple[nn.Module, torch.Tensor]:
    """A float64 4-5-5-1 MLP (tanh, relu) and a batch of 3 inputs, seeded."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 1)
    ).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    return net, x


def tiny_bert(layers: int, **config: object) -> nn.Module:
    """A random-init float64 BertModel (hidden 8, 2 heads, eager attention), seeded;
    ``config`` overrides BertConfig fields."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    settings: dict[str, object] = dict(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=16,
        attn_implementation="eager",
    )
    settings.update(config)
    return BertModel(BertConfig(**settings)).double().eval()
