"""One place that builds what the tests share: tiny models, and the semirings the
brute-force checks compare with ``tests/reference.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import captum_semiring as cs

# name -> (factory, the reference's name for it, k)
SEMIRINGS: dict[str, tuple[Callable[[], Any], str, int | None]] = {
    "sum": (cs.SumProduct, "sum", None),
    "max_positive": (lambda: cs.MaxProduct("positive"), "max_positive", None),
    "max_negative": (lambda: cs.MaxProduct("negative"), "max_negative", None),
    "max_absolute": (lambda: cs.MaxProduct("absolute"), "max_absolute", None),
    "entropy": (cs.Entropy, "entropy", None),
    "logsum": (cs.LogSum, "logsum", None),
    "pathcount": (cs.PathCount, "pathcount", None),
    "topk1": (lambda: cs.TopK(1), "topk", 1),
    "topk3": (lambda: cs.TopK(3), "topk", 3),
}


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


def seeded_randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """A float64 leaf that requires grad, drawn from its own seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(True)


def check_every_semiring(
    fn: Callable[..., torch.Tensor], *sources: torch.Tensor
) -> None:
    """Record ``fn`` on two paths into it (``s`` and ``tanh(s)``) followed by a
    weighted sum; every semiring must equal the brute-force reference, and
    SumProduct must equal autograd."""
    from reference import ReferenceGraph, mismatches

    with cs.record(*sources) as graph:
        out = fn(*[s + torch.tanh(s) for s in sources])
        weight = seeded_randn(*out.shape, seed=7).detach()
        total = (out * weight).sum()
    grads = torch.autograd.grad(total, sources, allow_unused=True)
    ref = ReferenceGraph(graph, total)
    failures = []
    for name, (make, ref_name, k) in SEMIRINGS.items():
        result = graph.backward(total, make())
        for i, (s, g) in enumerate(zip(sources, grads, strict=True)):
            if name == "sum" and g is not None:
                assert not mismatches(result[s], g), "SumProduct != autograd"
            bad = mismatches(result[s], ref.expected(s, ref_name, k))
            if bad:
                failures.append(f"{name}, source {i}: " + "; ".join(bad[:3]))
    assert not failures, "\n".join(failures)
