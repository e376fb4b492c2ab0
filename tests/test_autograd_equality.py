"""SumProduct equals torch.autograd.grad, per example, on every supported model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo import CASES

import captum_semiring as cs


def _autograd(model, inputs, output_fn, sources):
    """Reference gradients of sum(output) w.r.t. each source, by plain autograd."""
    captured = {}
    handles = []
    grads_of = []
    for s in sources:
        if isinstance(s, nn.Module):

            def hook(module, args, out, key=s):
                captured[key] = out

            handles.append(s.register_forward_hook(hook))
        else:
            s.requires_grad_(True)
    try:
        out = output_fn(model(*inputs))
        for s in sources:
            grads_of.append(captured[s] if isinstance(s, nn.Module) else s)
        return out, torch.autograd.grad(out.sum(), grads_of, allow_unused=True)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("name", sorted(CASES))
def test_sum_product_equals_autograd(name):
    model, inputs, output_fn, sources = CASES[name]()
    expected_out, expected = _autograd(model, inputs, output_fn, sources)
    with cs.record(*sources) as graph:
        out = output_fn(model(*inputs))
    torch.testing.assert_close(out.detach(), expected_out.detach())
    result = graph.backward(out, cs.SumProduct())
    for source, grad in zip(sources, expected, strict=True):
        got = result[source]
        want = torch.zeros_like(got) if grad is None else grad
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("name", ["mlp", "bert-eager"])
def test_batch_examples_do_not_mix(name):
    """Each example's gradient equals the gradient computed for it alone."""
    model, inputs, output_fn, sources = CASES[name]()
    with cs.record(*sources) as graph:
        out = output_fn(model(*inputs))
    batched = graph.backward(out, "sum")[sources[0]]
    single_inputs = tuple(t[:1] for t in inputs)
    single_sources = tuple(
        s if isinstance(s, nn.Module) else single_inputs[0] for s in sources[:1]
    )
    with cs.record(*single_sources) as graph:
        out = output_fn(model(*single_inputs))
    alone = graph.backward(out, "sum")[single_sources[0]]
    torch.testing.assert_close(batched[:1], alone, rtol=1e-6, atol=1e-10)


def test_sdpa_and_eager_gradients_agree():
    from zoo import _hf

    results = []
    for impl in ("eager", "sdpa"):
        model, inputs, output_fn, sources = _hf("bert", impl)
        with cs.record(*sources) as graph:
            out = output_fn(model(*inputs))
        results.append(graph.backward(out, "sum")[sources[0]])
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-10)
