"""One place that builds the tiny models the tests share."""

from __future__ import annotations

from typing import Any

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


def tiny_bert_config(**overrides: object) -> Any:
    """The tests' one BertConfig: vocabulary 30, hidden 8, 2 layers, 2 heads,
    intermediate 16, eager attention; ``overrides`` replace any field."""
    from transformers import BertConfig

    settings: dict[str, Any] = dict(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        attn_implementation="eager",
    )
    settings.update(overrides)
    return BertConfig(**settings)


def tiny_bert(layers: int, **config: object) -> nn.Module:
    """A random-init float64 BertModel of :func:`tiny_bert_config`, seeded."""
    from transformers import BertModel

    torch.manual_seed(0)
    return (
        BertModel(tiny_bert_config(num_hidden_layers=layers, **config)).double().eval()
    )
